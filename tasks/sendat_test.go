package tasks_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/tasks"
)

func TestEnqueueSendAt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("ScheduledWithTTLFromSendAt", func(t *testing.T) {
		t.Parallel()
		b := setup(t, tasks.EnqueuerConfig{})
		now := b.clock.Now()
		sendAt := now.Add(2*time.Hour + 300*time.Millisecond)
		res, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "s", Message: promotional(), SendAt: sendAt, TTL: time.Minute})
		require.NoError(t, err)
		require.True(t, res.SendAt.Equal(sendAt))
		require.True(t, res.ExpiresAt.Equal(sendAt.Add(time.Minute)), "TTL counts from send_at")

		args, info := sendArgsOf(t, b, tasks.QueueDefault, "s")
		require.Equal(t, asynq.TaskStateScheduled, info.State)
		require.True(t, args.SendAt.Equal(sendAt))
		require.True(t, args.EnqueuedAt.Equal(now))
		require.Equal(t, time.Minute, args.TTL())
		score, err := b.rdb.ZScore(ctx, "asynq:{default}:scheduled", "s").Result()
		require.NoError(t, err)
		require.Equal(t, math.Ceil(float64(sendAt.UnixMilli())/1000), score, "rounded up: never early")

		rec, err := b.store.Get(ctx, "s")
		require.NoError(t, err)
		require.True(t, rec.SendAt.Equal(sendAt))
		require.Equal(t, tasks.StateQueued, rec.State)
		// The record outlives the wait: it has no expiry while queued.
		requireNoExpiry(t, b, b.store.Key("s"))
	})

	t.Run("PastIsNow", func(t *testing.T) {
		t.Parallel()
		b := setup(t, tasks.EnqueuerConfig{})
		past := b.clock.Now().Add(-time.Minute)
		res, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "p", Message: promotional(), SendAt: past, TTL: time.Minute})
		require.NoError(t, err)
		require.True(t, res.SendAt.IsZero())
		require.True(t, res.ExpiresAt.Equal(b.clock.Now().Add(time.Minute)))
		_, info := sendArgsOf(t, b, tasks.QueueDefault, "p")
		require.Equal(t, asynq.TaskStatePending, info.State)
		// The same request again, later: a duplicate (send_at is fingerprinted as given).
		b.clock.Add(time.Second)
		res, err = b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "p", Message: promotional(), SendAt: past, TTL: time.Minute})
		require.NoError(t, err)
		require.True(t, res.Duplicate)
	})

	t.Run("TooFarAhead", func(t *testing.T) {
		t.Parallel()
		b := setup(t, tasks.EnqueuerConfig{})
		far := b.clock.Now().Add(tasks.MaxSendAhead + time.Second)
		_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "f", Message: promotional(), SendAt: far})
		ve := requireFields(t, err, "send_at")
		require.Contains(t, ve.Error(), "must be at most 168h0m0s ahead, got 168h0m1s")
		_, err = b.store.Get(ctx, "f")
		require.ErrorIs(t, err, tasks.ErrNotFound, "nothing written")
		// The bound itself is accepted.
		_, err = b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "f", Message: promotional(), SendAt: b.clock.Now().Add(tasks.MaxSendAhead)})
		require.NoError(t, err)
	})

	t.Run("OtherSendAtIsAConflict", func(t *testing.T) {
		t.Parallel()
		b := setup(t, tasks.EnqueuerConfig{})
		at := b.clock.Now().Add(time.Hour)
		_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "c", Message: promotional(), SendAt: at})
		require.NoError(t, err)
		res, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "c", Message: promotional(), SendAt: at})
		require.NoError(t, err)
		require.True(t, res.Duplicate)
		_, err = b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "c", Message: promotional(), SendAt: at.Add(time.Minute)})
		require.ErrorIs(t, err, tasks.ErrIdempotencyConflict)
		_, err = b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "c", Message: promotional()})
		require.ErrorIs(t, err, tasks.ErrIdempotencyConflict)
		_, err = b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "c", Message: promotional(), SendAt: at, BatchID: "x"})
		require.ErrorIs(t, err, tasks.ErrIdempotencyConflict)
	})

	// A lost scheduled task comes back scheduled at the first enqueue's send_at.
	t.Run("RestoredScheduled", func(t *testing.T) {
		t.Parallel()
		b := setup(t, tasks.EnqueuerConfig{})
		at := b.clock.Now().Add(time.Hour).Truncate(time.Second)
		_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "r", Message: promotional(), SendAt: at})
		require.NoError(t, err)
		require.NoError(t, b.insp.DeleteTask(tasks.QueueDefault, "r"))
		res, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "r", Message: promotional(), SendAt: at})
		require.NoError(t, err)
		require.True(t, res.Duplicate)
		args, info := sendArgsOf(t, b, tasks.QueueDefault, "r")
		require.Equal(t, asynq.TaskStateScheduled, info.State)
		require.True(t, info.NextProcessAt.Equal(at))
		require.True(t, args.SendAt.Equal(at))
	})
}
