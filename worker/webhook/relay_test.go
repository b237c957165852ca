package webhook_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/config"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
	"github.com/viberq/viberq/worker/webhook"
)

// config's VIBERQ_WEBHOOK_* defaults are this package's.
func TestConfigDefaultsAreThePackages(t *testing.T) {
	t.Parallel()
	require.Equal(t, webhook.DefaultMaxRetry, config.DefaultWebhookMaxRetry)
	require.Equal(t, webhook.DefaultTimeout, config.DefaultWebhookTimeout)
	require.Equal(t, webhook.DefaultConcurrency, config.DefaultWebhookConcurrency)
	require.Equal(t, webhook.DefaultEvents, config.DefaultWebhookEvents)
}

// A relay that died after reading an event (and perhaps after enqueueing its task)
// but before acknowledging it: another relay claims the entry after ClaimIdle, and
// the event still makes exactly one task.
func TestRelayClaimsDeadConsumersEntriesOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.New(t)
	store := tasks.NewStore(rdb, tasks.StoreOptions{})
	reg := prometheus.NewRegistry()
	m, err := webhook.NewMetrics(reg)
	require.NoError(t, err)
	svc, err := webhook.New(webhook.Config{
		Secrets: []string{testSecret}, Events: tasks.WebhookAll, DefaultURL: "https://app.example.com/hooks",
		ClaimIdle: time.Second, TaskRetention: time.Minute, Consumer: "live",
	}, webhook.Deps{Redis: rdb, Store: store, Metrics: m})
	require.NoError(t, err)
	relay := svc.Relay()
	require.NoError(t, relay.EnsureGroup(ctx))

	client := asynq.NewClientFromRedisClient(rdb)
	t.Cleanup(func() { _ = client.Close() })
	enq := tasks.NewEnqueuer(client, store, tasks.EnqueuerConfig{})
	for _, id := range []string{"m1", "m2"} { // each appends its "queued" event
		_, err := enq.Enqueue(ctx, tasks.EnqueueRequest{ID: id, Message: message(1), TTL: time.Hour})
		require.NoError(t, err)
	}
	// The dead relay read both entries; it had enqueued the task of the first.
	readAt := time.Now()
	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: webhook.DefaultGroup, Consumer: "dead",
		Streams: []string{store.EventsKey(), ">"}, Count: 10}).Result()
	require.NoError(t, err)
	require.Len(t, res[0].Messages, 2)
	first := res[0].Messages[0]
	task, err := tasks.NewWebhookTask(tasks.WebhookArgs{EventID: first.ID, ID: "m1", Body: json.RawMessage(`{}`)})
	require.NoError(t, err)
	_, err = client.Enqueue(task)
	require.NoError(t, err)

	n, err := relay.Step(ctx, 10*time.Millisecond)
	require.NoError(t, err)
	require.Zero(t, n, "nothing new for the live relay")
	n, err = relay.Claim(ctx)
	require.NoError(t, err)
	if time.Since(readAt) < time.Second { // else this machine was too slow to tell
		require.Zero(t, n, "not idle long enough yet")
	}
	time.Sleep(time.Until(readAt.Add(1100 * time.Millisecond)))
	n, err = relay.Claim(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n)

	insp := asynq.NewInspectorFromRedisClient(rdb)
	t.Cleanup(func() { _ = insp.Close() })
	pending, err := insp.ListPendingTasks(tasks.QueueWebhooks)
	require.NoError(t, err)
	require.Len(t, pending, 2, "one task per event")
	require.Equal(t, 1.0, counter(t, reg, "viberq_webhook_events_total", "duplicate"))
	require.Equal(t, 1.0, counter(t, reg, "viberq_webhook_events_total", "queued"))
	groups, err := rdb.XInfoGroups(ctx, store.EventsKey()).Result()
	require.NoError(t, err)
	require.Zero(t, groups[0].Pending, "both entries acknowledged")
}
