package tasks_test

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

func TestEnqueueBatchAnswersPerItem(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, tasks.EnqueuerConfig{})
	_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "old", Message: transactional()})
	require.NoError(t, err)

	bad := promotional()
	bad.Text = ""
	other := transactional()
	other.Text = "another text"
	reqs := []tasks.EnqueueRequest{
		{ID: "a", Message: transactional(), BatchID: "spring"},
		{ID: "bad", Message: bad, BatchID: "spring"},           // refused: text
		{ID: "old", Message: transactional()},                  // duplicate of an earlier message
		{ID: "a", Message: transactional(), BatchID: "spring"}, // duplicate within the batch
		{ID: "a", Message: other, BatchID: "spring"},           // conflict within the batch
		{Message: promotional(), BatchID: "spring"},            // generated ID
		{ID: "c", Message: promotional(), BatchID: "bad batch"},
	}
	res, err := b.enq.EnqueueBatch(ctx, reqs)
	require.NoError(t, err, "refusals are answers, not errors")
	require.Len(t, res, len(reqs))

	require.NoError(t, res[0].Err)
	require.False(t, res[0].Duplicate)
	require.Equal(t, "a", res[0].ID)
	requireFields(t, res[1].Err, "text")
	require.True(t, res[1].Refused())
	require.NoError(t, res[2].Err)
	require.True(t, res[2].Duplicate)
	require.NoError(t, res[3].Err)
	require.True(t, res[3].Duplicate)
	require.ErrorIs(t, res[4].Err, tasks.ErrIdempotencyConflict)
	require.True(t, res[4].Refused())
	require.NoError(t, res[5].Err)
	require.True(t, tasks.ValidID(res[5].ID))
	requireFields(t, res[6].Err, "batch_id")

	// Exactly the accepted ones were written: records, events and tasks.
	for _, id := range []string{"a", res[5].ID} {
		rec, err := b.store.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, "spring", rec.BatchID)
		require.Len(t, eventsOf(t, b, id), 1)
	}
	for _, id := range []string{"bad", "c"} {
		_, err := b.store.Get(ctx, id)
		require.ErrorIs(t, err, tasks.ErrNotFound)
	}
	args, _ := sendArgsOf(t, b, tasks.QueueCritical, "a")
	require.Equal(t, "spring", args.BatchID)
	require.Equal(t, transactional().Text, args.Message.Text, "the first of two requests wins")
	qi, err := b.insp.GetQueueInfo(tasks.QueueCritical)
	require.NoError(t, err)
	require.Equal(t, 2, qi.Pending, "old and a")
	qi, err = b.insp.GetQueueInfo(tasks.QueueDefault)
	require.NoError(t, err)
	require.Equal(t, 1, qi.Pending)

	c, err := b.store.BatchCounts(ctx, "spring")
	require.NoError(t, err)
	require.Equal(t, 2, c.Total)
	require.Equal(t, 2, c.States[tasks.StateQueued])
	require.Equal(t, 0, c.States[tasks.StateCancelled])
	// The batch keys expire with their records.
	requireTTL(t, b, b.store.BatchKey("spring"), tasks.DefaultRetention)
	requireTTL(t, b, "viberq:batch:ids:spring", tasks.DefaultRetention)
	_, err = b.store.BatchCounts(ctx, "nothing")
	require.ErrorIs(t, err, tasks.ErrNotFound)
}

// More requests than one pipeline holds, after Redis lost its script cache: every
// message is written once, in order.
func TestEnqueueBatchManyRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, tasks.EnqueuerConfig{})
	require.NoError(t, b.rdb.ScriptFlush(ctx).Err())
	n := 2*tasks.BatchPipeline + 7
	reqs := make([]tasks.EnqueueRequest, n)
	for i := range reqs {
		m := promotional()
		m.DestinationAddr = fmt.Sprintf("38067%07d", i)
		reqs[i] = tasks.EnqueueRequest{ID: fmt.Sprintf("m%05d", i), Message: m, BatchID: "big"}
	}
	res, err := b.enq.EnqueueBatch(ctx, reqs)
	require.NoError(t, err)
	for i, r := range res {
		require.NoError(t, r.Err, i)
		require.False(t, r.Duplicate, i)
		require.Equal(t, reqs[i].ID, r.ID)
	}
	qi, err := b.insp.GetQueueInfo(tasks.QueueDefault)
	require.NoError(t, err)
	require.Equal(t, n, qi.Pending)
	c, err := b.store.BatchCounts(ctx, "big")
	require.NoError(t, err)
	require.Equal(t, n, c.Total)
	require.Equal(t, n, c.States[tasks.StateQueued])
	ids, err := b.rdb.LRange(ctx, "viberq:batch:ids:big", 0, -1).Result()
	require.NoError(t, err)
	require.Len(t, ids, n)
	require.Equal(t, "m00000", ids[0])
	require.Equal(t, reqs[n-1].ID, ids[n-1])
}

// A Redis failure is an error for the requests it concerns, with their IDs, so that
// the producer can retry them; refusals stay refusals.
func TestEnqueueBatchRedisDown(t *testing.T) {
	t.Parallel()
	bad := promotional()
	bad.SourceAddr = ""
	reqs := []tasks.EnqueueRequest{{Message: promotional()}, {ID: "x", Message: bad}, {ID: "y", Message: transactional()}}
	check := func(t *testing.T, res []tasks.BatchResult, err error) {
		t.Helper()
		require.Error(t, err)
		require.False(t, tasks.Permanent(err), "a Redis failure taken for a refusal: %v", err)
		require.Len(t, res, len(reqs))
		for _, i := range []int{0, 2} {
			require.Error(t, res[i].Err, i)
			require.False(t, res[i].Refused(), "request %d: %v", i, res[i].Err)
			require.False(t, tasks.Permanent(res[i].Err), i)
		}
		require.True(t, tasks.ValidID(res[0].ID), "the generated ID is returned for a retry")
		require.Equal(t, "y", res[2].ID)
		var ve *provider.ValidationError
		require.ErrorAs(t, res[1].Err, &ve)
		require.True(t, res[1].Refused())
	}
	t.Run("Unreachable", func(t *testing.T) {
		t.Parallel()
		// Nothing listens at Redis's address.
		res, err := deadEnqueuer(t).EnqueueBatch(context.Background(), reqs)
		check(t, res, err)
		var oe *net.OpError
		require.ErrorAs(t, res[2].Err, &oe, "the cause is kept: %v", res[2].Err)
	})
	t.Run("CallerGaveUp", func(t *testing.T) {
		t.Parallel()
		// Redis is up; the caller's context ended before the call (its HTTP client
		// went away). Not Redis down: the answers are the same, and nothing is
		// written, so the retry creates each message once.
		b := setup(t, tasks.EnqueuerConfig{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res, err := b.enq.EnqueueBatch(ctx, reqs)
		check(t, res, err)
		require.ErrorIs(t, res[2].Err, context.Canceled)
		requireNothingWritten(t, b)
	})
}
