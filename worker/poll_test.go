package worker

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/tasks"
)

// accepted sends m through the handler and returns the record and its first poll.
func (b *testBundle) accepted(t *testing.T, id string, m provider.Message, ttl time.Duration) (tasks.Record, tasks.PollArgs, *asynq.Task) {
	t.Helper()
	_, task := b.newSend(t, id, m, time.Now().Add(ttl))
	require.NoError(t, b.process(t, task))
	rec := b.record(t, id)
	require.Equal(t, tasks.StateAccepted, rec.State)
	pa, pt := b.pollTask(t, id, 0)
	return rec, pa, pt
}

func TestPollHandler(t *testing.T) {
	t.Parallel()

	t.Run("ViberDelivered", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		_, _, pt := b.accepted(t, "p-viber", promotional(), time.Hour)
		require.NoError(t, b.process(t, pt))
		rec := b.record(t, "p-viber")
		require.Equal(t, tasks.StateDelivered, rec.State)
		require.Equal(t, tasks.ChannelViber, rec.Channel)
		require.Equal(t, tasks.SettledByPoll, rec.SettledBy)
		require.Equal(t, 1, rec.Polls)
		require.NotNil(t, rec.ViberStatus)
		require.Equal(t, provider.ViberDelivered, *rec.ViberStatus)
		require.Equal(t, 1.0, metricValue(t, b.m.finals.WithLabelValues("delivered", "viber")))
		require.Equal(t, 1.0, metricValue(t, b.m.pollsPerMessage))
		_, err := b.insp.GetTaskInfo(tasks.QueueStatus, tasks.PollTaskID("p-viber", 1))
		require.ErrorIs(t, err, asynq.ErrTaskNotFound, "no poll after a final state")
	})

	t.Run("ViberFailedSMSDelivered", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{simCfg: func(c *dtsim.Config) { c.ViberFailShare = 1 }})
		_, _, pt := b.accepted(t, "p-sms", transactional(), time.Hour)
		require.NoError(t, b.process(t, pt))
		rec := b.record(t, "p-sms")
		require.Equal(t, tasks.StateDelivered, rec.State)
		require.Equal(t, tasks.ChannelSMS, rec.Channel)
		require.NotNil(t, rec.SMSMessageID)
		require.NotNil(t, rec.SMSStatus)
		require.Equal(t, provider.SMSDelivered, *rec.SMSStatus)
	})

	t.Run("ViberFailedNoFallbackUndelivered", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{simCfg: func(c *dtsim.Config) { c.ViberFailShare = 1 }})
		_, _, pt := b.accepted(t, "p-undeliv", promotional(), time.Hour)
		require.NoError(t, b.process(t, pt))
		rec := b.record(t, "p-undeliv")
		require.Equal(t, tasks.StateUndelivered, rec.State)
		require.Contains(t, rec.Error, "undelivered")
	})

	t.Run("PendingSchedulesNextPoll", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{simCfg: func(c *dtsim.Config) { c.DeliverMin, c.DeliverMax = time.Hour, time.Hour }})
		_, _, pt := b.accepted(t, "p-pending", promotional(), time.Hour)
		require.NoError(t, b.process(t, pt))
		rec := b.record(t, "p-pending")
		require.Equal(t, tasks.StateAccepted, rec.State)
		require.Equal(t, 1, rec.Polls)
		require.NotNil(t, rec.ViberStatus)
		next, _ := b.pollTask(t, "p-pending", 1)
		require.Equal(t, 1, next.Poll)
		// Running poll 0 again (re-delivery) does not schedule poll 1 twice.
		require.NoError(t, b.process(t, pt))
		info, err := b.insp.GetTaskInfo(tasks.QueueStatus, tasks.PollTaskID("p-pending", 1))
		require.NoError(t, err)
		require.Equal(t, asynq.TaskStateScheduled, info.State)
		// Nor does it count poll 0 again, however often it runs (a retry after its next
		// schedule failed): polls stays next to the live poll's number, where the
		// reconciler looks for it (maxPollProbe).
		for range maxPollProbe + 1 {
			require.NoError(t, b.process(t, pt))
		}
		require.Equal(t, 1, b.record(t, "p-pending").Polls)
	})

	t.Run("SettledElsewhereStopsWithoutProviderCall", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		_, _, pt := b.accepted(t, "p-settled", promotional(), time.Hour)
		// A confirming poll (or the reconciler) settled it first, and counted it.
		_, ok, err := b.store.Transition(context.Background(), "p-settled", []tasks.State{tasks.StateAccepted}, tasks.StateDelivered, tasks.Update{Channel: tasks.ChannelViber})
		require.NoError(t, err)
		require.True(t, ok)
		require.NoError(t, b.process(t, pt))
		require.Zero(t, b.statusCalls(), "a final record ends polling without a provider call")
		require.Zero(t, metricValue(t, b.m.finals.WithLabelValues(string(tasks.StateDelivered), tasks.ChannelViber)),
			"the poll does not count a final state it did not make")
		_, err = b.insp.GetTaskInfo(tasks.QueueStatus, tasks.PollTaskID("p-settled", 1))
		require.ErrorIs(t, err, asynq.ErrTaskNotFound)
	})

	t.Run("PastDeadlineExpiresWithoutCall", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		_, pa, _ := b.accepted(t, "p-deadline", promotional(), time.Hour)
		pa.ExpiresAt = time.Now().Add(-time.Hour) // deadline = TTL + 10 s grace, long gone
		pt, err := tasks.NewPollTask(pa)
		require.NoError(t, err)
		require.NoError(t, b.process(t, pt))
		rec := b.record(t, "p-deadline")
		require.Equal(t, tasks.StateExpired, rec.State)
		require.Zero(t, b.statusCalls())
	})

	t.Run("PendingAtDeadlineExpires", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{simCfg: func(c *dtsim.Config) { c.DeliverMin, c.DeliverMax = time.Hour, time.Hour }})
		_, pa, _ := b.accepted(t, "p-last", promotional(), time.Hour)
		pa.ExpiresAt = time.Now().Add(-10 * time.Second) // the deadline (TTL + 10 s) is now: the last poll
		pt, err := tasks.NewPollTask(pa)
		require.NoError(t, err)
		require.NoError(t, b.process(t, pt))
		require.EqualValues(t, 1, b.statusCalls(), "the last poll still asks")
		require.Equal(t, tasks.StateExpired, b.record(t, "p-last").State)
	})

	t.Run("UnlistedSMSCodeAtDeadlineIsUnknownNotExpired", func(t *testing.T) {
		t.Parallel()
		// The SMS leg reports "delivered" with a code the vendor lists nowhere (7): the
		// message stays pending, and at the deadline it is unknown, never expired.
		b := setup(t, setupOpts{simCfg: func(c *dtsim.Config) { c.ViberFailShare, c.SMSDeliveredCode = 1, 7 }})
		_, pa, _ := b.accepted(t, "p-unlisted", transactional(), time.Hour)
		pa.ExpiresAt = time.Now().Add(-10 * time.Second) // the last poll
		pt, err := tasks.NewPollTask(pa)
		require.NoError(t, err)
		require.NoError(t, b.process(t, pt))
		rec := b.record(t, "p-unlisted")
		require.Equal(t, tasks.StateUnknown, rec.State)
		require.NotNil(t, rec.SMSStatus)
		require.Equal(t, provider.SMSStatus(7), *rec.SMSStatus)
		require.Contains(t, rec.Error, "not a code the vendor lists")
	})

	t.Run("RateLimitedRetriesAfterWithoutBudget", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		_, _, pt := b.accepted(t, "p-429", promotional(), time.Hour)
		b.sim.Script(dtsim.Scripted{Endpoint: dtsim.EndpointStatus, Status: http.StatusTooManyRequests,
			Header: http.Header{"Retry-After": {"2"}}, Body: vendorBody("Too Many Requests", "Rate limit exceeded", 0, 429)})
		err := b.process(t, pt)
		var ra *RetryAfterError
		require.ErrorAs(t, err, &ra)
		require.Equal(t, 2*time.Second, ra.Delay)
		require.False(t, b.w.isFailure(err))
		left, _ := b.w.StatusLimiter().Paused(context.Background())
		require.Greater(t, left, time.Second)
		require.Equal(t, 0, b.record(t, "p-429").Polls)
	})

	// A paused status bucket whose pause ends inside the grace after the polling
	// deadline: the poll retries then (it may still ask), instead of expiring the
	// message at once, before its deadline, without asking. A pause that ends past
	// the grace expires it now, as the retry would.
	t.Run("PausedBucketNearDeadline", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			pause   time.Duration
			expired bool
		}{{pause: 12 * time.Second}, {pause: lastPollGrace + 10*time.Second, expired: true}} {
			b := setup(t, setupOpts{})
			_, pa, _ := b.accepted(t, "p-paused", promotional(), time.Hour)
			// The polling deadline (ExpiresAt + the policy's SMS grace) 5 s ahead.
			pa.ExpiresAt = time.Now().Add(5*time.Second - b.w.cfg.Poll.SMSGrace)
			require.WithinDuration(t, time.Now().Add(5*time.Second), b.w.pollDeadline(pa), time.Second, "the test's premise")
			pt, err := tasks.NewPollTask(pa)
			require.NoError(t, err)
			require.NoError(t, b.w.StatusLimiter().Pause(context.Background(), tc.pause))
			err = b.process(t, pt)
			rec := b.record(t, "p-paused")
			require.Zero(t, b.statusCalls())
			if tc.expired {
				require.NoError(t, err)
				require.Equal(t, tasks.StateExpired, rec.State)
				continue
			}
			var ra *RetryAfterError
			require.ErrorAs(t, err, &ra, "pause %s", tc.pause)
			require.Greater(t, ra.Delay, 5*time.Second)
			require.LessOrEqual(t, ra.Delay, tc.pause)
			require.False(t, b.w.isFailure(err))
			require.Equal(t, tasks.StateAccepted, rec.State)
		}
	})

	t.Run("ServerErrorRetries", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		_, _, pt := b.accepted(t, "p-500", promotional(), time.Hour)
		require.NoError(t, b.sim.InjectFault(dtsim.EndpointStatus, dtsim.FaultServerError, 1))
		err := b.process(t, pt)
		require.Error(t, err)
		require.False(t, errors.Is(err, asynq.SkipRetry))
		require.True(t, b.w.isFailure(err))
		require.LessOrEqual(t, b.w.retryDelay(20, errors.Unwrap(err), pt), time.Hour+20*time.Second)
		require.NoError(t, b.process(t, pt))
		require.Equal(t, tasks.StateDelivered, b.record(t, "p-500").State)
	})

	t.Run("ClientErrorTreatedAsPending", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		_, _, pt := b.accepted(t, "p-404", promotional(), time.Hour)
		b.sim.Script(dtsim.Scripted{Endpoint: dtsim.EndpointStatus, Status: http.StatusNotFound, Body: []byte("<html>nope</html>")})
		require.NoError(t, b.process(t, pt))
		rec := b.record(t, "p-404")
		require.Equal(t, tasks.StateAccepted, rec.State)
		require.Equal(t, 1, rec.Polls)
		b.pollTask(t, "p-404", 1)
	})

	t.Run("UnauthorizedOnStatusAlertsAndKeepsPolling", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		_, _, pt := b.accepted(t, "p-401", promotional(), time.Hour)
		b.sim.Script(dtsim.Scripted{Endpoint: dtsim.EndpointStatus, Status: http.StatusUnauthorized})
		require.NoError(t, b.process(t, pt))
		require.Equal(t, []string{AlertUnauthorized}, b.alerts.kinds())
		b.pollTask(t, "p-401", 1)
	})

	t.Run("NoRecordStops", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		pt, err := tasks.NewPollTask(tasks.PollArgs{ID: "nope", ProviderMessageID: 5, AcceptedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)})
		require.NoError(t, err)
		require.NoError(t, b.process(t, pt))
		require.Zero(t, b.statusCalls())
	})
}

