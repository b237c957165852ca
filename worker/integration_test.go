package worker

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
)

// Integration tests: a real asynq server on the real Redis (a database of its own per
// test, from tasks/redistest) against the simulator. Skipped unless
// VIBERQ_TEST_REDIS_URL is set. Every wait polls with a deadline.

func itSetup(t *testing.T, o setupOpts) *testBundle {
	t.Helper()
	o.rdb = redistest.Client(t) // skips without VIBERQ_TEST_REDIS_URL
	if o.cfg == nil {
		cfg := fastConfig()
		o.cfg = &cfg
	}
	b := setup(t, o)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker log:\n%s", b.logs.String())
		}
	})
	return b
}

func (b *testBundle) enqueue(t *testing.T, e *tasks.Enqueuer, id string, m provider.Message, ttl time.Duration) tasks.EnqueueResult {
	t.Helper()
	res, err := e.Enqueue(context.Background(), tasks.EnqueueRequest{ID: id, Message: m, TTL: ttl})
	require.NoError(t, err)
	return res
}

func (b *testBundle) taskInfo(t *testing.T, queue, id string) *asynq.TaskInfo {
	t.Helper()
	info, err := b.insp.GetTaskInfo(queue, id)
	require.NoError(t, err)
	return info
}

func TestIntegrationViberDelivered(t *testing.T) {
	t.Parallel()
	b := itSetup(t, setupOpts{})
	b.run(t)
	res := b.enqueue(t, b.enqueuer(tasks.EnqueuerConfig{}), "it-viber", promotional(), time.Hour)
	rec := b.waitState(t, res.ID, tasks.StateDelivered, 20*time.Second)
	require.Equal(t, tasks.ChannelViber, rec.Channel)
	require.Equal(t, 1, rec.Attempts)
	require.GreaterOrEqual(t, rec.Polls, 1)
	require.Len(t, b.sim.Ledger(), 1)
	require.Equal(t, provider.MessageID(rec.ProviderMessageID), b.sim.Ledger()[0].MessageID)
}

func TestIntegrationViberFailedSMSDelivered(t *testing.T) {
	t.Parallel()
	b := itSetup(t, setupOpts{simCfg: func(c *dtsim.Config) {
		c.ViberFailShare = 1
		c.DeliverMin, c.DeliverMax = 300*time.Millisecond, 300*time.Millisecond
		c.SMSDelayMin, c.SMSDelayMax = 500*time.Millisecond, 500*time.Millisecond
	}})
	b.run(t)
	res := b.enqueue(t, b.enqueuer(tasks.EnqueuerConfig{}), "it-sms", transactional(), 40*time.Second)
	rec := b.waitState(t, res.ID, tasks.StateDelivered, 30*time.Second)
	require.Equal(t, tasks.ChannelSMS, rec.Channel)
	require.NotNil(t, rec.ViberStatus)
	require.True(t, rec.ViberStatus.Failed())
	require.NotNil(t, rec.SMSStatus)
	require.Equal(t, provider.SMSDelivered, *rec.SMSStatus)
	require.Len(t, b.sim.Ledger(), 1)
}

// TestIntegration429Storm: the provider throttles every request (429 with
// Retry-After) during the last 1.5 s of every 4 s, and the worker sends 45 messages
// at 15/s, so the sends after ~2.5 s run into the storm. Every message must be
// delivered exactly once, asynq's retry counter of every send task must stay 0
// (rate limits do not use the retry budget), and each 429 costs its message one more
// attempt, nothing else.
func TestIntegration429Storm(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.SendRate = 15
	cfg.Concurrency = 20
	b := itSetup(t, setupOpts{cfg: &cfg, simCfg: func(c *dtsim.Config) {
		c.ThrottleEvery, c.ThrottleFor, c.RetryAfter = 4*time.Second, 1500*time.Millisecond, true
	}})
	b.run(t)
	e := b.enqueuer(tasks.EnqueuerConfig{MaxRetry: 3})
	const n = 45
	var ids []string
	for i := range n {
		ids = append(ids, b.enqueue(t, e, fmt.Sprintf("it-storm-%02d", i), promotional2(i), time.Hour).ID)
	}
	attempts := 0
	for _, id := range ids {
		rec := b.waitState(t, id, tasks.StateDelivered, 60*time.Second)
		attempts += rec.Attempts
		info := b.taskInfo(t, tasks.QueueDefault, id)
		require.Equal(t, asynq.TaskStateCompleted, info.State)
		require.Zero(t, info.Retried, "task %s: a 429 must not use the retry budget", id)
	}
	st := b.sim.Stats()
	require.Positive(t, st.Rejected[dtsim.ReasonRateLimited], "the storm must have hit sends")
	require.Greater(t, attempts, n, "some sends were retried after a 429")
	require.EqualValues(t, n, st.Accepted)
	require.Zero(t, st.Duplicates)
	// Each attempt is one request, and each request not accepted was a 429: a 429
	// costs one more attempt of its message, nothing else.
	require.EqualValues(t, attempts, st.Requests[string(dtsim.EndpointSend)], "one send request per attempt")
	require.EqualValues(t, n+st.Rejected[dtsim.ReasonRateLimited], st.Requests[string(dtsim.EndpointSend)])
	// How many sends meet a storm before its first 429's pause reaches Redis depends
	// on how long that takes (the answer, then one Redis write), which nothing here
	// bounds: the count is logged, not asserted.
	t.Logf("429s: %d (sends %d), send attempts: %d for %d messages", st.TooManyRequests, st.Rejected[dtsim.ReasonRateLimited], attempts, n)
}

