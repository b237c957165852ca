package tasks_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/tasks"
)

// TestAsynqLayoutContract pins the asynq storage layout the Enqueuer writes itself
// (asynqlayout.go) against the asynq version in go.mod. If an asynq upgrade changes
// the layout, this fails.
func TestAsynqLayoutContract(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	// The task hash equals, byte for byte, what asynq's own client writes for the same
	// task with the Enqueuer's options.
	t.Run("SameBytesAsAsynqClient", func(t *testing.T) {
		t.Parallel()
		b := setup(t, tasks.EnqueuerConfig{})
		for _, tc := range []struct {
			desc   string
			sendAt time.Time
			key    string
		}{
			{desc: "pending", key: "asynq:{critical}:pending"},
			// A whole second: asynq's client rounds ProcessAt down, ours up; equal here.
			{desc: "scheduled", sendAt: time.Now().Truncate(time.Second).Add(time.Hour), key: "asynq:{critical}:scheduled"},
		} {
			id := "same-" + tc.desc
			_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: id, Message: transactional(), SendAt: tc.sendAt})
			require.NoError(t, err, tc.desc)
			taskKey := "asynq:{critical}:t:" + id
			ours, err := b.rdb.HGetAll(ctx, taskKey).Result()
			require.NoError(t, err)
			oursScore := b.rdb.ZScore(ctx, tc.key, id).Val()
			args, _ := sendArgsOf(t, b, tasks.QueueCritical, id)
			require.NoError(t, b.insp.DeleteTask(tasks.QueueCritical, id))

			task, err := tasks.NewSendTask(args)
			require.NoError(t, err)
			opts := []asynq.Option{asynq.MaxRetry(tasks.DefaultMaxRetry), asynq.Retention(tasks.DefaultTaskRetention)}
			if !tc.sendAt.IsZero() {
				opts = append(opts, asynq.ProcessAt(tc.sendAt))
			}
			_, err = b.client.EnqueueContext(ctx, task, opts...)
			require.NoError(t, err)
			theirs, err := b.rdb.HGetAll(ctx, taskKey).Result()
			require.NoError(t, err)

			require.Equal(t, []byte(theirs["msg"]), []byte(ours["msg"]), "%s: encoded task message", tc.desc)
			require.Equal(t, theirs["state"], ours["state"], tc.desc)
			_, hasSince := theirs["pending_since"]
			_, oursSince := ours["pending_since"]
			require.Equal(t, hasSince, oursSince, tc.desc)
			require.Len(t, ours, len(theirs), "%s: same hash fields", tc.desc)
			if !tc.sendAt.IsZero() {
				require.Equal(t, b.rdb.ZScore(ctx, tc.key, id).Val(), oursScore, "scheduled score")
			}
		}
		queues, err := b.insp.Queues()
		require.NoError(t, err)
		require.Contains(t, queues, tasks.QueueCritical)
	})

	// The Inspector (the Asynq UI's data path) lists pending and scheduled tasks with
	// the Enqueuer's options.
	t.Run("InspectorListsThem", func(t *testing.T) {
		t.Parallel()
		b := setup(t, tasks.EnqueuerConfig{})
		sendAt := time.Now().Add(time.Hour)
		_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "now", Message: promotional()})
		require.NoError(t, err)
		_, err = b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "later", Message: promotional(), SendAt: sendAt})
		require.NoError(t, err)

		queues, err := b.insp.Queues()
		require.NoError(t, err)
		require.Equal(t, []string{tasks.QueueDefault}, queues)
		qi, err := b.insp.GetQueueInfo(tasks.QueueDefault)
		require.NoError(t, err)
		require.Equal(t, 1, qi.Pending)
		require.Equal(t, 1, qi.Scheduled)
		require.Equal(t, 2, qi.Size)

		pending, err := b.insp.ListPendingTasks(tasks.QueueDefault)
		require.NoError(t, err)
		require.Len(t, pending, 1)
		p := pending[0]
		require.Equal(t, "now", p.ID)
		require.Equal(t, tasks.TypeSend, p.Type)
		require.Equal(t, asynq.TaskStatePending, p.State)
		require.Equal(t, tasks.DefaultMaxRetry, p.MaxRetry)
		require.Equal(t, tasks.DefaultTaskRetention, p.Retention)
		require.Equal(t, 30*time.Minute, p.Timeout)
		require.True(t, p.Deadline.IsZero())

		scheduled, err := b.insp.ListScheduledTasks(tasks.QueueDefault)
		require.NoError(t, err)
		require.Len(t, scheduled, 1)
		s := scheduled[0]
		require.Equal(t, "later", s.ID)
		require.Equal(t, asynq.TaskStateScheduled, s.State)
		require.False(t, s.NextProcessAt.Before(sendAt), "never before send_at: %s < %s", s.NextProcessAt, sendAt)
		require.Less(t, s.NextProcessAt.Sub(sendAt), time.Second)
		args, err := tasks.Decode[tasks.SendArgs](asynq.NewTask(s.Type, s.Payload))
		require.NoError(t, err)
		require.True(t, args.SendAt.Equal(sendAt))

		// The UI's actions work on them: run the scheduled one now, delete the pending one.
		require.NoError(t, b.insp.RunTask(tasks.QueueDefault, "later"))
		require.NoError(t, b.insp.DeleteTask(tasks.QueueDefault, "now"))
		pending, err = b.insp.ListPendingTasks(tasks.QueueDefault)
		require.NoError(t, err)
		require.Len(t, pending, 1)
		require.Equal(t, "later", pending[0].ID)
	})

	// TaskID semantics hold both ways: asynq refuses a second task of the ID, and an
	// Enqueue whose task ID is taken (a raw producer's task) leaves that task alone.
	t.Run("TaskIDConflicts", func(t *testing.T) {
		t.Parallel()
		b := setup(t, tasks.EnqueuerConfig{})
		_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "mine", Message: transactional()})
		require.NoError(t, err)
		task, err := tasks.NewSendTask(tasks.SendArgs{ID: "mine", Message: transactional(), ExpiresAt: time.Now().Add(time.Minute)})
		require.NoError(t, err)
		_, err = b.client.EnqueueContext(ctx, task)
		require.ErrorIs(t, err, asynq.ErrTaskIDConflict)

		raw, err := tasks.NewSendTask(tasks.SendArgs{ID: "raw", Message: transactional(), ExpiresAt: time.Now().Add(time.Minute)})
		require.NoError(t, err)
		_, err = b.client.EnqueueContext(ctx, raw)
		require.NoError(t, err)
		res, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "raw", Message: transactional()})
		require.NoError(t, err)
		require.False(t, res.Duplicate, "the record is new")
		info, err := b.insp.GetTaskInfo(tasks.QueueCritical, "raw")
		require.NoError(t, err)
		require.Equal(t, 25, info.MaxRetry, "asynq's task, not ours")
		qi, err := b.insp.GetQueueInfo(tasks.QueueCritical)
		require.NoError(t, err)
		require.Equal(t, 2, qi.Pending)
	})

	// A finished task (archived here, completed in ServerProcessesThem) whose record has
	// expired holds its ID: a new Enqueue of the ID is refused with ErrIDHeld and writes
	// nothing, where it used to write a queued record beside a task that never runs.
	t.Run("FinishedTaskHoldsID", func(t *testing.T) {
		t.Parallel()
		b := setup(t, tasks.EnqueuerConfig{})
		_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "old", Message: transactional()})
		require.NoError(t, err)
		require.NoError(t, b.insp.ArchiveTask(tasks.QueueCritical, "old"))
		require.NoError(t, b.rdb.Del(ctx, b.store.Key("old")).Err()) // the record's retention ran out
		events := b.rdb.XLen(ctx, b.store.EventsKey()).Val()

		m := transactional()
		m.Text = "Another message"
		_, err = b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "old", Message: m})
		require.ErrorIs(t, err, tasks.ErrIDHeld)
		require.ErrorIs(t, err, tasks.ErrIdempotencyConflict, "refused as a conflict of the ID (HTTP 409)")
		require.ErrorContains(t, err, "archived")
		require.Equal(t, tasks.ErrIDHeld.Error(), tasks.ConflictText(err))
		_, err = b.store.Get(ctx, "old")
		require.ErrorIs(t, err, tasks.ErrNotFound, "no record written")
		require.Equal(t, events, b.rdb.XLen(ctx, b.store.EventsKey()).Val(), "no event written")
		info, err := b.insp.GetTaskInfo(tasks.QueueCritical, "old")
		require.NoError(t, err)
		require.Equal(t, asynq.TaskStateArchived, info.State, "the archived task is left alone")
		args, err := tasks.Decode[tasks.SendArgs](asynq.NewTask(info.Type, info.Payload))
		require.NoError(t, err)
		require.Equal(t, transactional().Text, args.Message.Text)

		// In a batch: that item refused, the others enqueued.
		out, err := b.enq.EnqueueBatch(ctx, []tasks.EnqueueRequest{{ID: "old", Message: m}, {ID: "fresh", Message: m}})
		require.NoError(t, err)
		require.ErrorIs(t, out[0].Err, tasks.ErrIDHeld)
		require.True(t, out[0].Refused())
		require.NoError(t, out[1].Err)
		require.False(t, out[1].Duplicate)
		_, err = b.store.Get(ctx, "old")
		require.ErrorIs(t, err, tasks.ErrNotFound)
	})

	// asynq's server processes both kinds of task, and never runs a scheduled one
	// before its send_at.
	t.Run("ServerProcessesThem", func(t *testing.T) {
		t.Parallel()
		b := setup(t, tasks.EnqueuerConfig{})
		sendAt := time.Now().Add(1500 * time.Millisecond)
		_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "a", Message: transactional()})
		require.NoError(t, err)
		_, err = b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "b", Message: promotional(), SendAt: sendAt})
		require.NoError(t, err)

		var mu sync.Mutex
		ran := map[string]time.Time{}
		done := make(chan struct{}, 2)
		srv := asynq.NewServerFromRedisClient(b.rdb, asynq.Config{
			Concurrency:              2,
			Queues:                   map[string]int{tasks.QueueCritical: 1, tasks.QueueDefault: 1},
			TaskCheckInterval:        50 * time.Millisecond,
			DelayedTaskCheckInterval: 100 * time.Millisecond,
			LogLevel:                 asynq.FatalLevel,
		})
		mux := asynq.NewServeMux()
		mux.HandleFunc(tasks.TypeSend, func(_ context.Context, task *asynq.Task) error {
			a, err := tasks.Decode[tasks.SendArgs](task)
			if err != nil {
				return err
			}
			mu.Lock()
			ran[a.ID] = time.Now()
			mu.Unlock()
			done <- struct{}{}
			return nil
		})
		require.NoError(t, srv.Start(mux))
		t.Cleanup(srv.Shutdown)
		for range 2 {
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("asynq's server did not process the tasks")
			}
		}
		mu.Lock()
		defer mu.Unlock()
		require.Contains(t, ran, "a")
		require.False(t, ran["b"].Before(sendAt), "ran at %s, before send_at %s", ran["b"], sendAt)
		// Completed with retention: the ID stays reserved.
		require.Eventually(t, func() bool {
			info, err := b.insp.GetTaskInfo(tasks.QueueCritical, "a")
			return err == nil && info.State == asynq.TaskStateCompleted
		}, 5*time.Second, 20*time.Millisecond)
		// Even for a new message once the record is gone (FinishedTaskHoldsID).
		require.NoError(t, b.rdb.Del(ctx, b.store.Key("a")).Err())
		_, err = b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "a", Message: transactional()})
		require.ErrorIs(t, err, tasks.ErrIDHeld)
		require.ErrorContains(t, err, "completed")
		_, err = b.store.Get(ctx, "a")
		require.ErrorIs(t, err, tasks.ErrNotFound)
	})
}
