package tasks_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/tasks"
)

// The non-final index follows each record through its life: in from creation, out at
// a final state, back in on a re-run; DueNonFinal pages by last check.
func TestNonFinalIndexFollowsRecords(t *testing.T) {
	t.Parallel()
	b := setup(t, tasks.EnqueuerConfig{})
	ctx := context.Background()
	st := b.store
	for _, id := range []string{"a", "b", "c"} {
		_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: id, Message: transactional(), TTL: time.Minute})
		require.NoError(t, err)
		b.clock.Add(time.Second)
	}
	members := func() []string {
		ids, err := st.DueNonFinal(ctx, b.clock.Now().Add(time.Hour), 100)
		require.NoError(t, err)
		return ids
	}
	require.Equal(t, []string{"a", "b", "c"}, members(), "oldest first")
	n, err := st.NonFinalCount(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 3, n)

	// Paging: only records last checked before the cut-off, at most limit of them.
	due, err := st.DueNonFinal(ctx, b.clock.Now().Add(-2*time.Second), 100)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, due)
	due, err = st.DueNonFinal(ctx, b.clock.Now(), 1)
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, due)
	require.NoError(t, st.MarkChecked(ctx, "a", b.clock.Now().Add(time.Minute)))
	due, err = st.DueNonFinal(ctx, b.clock.Now(), 1)
	require.NoError(t, err)
	require.Equal(t, []string{"b"}, due, "a checked: the next page starts after it")

	// A non-final state change keeps the record; a final one removes it.
	_, ok, err := st.Transition(ctx, "a", []tasks.State{tasks.StateQueued}, tasks.StateSending, tasks.Update{})
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = st.Transition(ctx, "a", []tasks.State{tasks.StateSending}, tasks.StateDropped, tasks.Update{})
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = st.Transition(ctx, "b", []tasks.State{tasks.StateQueued}, tasks.StateCancelled, tasks.Update{})
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, []string{"c"}, members())

	// MarkChecked never re-adds a record that left the index.
	require.NoError(t, st.MarkChecked(ctx, "b", b.clock.Now()))
	require.Equal(t, []string{"c"}, members())

	// A re-run of the dropped record brings it back.
	_, ok, err = st.Transition(ctx, "a", []tasks.State{tasks.StateDropped}, tasks.StateQueued, tasks.Update{Rerun: true})
	require.NoError(t, err)
	require.True(t, ok)
	require.ElementsMatch(t, []string{"a", "c"}, members())
}

// ForgetNonFinal removes an ID only when its record is final or gone.
func TestForgetNonFinal(t *testing.T) {
	t.Parallel()
	b := setup(t, tasks.EnqueuerConfig{})
	ctx := context.Background()
	st := b.store
	_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "live", Message: transactional(), TTL: time.Minute})
	require.NoError(t, err)
	ids, err := st.DueNonFinal(ctx, b.clock.Now().Add(time.Hour), 10)
	require.NoError(t, err)
	require.Equal(t, []string{"live"}, ids)
	removed, err := st.ForgetNonFinal(ctx, "live")
	require.NoError(t, err)
	require.False(t, removed, "a queued record stays")

	// An index entry whose record is gone (retention) is removed.
	require.NoError(t, b.rdb.Del(ctx, st.Key("live")).Err())
	removed, err = st.ForgetNonFinal(ctx, "live")
	require.NoError(t, err)
	require.True(t, removed)
	ids, err = st.DueNonFinal(ctx, b.clock.Now().Add(time.Hour), 10)
	require.NoError(t, err)
	require.Empty(t, ids)
}

