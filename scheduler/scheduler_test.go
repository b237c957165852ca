package scheduler_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/scheduler"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
)

func TestSchedule(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.New(t)
	client := asynq.NewClientFromRedisClient(rdb)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspectorFromRedisClient(rdb)

	// A fixed clock 0.3 s past a whole second, 10 s in the future, so every task stays
	// scheduled while the test looks at it.
	now := time.Now().Truncate(time.Second).Add(10*time.Second + 300*time.Millisecond)
	s := scheduler.New(client, scheduler.Policy{}, scheduler.WithNow(func() time.Time { return now }), scheduler.WithRand(func() float64 { return 0.5 }))
	require.Equal(t, scheduler.DefaultPolicy(), s.Policy())

	args := tasks.PollArgs{ID: "m1", ProviderMessageID: 429, Poll: 0, HasSMS: true, AcceptedAt: now, ExpiresAt: now.Add(40 * time.Second)}
	require.NoError(t, s.Schedule(ctx, args, 5*time.Second))

	info, err := insp.GetTaskInfo(tasks.QueueStatus, "poll:m1:0")
	require.NoError(t, err)
	require.Equal(t, tasks.TypePoll, info.Type)
	require.Equal(t, tasks.QueueStatus, info.Queue)
	require.Equal(t, asynq.TaskStateScheduled, info.State)
	require.Equal(t, scheduler.DefaultRetention, info.Retention)
	want := now.Truncate(time.Second).Add(6 * time.Second) // 5.3 s rounded up
	require.True(t, info.NextProcessAt.Equal(want), "next process at %s, want %s", info.NextProcessAt, want)
	got, err := tasks.Decode[tasks.PollArgs](asynq.NewTask(info.Type, info.Payload))
	require.NoError(t, err)
	args.V = tasks.PayloadVersion
	require.Equal(t, args.ID, got.ID)
	require.Equal(t, args.ProviderMessageID, got.ProviderMessageID)
	require.True(t, got.AcceptedAt.Equal(args.AcceptedAt))

	// Again, even with another delay: a no-op.
	require.NoError(t, s.Schedule(ctx, args, time.Minute))
	scheduled, err := insp.ListScheduledTasks(tasks.QueueStatus)
	require.NoError(t, err)
	require.Len(t, scheduled, 1)
	require.True(t, scheduled[0].NextProcessAt.Equal(want))

	// The next poll number is another task; a zero delay still waits a second.
	args.Poll = 1
	require.NoError(t, s.Schedule(ctx, args, 0))
	info, err = insp.GetTaskInfo(tasks.QueueStatus, "poll:m1:1")
	require.NoError(t, err)
	require.True(t, info.NextProcessAt.Equal(now.Truncate(time.Second).Add(2*time.Second)))

	// Incomplete arguments are refused.
	require.Error(t, s.Schedule(ctx, tasks.PollArgs{ID: "x"}, time.Second))
}

func TestScheduleNext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.New(t)
	client := asynq.NewClientFromRedisClient(rdb)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspectorFromRedisClient(rdb)

	acc := time.Now().Truncate(time.Second).Add(10 * time.Second)
	now := acc
	s := scheduler.New(client, scheduler.Policy{}, scheduler.WithNow(func() time.Time { return now }),
		scheduler.WithRand(func() float64 { return 0.5 }), scheduler.WithRetention(time.Minute),
		scheduler.WithTaskOptions(asynq.MaxRetry(3)))
	args := tasks.PollArgs{ID: "m2", ProviderMessageID: 7, AcceptedAt: acc, ExpiresAt: acc.Add(40 * time.Second)}

	at, ok, err := s.ScheduleNext(ctx, args)
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, at.Equal(acc.Add(5*time.Second)))
	info, err := insp.GetTaskInfo(tasks.QueueStatus, "poll:m2:0")
	require.NoError(t, err)
	require.True(t, info.NextProcessAt.Equal(at))
	require.Equal(t, time.Minute, info.Retention)
	require.Equal(t, 3, info.MaxRetry)

	// Poll 2, 15 s in: 20 s later.
	now = acc.Add(15 * time.Second)
	args.Poll = 2
	at, ok, err = s.ScheduleNext(ctx, args)
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, at.Equal(now.Add(20*time.Second)))

	// Past the deadline: nothing scheduled.
	now = s.Policy().Deadline(acc, args.ExpiresAt)
	args.Poll = 3
	_, ok, err = s.ScheduleNext(ctx, args)
	require.NoError(t, err)
	require.False(t, ok)
	_, err = insp.GetTaskInfo(tasks.QueueStatus, "poll:m2:3")
	require.ErrorIs(t, err, asynq.ErrTaskNotFound)

	var payload map[string]any
	require.NoError(t, json.Unmarshal(info.Payload, &payload))
	require.EqualValues(t, 7, payload["provider_message_id"])
}