// Inside the grace after its polling deadline a poll may still ask, so a failed one
// retries after its backoff, bounded by the grace left, not at once: a retry with no
// delay would call a failing status endpoint back to back until the grace ends.
func TestPollRetryInsideGraceWaitsItsBackoff(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	_, pa, _ := b.accepted(t, "p-grace", promotional(), time.Hour)
	pa.ExpiresAt = time.Now().Add(-5*time.Second - b.w.cfg.Poll.SMSGrace) // the deadline passed 5 s ago
	require.WithinDuration(t, time.Now().Add(-5*time.Second), b.w.pollDeadline(pa), time.Second, "the test's premise")
	pt, err := tasks.NewPollTask(pa)
	require.NoError(t, err)
	left := lastPollGrace - 5*time.Second
	for n := range 8 {
		d := b.w.retryDelay(n, errors.New("502 from the status endpoint"), pt)
		require.Positive(t, d, "retry %d", n)
		require.LessOrEqual(t, d, left, "retry %d: within the grace left", n)
	}
}

// A worker built without Deps.Scheduler schedules its polls with its own retry budget
// (Config.MaxRetry) as their asynq MaxRetry, not asynq's default of 25.
func TestDefaultSchedulerCarriesTheRetryBudget(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	cfg := b.w.cfg
	cfg.MaxRetry = 77
	w, err := New(cfg, Deps{Redis: b.rdb, Provider: b.w.prov, Store: b.store})
	require.NoError(t, err)
	t.Cleanup(w.close)
	now := time.Now()
	require.NoError(t, w.sched.Schedule(context.Background(),
		tasks.PollArgs{ID: "m-77", ProviderMessageID: 77, AcceptedAt: now, ExpiresAt: now.Add(time.Hour)}, 0))
	info, err := b.insp.GetTaskInfo(tasks.QueueStatus, tasks.PollTaskID("m-77", 0))
	require.NoError(t, err)
	require.Equal(t, 77, info.MaxRetry)
}

