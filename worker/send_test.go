package worker

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/tasks"
)

func vendorBody(name, msg string, code, status int) []byte {
	b, _ := json.Marshal(map[string]any{"name": name, "message": msg, "code": code, "status": status})
	return b
}

func TestCallbackURLFor(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ base, id, want string }{
		{"https://h.example/cb/status/tok", "order-1", "https://h.example/cb/status/tok?id=order-1"},
		{"https://u:p@h.example/cb?x=1", "a:b.c", "https://u:p@h.example/cb?id=a%3Ab.c&x=1"},
		{"https://h.example/cb?id=old", "new", "https://h.example/cb?id=new"},
	} {
		require.Equal(t, tt.want, callbackURLFor(tt.base, tt.id), tt.base)
	}
}

func TestSendHandler(t *testing.T) {
	t.Parallel()

	t.Run("AcceptedRecordsIDAndSchedulesFirstPoll", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig()
		cfg.CallbackURL = "https://viberq.example.com/callbacks/status/tok"
		b := setup(t, setupOpts{cfg: &cfg})
		a, task := b.newSend(t, "m-ok", transactional(), time.Now().Add(100*time.Second))
		require.NoError(t, b.process(t, task))

		rec := b.record(t, a.ID)
		require.Equal(t, tasks.StateAccepted, rec.State)
		require.NotZero(t, rec.ProviderMessageID)
		require.Equal(t, 1, rec.Attempts)
		require.False(t, rec.AcceptedAt.IsZero())
		require.EqualValues(t, 1, b.sends())

		pa, _ := b.pollTask(t, a.ID, 0)
		require.Equal(t, rec.ProviderMessageID, pa.ProviderMessageID)
		require.True(t, pa.HasSMS)
		require.Equal(t, a.ExpiresAt.Unix(), pa.ExpiresAt.Unix())

		// validity_period is provider.SMSValidityPeriod for a message with text_sms
		// (what remains of the TTL otherwise); callback_url from the config, with the
		// message ID so that the callback names our message.
		reqs := b.sim.Requests()
		require.Len(t, reqs, 1)
		var sent map[string]any
		require.NoError(t, json.Unmarshal(reqs[0].Body, &sent))
		require.EqualValues(t, provider.SMSValidityPeriod, sent["validity_period"])
		require.Equal(t, cfg.CallbackURL+"?id=m-ok", sent["callback_url"])
		require.Equal(t, 1.0, metricValue(t, b.m.sends.WithLabelValues("success")))

		// One log line for the attempt: stable fields, masked phone, no text, no key.
		lines := b.logs.lines(t, "task ")
		require.Len(t, lines, 1)
		l := lines[0]
		require.Equal(t, "info", l["level"])
		require.Equal(t, a.ID, l["msg_id"])
		require.Equal(t, "success", l["action"])
		require.Equal(t, "accepted", l["status"])
		require.Equal(t, float64(rec.ProviderMessageID), l["provider_msg_id"])
		require.Equal(t, "380*****4567", l["dest"])
		for _, k := range []string{"task_type", "queue", "retry", "max_retry", "reason", "duration_ms", "expires_at"} {
			require.Contains(t, l, k)
		}
		all := b.logs.String()
		require.NotContains(t, all, testPhone)
		require.NotContains(t, all, "Your code")
		require.NotContains(t, all, testKey)
		require.NotContains(t, all, "/tok")
	})

	t.Run("RedeliveredWithProviderIDNeverResends", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		a, task := b.newSend(t, "m-redeliver", promotional(), time.Now().Add(time.Hour))
		require.NoError(t, b.process(t, task))
		first := b.record(t, a.ID)
		// The poll task, once dispatched, disappears (e.g. deleted in the UI); a
		// re-delivered send must only make poll 0 due again.
		b.pollTask(t, a.ID, 0)
		require.NoError(t, b.insp.DeleteTask(tasks.QueueStatus, tasks.PollTaskID(a.ID, 0)))
		for range 3 {
			require.NoError(t, b.process(t, task))
		}
		require.EqualValues(t, 1, b.sends(), "a re-delivered task must never send twice")
		again := b.record(t, a.ID)
		require.Equal(t, first.ProviderMessageID, again.ProviderMessageID)
		require.Equal(t, 1, again.Attempts)
		b.pollTask(t, a.ID, 0)
		require.Len(t, b.sim.Ledger(), 1)
	})

	t.Run("SendingAtStartBecomesUnknown", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		a, task := b.newSend(t, "m-crash", transactional(), time.Now().Add(time.Hour))
		// A previous attempt crashed between the request and the record.
		_, ok, err := b.store.Transition(context.Background(), a.ID, []tasks.State{tasks.StateQueued}, tasks.StateSending, tasks.Update{IncAttempts: true})
		require.NoError(t, err)
		require.True(t, ok)
		require.NoError(t, b.process(t, task))
		rec := b.record(t, a.ID)
		require.Equal(t, tasks.StateUnknown, rec.State)
		require.Contains(t, rec.Error, "interrupted")
		require.Zero(t, b.sends())
		require.Equal(t, 1.0, metricValue(t, b.m.unknown))
	})

	t.Run("SendingAtStartResentWithResendUnknown", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig()
		cfg.ResendUnknown = true
		b := setup(t, setupOpts{cfg: &cfg})
		a, task := b.newSend(t, "m-crash2", transactional(), time.Now().Add(time.Hour))
		_, _, err := b.store.Transition(context.Background(), a.ID, []tasks.State{tasks.StateQueued}, tasks.StateSending, tasks.Update{IncAttempts: true})
		require.NoError(t, err)
		require.NoError(t, b.process(t, task))
		rec := b.record(t, a.ID)
		require.Equal(t, tasks.StateAccepted, rec.State)
		require.Equal(t, 2, rec.Attempts)
		require.EqualValues(t, 1, b.sends())
	})

	t.Run("TTLPassedExpiresWithoutSend", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		a, task := b.newSend(t, "m-ttl", transactional(), time.Now().Add(-time.Second))
		require.NoError(t, b.process(t, task))
		rec := b.record(t, a.ID)
		require.Equal(t, tasks.StateExpired, rec.State)
		require.Zero(t, rec.Attempts)
		require.Zero(t, b.sends())
		require.Empty(t, b.sim.Ledger())
	})

	t.Run("TTLPassesWhileRateLimited", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		a, task := b.newSend(t, "m-ttl-wait", transactional(), time.Now().Add(300*time.Millisecond))
		require.NoError(t, b.w.SendLimiter().Pause(context.Background(), time.Minute))
		require.NoError(t, b.process(t, task))
		require.Equal(t, tasks.StateExpired, b.record(t, a.ID).State)
		require.Zero(t, b.sends())
	})

	t.Run("PausedLongerThanTaskTimeoutRetriesWithoutBudget", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig()
		cfg.TaskTimeout = time.Second
		b := setup(t, setupOpts{cfg: &cfg})
		a, task := b.newSend(t, "m-paused", transactional(), time.Now().Add(time.Hour))
		require.NoError(t, b.w.SendLimiter().Pause(context.Background(), 30*time.Second))
		err := b.process(t, task)
		require.Error(t, err)
		require.False(t, b.w.isFailure(err), "a paused bucket is rate limiting, not a failure")
		require.Greater(t, b.w.retryDelay(0, err, task), 20*time.Second)
		require.Equal(t, tasks.StateQueued, b.record(t, a.ID).State)
		require.Zero(t, b.sends())
	})

	t.Run("RateLimitedRetriesAfterHintAndPausesBucket", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{simCfg: func(c *dtsim.Config) { c.RetryAfter = true }})
		a, task := b.newSend(t, "m-429", transactional(), time.Now().Add(time.Hour))
		b.sim.Script(dtsim.Scripted{Endpoint: dtsim.EndpointSend, Status: http.StatusTooManyRequests,
			Header: http.Header{"Retry-After": {"3"}}, Body: vendorBody("Too Many Requests", "Rate limit exceeded", 0, 429)})
		err := b.process(t, task)
		require.Error(t, err)
		require.False(t, errors.Is(err, asynq.SkipRetry))
		var ra *RetryAfterError
		require.ErrorAs(t, err, &ra)
		require.Equal(t, 3*time.Second, ra.Delay)
		require.False(t, b.w.isFailure(err), "429 must not use up the retry budget")
		d := b.w.retryDelay(5, err, task)
		require.GreaterOrEqual(t, d, 3*time.Second)
		require.LessOrEqual(t, d, 4500*time.Millisecond)

		rec := b.record(t, a.ID)
		require.Equal(t, tasks.StateQueued, rec.State)
		require.Equal(t, 1, rec.Attempts)
		left, err := b.w.SendLimiter().Paused(context.Background())
		require.NoError(t, err)
		require.Greater(t, left, 2*time.Second, "a 429 pauses the global bucket for every process")
		st, _ := b.w.StatusLimiter().Paused(context.Background())
		require.Zero(t, st, "the status bucket is separate")
		line := b.logs.lines(t, "task ")[0]
		require.Equal(t, "retry_after", line["action"])
		require.Equal(t, float64(429), line["http_status"])
		require.Equal(t, float64(0), line["vendor_code"])
		require.Equal(t, "retry", line["outcome"])
		require.NotEmpty(t, line["retry_in"])
	})

	t.Run("ServerErrorRetriesWithBackoffBoundedByTTL", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		a, task := b.newSend(t, "m-500", transactional(), time.Now().Add(45*time.Second))
		require.NoError(t, b.sim.InjectFault(dtsim.EndpointSend, dtsim.FaultServerError, 1))
		err := b.process(t, task)
		require.Error(t, err)
		require.False(t, errors.Is(err, asynq.SkipRetry))
		var se *provider.ServerError
		require.ErrorAs(t, err, &se)
		require.True(t, b.w.isFailure(err))
		rec := b.record(t, a.ID)
		require.Equal(t, tasks.StateQueued, rec.State)
		require.Contains(t, rec.Error, "500")
		// Exponential: a late retry would wait minutes, but never past the TTL.
		for n := range 12 {
			require.LessOrEqual(t, b.w.retryDelay(n, errors.Unwrap(err), task), 45*time.Second)
		}
		require.Greater(t, b.w.retryDelay(10, errors.Unwrap(err), task), 30*time.Second)

		// The retry succeeds.
		require.NoError(t, b.process(t, task))
		rec = b.record(t, a.ID)
		require.Equal(t, tasks.StateAccepted, rec.State)
		require.Equal(t, 2, rec.Attempts)
		require.Empty(t, rec.Error)
		require.Len(t, b.sim.Ledger(), 1)
	})

	t.Run("ConnectionRefusedRetries", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{baseURL: "http://127.0.0.1:1/v1/api"})
		a, task := b.newSend(t, "m-refused", transactional(), time.Now().Add(time.Hour))
		err := b.process(t, task)
		var te *provider.TransportError
		require.ErrorAs(t, err, &te)
		require.False(t, te.MaybeSent)
		require.True(t, b.w.isFailure(err))
		require.Equal(t, tasks.StateQueued, b.record(t, a.ID).State)
	})

	t.Run("InvalidParameterRejectedAndArchived", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		a, task := b.newSend(t, "m-400", transactional(), time.Now().Add(time.Hour))
		b.sim.Script(dtsim.Scripted{Endpoint: dtsim.EndpointSend, Status: http.StatusBadRequest,
			Body: vendorBody("Invalid Parameter: source_addr", "Empty parameter or parameter validation error", 1, 400)})
		err := b.process(t, task)
		require.ErrorIs(t, err, asynq.SkipRetry)
		rec := b.record(t, a.ID)
		require.Equal(t, tasks.StateRejected, rec.State)
		require.Contains(t, rec.Error, "Invalid Parameter: source_addr")
		require.Empty(t, b.alerts.all(), "a 400 is no alert")
		require.Equal(t, 1.0, metricValue(t, b.m.finals.WithLabelValues("rejected", "")))
		line := b.logs.lines(t, "task ")[0]
		require.Equal(t, "warn", line["level"])
		require.Equal(t, "archived", line["outcome"])
	})

	t.Run("BalanceEmptyDropsAlertsOnceAndPausesSendQueues", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		// A poll waits in the status queue, so that the queue exists: asynq's
		// Inspector cannot report the pause of a queue that never held a task
		// (QueueState), and the check below must see it either way.
		poll, err := tasks.NewPollTask(tasks.PollArgs{ID: "m-402-polled", ProviderMessageID: 41,
			AcceptedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}, asynq.ProcessIn(time.Hour))
		require.NoError(t, err)
		_, err = b.client.Enqueue(poll)
		require.NoError(t, err)
		b.sim.SetBalance(0)
		var ids []string
		for i, id := range []string{"m-402-a", "m-402-b", "m-402-c"} {
			m := transactional()
			if i == 2 {
				m = promotional()
			}
			a, task := b.newSend(t, id, m, time.Now().Add(time.Hour))
			err := b.process(t, task)
			require.ErrorIs(t, err, asynq.SkipRetry)
			ids = append(ids, a.ID)
		}
		for _, id := range ids {
			rec := b.record(t, id)
			require.Equal(t, tasks.StateDropped, rec.State)
			require.Contains(t, rec.Error, "402")
		}
		require.Equal(t, []string{AlertBalance}, b.alerts.kinds(), "ONE alert per window")
		al := b.alerts.all()[0]
		require.Equal(t, "380*****4567", al.Fields["dest"])
		require.NotContains(t, strings.Join(mapValues(al.Fields), " "), testPhone)
		for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault} {
			info, err := b.insp.GetQueueInfo(q)
			require.NoError(t, err)
			require.True(t, info.Paused, "queue %s must be paused", q)
		}
		status, err := b.insp.GetQueueInfo(tasks.QueueStatus)
		require.NoError(t, err)
		require.False(t, status.Paused, "polls go on")
		require.Empty(t, b.sim.Ledger())

		// After a top-up, an operator re-run of the archived task sends it.
		b.sim.SetBalance(dtsim.Unlimited)
		_, task := b.resend(t, ids[0])
		require.NoError(t, b.process(t, task))
		rec := b.record(t, ids[0])
		require.Equal(t, tasks.StateAccepted, rec.State)
		require.Equal(t, 2, rec.Attempts)
		require.Len(t, b.sim.Ledger(), 1)
	})

	t.Run("BalanceEmptyNoPauseWhenDisabled", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig()
		cfg.PauseOnBalance = false
		b := setup(t, setupOpts{cfg: &cfg})
		b.sim.SetBalance(0)
		_, task := b.newSend(t, "m-402-np", transactional(), time.Now().Add(time.Hour))
		require.ErrorIs(t, b.process(t, task), asynq.SkipRetry)
		info, err := b.insp.GetQueueInfo(tasks.QueueCritical) // exists: newSend enqueued into it
		require.NoError(t, err)
		require.False(t, info.Paused)
		require.Len(t, b.alerts.all(), 1)
	})

	t.Run("UnauthorizedAlertsPausesArchives", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{key: "wrong-key-0123456789"})
		a, task := b.newSend(t, "m-401", transactional(), time.Now().Add(time.Hour))
		err := b.process(t, task)
		require.ErrorIs(t, err, asynq.SkipRetry)
		rec := b.record(t, a.ID)
		require.Equal(t, tasks.StateDropped, rec.State)
		require.Equal(t, "unauthorized", rec.Error)
		require.Equal(t, []string{AlertUnauthorized}, b.alerts.kinds())
		info, err := b.insp.GetQueueInfo(tasks.QueueCritical)
		require.NoError(t, err)
		require.True(t, info.Paused)
		require.NotContains(t, b.logs.String(), "wrong-key")
		line := b.logs.lines(t, "task ")[0]
		require.Equal(t, "error", line["level"])
		require.Equal(t, "auth", line["action"])
	})

	t.Run("AmbiguousTimeoutIsUnknownAndNotResent", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{
			provOpts: []provider.Option{provider.WithTimeout(300 * time.Millisecond)},
			simCfg:   func(c *dtsim.Config) { c.Faults.TimeoutHang = 3 * time.Second },
		})
		a, task := b.newSend(t, "m-timeout", transactional(), time.Now().Add(time.Hour))
		require.NoError(t, b.sim.InjectFault(dtsim.EndpointSend, dtsim.FaultTimeoutAccepted, 1))
		require.NoError(t, b.process(t, task))
		rec := b.record(t, a.ID)
		require.Equal(t, tasks.StateUnknown, rec.State)
		require.Contains(t, rec.Error, "ambiguous")
		require.Len(t, b.sim.Ledger(), 1, "the provider did accept it")
		require.Equal(t, 1.0, metricValue(t, b.m.unknown))

		// Running the task again sends nothing.
		require.NoError(t, b.process(t, task))
		require.EqualValues(t, 1, b.sends())
		require.Equal(t, tasks.StateUnknown, b.record(t, a.ID).State)
	})

	t.Run("ServerErrorAfterAcceptIsUnknownWithServerErrorUnknown", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig()
		cfg.ServerErrorUnknown = true
		b := setup(t, setupOpts{cfg: &cfg})
		a, task := b.newSend(t, "m-500-accepted", transactional(), time.Now().Add(time.Hour))
		require.NoError(t, b.sim.InjectFault(dtsim.EndpointSend, dtsim.FaultServerErrorAfterAccept, 1))
		require.NoError(t, b.process(t, task), "ambiguous: done, not retried")
		rec := b.record(t, a.ID)
		require.Equal(t, tasks.StateUnknown, rec.State)
		require.Contains(t, rec.Error, "ambiguous")
		require.Len(t, b.sim.Ledger(), 1, "the provider did accept it")

		// Running the task again sends nothing: no duplicate.
		require.NoError(t, b.process(t, task))
		require.EqualValues(t, 1, b.sends())
	})

	t.Run("AmbiguousResentWithResendUnknown", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig()
		cfg.ResendUnknown = true
		b := setup(t, setupOpts{cfg: &cfg})
		a, task := b.newSend(t, "m-garbage", transactional(), time.Now().Add(time.Hour))
		require.NoError(t, b.sim.InjectFault(dtsim.EndpointSend, dtsim.FaultGarbageTruncated, 1))
		err := b.process(t, task)
		require.Error(t, err)
		require.True(t, b.w.isFailure(err))
		require.Equal(t, tasks.StateQueued, b.record(t, a.ID).State)
		require.NoError(t, b.process(t, task))
		require.Equal(t, tasks.StateAccepted, b.record(t, a.ID).State)
		require.Len(t, b.sim.Ledger(), 2, "resending an ambiguous send may duplicate, by choice")
	})

	t.Run("GarbageOn200IsUnknown", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		a, task := b.newSend(t, "m-garbage2", transactional(), time.Now().Add(time.Hour))
		require.NoError(t, b.sim.InjectFault(dtsim.EndpointSend, dtsim.FaultGarbageNonJSON, 1))
		require.NoError(t, b.process(t, task))
		require.Equal(t, tasks.StateUnknown, b.record(t, a.ID).State)
	})

	t.Run("UndecodablePayloadArchivedAtOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		payloads := []string{"{", `{"v":2,"id":"x","expires_at":"2030-01-01T00:00:00Z"}`, `{"v":1}`}
		for _, p := range payloads {
			err := b.process(t, asynq.NewTask(tasks.TypeSend, []byte(p)))
			require.ErrorIs(t, err, asynq.SkipRetry, p)
			require.ErrorIs(t, err, tasks.ErrBadPayload)
		}
		err := b.process(t, asynq.NewTask(tasks.TypePoll, []byte("[]")))
		require.ErrorIs(t, err, asynq.SkipRetry)
		require.Zero(t, b.sends())
		// One line per attempt (testConfig turns the log limiter off), each a skip
		// archived at once.
		lines := b.logs.lines(t, "task ")
		require.Len(t, lines, len(payloads)+1)
		for _, l := range lines {
			require.Equal(t, "skip", l["action"])
			require.Equal(t, "archived", l["outcome"])
		}
	})

	t.Run("MissingRecordIsCreated", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		a := tasks.SendArgs{V: 1, ID: "m-raw", Message: promotional(), ExpiresAt: time.Now().Add(time.Hour), EnqueuedAt: time.Now()}
		task, err := tasks.NewSendTask(a)
		require.NoError(t, err)
		require.NoError(t, b.process(t, task))
		rec := b.record(t, a.ID)
		require.Equal(t, tasks.StateAccepted, rec.State)
		require.Equal(t, tasks.QueueDefault, rec.Queue)
	})

	t.Run("FinalRecordIsDone", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		a, task := b.newSend(t, "m-final", transactional(), time.Now().Add(time.Hour))
		_, ok, err := b.store.Transition(context.Background(), a.ID, []tasks.State{tasks.StateQueued}, tasks.StateRejected, tasks.Update{})
		require.NoError(t, err)
		require.True(t, ok)
		require.NoError(t, b.process(t, task))
		require.Zero(t, b.sends())
	})
}

// resend returns the send task of an existing record's message, as RunTask of the
// archived task would deliver it.
func (b *testBundle) resend(t *testing.T, id string) (tasks.SendArgs, *asynq.Task) {
	t.Helper()
	rec := b.record(t, id)
	a := tasks.SendArgs{V: 1, ID: id, Message: transactional(), ExpiresAt: rec.ExpiresAt, EnqueuedAt: rec.CreatedAt}
	task, err := tasks.NewSendTask(a)
	require.NoError(t, err)
	return a, task
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
