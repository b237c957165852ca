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