// promotional2 is promotional() with a distinct destination per i, so the simulator's
// duplicate detection (same destination and text) only flags real duplicates.
func promotional2(i int) provider.Message {
	m := promotional()
	m.DestinationAddr = fmt.Sprintf("3806700%05d", i)
	return m
}

func transactional2(i int) provider.Message {
	m := transactional()
	m.DestinationAddr = fmt.Sprintf("3805000%05d", i)
	return m
}

func TestIntegrationServerErrorThenSuccess(t *testing.T) {
	t.Parallel()
	b := itSetup(t, setupOpts{})
	require.NoError(t, b.sim.InjectFault(dtsim.EndpointSend, dtsim.FaultServerError, 1))
	b.run(t)
	res := b.enqueue(t, b.enqueuer(tasks.EnqueuerConfig{}), "it-500", transactional(), time.Hour)
	rec := b.waitState(t, res.ID, tasks.StateDelivered, 30*time.Second)
	require.Equal(t, 2, rec.Attempts)
	require.Equal(t, 1, b.taskInfo(t, tasks.QueueCritical, res.ID).Retried, "a 5xx uses one retry")
	st := b.sim.Stats()
	require.EqualValues(t, 1, st.Faults[string(dtsim.FaultServerError)])
	require.EqualValues(t, 1, st.Accepted)
}

func TestIntegrationRejectedArchived(t *testing.T) {
	t.Parallel()
	b := itSetup(t, setupOpts{})
	b.sim.Script(dtsim.Scripted{Endpoint: dtsim.EndpointSend, Status: http.StatusOK,
		Body: vendorBody("Invalid Parameter: source_addr", "Empty parameter or parameter validation error", 1, 400)})
	b.run(t)
	res := b.enqueue(t, b.enqueuer(tasks.EnqueuerConfig{}), "it-400", transactional(), time.Hour)
	rec := b.waitState(t, res.ID, tasks.StateRejected, 20*time.Second)
	require.Contains(t, rec.Error, "Invalid Parameter: source_addr")
	require.Eventually(t, func() bool {
		info, err := b.insp.GetTaskInfo(tasks.QueueCritical, res.ID)
		return err == nil && info.State == asynq.TaskStateArchived
	}, 10*time.Second, 20*time.Millisecond)
	info := b.taskInfo(t, tasks.QueueCritical, res.ID)
	require.Contains(t, info.LastErr, "Invalid Parameter: source_addr")
	require.Zero(t, info.Retried)
	require.Empty(t, b.alerts.all())
	require.Empty(t, b.sim.Ledger())
}

// TestIntegrationBalanceEmpty: 402 → dropped and archived, ONE alert, the send queues
// paused; after a top-up, unpausing and re-running the archived tasks delivers all.
func TestIntegrationBalanceEmpty(t *testing.T) {
	t.Parallel()
	b := itSetup(t, setupOpts{})
	b.sim.SetBalance(0)
	b.run(t)
	e := b.enqueuer(tasks.EnqueuerConfig{})
	const n = 6
	var ids []string
	for i := range n {
		ids = append(ids, b.enqueue(t, e, fmt.Sprintf("it-402-%d", i), transactional2(i), time.Hour).ID)
	}
	b.waitState(t, ids[0], tasks.StateDropped, 20*time.Second)
	require.Eventually(t, func() bool {
		info, err := b.insp.GetQueueInfo(tasks.QueueCritical)
		return err == nil && info.Paused
	}, 10*time.Second, 20*time.Millisecond)
	// Whatever was in flight when the queue paused is dropped too; the rest waits.
	require.Eventually(t, func() bool {
		info, err := b.insp.GetQueueInfo(tasks.QueueCritical)
		return err == nil && info.Active == 0
	}, 10*time.Second, 20*time.Millisecond)
	archived, err := b.insp.ListArchivedTasks(tasks.QueueCritical)
	require.NoError(t, err)
	require.NotEmpty(t, archived)
	for _, ti := range archived {
		require.Equal(t, tasks.StateDropped, b.record(t, ti.ID).State)
	}
	require.Equal(t, []string{AlertBalance}, b.alerts.kinds(), "ONE alert for all the 402s")
	require.Empty(t, b.sim.Ledger())

	// Top up, resume, re-run the archived tasks (as an operator does in asynqmon).
	b.sim.SetBalance(dtsim.Unlimited)
	require.NoError(t, b.insp.UnpauseQueue(tasks.QueueCritical))
	_ = b.insp.UnpauseQueue(tasks.QueueDefault) // never used here; it may not exist
	for _, ti := range archived {
		require.NoError(t, b.insp.RunTask(tasks.QueueCritical, ti.ID))
	}
	for _, id := range ids {
		b.waitState(t, id, tasks.StateDelivered, 30*time.Second)
	}
	st := b.sim.Stats()
	require.EqualValues(t, n, st.Accepted)
	require.Zero(t, st.Duplicates)
	require.Len(t, b.alerts.all(), 1)
}

