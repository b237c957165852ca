package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/scheduler"
	"github.com/viberq/viberq/tasks"
)

// Defaults of Config (zero fields take these in New).
const (
	DefaultConcurrency              = 50
	DefaultPollConcurrency          = 20
	DefaultFetchers                 = 4
	DefaultMaxRetryAfter            = time.Minute
	DefaultShutdownTimeout          = 20 * time.Second
	DefaultTaskTimeout              = 60 * time.Second
	DefaultTaskCheckInterval        = 50 * time.Millisecond
	DefaultDelayedTaskCheckInterval = time.Second
	DefaultSendRate                 = 50
	DefaultSendBurst                = 1
	DefaultStatusRate               = 50
	DefaultStatusBurst              = 1
	DefaultRetryInitial             = time.Second
	DefaultRetryMax                 = 5 * time.Minute
	DefaultPrefix                   = tasks.DefaultPrefix
	DefaultLogPeriod                = time.Second
	DefaultLogBurst                 = 20

	// The error policy's defaults (README "Error policy"): a 402 and a 401 pause the
	// send queues; an ambiguous send is not re-sent, and a 5xx on a send is retried.
	DefaultPauseOnBalance     = true
	DefaultPauseOnAuth        = true
	DefaultResendUnknown      = false
	DefaultServerErrorUnknown = false
)

// DefaultQueues are the queue weights when Config.Queues is empty. The status queue is
// served by its own asynq server (Config.PollConcurrency); its weight is not used.
func DefaultQueues() map[string]int {
	return map[string]int{tasks.QueueCritical: 6, tasks.QueueDefault: 3, tasks.QueueStatus: 1}
}

