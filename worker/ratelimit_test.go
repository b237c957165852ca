package worker

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
)

// script429 queues one send answer 429 with the given Retry-After seconds.
func script429(b *testBundle, retryAfter string) {
	b.sim.Script(dtsim.Scripted{Endpoint: dtsim.EndpointSend, Status: http.StatusTooManyRequests,
		Header: http.Header{"Retry-After": {retryAfter}}, Body: vendorBody("Too Many Requests", "Rate limit exceeded", 0, 429)})
}

// TestLongRetryAfterIsCappedAndLoud: a 429 asking for a day pauses the bucket and
// delays the retry for MaxRetryAfter only, raises one alert (deduplicated across
// pods) and logs an error naming the hint. Before the cap, the bucket of every pod
// was paused for the full day, the retry came 35 h later, and nothing was said.
func TestLongRetryAfterIsCappedAndLoud(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxRetryAfter = 2 * time.Second
	b := setup(t, setupOpts{cfg: &cfg})
	ctx := context.Background()

	a, task := b.newSend(t, "m-day", transactional(), time.Now().Add(time.Hour))
	script429(b, "86400")
	err := b.process(t, task)
	var ra *RetryAfterError
	require.ErrorAs(t, err, &ra)
	require.Equal(t, 2*time.Second, ra.Delay, "the retry is capped")
	d := b.w.retryDelay(0, err, task)
	require.GreaterOrEqual(t, d, 2*time.Second)
	require.LessOrEqual(t, d, 3*time.Second)
	left, err := b.w.SendLimiter().Paused(ctx)
	require.NoError(t, err)
	require.Greater(t, left, time.Second)
	require.LessOrEqual(t, left, 2*time.Second, "the pause of every pod is capped")
	require.Equal(t, tasks.StateQueued, b.record(t, a.ID).State)

	alerts := b.alerts.all()
	require.Len(t, alerts, 1)
	require.Equal(t, AlertRateLimitHint, alerts[0].Kind)
	require.Equal(t, "24h0m0s", alerts[0].Fields["retry_after_hint"])
	require.Equal(t, "2s", alerts[0].Fields["max_retry_after"])
	require.Equal(t, BucketSend, alerts[0].Fields["bucket"])
	require.Equal(t, "380*****4567", alerts[0].Fields["dest"])
	errLines := 0
	for _, l := range b.logs.lines(t, "provider asked for a pause") {
		require.Equal(t, "error", l["level"])
		require.Contains(t, l["message"], "24h0m0s")
		errLines++
	}
	require.Equal(t, 1, errLines)

	// A second long hint within the alert window: logged, not alerted again.
	_, err = b.w.SendLimiter().ClearPause(ctx)
	require.NoError(t, err)
	_, task2 := b.newSend(t, "m-day-2", promotional(), time.Now().Add(time.Hour))
	script429(b, "86400")
	require.ErrorAs(t, b.process(t, task2), &ra)
	require.Len(t, b.alerts.all(), 1, "one alert per window, all pods")

	// A hint within the cap is obeyed as given, without an alert.
	_, err = b.w.SendLimiter().ClearPause(ctx)
	require.NoError(t, err)
	_, task3 := b.newSend(t, "m-short", promotional(), time.Now().Add(time.Hour))
	script429(b, "1")
	require.ErrorAs(t, b.process(t, task3), &ra)
	require.Equal(t, time.Second, ra.Delay)
	require.Len(t, b.alerts.all(), 1)
}

// TestRetryAfterPastTTLExpiresAtOnce: a message whose retry after a 429 would come
// after its TTL is expired now, not left queued until the retry.
func TestRetryAfterPastTTLExpiresAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}) // MaxRetryAfter: the default minute
	a, task := b.newSend(t, "m-ttl45", transactional(), time.Now().Add(45*time.Second))
	script429(b, "86400")
	require.NoError(t, b.process(t, task), "the task is done: nothing left to retry")
	rec := b.record(t, a.ID)
	require.Equal(t, tasks.StateExpired, rec.State)
	require.Contains(t, rec.Error, "429")
	require.Zero(t, rec.ProviderMessageID)
	require.Len(t, b.sim.Ledger(), 0)
}

