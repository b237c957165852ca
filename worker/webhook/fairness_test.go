package webhook_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
	"github.com/viberq/viberq/worker/webhook"
)

// fakeClock is Deps.Now: the breakers' time moves only when the test says so.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// countingDoer counts the POSTs that were really sent, by host.
type countingDoer struct {
	inner webhook.HTTPDoer
	mu    sync.Mutex
	n     map[string]int
}

func (d *countingDoer) Do(r *http.Request) (*http.Response, error) {
	d.mu.Lock()
	d.n[r.URL.Host]++
	d.mu.Unlock()
	return d.inner.Do(r)
}

func (d *countingDoer) count(rawURL string) int {
	u, _ := url.Parse(rawURL)
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[u.Host]
}

// runService runs a webhook service with cfg on rdb, its HTTP client timing out
// after clientTimeout, until Cleanup.
func runService(t *testing.T, rdb redis.UniversalClient, cfg webhook.Config, clock *fakeClock, clientTimeout time.Duration) (*countingDoer, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := webhook.NewMetrics(reg)
	require.NoError(t, err)
	doer := &countingDoer{inner: &http.Client{Timeout: clientTimeout}, n: map[string]int{}}
	cfg.Secrets = []string{testSecret}
	cfg.TaskCheckInterval, cfg.DelayedTaskCheckInterval = 20*time.Millisecond, 50*time.Millisecond
	cfg.Block = 50 * time.Millisecond
	cfg.ShutdownTimeout = 2 * time.Second
	svc, err := webhook.New(cfg, webhook.Deps{Redis: rdb, Store: tasks.NewStore(rdb, tasks.StoreOptions{}),
		HTTPClient: doer, Metrics: m, Logger: zerolog.Nop(), Now: clock.Now})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return doer, reg
}

// waitTaskState waits for the webhook task id to be in state and returns its info.
func waitTaskState(t *testing.T, insp *asynq.Inspector, id string, state asynq.TaskState) *asynq.TaskInfo {
	t.Helper()
	var ti *asynq.TaskInfo
	require.Eventually(t, func() bool {
		var err error
		ti, err = insp.GetTaskInfo(tasks.QueueWebhooks, id)
		return err == nil && ti.State == state
	}, 10*time.Second, 10*time.Millisecond, "%s %s", id, state)
	return ti
}

// requireNoneArchived fails t if any webhook task was archived.
func requireNoneArchived(t *testing.T, insp *asynq.Inspector) {
	t.Helper()
	archived, err := insp.ListArchivedTasks(tasks.QueueWebhooks)
	require.NoError(t, err)
	require.Empty(t, archived)
}

// enqueueWebhook queues the webhook of event i (dated by clock) for target, queued at
// queuedAt (zero: none written, the window counts from the event).
func enqueueWebhook(t *testing.T, client *asynq.Client, clock *fakeClock, i int, target string, maxRetry int, queuedAt time.Time) string {
	t.Helper()
	ev := fmt.Sprintf("%d-%d", clock.Now().UnixMilli(), i)
	task, err := tasks.NewWebhookTask(tasks.WebhookArgs{EventID: ev, ID: fmt.Sprintf("m%d", i), URL: target, Body: []byte(`{}`), QueuedAt: queuedAt})
	require.NoError(t, err)
	info, err := client.Enqueue(task, asynq.MaxRetry(maxRetry), asynq.Retention(time.Hour))
	require.NoError(t, err)
	return info.ID
}