// Config is the worker's configuration. Zero numeric and duration fields take the
// Default* constants in New; booleans are taken as given (DefaultConfig sets the
// recommended ones).
type Config struct {
	// Concurrency is how many send tasks one process handles at once. Defaults to
	// DefaultConcurrency (50). Handlers mostly wait (limiter, HTTP), so it may be high.
	Concurrency int
	// PollConcurrency is how many poll tasks (the status queue) one process handles
	// at once, in slots of their own: sends waiting for the send bucket never hold
	// the slots polls need. Defaults to DefaultPollConcurrency (20).
	PollConcurrency int
	// Fetchers is how many asynq servers share the Concurrency send slots, each with
	// its own fetch loop: an asynq server takes tasks from Redis one at a time, one
	// round trip each, so one loop bounds a process's sends per second (README, "The
	// send path"; BENCHMARKS.md, row 1). At most Concurrency. Defaults to
	// DefaultFetchers (4).
	Fetchers int
	// Queues are the asynq queue weights of the send queues. Defaults to
	// DefaultQueues() (critical 6, default 3; a status weight is ignored: the status
	// queue has its own server).
	Queues map[string]int
	// StrictPriority processes higher-weight queues first (asynq). Default false.
	StrictPriority bool
	// ShutdownTimeout is how long in-flight tasks get on shutdown before they are
	// put back into their queues. Defaults to DefaultShutdownTimeout (20s).
	ShutdownTimeout time.Duration
	// TaskTimeout bounds one task attempt (limiter wait + provider call + record).
	// Defaults to DefaultTaskTimeout (60s); keep it above the provider HTTP timeout.
	TaskTimeout time.Duration
	// TaskCheckInterval is how often an idle process looks for new tasks; it bounds
	// the enqueue → send latency when the queues are empty (asynq sleeps 0.5-1.5 times
	// it, holding its only fetch loop). Defaults to DefaultTaskCheckInterval (50ms:
	// at most ~75 ms of idle latency, for a p99 enqueue → request under 150 ms; one
	// cheap Lua call per 50 ms per idle process).
	TaskCheckInterval time.Duration
	// DelayedTaskCheckInterval is how often scheduled polls and retries are moved to
	// their queues. Defaults to DefaultDelayedTaskCheckInterval (1s; asynq's is 5s).
	DelayedTaskCheckInterval time.Duration

	// SendRate is send-viber calls per second for all processes together (the global
	// bucket). Defaults to DefaultSendRate (50). SendBurst defaults to 1: exactly
	// SendRate per second, no burst on top.
	SendRate  float64
	SendBurst int
	// StatusRate and StatusBurst are the same for receive-viber. Default 50 and 1.
	StatusRate  float64
	StatusBurst int

	// PauseOnBalance pauses the send queues (critical, default) on a provider 402.
	PauseOnBalance bool
	// PauseOnAuth pauses the send queues on a provider 401/403.
	PauseOnAuth bool
	// ResendUnknown resends a message whose send was ambiguous instead of recording
	// unknown (a duplicate is then possible; README, Exactly once).
	ResendUnknown bool
	// ServerErrorUnknown takes a 5xx answer to a send as ambiguous (unknown) instead
	// of retrying it: the provider may have accepted the message before failing, and
	// a retry would then send it twice. Off by default (README, Error policy: 5xx is retried).
	ServerErrorUnknown bool
	// MaxRetryAfter caps the pause of a global bucket and the retry delay after one
	// provider 429 (its Retry-After hint): a longer hint is cut to it, with an alert
	// and an error-level log line naming the hint. Defaults to DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// AlertWindow is the dedup window of the Alerter New builds when Deps.Alerter is
	// nil. Defaults to DefaultAlertWindow.
	AlertWindow time.Duration
	// CallbackURL is the provider's callback_url for messages that have none ("" for
	// none). It may carry credentials: it is never logged.
	CallbackURL string
	// Poll is the status polling policy of the Scheduler New builds when
	// Deps.Scheduler is nil (a given Scheduler keeps its own policy). The zero Policy
	// is scheduler's default.
	Poll scheduler.Policy
	// Prefix is the Redis key prefix of the limiter and alert keys; use the Store's.
	// Defaults to DefaultPrefix ("viberq:").
	Prefix string
	// RetryInitial and RetryMax shape the exponential backoff (with jitter) of
	// retried errors (5xx, connection refused). Defaults 1s and 5m; the delay is
	// further bounded by the message's TTL (or the polling deadline).
	RetryInitial time.Duration
	RetryMax     time.Duration
	// MaxRetry is the retry budget of every task this worker runs, whoever enqueued
	// it (VIBERQ_MAX_RETRY of the worker): a task is archived, and its record made
	// final, after MaxRetry failed retries. Attempts that were rate limited (429)
	// or deferred (RetryAfterError) do not use it up. A task enqueued with a smaller
	// asynq MaxRetry keeps that smaller one (asynq archives it first); the producers
	// of package cmd/viberq enqueue with the ceiling so that the worker decides.
	// Defaults to tasks.DefaultMaxRetry (100); negative means no retry at all.
	MaxRetry int
	// LogPeriod and LogBurst rate-limit repeated warn/error lines with the same action
	// and reason: at most LogBurst per LogPeriod (defaults 20 per second); a negative
	// LogBurst disables the limit.
	LogPeriod time.Duration
	LogBurst  int
	// Reconcile configures the reconciler Run starts (reconcile.go).
	Reconcile ReconcileConfig
}

// DefaultConfig returns the recommended configuration: defaults everywhere, and
// PauseOnBalance and PauseOnAuth on.
func DefaultConfig() Config {
	return Config{PauseOnBalance: DefaultPauseOnBalance, PauseOnAuth: DefaultPauseOnAuth,
		ResendUnknown: DefaultResendUnknown, ServerErrorUnknown: DefaultServerErrorUnknown}
}