// When the provider's status window, not the TTL and its SMS grace, sets the polling
// deadline (a long VIBERQ_POLL_SMS_GRACE), the message ends unknown at it, as
// tasks.State documents: it may still be delivered, and nobody can ask any more.
func TestPollDeadlineOfTheProviderWindowEndsUnknown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		window time.Duration
		want   tasks.State
	}{{window: 0, want: tasks.StateExpired}, {window: time.Minute, want: tasks.StateUnknown}} {
		cfg := testConfig()
		cfg.Poll.ProviderWindow = tc.window // 0: the 5 days; the TTL and grace end first
		b := setup(t, setupOpts{cfg: &cfg})
		_, pa, _ := b.accepted(t, "p-window", promotional(), time.Hour)
		if tc.window == 0 {
			pa.ExpiresAt = time.Now().Add(-time.Minute - cfg.Poll.SMSGrace) // TTL and grace over
		} else {
			pa.AcceptedAt = time.Now().Add(-2 * time.Minute) // the window closed a minute ago; the TTL has an hour left
		}
		pt, err := tasks.NewPollTask(pa)
		require.NoError(t, err)
		require.NoError(t, b.process(t, pt))
		rec := b.record(t, "p-window")
		require.Equal(t, tc.want, rec.State, "window %s", tc.window)
		require.Equal(t, tasks.SettledByDeadline, rec.SettledBy)
		require.Zero(t, b.statusCalls(), "past the deadline and its grace: no call")
	}
}