// A receiver that hangs beside a healthy one, both with work queued in one process
// of 8 slots. The healthy receiver gets every one of its webhooks; the hanging one
// is dialled at most HostFailures + Concurrency - 1 times (the attempts in flight
// when its breaker opened), the rest of its webhooks are held, not attempted; and
// every one of its webhooks used exactly as many retries as it had real attempts
// (one or none), none archived.
func TestHangingReceiverDoesNotHoldUpOthers(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	release := make(chan struct{})
	var hangs atomic.Int64
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hangs.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(dead.Close)
	t.Cleanup(func() { close(release) }) // runs before dead.Close
	var healthyPosts atomic.Int64
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		healthyPosts.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(healthy.Close)

	clock := &fakeClock{t: time.Now()} // never moves: an open breaker stays open
	const concurrency, failures, n = 8, 3, 20
	doer, reg := runService(t, rdb, webhook.Config{
		Concurrency: concurrency, HostFailures: failures,
		HostCoolOff: time.Hour, HostCoolOffMax: time.Hour,
		RetryInitial: time.Hour, RetryMax: time.Hour, // a failed or held webhook is parked for the test's life
	}, clock, 200*time.Millisecond)

	client := asynq.NewClientFromRedisClient(rdb)
	t.Cleanup(func() { _ = client.Close() })
	deadIDs := map[string]bool{}
	for i := range n {
		deadIDs[enqueueWebhook(t, client, clock, 2*i, dead.URL+"/hooks", webhook.DefaultMaxRetry, time.Time{})] = true
		enqueueWebhook(t, client, clock, 2*i+1, healthy.URL+"/hooks", webhook.DefaultMaxRetry, time.Time{})
	}

	insp := asynq.NewInspectorFromRedisClient(rdb)
	t.Cleanup(func() { _ = insp.Close() })
	var retry []*asynq.TaskInfo
	require.Eventually(t, func() bool {
		q, err := insp.GetQueueInfo(tasks.QueueWebhooks)
		if err != nil || q.Pending+q.Active > 0 || q.Retry != n || q.Completed != n {
			return false
		}
		retry, err = insp.ListRetryTasks(tasks.QueueWebhooks)
		return err == nil
	}, 30*time.Second, 20*time.Millisecond, "the healthy webhooks delivered, the hanging one's parked")

	require.EqualValues(t, n, healthyPosts.Load(), "every healthy webhook delivered once")
	require.Equal(t, n, doer.count(healthy.URL))
	dialled := doer.count(dead.URL)
	require.LessOrEqual(t, dialled, failures+concurrency-1, "the hanging receiver is not dialled once its breaker is open")
	require.Len(t, retry, n)
	used := 0
	for _, ti := range retry {
		require.True(t, deadIDs[ti.ID], "only the hanging receiver's webhooks wait: %s", ti.ID)
		require.LessOrEqual(t, ti.Retried, 1, ti.ID)
		used += ti.Retried
	}
	require.Equal(t, dialled, used, "a retry used per real attempt, none per held delivery")
	require.EqualValues(t, n-dialled, counter(t, reg, "viberq_webhook_deliveries_total", "held"))
	require.EqualValues(t, dialled, counter(t, reg, "viberq_webhook_deliveries_total", "failed"))
	require.Equal(t, 1.0, gauge(t, reg, "viberq_webhook_open_hosts"))
	requireNoneArchived(t, insp)
}

// A held webhook does not use its retries: with MaxRetry 2, held five times in a
// row it is still waiting, its retry count 0 and its receiver never called; once
// the cool-off is over it is the probe, and it is delivered.
func TestHeldWebhookUsesNoRetry(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	var down atomic.Bool
	down.Store(true)
	var posts atomic.Int64
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rcv.Close)

	clock := &fakeClock{t: time.Now()}
	const maxRetry = 2
	_, reg := runService(t, rdb, webhook.Config{
		HostFailures: 1, HostCoolOff: time.Hour, HostCoolOffMax: time.Hour,
		RetryInitial: time.Hour, RetryMax: time.Hour,
	}, clock, 5*time.Second)
	client := asynq.NewClientFromRedisClient(rdb)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspectorFromRedisClient(rdb)
	t.Cleanup(func() { _ = insp.Close() })
	waitState := func(id string, state asynq.TaskState) *asynq.TaskInfo {
		t.Helper()
		return waitTaskState(t, insp, id, state)
	}

	// A first webhook's 503 opens the breaker (HostFailures 1).
	first := enqueueWebhook(t, client, clock, 1, rcv.URL, maxRetry, time.Time{})
	require.Equal(t, 1, waitState(first, asynq.TaskStateRetry).Retried)
	require.EqualValues(t, 1, posts.Load())

	id := enqueueWebhook(t, client, clock, 2, rcv.URL, maxRetry, time.Time{})
	for i := 1; i <= maxRetry+3; i++ {
		require.Eventually(t, func() bool {
			return counter(t, reg, "viberq_webhook_deliveries_total", "held") == float64(i)
		}, 10*time.Second, 10*time.Millisecond, "hold %d", i)
		ti := waitState(id, asynq.TaskStateRetry)
		require.Zero(t, ti.Retried, "hold %d used a retry", i)
		require.Contains(t, ti.LastErr, webhook.ErrHeld.Error())
		require.NoError(t, insp.RunTask(tasks.QueueWebhooks, id)) // due now
	}
	waitState(id, asynq.TaskStateRetry)
	require.EqualValues(t, 1, posts.Load(), "a held webhook is not sent")

	clock.Add(time.Hour) // the cool-off is over: the next delivery is the probe
	down.Store(false)
	require.NoError(t, insp.RunTask(tasks.QueueWebhooks, id))
	waitState(id, asynq.TaskStateCompleted)
	require.EqualValues(t, 2, posts.Load())
	require.Equal(t, 0.0, gauge(t, reg, "viberq_webhook_open_hosts"), "the probe's answer closed the breaker")
	requireNoneArchived(t, insp)
}