// withDefaults returns c with zero fields filled.
func (c Config) withDefaults() Config {
	c.Concurrency = cmp.Or(c.Concurrency, DefaultConcurrency)
	c.PollConcurrency = cmp.Or(c.PollConcurrency, DefaultPollConcurrency)
	c.Fetchers = cmp.Or(c.Fetchers, DefaultFetchers)
	c.MaxRetryAfter = cmp.Or(c.MaxRetryAfter, DefaultMaxRetryAfter)
	if len(c.Queues) == 0 {
		c.Queues = DefaultQueues()
	}
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, DefaultShutdownTimeout)
	c.TaskTimeout = cmp.Or(c.TaskTimeout, DefaultTaskTimeout)
	c.TaskCheckInterval = cmp.Or(c.TaskCheckInterval, DefaultTaskCheckInterval)
	c.DelayedTaskCheckInterval = cmp.Or(c.DelayedTaskCheckInterval, DefaultDelayedTaskCheckInterval)
	c.SendRate = cmp.Or(c.SendRate, DefaultSendRate)
	c.SendBurst = cmp.Or(c.SendBurst, DefaultSendBurst)
	c.StatusRate = cmp.Or(c.StatusRate, DefaultStatusRate)
	c.StatusBurst = cmp.Or(c.StatusBurst, DefaultStatusBurst)
	c.AlertWindow = cmp.Or(c.AlertWindow, DefaultAlertWindow)
	c.Prefix = cmp.Or(c.Prefix, DefaultPrefix)
	c.RetryInitial = cmp.Or(c.RetryInitial, DefaultRetryInitial)
	c.RetryMax = cmp.Or(c.RetryMax, DefaultRetryMax)
	c.LogPeriod = cmp.Or(c.LogPeriod, DefaultLogPeriod)
	c.MaxRetry = cmp.Or(c.MaxRetry, tasks.DefaultMaxRetry)
	c.LogBurst = cmp.Or(c.LogBurst, DefaultLogBurst)
	c.Reconcile = c.Reconcile.withDefaults()
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency must be ≥ 1, got %d", c.Concurrency))
	}
	if c.Fetchers < 1 {
		errs = append(errs, fmt.Errorf("fetchers must be ≥ 1, got %d", c.Fetchers))
	}
	if c.PollConcurrency < 1 {
		errs = append(errs, fmt.Errorf("poll concurrency must be ≥ 1, got %d", c.PollConcurrency))
	}
	if c.MaxRetryAfter < time.Second {
		errs = append(errs, fmt.Errorf("max retry-after must be ≥ 1s, got %s", c.MaxRetryAfter))
	}
	for q, wgt := range c.Queues {
		if wgt < 1 {
			errs = append(errs, fmt.Errorf("queue %q: weight must be ≥ 1, got %d", q, wgt))
		}
	}
	if c.SendRate < 0 || c.StatusRate < 0 {
		errs = append(errs, errors.New("send and status rates must be ≥ 0"))
	}
	if c.SendBurst < 1 || c.StatusBurst < 1 {
		errs = append(errs, errors.New("send and status bursts must be ≥ 1"))
	}
	if c.TaskTimeout < time.Second {
		errs = append(errs, fmt.Errorf("task timeout must be ≥ 1s, got %s", c.TaskTimeout))
	}
	if c.RetryMax < c.RetryInitial {
		errs = append(errs, errors.New("retry max must be ≥ retry initial"))
	}
	if c.TaskCheckInterval <= 0 || c.DelayedTaskCheckInterval <= 0 {
		errs = append(errs, errors.New("task check intervals must be > 0"))
	}
	if c.Reconcile.Batch < 1 {
		errs = append(errs, fmt.Errorf("reconcile batch must be ≥ 1, got %d", c.Reconcile.Batch))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("worker config: %w", err)
	}
	return nil
}