// TestPausedBucketPastTTLExpiresAtOnce: while the bucket is paused for longer than a
// message's TTL, that message is expired at once, even when its TTL is longer than
// the task's own deadline (before: retried after the whole pause, still queued).
func TestPausedBucketPastTTLExpiresAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	require.NoError(t, b.w.SendLimiter().Pause(context.Background(), time.Minute))
	a, task := b.newSend(t, "m-paused", promotional(), time.Now().Add(45*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // the task deadline, before the TTL
	defer cancel()
	require.NoError(t, b.w.Handler().ProcessTask(ctx, task))
	rec := b.record(t, a.ID)
	require.Equal(t, tasks.StateExpired, rec.State)
	require.Contains(t, rec.Error, "rate limiter")
	require.Zero(t, b.sends())
}

// TestPauseNeverExceedsCap: whatever a caller asks, one Pause lasts at most MaxPause.
func TestPauseNeverExceedsCap(t *testing.T) {
	t.Parallel()
	_, rdb := redistest.Mini(t)
	l := NewLimiter(rdb, "viberq:", BucketStatus, 10, 1, nil).SetMaxPause(3 * time.Second)
	ctx := context.Background()
	require.NoError(t, l.Pause(ctx, 7*24*time.Hour))
	left, err := l.Paused(ctx)
	require.NoError(t, err)
	require.Greater(t, left, 2*time.Second)
	require.LessOrEqual(t, left, 3*time.Second)

	cleared, err := ClearLimiterPauses(ctx, rdb, "viberq:")
	require.NoError(t, err)
	require.Len(t, cleared, 1)
	require.Greater(t, cleared[BucketStatus], 2*time.Second)
	left, err = l.Paused(ctx)
	require.NoError(t, err)
	require.Zero(t, left)
}

// TestPollsNotHeldBySendBacklog: with every send slot held by sends waiting for a
// paused send bucket, a due poll still runs: polls have their own asynq server and
// slots. Before, the status queue shared the send slots, and a poll waited until the
// backlog drained (a transactional first poll ran ~29 s late behind 3,000
// promotional sends). The assertion is an order, not a duration: the poll settles the
// message while the send bucket is still paused and both send slots still wait.
func TestPollsNotHeldBySendBacklog(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.Concurrency, cfg.PollConcurrency = 2, 2
	cfg.Poll.First = 2 * time.Second
	b := itSetup(t, setupOpts{cfg: &cfg})
	stop := b.run(t)
	defer stop()
	ctx := context.Background()
	e := b.enqueuer(tasks.EnqueuerConfig{})

	first := b.enqueue(t, e, "otp-1", transactional(), time.Hour)
	b.waitState(t, first.ID, tasks.StateAccepted, 10*time.Second)
	require.NoError(t, b.w.SendLimiter().Pause(ctx, 8*time.Second)) // within the 10 s task timeout: the sends wait in their slots
	for i := range 6 {
		b.enqueue(t, e, fmt.Sprintf("promo-%d", i), promotional(), time.Hour)
	}
	require.Eventually(t, func() bool {
		info, err := b.insp.GetQueueInfo(tasks.QueueDefault)
		return err == nil && info.Active == 2
	}, 5*time.Second, 20*time.Millisecond, "the backlog holds both send slots")
	require.False(t, b.record(t, first.ID).State.Final(), "the poll ran before the slots were full: nothing shown")

	b.waitState(t, first.ID, tasks.StateDelivered, 8*time.Second)
	left, err := b.w.SendLimiter().Paused(ctx)
	require.NoError(t, err)
	info, err := b.insp.GetQueueInfo(tasks.QueueDefault)
	require.NoError(t, err)
	require.Positive(t, left, "the poll ran only after the pause ended: it waited for a send slot")
	require.Equal(t, 2, info.Active, "the send slots were still held when the poll ran")
	require.EqualValues(t, 1, b.sim.Stats().Accepted, "no send went out during the pause")
}
