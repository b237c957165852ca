package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/cmd/viberq/internal/app"
	"github.com/viberq/viberq/config"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
)

// The worker's poll tasks carry MaxRetryCeiling, as every task producers enqueue, so
// that VIBERQ_MAX_RETRY is their retry budget: without it asynq's default of 25 was
// the smaller one, and a status outage of an hour or two ended accepted messages
// unknown hours before their polling deadline.
func TestPollSchedulerTasksCarryTheCeiling(t *testing.T) {
	t.Parallel()
	_, rdb := redistest.Mini(t)
	cfg, err := config.Load(func(string) string { return "" })
	require.NoError(t, err)
	client := asynq.NewClientFromRedisClient(rdb)
	s := app.PollScheduler(cfg, client)
	now := time.Now()
	a := tasks.PollArgs{ID: "m-1", ProviderMessageID: 42, AcceptedAt: now, ExpiresAt: now.Add(time.Hour)}
	err = s.Schedule(context.Background(), a, 0)
	require.NoError(t, err)
	info, err := asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo(tasks.QueueStatus, tasks.PollTaskID("m-1", 0))
	require.NoError(t, err)
	require.Equal(t, config.MaxRetryCeiling, info.MaxRetry)
	require.Equal(t, cfg.Tasks.Timeout, info.Timeout)
}