// Deps are the worker's collaborators. Redis, Provider and Store are required.
type Deps struct {
	// Redis serves the limiter, alert dedup, queue pausing and (when AsynqRedis is
	// nil) asynq itself. The caller closes it.
	Redis redis.UniversalClient
	// AsynqRedis, if set, is the connection option of the asynq servers: the worker
	// makes one client of it, which the Config.Fetchers send servers and the poll
	// server share (one connection pool, not one each), and closes it when Run ends.
	AsynqRedis asynq.RedisConnOpt
	Provider   *provider.Client
	Store      *tasks.Store
	// Scheduler schedules poll tasks. Defaults to one on an asynq client over Redis
	// with Config.Poll.
	Scheduler *scheduler.Scheduler
	// Alerter receives balance and auth alerts. Defaults to a LogAlerter behind a
	// DedupAlerter (one alert per Config.AlertWindow across pods), counted in Metrics.
	Alerter Alerter
	// Logger is the base logger. The zero Logger writes nothing.
	Logger zerolog.Logger
	// Metrics may be nil (nothing recorded).
	Metrics *Metrics
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

// Worker is viberq's asynq server: the send and poll handlers, the global limiters,
// the error policy, alerts and metrics.
type Worker struct {
	cfg       Config
	log       zerolog.Logger
	rdb       redis.UniversalClient
	prov      *provider.Client
	store     *tasks.Store
	sched     *scheduler.Scheduler
	alerter   Alerter
	metrics   *Metrics
	now       func() time.Time
	insp      *asynq.Inspector
	sendLim   *Limiter
	statusLim *Limiter
	logLim    *logLimiter
	handler   asynq.Handler
	sendSrvs  []*asynq.Server // the send queues: Config.Fetchers servers sharing the slots
	pollSrv   *asynq.Server   // the status queue, with its own slots
	closers   []func() error
	held      heldAccepts // accepted message_ids not written yet (accepted.go)

	runMu   sync.Mutex
	running bool
}

// New checks cfg and deps and builds the Worker (nothing runs until Run).
func New(cfg Config, deps Deps) (*Worker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.Redis == nil:
		return nil, errors.New("worker: Deps.Redis is required")
	case deps.Provider == nil:
		return nil, errors.New("worker: Deps.Provider is required")
	case deps.Store == nil:
		return nil, errors.New("worker: Deps.Store is required")
	}
	w := &Worker{
		cfg:     cfg,
		log:     deps.Logger,
		rdb:     deps.Redis,
		prov:    deps.Provider,
		store:   deps.Store,
		sched:   deps.Scheduler,
		metrics: deps.Metrics,
		now:     deps.Now,
		insp:    asynq.NewInspectorFromRedisClient(deps.Redis),
		logLim:  newLogLimiter(cfg.LogPeriod, cfg.LogBurst),
	}
	if deps.Now == nil {
		w.now = time.Now
	}
	w.sendLim = NewLimiter(deps.Redis, cfg.Prefix, BucketSend, cfg.SendRate, cfg.SendBurst, deps.Metrics).SetMaxPause(cfg.MaxRetryAfter)
	w.statusLim = NewLimiter(deps.Redis, cfg.Prefix, BucketStatus, cfg.StatusRate, cfg.StatusBurst, deps.Metrics).SetMaxPause(cfg.MaxRetryAfter)
	w.alerter = deps.Alerter
	if w.alerter == nil {
		w.alerter = NewDedupAlerter(deps.Redis, cfg.Prefix, cfg.AlertWindow, deps.Metrics.CountAlerts(LogAlerter{Logger: deps.Logger}))
	}
	if w.sched == nil {
		client := asynq.NewClientFromRedisClient(deps.Redis)
		w.closers = append(w.closers, client.Close)
		// The poll tasks carry the worker's budget as their asynq MaxRetry (asynq's
		// default of 25 would otherwise be the smaller one; see Config.MaxRetry).
		w.sched = scheduler.New(client, cfg.Poll, scheduler.WithTaskOptions(asynq.MaxRetry(max(cfg.MaxRetry, 0))))
	}

	w.handler = w.middleware(exactTypes(map[string]asynq.Handler{
		tasks.TypeSend: reporting(w.handleSend),
		tasks.TypePoll: HandlerFor(w.handlePoll),
	}))

	asynqRedis := deps.Redis
	if deps.AsynqRedis != nil {
		c, ok := deps.AsynqRedis.MakeRedisClient().(redis.UniversalClient)
		if !ok {
			return nil, fmt.Errorf("worker: Deps.AsynqRedis (%T) makes no go-redis client", deps.AsynqRedis)
		}
		asynqRedis = c
		w.closers = append(w.closers, c.Close)
	}
	newServer := func(c asynq.Config) *asynq.Server { return asynq.NewServerFromRedisClient(asynqRedis, c) }
	for _, c := range w.sendAsynqConfigs() {
		w.sendSrvs = append(w.sendSrvs, newServer(c))
	}
	w.pollSrv = newServer(w.pollAsynqConfig())
	return w, nil
}

