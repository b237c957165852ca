package tasks_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
)

func TestCancel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, tasks.EnqueuerConfig{})
	later := b.clock.Now().Add(time.Hour)
	for _, r := range []tasks.EnqueueRequest{
		{ID: "pending", Message: transactional(), BatchID: "b"},
		{ID: "scheduled", Message: promotional(), SendAt: later, BatchID: "b"},
		{ID: "active", Message: promotional(), BatchID: "b"},
		{ID: "sending", Message: promotional(), BatchID: "b"},
	} {
		_, err := b.enq.Enqueue(ctx, r)
		require.NoError(t, err)
	}
	// "active": a worker has dequeued the task (asynq's dequeueCmd) but not yet made
	// its compare-and-set (asynq pops with RPOPLPUSH, the same move as LMOVE RIGHT LEFT).
	// "sending": a worker has made it.
	require.Equal(t, "active", b.rdb.LMove(ctx, "asynq:{default}:pending", "asynq:{default}:active", "RIGHT", "LEFT").Val())
	require.NoError(t, b.rdb.HSet(ctx, "asynq:{default}:t:active", "state", "active").Err())
	_, ok, err := b.store.Transition(ctx, "sending", []tasks.State{tasks.StateQueued}, tasks.StateSending, tasks.Update{})
	require.NoError(t, err)
	require.True(t, ok)

	for _, id := range []string{"pending", "scheduled", "active"} {
		b.clock.Add(time.Second)
		ok, state, err := b.enq.Cancel(ctx, id)
		require.NoError(t, err, id)
		require.True(t, ok, id)
		require.Equal(t, tasks.StateCancelled, state)
		rec, err := b.store.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, tasks.StateCancelled, rec.State)
		require.True(t, rec.FinalAt.Equal(b.clock.Now()))
		require.Equal(t, tasks.SettledByOperator, rec.SettledBy)
		require.Equal(t, []tasks.State{tasks.StateQueued, tasks.StateCancelled}, toStates(eventsOf(t, b, id)))
	}
	_, err = b.insp.GetTaskInfo(tasks.QueueCritical, "pending")
	require.ErrorIs(t, err, asynq.ErrTaskNotFound, "pending task removed")
	_, err = b.insp.GetTaskInfo(tasks.QueueDefault, "scheduled")
	require.ErrorIs(t, err, asynq.ErrTaskNotFound, "scheduled task removed")
	info, err := b.insp.GetTaskInfo(tasks.QueueDefault, "active")
	require.NoError(t, err, "an active task stays with its worker")
	require.Equal(t, asynq.TaskStateActive, info.State)
	// That worker's compare-and-set now fails: it sends nothing.
	_, ok, err = b.store.Transition(ctx, "active", []tasks.State{tasks.StateQueued}, tasks.StateSending, tasks.Update{})
	require.NoError(t, err)
	require.False(t, ok)

	// Past queued: untouched.
	ok, state, err := b.enq.Cancel(ctx, "sending")
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, tasks.StateSending, state)
	rec, err := b.store.Get(ctx, "sending")
	require.NoError(t, err)
	require.Equal(t, tasks.StateSending, rec.State)
	_, err = b.insp.GetTaskInfo(tasks.QueueDefault, "sending")
	require.NoError(t, err, "its task is left alone")
	// Cancelling twice changes nothing.
	ok, state, err = b.enq.Cancel(ctx, "pending")
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, tasks.StateCancelled, state)
	require.Len(t, eventsOf(t, b, "pending"), 2)

	_, _, err = b.enq.Cancel(ctx, "nobody")
	require.ErrorIs(t, err, tasks.ErrNotFound)

	c, err := b.store.BatchCounts(ctx, "b")
	require.NoError(t, err)
	require.Equal(t, 4, c.Total)
	require.Equal(t, 3, c.States[tasks.StateCancelled])
	require.Equal(t, 1, c.States[tasks.StateSending])
	require.Equal(t, 0, c.States[tasks.StateQueued])
}

