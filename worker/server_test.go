package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
)

// run starts b's worker in the background and stops it at Cleanup (or by the
// returned stop, which waits for Run to return).
func (b *testBundle) run(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.w.Run(ctx) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("worker did not stop")
		}
	}
	t.Cleanup(stop)
	return stop
}

func (b *testBundle) enqueuer(cfg tasks.EnqueuerConfig) *tasks.Enqueuer {
	return tasks.NewEnqueuer(b.client, b.store, cfg)
}

func (b *testBundle) waitState(t *testing.T, id string, want tasks.State, within time.Duration) tasks.Record {
	t.Helper()
	var rec tasks.Record
	require.Eventually(t, func() bool {
		r, err := b.store.Get(context.Background(), id)
		rec = r
		return err == nil && r.State == want
	}, within, 20*time.Millisecond, "message %s: want %s, last record %+v", id, want, &rec)
	return rec
}

func fastConfig() Config {
	cfg := testConfig()
	cfg.Concurrency = 8
	cfg.ShutdownTimeout = 3 * time.Second
	cfg.DelayedTaskCheckInterval = 300 * time.Millisecond
	cfg.TaskCheckInterval = 50 * time.Millisecond
	cfg.RetryInitial = 100 * time.Millisecond
	cfg.RetryMax = time.Second
	return cfg
}

// TestRunDeliversAndShutsDown runs the asynq server on miniredis end to end (enqueue
// → send → poll → delivered), then shuts it down and checks that no goroutine of the
// worker is left.
func TestRunDeliversAndShutsDown(t *testing.T) {
	// Not parallel: goleak must not see the goroutines of other tests.
	cfg := fastConfig()
	b := setup(t, setupOpts{cfg: &cfg})
	ignore := goleak.IgnoreCurrent()
	stop := b.run(t)

	res, err := b.enqueuer(tasks.EnqueuerConfig{}).Enqueue(context.Background(), tasks.EnqueueRequest{ID: "run-1", Message: promotional()})
	require.NoError(t, err)
	rec := b.waitState(t, res.ID, tasks.StateDelivered, 15*time.Second)
	require.Equal(t, tasks.ChannelViber, rec.Channel)
	require.Len(t, b.sim.Ledger(), 1)

	stop()
	goleak.VerifyNone(t, ignore,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.(*Server).servePeer"),
	)
	require.Error(t, b.w.Run(context.Background()), "Run can be called once")
}

// TestRunOnAsynqRedis runs the asynq servers on a connection of their own
// (Deps.AsynqRedis): a message is delivered, and Run closes that connection when it
// returns.
func TestRunOnAsynqRedis(t *testing.T) {
	t.Parallel()
	mr, rdb := redistest.Mini(t)
	cfg := fastConfig()
	b := setup(t, setupOpts{cfg: &cfg, rdb: rdb, asynqRedis: asynq.RedisClientOpt{Addr: mr.Addr(), DB: 0}})
	stop := b.run(t)
	res, err := b.enqueuer(tasks.EnqueuerConfig{}).Enqueue(context.Background(), tasks.EnqueueRequest{ID: "own-1", Message: promotional()})
	require.NoError(t, err)
	b.waitState(t, res.ID, tasks.StateDelivered, 15*time.Second)
	during := mr.CurrentConnectionCount()
	stop()
	// rdb's own pool keeps its connections; the asynq servers' client is closed.
	require.Eventually(t, func() bool { return mr.CurrentConnectionCount() < during }, 5*time.Second, 20*time.Millisecond,
		"the asynq servers' connections are closed (%d open during the run)", during)
}