// A webhook is never archived unattempted: one queued longer ago than the retry
// window, whose host's breaker is open, is still attempted once (its first
// attempt); held again after that attempt failed, it is archived, its last error
// naming the host's failure. A younger one is held, neither attempted nor archived.
func TestHeldPastWindowArchivedAfterOneAttempt(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	var posts atomic.Int64
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	t.Cleanup(rcv.Close)
	clock := &fakeClock{t: time.Now()} // never moves: the breaker stays open
	_, reg := runService(t, rdb, webhook.Config{
		HostFailures: 1, HostCoolOff: time.Hour, HostCoolOffMax: time.Hour,
		RetryInitial: time.Hour, RetryMax: time.Hour, MaxRetry: 2, // window: 2 h
	}, clock, 5*time.Second)
	client := asynq.NewClientFromRedisClient(rdb)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspectorFromRedisClient(rdb)
	t.Cleanup(func() { _ = insp.Close() })
	waitState := func(id string, state asynq.TaskState) *asynq.TaskInfo {
		t.Helper()
		return waitTaskState(t, insp, id, state)
	}
	enqueue := func(i int, queuedAt time.Time) string {
		t.Helper()
		return enqueueWebhook(t, client, clock, i, rcv.URL, 5, queuedAt)
	}

	opener := enqueue(1, clock.Now()) // its 502 opens the breaker (HostFailures 1)
	require.Equal(t, 1, waitState(opener, asynq.TaskStateRetry).Retried)
	require.EqualValues(t, 1, posts.Load())

	young := enqueue(2, clock.Now().Add(-time.Hour))
	require.Eventually(t, func() bool {
		return counter(t, reg, "viberq_webhook_deliveries_total", "held") == 1
	}, 10*time.Second, 10*time.Millisecond)
	require.Zero(t, waitState(young, asynq.TaskStateRetry).Retried, "held within the window")

	old := enqueue(3, clock.Now().Add(-3*time.Hour))
	ti := waitState(old, asynq.TaskStateRetry)
	require.Equal(t, 1, ti.Retried, "past the window but never attempted: attempted once")
	require.EqualValues(t, 2, posts.Load())

	require.NoError(t, insp.RunTask(tasks.QueueWebhooks, old)) // due now: held again, past the window
	ti = waitState(old, asynq.TaskStateArchived)
	require.Contains(t, ti.LastErr, "after the retry window")
	require.Contains(t, ti.LastErr, "last failure: ")
	require.Contains(t, ti.LastErr, "502")
	require.EqualValues(t, 2, posts.Load(), "archived without a second POST")
	require.Equal(t, asynq.TaskStateRetry, waitState(young, asynq.TaskStateRetry).State)
}

// Only a host's failures count towards its breaker: a receiver that answers 500
// (or 404) at once is retried by its webhook's own backoff and never held.
func TestAnsweredFailuresDoNotOpenTheBreaker(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	var posts atomic.Int64
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(rcv.Close)
	svc, err := webhook.New(webhook.Config{Secrets: []string{testSecret}, HostFailures: 2},
		webhook.Deps{Redis: rdb, Store: tasks.NewStore(rdb, tasks.StoreOptions{}), HTTPClient: &http.Client{Timeout: 5 * time.Second}})
	require.NoError(t, err)
	for i := range 5 {
		tk, err := tasks.NewWebhookTask(tasks.WebhookArgs{EventID: fmt.Sprintf("%d-%d", time.Now().UnixMilli(), i), ID: "m", URL: rcv.URL, Body: []byte(`{}`)})
		require.NoError(t, err)
		err = svc.Deliverer().ProcessTask(context.Background(), tk)
		require.ErrorAs(t, err, new(*webhook.StatusError))
		require.NotErrorIs(t, err, webhook.ErrHeld)
	}
	require.EqualValues(t, 5, posts.Load())
}

// gauge returns the value of the unlabelled gauge name.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