// The counts of a batch follow every state change, channels included.
func TestBatchCountsFollowStates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, tasks.EnqueuerConfig{})
	reqs := make([]tasks.EnqueueRequest, 6)
	for i := range reqs {
		reqs[i] = tasks.EnqueueRequest{ID: fmt.Sprintf("m%d", i), Message: transactional(), BatchID: "camp"}
	}
	_, err := b.enq.EnqueueBatch(ctx, reqs)
	require.NoError(t, err)
	move := func(id string, from, to tasks.State, upd tasks.Update) {
		t.Helper()
		_, ok, err := b.store.Transition(ctx, id, []tasks.State{from}, to, upd)
		require.NoError(t, err)
		require.True(t, ok)
	}
	for i := range 4 {
		id := fmt.Sprintf("m%d", i)
		move(id, tasks.StateQueued, tasks.StateSending, tasks.Update{IncAttempts: true})
		move(id, tasks.StateSending, tasks.StateAccepted, tasks.Update{ProviderMessageID: 1})
	}
	move("m0", tasks.StateAccepted, tasks.StateDelivered, tasks.Update{Channel: tasks.ChannelViber})
	move("m1", tasks.StateAccepted, tasks.StateDelivered, tasks.Update{Channel: tasks.ChannelSMS})
	move("m2", tasks.StateAccepted, tasks.StateDelivered, tasks.Update{Channel: tasks.ChannelSMS})
	move("m3", tasks.StateAccepted, tasks.StateUndelivered, tasks.Update{})
	// A field update without a state change moves nothing.
	_, ok, err := b.store.Update(ctx, "m4", tasks.Update{Polled: 1})
	require.NoError(t, err)
	require.True(t, ok)
	ok, _, err = b.enq.Cancel(ctx, "m5")
	require.NoError(t, err)
	require.True(t, ok)

	c, err := b.store.BatchCounts(ctx, "camp")
	require.NoError(t, err)
	want := map[tasks.State]int{}
	for _, s := range tasks.States {
		want[s] = 0
	}
	want[tasks.StateDelivered], want[tasks.StateUndelivered], want[tasks.StateQueued], want[tasks.StateCancelled] = 3, 1, 1, 1
	require.Equal(t, tasks.BatchCounts{BatchID: "camp", Total: 6, States: want,
		Delivered: map[string]int{tasks.ChannelViber: 1, tasks.ChannelSMS: 2}}, c)

	res, err := b.enq.CancelBatch(ctx, "camp")
	require.NoError(t, err)
	require.Equal(t, tasks.CancelResult{Cancelled: 1, NotCancelled: 5}, res)
	_, err = b.enq.CancelBatch(ctx, "none")
	require.ErrorIs(t, err, tasks.ErrNotFound)
}

// A batch cancel racing workers at the real Redis: each worker makes the send path's
// compare-and-set (queued → sending, the same Store.Transition call as the worker's
// handleSend) oldest first while CancelBatch walks the batch newest first. Every
// message ends either sent or cancelled, never both, and the counts, the events and
// the remaining tasks agree.
func TestCancelBatchRacesSend(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Client(t) // real Redis only
	store := tasks.NewStore(rdb, tasks.StoreOptions{})
	enq := tasks.NewEnqueuer(nil, store, tasks.EnqueuerConfig{})
	insp := asynq.NewInspectorFromRedisClient(rdb)

	const n = 3000
	reqs := make([]tasks.EnqueueRequest, n)
	for i := range reqs {
		m := promotional()
		m.DestinationAddr = fmt.Sprintf("38067%07d", i)
		reqs[i] = tasks.EnqueueRequest{ID: fmt.Sprintf("r%05d", i), Message: m, BatchID: "race"}
	}
	_, err := enq.EnqueueBatch(ctx, reqs)
	require.NoError(t, err)

	var (
		mu    sync.Mutex
		sent  = map[string]bool{}
		next  = 0
		first = make(chan struct{})
		once  sync.Once
		wg    sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				id := reqs[i].ID
				_, ok, err := store.Transition(ctx, id, []tasks.State{tasks.StateQueued}, tasks.StateSending, tasks.Update{IncAttempts: true})
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					mu.Lock()
					sent[id] = true
					mu.Unlock()
					once.Do(func() { close(first) })
				}
			}
		})
	}
	<-first
	res, err := enq.CancelBatch(ctx, "race")
	require.NoError(t, err)
	wg.Wait()

	t.Logf("cancelled %d, sent %d", res.Cancelled, len(sent))
	require.Equal(t, n, res.Cancelled+res.NotCancelled)
	require.Positive(t, res.Cancelled, "the cancel won some messages")
	require.Equal(t, n-res.Cancelled, len(sent), "the workers won all the others")
	cancelled := 0
	for _, r := range reqs {
		rec, err := store.Get(ctx, r.ID)
		require.NoError(t, err)
		switch rec.State {
		case tasks.StateSending:
			require.True(t, sent[r.ID], r.ID)
		case tasks.StateCancelled:
			require.False(t, sent[r.ID], "%s: both sent and cancelled", r.ID)
			cancelled++
		default:
			t.Fatalf("%s: state %s", r.ID, rec.State)
		}
	}
	require.Equal(t, res.Cancelled, cancelled)
	c, err := store.BatchCounts(ctx, "race")
	require.NoError(t, err)
	require.Equal(t, cancelled, c.States[tasks.StateCancelled])
	require.Equal(t, len(sent), c.States[tasks.StateSending])
	require.Zero(t, c.States[tasks.StateQueued])
	// Cancelled messages lost their tasks; the sent ones keep theirs.
	qi, err := insp.GetQueueInfo(tasks.QueueDefault)
	require.NoError(t, err)
	require.Equal(t, len(sent), qi.Pending)
	evs, err := store.Events(ctx, "-", 10*n)
	require.NoError(t, err)
	require.Len(t, evs, 2*n, "one queued and one final-or-sending event each")
}