// TestRetriesExhaustedRecordsFinalState: with a retry budget of 1 and a provider
// answering 500 forever, the task is archived and the ErrorHandler records dropped
// (re-runnable), so no message stays queued forever.
func TestRetriesExhaustedRecordsFinalState(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	b := setup(t, setupOpts{cfg: &cfg, simCfg: func(c *dtsim.Config) { c.Faults.ServerError = 1 }})
	b.run(t)
	res, err := b.enqueuer(tasks.EnqueuerConfig{MaxRetry: 1}).Enqueue(context.Background(), tasks.EnqueueRequest{ID: "exhaust", Message: transactional(), TTL: time.Hour})
	require.NoError(t, err)
	rec := b.waitState(t, res.ID, tasks.StateDropped, 20*time.Second)
	require.Contains(t, rec.Error, "retries exhausted")
	require.Equal(t, 2, rec.Attempts)
	require.Eventually(t, func() bool {
		info, err := b.insp.GetTaskInfo(tasks.QueueCritical, res.ID)
		return err == nil && info.State == asynq.TaskStateArchived && info.Retried == 1
	}, 10*time.Second, 20*time.Millisecond)
	require.Empty(t, b.sim.Ledger())
}

// TestWorkerRetryBudgetAppliesToEveryTask: the budget is the worker's setting. A task
// enqueued elsewhere with a budget of 100 is archived by a worker configured with 1
// after one failed retry, with the same final record as when asynq's own budget runs
// out.
func TestWorkerRetryBudgetAppliesToEveryTask(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.MaxRetry = 1
	b := setup(t, setupOpts{cfg: &cfg, simCfg: func(c *dtsim.Config) { c.Faults.ServerError = 1 }})
	b.run(t)
	res, err := b.enqueuer(tasks.EnqueuerConfig{MaxRetry: 100}).Enqueue(context.Background(), tasks.EnqueueRequest{ID: "budget", Message: transactional(), TTL: time.Hour})
	require.NoError(t, err)
	rec := b.waitState(t, res.ID, tasks.StateDropped, 20*time.Second)
	require.Contains(t, rec.Error, "retries exhausted")
	require.Equal(t, 2, rec.Attempts)
	require.Eventually(t, func() bool {
		info, err := b.insp.GetTaskInfo(tasks.QueueCritical, res.ID)
		return err == nil && info.State == asynq.TaskStateArchived && info.Retried == 1
	}, 10*time.Second, 20*time.Millisecond)
	require.Empty(t, b.sim.Ledger())
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	_, err := New(Config{}, Deps{})
	require.ErrorContains(t, err, "Deps.Redis")
	_, err = New(Config{Concurrency: -1}, Deps{Redis: b.rdb})
	require.ErrorContains(t, err, "concurrency")
	_, err = New(Config{Queues: map[string]int{"critical": 0}}, Deps{Redis: b.rdb})
	require.ErrorContains(t, err, "weight")
	_, err = New(Config{SendBurst: -1}, Deps{Redis: b.rdb})
	require.ErrorContains(t, err, "bursts")

	cfg := b.w.Config()
	require.Equal(t, 1000.0, cfg.SendRate)
	require.Equal(t, DefaultQueues(), cfg.Queues)
	require.True(t, cfg.PauseOnBalance)
	def := Config{}.withDefaults()
	require.Equal(t, DefaultConcurrency, def.Concurrency)
	require.Equal(t, DefaultTaskCheckInterval, def.TaskCheckInterval)
	require.Equal(t, 1, def.SendBurst)
	require.False(t, def.PauseOnBalance, "booleans are taken as given")
	require.True(t, DefaultConfig().PauseOnAuth)

	acfg := b.w.asynqConfig()
	require.NotNil(t, acfg.RetryDelayFunc)
	require.NotNil(t, acfg.IsFailure)
	require.NotNil(t, acfg.ErrorHandler)
	require.NotNil(t, acfg.Logger)
	require.Equal(t, 1000*time.Millisecond, cfg.DelayedTaskCheckInterval)
	require.NoError(t, b.w.Ready(context.Background()))
}

func TestQueueCollector(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	_, _ = b.newSend(t, "qc-1", transactional(), time.Now().Add(time.Hour))
	c, err := NewQueueCollector(b.insp)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "asynq_queue_size" {
			found = true
		}
	}
	require.True(t, found)
	_, err = NewQueueCollector(nil)
	require.Error(t, err)
}

