package tasks_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
)

// TestFinishedRecordSize keeps a finished record small in Redis: at most 512 bytes by
// MEMORY USAGE (key, hash and expiry), for a UUID id and both legs' statuses. Real
// Redis only: miniredis has no MEMORY USAGE.
func TestFinishedRecordSize(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	store := tasks.NewStore(rdb, tasks.StoreOptions{})
	id := uuid.Must(uuid.NewV7()).String()
	now := time.Now()
	args := tasks.SendArgs{ID: id, Message: transactional(), ExpiresAt: now.Add(40 * time.Second), EnqueuedAt: now}
	_, _, err := store.Create(ctx, tasks.NewRecord(args, now), tasks.PayloadHash(args.Message, 0))
	require.NoError(t, err)
	_, _, err = store.Transition(ctx, id, []tasks.State{tasks.StateQueued}, tasks.StateSending, tasks.Update{IncAttempts: true})
	require.NoError(t, err)
	_, _, err = store.Transition(ctx, id, []tasks.State{tasks.StateSending}, tasks.StateAccepted, tasks.Update{ProviderMessageID: 1234567890123})
	require.NoError(t, err)
	vs, smsID, ss := provider.ViberUndelivered, provider.MessageID(9876543210), provider.SMSDelivered
	rec, ok, err := store.Transition(ctx, id, []tasks.State{tasks.StateAccepted}, tasks.StateDelivered, tasks.Update{
		Channel: tasks.ChannelSMS, ViberStatus: &vs, SMSMessageID: &smsID, SMSStatus: &ss, Polled: 1,
	})
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, tasks.StateDelivered, rec.State)
	n, err := rdb.MemoryUsage(ctx, store.Key(id)).Result()
	require.NoError(t, err)
	t.Logf("finished record: %d bytes (MEMORY USAGE), %d bytes of JSON", n, len(rec.JSON()))
	require.LessOrEqual(t, n, int64(512))
}