// An enqueue writes the record's ID only to the index's list of new records, and a
// state change between two sweeps leaves it there. DueNonFinal sorts the list in:
// a record still on its way joins the sorted set scored with its creation time, one
// that finished or vanished meanwhile never enters it; the list is then empty, in
// as many batches as it takes.
func TestNonFinalNewRecordsSortedIn(t *testing.T) {
	t.Parallel()
	b := setup(t, tasks.EnqueuerConfig{})
	ctx := context.Background()
	st := b.store
	created := map[string]time.Time{}
	for _, id := range []string{"fast", "slow", "moving", "gone"} {
		created[id] = b.clock.Now()
		_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: id, Message: transactional(), TTL: time.Minute})
		require.NoError(t, err)
		b.clock.Add(time.Second)
	}
	_, ok, err := st.Transition(ctx, "fast", []tasks.State{tasks.StateQueued}, tasks.StateCancelled, tasks.Update{})
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = st.Transition(ctx, "moving", []tasks.State{tasks.StateQueued}, tasks.StateSending, tasks.Update{})
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, b.rdb.Del(ctx, st.Key("gone")).Err())
	require.Zero(t, b.rdb.ZCard(ctx, st.NonFinalKey()).Val(), "nothing in the sorted set before a sweep")
	require.Equal(t, []string{"fast", "slow", "moving", "gone"}, b.rdb.LRange(ctx, st.NonFinalNewKey(), 0, -1).Val())
	n, err := st.NonFinalCount(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 4, n, "before a sweep the count is an upper bound")

	ids, err := st.DueNonFinal(ctx, b.clock.Now().Add(time.Hour), 10)
	require.NoError(t, err)
	require.Equal(t, []string{"slow", "moving"}, ids)
	for _, id := range ids {
		score, err := b.rdb.ZScore(ctx, st.NonFinalKey(), id).Result()
		require.NoError(t, err)
		require.EqualValues(t, created[id].UnixMilli(), score, id+": scored with its creation")
	}
	require.Zero(t, b.rdb.Exists(ctx, st.NonFinalNewKey()).Val(), "the list is sorted in whole")
	n, err = st.NonFinalCount(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 2, n)

	// More new records than one script takes: every one is sorted in.
	var many []string
	for i := range 1201 {
		id := fmt.Sprintf("m%04d", i)
		many = append(many, id)
		_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: id, Message: transactional(), TTL: time.Minute})
		require.NoError(t, err)
	}
	ids, err = st.DueNonFinal(ctx, b.clock.Now().Add(time.Hour), 2000)
	require.NoError(t, err)
	require.Equal(t, append([]string{"slow", "moving"}, many...), ids)
	require.Zero(t, b.rdb.Exists(ctx, st.NonFinalNewKey()).Val())
}

// The index loses no record and keeps no finished one while records are created,
// cancelled, moved on, finished and re-run concurrently with two sort-ins (a deposed
// leader's sweep and the new leader's): at the end every record not final is in the
// sorted set, no final one is, the list is empty and NonFinalCount is exact.
func TestNonFinalIndexUnderConcurrency(t *testing.T) {
	t.Parallel()
	b := setup(t, tasks.EnqueuerConfig{})
	ctx := context.Background()
	st := b.store
	const n, producers = 1200, 4
	errs := make(chan error, producers+2)
	stop := make(chan struct{})
	var sorters sync.WaitGroup
	for range 2 {
		sorters.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := st.DueNonFinal(ctx, b.clock.Now().Add(-time.Hour), 10); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var prods sync.WaitGroup
	for g := range producers {
		prods.Go(func() {
			move := func(id string, from, to tasks.State, upd tasks.Update) error {
				_, _, err := st.Transition(ctx, id, []tasks.State{from}, to, upd)
				return err
			}
			for i := g; i < n; i += producers {
				id := fmt.Sprintf("c%05d", i)
				if _, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: id, Message: transactional(), TTL: time.Minute}); err != nil {
					errs <- err
					return
				}
				var err error
				switch i % 5 {
				case 0:
					_, _, err = b.enq.Cancel(ctx, id)
				case 1: // on its way
					err = move(id, tasks.StateQueued, tasks.StateSending, tasks.Update{})
				case 2: // finished, then re-run: on its way again
					err = errors.Join(move(id, tasks.StateQueued, tasks.StateSending, tasks.Update{}),
						move(id, tasks.StateSending, tasks.StateDropped, tasks.Update{}),
						move(id, tasks.StateDropped, tasks.StateQueued, tasks.Update{Rerun: true}))
				case 3: // finished
					err = errors.Join(move(id, tasks.StateQueued, tasks.StateSending, tasks.Update{}),
						move(id, tasks.StateSending, tasks.StateDropped, tasks.Update{}))
				}
				if err != nil {
					errs <- fmt.Errorf("%s: %w", id, err)
					return
				}
			}
		})
	}
	prods.Wait()
	close(stop)
	sorters.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	_, err := st.DueNonFinal(ctx, b.clock.Now().Add(-time.Hour), 10)
	require.NoError(t, err)
	require.Zero(t, b.rdb.LLen(ctx, st.NonFinalNewKey()).Val(), "the list is sorted in")
	indexed := map[string]bool{}
	for _, id := range b.rdb.ZRange(ctx, st.NonFinalKey(), 0, -1).Val() {
		indexed[id] = true
	}
	notFinal := 0
	for i := range n {
		id := fmt.Sprintf("c%05d", i)
		rec, err := st.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, !rec.State.Final(), indexed[id], "%s is %s", id, rec.State)
		if !rec.State.Final() {
			notFinal++
		}
	}
	require.Equal(t, 3*n/5, notFinal, "queued, sending and re-run records")
	count, err := st.NonFinalCount(ctx)
	require.NoError(t, err)
	require.EqualValues(t, notFinal, count)
}