func TestRetryDelayDefaults(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	task := asynq.NewTask("other", nil)
	plain := errors.New("boom")
	// Exponential with ±50% jitter from RetryInitial (1s in testConfig? no: default).
	for n, bounds := range [][2]time.Duration{{500 * time.Millisecond, 1500 * time.Millisecond}, {time.Second, 3 * time.Second}, {2 * time.Second, 6 * time.Second}} {
		d := b.w.retryDelay(n, plain, task)
		require.GreaterOrEqual(t, d, bounds[0], "n=%d", n)
		require.LessOrEqual(t, d, bounds[1], "n=%d", n)
	}
	require.LessOrEqual(t, b.w.retryDelay(1000, plain, task), DefaultRetryMax*3/2)
	require.True(t, b.w.isFailure(plain))
	require.False(t, b.w.isFailure(&RetryAfterError{Delay: time.Second}))
	require.Equal(t, 7*time.Second, b.w.retryDelay(0, &retryError{delay: 7 * time.Second, err: plain}, task))
}

func TestMiddlewarePanicBecomesRetry(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	h := b.w.middleware(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { panic("boom") }))
	err := h.ProcessTask(context.Background(), asynq.NewTask(tasks.TypeSend, nil))
	require.ErrorContains(t, err, "panic")
	require.False(t, errors.Is(err, asynq.SkipRetry))
	require.True(t, b.w.isFailure(err))
	lines := b.logs.lines(t, "task ")
	require.Len(t, lines, 1)
	require.Equal(t, "retry", lines[0]["action"])
}

func TestLogLimiter(t *testing.T) {
	t.Parallel()
	l := newLogLimiter(time.Second, 2)
	now := time.Unix(1000, 0)
	ok, _ := l.allow("k", now)
	require.True(t, ok)
	ok, _ = l.allow("k", now)
	require.True(t, ok)
	ok, _ = l.allow("k", now)
	require.False(t, ok)
	ok, _ = l.allow("other", now)
	require.True(t, ok, "keys are independent")
	ok, _ = l.allow("k", now.Add(500*time.Millisecond))
	require.False(t, ok)
	ok, n := l.allow("k", now.Add(time.Second))
	require.True(t, ok)
	require.Equal(t, 2, n, "the next line reports what was suppressed")
	var off *logLimiter
	ok, _ = off.allow("k", now)
	require.True(t, ok)
}

// TestSendSlotsSplitBetweenFetchers: the send slots are shared by Fetchers asynq
// servers (at most Concurrency), each registered with asynq and serving the send
// queues, beside the poll server; every message sent through them is delivered once.
func TestSendSlotsSplitBetweenFetchers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		conc, fetchers int
		want           []int // the send servers' concurrencies, sorted
	}{
		{conc: 10, fetchers: 4, want: []int{2, 2, 3, 3}},
		{conc: 3, fetchers: 8, want: []int{1, 1, 1}},
		{conc: 5, fetchers: 1, want: []int{5}},
	} {
		t.Run(fmt.Sprintf("%d slots, %d fetchers", tc.conc, tc.fetchers), func(t *testing.T) {
			t.Parallel()
			cfg := fastConfig()
			cfg.Concurrency, cfg.Fetchers = tc.conc, tc.fetchers
			b := setup(t, setupOpts{cfg: &cfg})
			b.run(t)
			var send, poll []int
			require.Eventually(t, func() bool {
				servers, err := b.insp.Servers()
				if err != nil {
					return false
				}
				send, poll = nil, nil
				for _, s := range servers {
					if _, ok := s.Queues[tasks.QueueStatus]; ok {
						poll = append(poll, s.Concurrency)
					} else {
						send = append(send, s.Concurrency)
					}
				}
				return len(send)+len(poll) == len(tc.want)+1
			}, 10*time.Second, 20*time.Millisecond, "every server registered")
			slices.Sort(send)
			require.Equal(t, tc.want, send)
			require.Equal(t, []int{b.w.Config().PollConcurrency}, poll)

			e := b.enqueuer(tasks.EnqueuerConfig{})
			ids := make([]string, 12)
			for i := range ids {
				ids[i] = b.enqueue(t, e, fmt.Sprintf("fetch-%d", i), transactional(), time.Hour).ID
			}
			for _, id := range ids {
				b.waitState(t, id, tasks.StateDelivered, 15*time.Second)
			}
			require.Len(t, b.sim.Ledger(), len(ids), "one send per message")
		})
	}
}