func TestIntegrationTTLPassedWhileQueued(t *testing.T) {
	t.Parallel()
	b := itSetup(t, setupOpts{})
	// Enqueued "2 minutes ago" with a 40 s TTL: it expired while queued.
	e := b.enqueuer(tasks.EnqueuerConfig{Now: func() time.Time { return time.Now().Add(-2 * time.Minute) }})
	res := b.enqueue(t, e, "it-ttl", transactional(), 40*time.Second)
	b.run(t)
	rec := b.waitState(t, res.ID, tasks.StateExpired, 20*time.Second)
	require.Zero(t, rec.Attempts)
	require.Eventually(t, func() bool {
		info, err := b.insp.GetTaskInfo(tasks.QueueCritical, res.ID)
		return err == nil && info.State == asynq.TaskStateCompleted
	}, 10*time.Second, 20*time.Millisecond)
	require.Zero(t, b.sim.Stats().Requests[string(dtsim.EndpointSend)], "no send after the TTL")
}

func TestIntegrationAmbiguousTimeoutUnknown(t *testing.T) {
	t.Parallel()
	b := itSetup(t, setupOpts{
		provOpts: []provider.Option{provider.WithTimeout(500 * time.Millisecond)},
		simCfg:   func(c *dtsim.Config) { c.Faults.TimeoutHang = 3 * time.Second },
	})
	require.NoError(t, b.sim.InjectFault(dtsim.EndpointSend, dtsim.FaultTimeoutAccepted, 1))
	b.run(t)
	res := b.enqueue(t, b.enqueuer(tasks.EnqueuerConfig{}), "it-ambiguous", transactional(), time.Hour)
	rec := b.waitState(t, res.ID, tasks.StateUnknown, 20*time.Second)
	require.Contains(t, rec.Error, "ambiguous")
	// The task is complete (not retrying, not archived): nothing will resend it.
	require.Eventually(t, func() bool {
		info, err := b.insp.GetTaskInfo(tasks.QueueCritical, res.ID)
		return err == nil && info.State == asynq.TaskStateCompleted
	}, 10*time.Second, 20*time.Millisecond)
	st := b.sim.Stats()
	require.EqualValues(t, 1, st.Requests[string(dtsim.EndpointSend)], "sent once, not resent")
	require.EqualValues(t, 1, st.Accepted, "the provider did take it")
	require.Equal(t, 1.0, metricValue(t, b.m.unknown))
}

func TestIntegrationDuplicateEnqueueOneSend(t *testing.T) {
	t.Parallel()
	b := itSetup(t, setupOpts{})
	b.run(t)
	e := b.enqueuer(tasks.EnqueuerConfig{})
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		dups int
	)
	for range 8 {
		wg.Go(func() { // assert, not require: FailNow must run on the test's goroutine
			res, err := e.Enqueue(context.Background(), tasks.EnqueueRequest{ID: "it-dup", Message: transactional(), TTL: time.Hour})
			if !assert.NoError(t, err) {
				return
			}
			mu.Lock()
			if res.Duplicate {
				dups++
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	require.Equal(t, 7, dups)
	b.waitState(t, "it-dup", tasks.StateDelivered, 20*time.Second)
	// Enqueued again after delivery: still no second send.
	res := b.enqueue(t, e, "it-dup", transactional(), time.Hour)
	require.True(t, res.Duplicate)
	require.Equal(t, tasks.StateDelivered, res.State)
	st := b.sim.Stats()
	require.EqualValues(t, 1, st.Requests[string(dtsim.EndpointSend)])
	require.EqualValues(t, 1, st.Accepted)
}
