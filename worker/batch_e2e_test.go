package worker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/tasks"
)

// End-to-end on the real Redis and the simulator, for the producer features of the
// batch API (README "Batches, cancel and send_at"): what the simulator's ledger
// shows is what reached the provider.

// A batch of 10,000 is cancelled while the worker works through it: every message
// ends in exactly one final state, the cancelled ones never reached the provider,
// and the others were sent once.
func TestE2EBatchCancelledMidRun(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.Concurrency = 50
	cfg.SendRate = 1000 // 10,000 take about 10 s: the cancel lands mid-run
	b := itSetup(t, setupOpts{cfg: &cfg})
	b.run(t)
	enq := b.enqueuer(tasks.EnqueuerConfig{})
	ctx := context.Background()

	const n = 10_000
	reqs := make([]tasks.EnqueueRequest, n)
	for i := range reqs {
		reqs[i] = tasks.EnqueueRequest{ID: fmt.Sprintf("camp-%05d", i), BatchID: "camp", TTL: time.Hour,
			Message: provider.Message{SourceAddr: "Shop", DestinationAddr: fmt.Sprintf("38050%07d", i),
				MessageType: provider.TypeText, SourceType: provider.SourcePromotional, Text: fmt.Sprintf("Sale %05d", i)}}
	}
	res, err := enq.EnqueueBatch(ctx, reqs)
	require.NoError(t, err)
	for _, r := range res {
		require.NoError(t, r.Err)
	}
	require.Eventually(t, func() bool { return len(b.sim.Ledger()) >= n/2 }, 60*time.Second, 20*time.Millisecond)
	cres, err := enq.CancelBatch(ctx, "camp")
	require.NoError(t, err)
	require.Positive(t, cres.Cancelled)
	require.Equal(t, n, cres.Cancelled+cres.NotCancelled)

	// Every record final; cancelled ones never sent.
	sentText := map[string]int{}
	require.Eventually(t, func() bool {
		c, err := b.store.BatchCounts(ctx, "camp")
		require.NoError(t, err)
		final := 0
		for st, k := range c.States {
			if st.Final() {
				final += k
			}
		}
		return final == n
	}, 120*time.Second, 200*time.Millisecond)
	for _, e := range b.sim.Ledger() {
		sentText[e.TextHash]++
	}
	cancelled := 0
	for i, r := range reqs {
		rec, err := b.store.Get(ctx, r.ID)
		require.NoError(t, err)
		sent := sentText[dtsim.HashText(r.Message.Text)]
		switch rec.State {
		case tasks.StateCancelled:
			cancelled++
			require.Zero(t, sent, "message %d cancelled and sent", i)
			require.Zero(t, rec.ProviderMessageID)
		default:
			require.Equal(t, 1, sent, "message %d (%s) sent %d times", i, rec.State, sent)
		}
	}
	require.Equal(t, cres.Cancelled, cancelled)
	require.Len(t, b.sim.Ledger(), n-cancelled, "the ledger holds exactly the messages not cancelled")
	c, err := b.store.BatchCounts(ctx, "camp")
	require.NoError(t, err)
	require.Equal(t, cancelled, c.States[tasks.StateCancelled])
	t.Logf("10,000 in the batch: %d sent before the cancel took them, %d cancelled; counts %v", n-cancelled, cancelled, c.States)
}

// Scheduled messages reach the provider no earlier than their send_at.
func TestE2ESendAtNotBefore(t *testing.T) {
	t.Parallel()
	b := itSetup(t, setupOpts{})
	b.run(t)
	enq := b.enqueuer(tasks.EnqueuerConfig{})
	ctx := context.Background()
	start := time.Now()
	sendAt := map[string]time.Time{}
	for i := range 20 {
		at := start.Add(time.Duration(1+i%4) * time.Second)
		id := fmt.Sprintf("sched-%02d", i)
		text := fmt.Sprintf("Later %02d", i)
		_, err := enq.Enqueue(ctx, tasks.EnqueueRequest{ID: id, SendAt: at, TTL: time.Hour,
			Message: provider.Message{SourceAddr: "Shop", DestinationAddr: fmt.Sprintf("3805000000%02d", i),
				MessageType: provider.TypeText, SourceType: provider.SourcePromotional, Text: text}})
		require.NoError(t, err)
		sendAt[dtsim.HashText(text)] = at
	}
	require.Eventually(t, func() bool { return len(b.sim.Ledger()) == 20 }, 30*time.Second, 50*time.Millisecond)
	for _, e := range b.sim.Ledger() {
		at, ok := sendAt[e.TextHash]
		require.True(t, ok)
		require.False(t, e.At.Before(at), "sent at %s, before its send_at %s", e.At, at)
	}
}