// sendQueueWeights are Config.Queues without the status queue.
func (w *Worker) sendQueueWeights() map[string]int {
	q := make(map[string]int, len(w.cfg.Queues))
	for name, wgt := range w.cfg.Queues {
		if name != tasks.QueueStatus {
			q[name] = wgt
		}
	}
	if len(q) == 0 {
		q = DefaultQueues()
		delete(q, tasks.QueueStatus)
	}
	return q
}

// pollAsynqConfig is the configuration of the poll server of the process: the
// status queue alone, PollConcurrency slots, the same policy. Polls wait only for the
// status bucket, so a send backlog waiting for the send bucket cannot delay them.
func (w *Worker) pollAsynqConfig() asynq.Config {
	c := w.asynqConfig()
	c.Concurrency = w.cfg.PollConcurrency
	c.Queues = map[string]int{tasks.QueueStatus: 1}
	c.StrictPriority = false
	return c
}

// sendAsynqConfigs are the configurations of the send servers: Config.Fetchers (at
// most Concurrency) asynq servers of one configuration, sharing the Concurrency slots
// as evenly as they divide.
func (w *Worker) sendAsynqConfigs() []asynq.Config {
	n := min(w.cfg.Fetchers, w.cfg.Concurrency)
	out := make([]asynq.Config, n)
	for i := range out {
		out[i] = w.asynqConfig()
		out[i].Concurrency = w.cfg.Concurrency / n
		if i < w.cfg.Concurrency%n {
			out[i].Concurrency++
		}
	}
	return out
}

// asynqConfig is the configuration of the send server: the send queues, concurrency,
// the retry policy (RetryDelayFunc, IsFailure), the final-failure hook and the logger.
func (w *Worker) asynqConfig() asynq.Config {
	return asynq.Config{
		Concurrency:              w.cfg.Concurrency,
		Queues:                   w.sendQueueWeights(),
		StrictPriority:           w.cfg.StrictPriority,
		TaskCheckInterval:        w.cfg.TaskCheckInterval,
		DelayedTaskCheckInterval: w.cfg.DelayedTaskCheckInterval,
		ShutdownTimeout:          w.cfg.ShutdownTimeout,
		RetryDelayFunc:           w.retryDelay,
		IsFailure:                w.isFailure,
		ErrorHandler:             asynq.ErrorHandlerFunc(w.handleError),
		Logger:                   NewAsynqLogger(w.log),
		LogLevel:                 max(asynq.InfoLevel, asynqLogLevel(w.log.GetLevel())), // asynq's debug lines say "All queues are empty" 10 times a second
		HealthCheckFunc: func(err error) {
			if err != nil {
				if ok, _ := w.logLim.allow("healthcheck", w.now()); ok {
					w.log.Error().Err(err).Msg("redis health check failed")
				}
			}
		},
	}
}

// Handler returns the full task handler (middleware + mux), for tests that call
// ProcessTask directly and for embedding in another asynq server (together with
// AsynqConfig, whose RetryDelayFunc, IsFailure and ErrorHandler carry the policy, and
// DispatchDuePolls, which schedules the first polls: Run starts it).
func (w *Worker) Handler() asynq.Handler { return w.handler }

