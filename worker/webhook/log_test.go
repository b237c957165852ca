package webhook_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
	"github.com/viberq/viberq/worker/webhook"
)

// A message ID is the producer's and may be a phone number: the delivery's logs
// show it masked.
func TestLogsMaskMessageIDs(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	var logs bytes.Buffer
	svc, err := webhook.New(webhook.Config{Secrets: []string{testSecret}},
		webhook.Deps{Redis: rdb, Store: tasks.NewStore(rdb, tasks.StoreOptions{}), Logger: zerolog.New(&logs)})
	require.NoError(t, err)
	task, err := tasks.NewWebhookTask(tasks.WebhookArgs{EventID: "1-1", ID: "order-380501234567", Body: []byte(`{}`)})
	require.NoError(t, err)
	err = svc.Deliverer().ProcessTask(context.Background(), task) // no URL: archived, logged
	require.ErrorIs(t, err, asynq.SkipRetry)
	require.Contains(t, logs.String(), `"msg_id":"order-`)
	require.NotContains(t, logs.String(), "0501234567")
}
