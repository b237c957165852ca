package worker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/tasks"
)

// fakeClock is a settable clock for the worker (setupOpts.now).
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// A scheduled task run before its send_at (an operator's "run now" in the Asynq UI
// moves it from the scheduled set to pending) is not sent: it comes back at send_at,
// rounded up to the second as the Enqueuer schedules it, without using up the retry
// budget, and its record stays queued. Once send_at has passed it is sent.
func TestSendBeforeSendAtIsRescheduled(t *testing.T) {
	t.Parallel()
	start := time.Now()
	clock := &fakeClock{t: start}
	b := setup(t, setupOpts{now: clock.now})
	ctx := context.Background()
	enq := tasks.NewEnqueuer(b.client, b.store, tasks.EnqueuerConfig{})
	sendAt := start.Add(90*time.Minute + 300*time.Millisecond)
	res, err := enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "sched-1", Message: promotional(), TTL: 10 * time.Minute, SendAt: sendAt})
	require.NoError(t, err)
	require.False(t, res.SendAt.IsZero(), "the message must be scheduled")

	info, err := b.insp.GetTaskInfo(res.Queue, "sched-1")
	require.NoError(t, err)
	task := asynq.NewTask(info.Type, info.Payload)

	err = b.process(t, task)
	require.Error(t, err, "a send before send_at must not succeed")
	require.False(t, errors.Is(err, asynq.SkipRetry), "a send before send_at must not be archived")
	require.Zero(t, b.sends(), "sent before send_at")
	require.False(t, b.w.isFailure(err), "an early run must not use up the retry budget")
	due := sendAt.Truncate(time.Second).Add(time.Second)
	require.Equal(t, due.Sub(start), b.w.retryDelay(0, err, task), "the task must come back at send_at, rounded up to the second")
	rec := b.record(t, "sched-1")
	require.Equal(t, tasks.StateQueued, rec.State)
	require.Zero(t, rec.Attempts)

	// One millisecond before send_at: still not sent.
	clock.set(sendAt.Add(-time.Millisecond))
	err = b.process(t, task)
	require.Error(t, err)
	require.Zero(t, b.sends())
	require.Equal(t, due.Sub(clock.now()), b.w.retryDelay(0, err, task))

	// At send_at: sent.
	clock.set(sendAt)
	require.NoError(t, b.process(t, task))
	require.EqualValues(t, 1, b.sends())
	require.Equal(t, tasks.StateAccepted, b.record(t, "sched-1").State)
}

// A record the worker creates for a raw producer's task (no record yet) carries the
// fingerprint the Enqueuer gives the same request: a later Enqueue of that ID with
// the same message, TTL, send_at and batch is a duplicate, not a conflict; another
// batch still is a conflict.
func TestWorkerCreatedRecordFingerprintMatchesEnqueue(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx := context.Background()
	now := time.Now()
	sendAt := now.Add(-2 * time.Second) // due: the task runs now
	const ttl = 10 * time.Minute
	a := tasks.SendArgs{V: tasks.PayloadVersion, ID: "raw-7", Message: promotional(),
		EnqueuedAt: now.Add(-time.Minute), SendAt: sendAt, ExpiresAt: sendAt.Add(ttl), BatchID: "camp-7"}
	task, err := tasks.NewSendTask(a)
	require.NoError(t, err)
	require.NoError(t, b.process(t, task))
	require.EqualValues(t, 1, b.sends())
	rec := b.record(t, "raw-7")
	require.Equal(t, "camp-7", rec.BatchID)

	enq := tasks.NewEnqueuer(b.client, b.store, tasks.EnqueuerConfig{})
	res, err := enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "raw-7", Message: promotional(), TTL: ttl, SendAt: sendAt, BatchID: "camp-7"})
	require.NoError(t, err, "the same request as the raw task must not be a conflict")
	require.True(t, res.Duplicate)

	// validity_period as the TTL is the same request too.
	m := promotional()
	m.ValidityPeriod = int(ttl / time.Second)
	res, err = enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "raw-7", Message: m, SendAt: sendAt, BatchID: "camp-7"})
	require.NoError(t, err)
	require.True(t, res.Duplicate)

	_, err = enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "raw-7", Message: promotional(), TTL: ttl, SendAt: sendAt, BatchID: "camp-8"})
	require.ErrorIs(t, err, tasks.ErrIdempotencyConflict)
	require.EqualValues(t, 1, b.sends())
}