// AsynqConfig returns the configuration of the send slots Run starts (the send queues,
// all Concurrency slots in one server: Run splits them between Fetchers servers);
// PollAsynqConfig that of the poll server (the status queue).
func (w *Worker) AsynqConfig() asynq.Config { return w.asynqConfig() }

// PollAsynqConfig returns the configuration of the poll server Run starts.
func (w *Worker) PollAsynqConfig() asynq.Config { return w.pollAsynqConfig() }

// SendLimiter returns the global send bucket.
func (w *Worker) SendLimiter() *Limiter { return w.sendLim }

// StatusLimiter returns the global status bucket.
func (w *Worker) StatusLimiter() *Limiter { return w.statusLim }

// Config returns the effective configuration (defaults filled).
func (w *Worker) Config() Config { return w.cfg }

// Ready reports whether Redis answers (for /readyz).
func (w *Worker) Ready(ctx context.Context) error {
	return w.rdb.Ping(ctx).Err()
}

// Run starts the asynq server and blocks until ctx is done, then shuts down: stop
// fetching, give in-flight tasks ShutdownTimeout to finish, put the unfinished ones
// back in their queues. It can be called once.
func (w *Worker) Run(ctx context.Context) error {
	w.runMu.Lock()
	if w.running {
		w.runMu.Unlock()
		return errors.New("worker: already run")
	}
	w.running = true
	w.runMu.Unlock()

	srvs := append(slices.Clone(w.sendSrvs), w.pollSrv)
	for i, srv := range srvs {
		if err := srv.Start(w.handler); err != nil {
			for _, started := range srvs[:i] {
				started.Shutdown()
			}
			w.close()
			return fmt.Errorf("worker: start: %w", err)
		}
	}
	w.log.Info().Int("concurrency", w.cfg.Concurrency).Int("fetchers", len(srvs)-1).Int("poll_concurrency", w.cfg.PollConcurrency).
		Any("queues", w.sendQueueWeights()).Float64("send_rate", w.cfg.SendRate).Float64("status_rate", w.cfg.StatusRate).
		Dur("max_retry_after", w.cfg.MaxRetryAfter).Msg("worker started")
	rctx, stopRec := context.WithCancel(ctx)
	recDone := make(chan struct{})
	go func() { defer close(recDone); NewReconciler(w).Run(rctx) }()
	dueDone := make(chan struct{})
	go func() { defer close(dueDone); w.DispatchDuePolls(rctx) }()
	<-ctx.Done()
	w.log.Info().Msg("worker shutting down")
	stopRec()
	<-recDone
	<-dueDone
	var wg sync.WaitGroup
	for _, srv := range srvs {
		wg.Go(srv.Shutdown)
	}
	wg.Wait()
	w.held.stop(w.cfg.ShutdownTimeout)
	w.close()
	w.log.Info().Msg("worker stopped")
	return nil
}

func (w *Worker) close() {
	for _, c := range w.closers {
		_ = c()
	}
	_ = w.insp.Close()
}

// HandlerFor adapts a typed handler to asynq: it decodes the payload with
// tasks.Decode and archives an undecodable one at once (asynq.SkipRetry), so handlers
// never touch bytes.
func HandlerFor[T tasks.Args](fn func(context.Context, T) error) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		a, err := tasks.Decode[T](t)
		if err != nil {
			attemptFrom(ctx).decide(Classify(opOf(t.Type()), err))
			return skip(err)
		}
		return fn(ctx, a)
	})
}

// reporting is HandlerFor for a handler that returns what its attempt logs: the
// report is handed to the middleware, which writes the attempt's one line.
func reporting[T tasks.Args](fn func(context.Context, T) (attempt, error)) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		a, err := tasks.Decode[T](t)
		if err != nil {
			attemptFrom(ctx).decide(Classify(opOf(t.Type()), err))
			return skip(err)
		}
		rep, err := fn(ctx, a)
		*attemptFrom(ctx) = rep
		return err
	})
}

