package tasks_test

import (
	"context"
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

// ForgetNonFinal removes an ID only when its record is final or gone, and a record
// written before the index existed joins it at its next state change.
func TestForgetNonFinal(t *testing.T) {
	t.Parallel()
	b := setup(t, tasks.EnqueuerConfig{})
	ctx := context.Background()
	st := b.store
	_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "live", Message: transactional(), TTL: time.Minute})
	require.NoError(t, err)
	removed, err := st.ForgetNonFinal(ctx, "live")
	require.NoError(t, err)
	require.False(t, removed, "a queued record stays")

	// An index entry whose record is gone (retention) is removed.
	require.NoError(t, b.rdb.Del(ctx, st.Key("live")).Err())
	removed, err = st.ForgetNonFinal(ctx, "live")
	require.NoError(t, err)
	require.True(t, removed)

	// A record without an index entry (written by an older version) joins at its
	// next state change.
	_, err = b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "old", Message: transactional(), TTL: time.Minute})
	require.NoError(t, err)
	require.NoError(t, b.rdb.ZRem(ctx, st.NonFinalKey(), "old").Err())
	_, ok, err := st.Transition(ctx, "old", []tasks.State{tasks.StateQueued}, tasks.StateSending, tasks.Update{})
	require.NoError(t, err)
	require.True(t, ok)
	ids, err := st.DueNonFinal(ctx, b.clock.Now().Add(time.Hour), 10)
	require.NoError(t, err)
	require.Equal(t, []string{"old"}, ids)
}