func opOf(taskType string) string {
	if taskType == tasks.TypePoll {
		return provider.OpStatus
	}
	return provider.OpSend
}

func zlog(ctx context.Context) *zerolog.Logger { return zerolog.Ctx(ctx) }

// retryDelay is the asynq RetryDelayFunc: the delay decided by the middleware; a
// RetryAfterError's delay or a RateLimitError's hint capped by MaxRetryAfter (plus
// ≤50% jitter, within the TTL); else exponential
// backoff with jitter (backoff/v4), bounded by the time left before the message's TTL
// (or polling deadline): a retry after that would only record expired.
func (w *Worker) retryDelay(n int, err error, t *asynq.Task) time.Duration {
	var re *retryError
	if errors.As(err, &re) {
		return re.delay
	}
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return w.ttlBound(t, ra.Delay, jitterUp(ra.Delay))
	}
	var rl *provider.RateLimitError
	if errors.As(err, &rl) {
		d := min(cmp.Or(rl.RetryAfter, DefaultRetryAfter), w.cfg.MaxRetryAfter)
		return w.ttlBound(t, d, jitterUp(d))
	}
	d := w.backoff(n)
	if left, ok := w.timeLeft(t); ok && d > left {
		d = max(left, 0)
	}
	return d
}

// ttlBound keeps the jitter added to a rate-limit delay from pushing the retry past the
// message's TTL (or polling deadline): the delay d itself is kept (the handler expires
// a message whose delay alone passes its TTL before asking for it).
func (w *Worker) ttlBound(t *asynq.Task, d, jittered time.Duration) time.Duration {
	if left, ok := w.timeLeft(t); ok && jittered > left {
		return max(d, left)
	}
	return jittered
}

// backoff is the n-th (from 0) delay of an exponential backoff with ±50% jitter.
func (w *Worker) backoff(n int) time.Duration {
	return Backoff(w.cfg.RetryInitial, w.cfg.RetryMax, n)
}

// timeLeft is the time until the TTL of a send task, or until the last moment a poll
// task may still ask (its deadline plus lastPollGrace).
func (w *Worker) timeLeft(t *asynq.Task) (time.Duration, bool) {
	switch t.Type() {
	case tasks.TypeSend:
		if a, err := tasks.Decode[tasks.SendArgs](t); err == nil {
			return a.ExpiresAt.Sub(w.now()), true
		}
	case tasks.TypePoll:
		if a, err := tasks.Decode[tasks.PollArgs](t); err == nil {
			// A poll may still ask until lastPollGrace after the deadline: a retry
			// inside it waits its backoff (bounded by what is left), not none.
			return w.pollDeadline(a).Add(lastPollGrace).Sub(w.now()), true
		}
	}
	return 0, false
}

// jitterUp adds up to 50% to a rate-limit delay: the provider's hint is a minimum,
// and spreading the retries keeps them from all coming back in the same second.
func jitterUp(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d + rand.N(d/2+1)
}

// isFailure is the asynq IsFailure: rate limiting (the provider's 429, a paused
// bucket) does not use up the retry budget; everything else does.
func (w *Worker) isFailure(err error) bool {
	var re *retryError
	if errors.As(err, &re) {
		return re.failure
	}
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return false
	}
	var rl *provider.RateLimitError
	return !errors.As(err, &rl)
}

// handleError is the asynq ErrorHandler. It acts only on a final failure (retries
// exhausted, so asynq archives the task): the record gets a final state so that no
// message stays queued forever. A send never confirmed becomes dropped (re-runnable
// from the archive), or unknown if it was mid-send; a poll becomes unknown, except a
// confirming poll, which leaves the record to the scheduled polls.
func (w *Worker) handleError(ctx context.Context, t *asynq.Task, err error) {
	if errors.Is(err, asynq.SkipRetry) || errors.Is(err, asynq.RevokeTask) {
		return
	}
	retried, ok1 := asynq.GetRetryCount(ctx)
	maxRetry, ok2 := asynq.GetMaxRetry(ctx)
	if !ok1 || !ok2 || retried < maxRetry {
		return
	}
	w.exhausted(ctx, t, err, retried, maxRetry)
}

// retryBudget is the number of failed retries a task may have: the worker's MaxRetry,
// or the task's own asynq MaxRetry when that is smaller (asynq archives it then).
func (w *Worker) retryBudget(ctx context.Context) int {
	budget := max(w.cfg.MaxRetry, 0)
	if m, ok := asynq.GetMaxRetry(ctx); ok && m < budget {
		budget = m
	}
	return budget
}

// exhausted records the final state of a task whose retries are used up (see
// handleError).
func (w *Worker) exhausted(ctx context.Context, t *asynq.Task, err error, retried, maxRetry int) {
	wctx, cancel := detached(ctx)
	defer cancel()
	msg := "retries exhausted: " + err.Error()
	var (
		rec tasks.Record
		ok  bool
		id  string
		e   error
	)
	switch t.Type() {
	case tasks.TypeSend:
		a, derr := tasks.Decode[tasks.SendArgs](t)
		if derr != nil {
			return
		}
		id = a.ID
		rec, ok, e = w.store.Transition(wctx, a.ID, []tasks.State{tasks.StateQueued}, tasks.StateDropped, tasks.Update{Error: shortErr(msg)})
		if e == nil && !ok && rec.State == tasks.StateSending {
			rec, ok, e = w.store.Transition(wctx, a.ID, []tasks.State{tasks.StateSending}, tasks.StateUnknown, tasks.Update{Error: shortErr(msg)})
			if e == nil && ok {
				w.metrics.countUnknown()
			}
		}
	case tasks.TypePoll:
		a, derr := tasks.Decode[tasks.PollArgs](t)
		if derr != nil {
			return
		}
		id = a.ID
		if a.Confirm {
			// A confirming poll (asked for by a status callback) decides nothing by
			// failing: the scheduled polls go on and settle the message.
			w.log.Warn().Str("task_type", t.Type()).Str("msg_id", provider.MaskID(id)).Int("retry", retried).Int("max_retry", maxRetry).Err(err).
				Msg("confirming poll gave up; the scheduled polls go on")
			return
		}
		rec, ok, e = w.store.Transition(wctx, a.ID, []tasks.State{tasks.StateAccepted}, tasks.StateUnknown, tasks.Update{Error: shortErr(msg)})
	default:
		return
	}
	lg := w.log.Error().Str("task_type", t.Type()).Str("msg_id", provider.MaskID(id)).Int("retry", retried).Int("max_retry", maxRetry)
	switch {
	case e != nil:
		lg.Err(e).Msg("retries exhausted; cannot record the final state")
	case ok:
		w.metrics.countFinal(string(rec.State), rec.Channel, rec.Polls, t.Type() == tasks.TypePoll)
		lg.Str("status", string(rec.State)).Msg("retries exhausted; task archived")
	default:
		lg.Str("status", string(rec.State)).Msg("retries exhausted; task archived, record unchanged")
	}
}

// UnknownTypeDelay is how long a task of a type this worker does not handle waits
// before it is offered again.
const UnknownTypeDelay = time.Minute

// exactTypes dispatches on the exact task type. (asynq's ServeMux matches the longest
// registered prefix, so "viber:send2" would reach the "viber:send" handler and be
// archived as a bad payload.) A type this worker does not know — one added by a newer
// version during a rolling deploy — is retried after UnknownTypeDelay without using
// the retry budget, so that a worker that knows it takes it.
func exactTypes(handlers map[string]asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		h, ok := handlers[t.Type()]
		if !ok {
			return &RetryAfterError{Delay: UnknownTypeDelay, Err: fmt.Errorf("task type %q is not handled by this worker version", t.Type())}
		}
		return h.ProcessTask(ctx, t)
	})
}
