package webhook

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/worker"
)

// Defaults of Config. config's VIBERQ_WEBHOOK_* defaults equal these (a test checks).
const (
	DefaultGroup       = "viberq-webhooks"
	DefaultEvents      = tasks.WebhookFinal
	DefaultMaxRetry    = 15
	DefaultTimeout     = 10 * time.Second
	DefaultConcurrency = 10
	// DefaultRetryInitial and DefaultRetryMax shape the backoff: 5s, 10s, 20s, ... at
	// most 1h apart (±50% jitter); with DefaultMaxRetry about 6 hours in all.
	DefaultRetryInitial = 5 * time.Second
	DefaultRetryMax     = time.Hour
	// DefaultClaimIdle is how long an event read by a relay that died stays pending
	// before another relay claims it.
	DefaultClaimIdle = time.Minute
	// DefaultTaskRetention keeps a delivered webhook task's ID reserved, so that an
	// event claimed again after a relay died between enqueue and acknowledgement is
	// refused as a duplicate. It must exceed ClaimIdle plus one claim round.
	DefaultTaskRetention = 5 * time.Minute
	// DefaultBatch is how many events one read takes.
	DefaultBatch = 100
	// DefaultBlock is how long one read waits for new events.
	DefaultBlock = time.Second
	// DefaultShutdownTimeout is how long POSTs in flight get at shutdown.
	DefaultShutdownTimeout = 10 * time.Second
	// DefaultDelayedTaskCheckInterval is how often due retries are moved to the queue.
	DefaultDelayedTaskCheckInterval = time.Second
	// DefaultHostFailures is how many consecutive host failures (timeouts, connection
	// errors, 429, 502, 503, 504) open a host's circuit breaker in one process.
	DefaultHostFailures = 5
	// DefaultHostCoolOff is how long an open breaker holds a host's deliveries before
	// one probe is let through; every failed probe doubles it, up to
	// DefaultHostCoolOffMax, which is also how long a host that failed or answered
	// slowly (half the timeout or more) stays limited to HostConcurrency deliveries
	// in flight.
	DefaultHostCoolOff    = 15 * time.Second
	DefaultHostCoolOffMax = 5 * time.Minute
)

// DefaultHostConcurrency is the deliveries one process has in flight at most to a
// host that failed or answered slowly lately: a quarter of its concurrency, at least
// one.
func DefaultHostConcurrency(concurrency int) int { return max(1, concurrency/4) }

// Config configures a Service. Zero fields take the defaults; Secrets is required.
type Config struct {
	// DefaultURL receives the events of messages without a webhook URL of their own
	// ("" for none). It may carry a credential: it is never logged.
	DefaultURL string
	// Secrets sign every POST (one v1 each). At least one is required.
	Secrets []string
	// Events is the default choice of events: tasks.WebhookFinal (DefaultEvents) or
	// tasks.WebhookAll.
	Events string
	// MaxRetry is how often a failed POST is retried before it is archived
	// (DefaultMaxRetry).
	MaxRetry int
	// Timeout bounds one POST (DefaultTimeout).
	Timeout time.Duration
	// Concurrency is the POSTs in flight per process (DefaultConcurrency).
	Concurrency int
	// AllowPrivate allows POSTs to non-public addresses (default false; see the
	// package doc, "Addresses").
	AllowPrivate bool
	// RetryInitial and RetryMax shape the backoff (DefaultRetryInitial,
	// DefaultRetryMax).
	RetryInitial time.Duration
	RetryMax     time.Duration
	// Group is the consumer group on the events stream (DefaultGroup); Consumer this
	// process's name in it (default hostname-pid).
	Group    string
	Consumer string
	// ClaimIdle, TaskRetention, Batch and Block: see the Default* constants.
	ClaimIdle     time.Duration
	TaskRetention time.Duration
	Batch         int64
	Block         time.Duration
	// ShutdownTimeout bounds the drain of POSTs in flight (DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
	// HostFailures, HostCoolOff, HostCoolOffMax (DefaultHostFailures,
	// DefaultHostCoolOff, DefaultHostCoolOffMax) and HostConcurrency
	// (DefaultHostConcurrency(Concurrency)) keep one receiver's host from holding
	// the slots of the others: see the package doc, "One receiver cannot hold up the
	// others".
	HostFailures    int
	HostCoolOff     time.Duration
	HostCoolOffMax  time.Duration
	HostConcurrency int
	// TaskCheckInterval and DelayedTaskCheckInterval are asynq's (defaults 1s: webhook
	// latency of about a second is fine, and an idle server stays cheap).
	TaskCheckInterval        time.Duration
	DelayedTaskCheckInterval time.Duration
}

func (c Config) withDefaults() Config {
	c.Events = cmp.Or(c.Events, DefaultEvents)
	c.MaxRetry = cmp.Or(c.MaxRetry, DefaultMaxRetry)
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	c.Concurrency = cmp.Or(c.Concurrency, DefaultConcurrency)
	c.RetryInitial = cmp.Or(c.RetryInitial, DefaultRetryInitial)
	c.RetryMax = cmp.Or(c.RetryMax, DefaultRetryMax)
	c.Group = cmp.Or(c.Group, DefaultGroup)
	if c.Consumer == "" {
		host, _ := os.Hostname()
		c.Consumer = cmp.Or(host, "viberq") + "-" + strconv.Itoa(os.Getpid())
	}
	c.ClaimIdle = cmp.Or(c.ClaimIdle, DefaultClaimIdle)
	c.TaskRetention = cmp.Or(c.TaskRetention, DefaultTaskRetention)
	c.Batch = cmp.Or(c.Batch, DefaultBatch)
	c.Block = cmp.Or(c.Block, DefaultBlock)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, DefaultShutdownTimeout)
	c.HostFailures = cmp.Or(c.HostFailures, DefaultHostFailures)
	c.HostCoolOff = cmp.Or(c.HostCoolOff, DefaultHostCoolOff)
	c.HostCoolOffMax = cmp.Or(c.HostCoolOffMax, max(DefaultHostCoolOffMax, c.HostCoolOff))
	c.HostConcurrency = cmp.Or(c.HostConcurrency, DefaultHostConcurrency(c.Concurrency))
	c.TaskCheckInterval = cmp.Or(c.TaskCheckInterval, time.Second)
	c.DelayedTaskCheckInterval = cmp.Or(c.DelayedTaskCheckInterval, DefaultDelayedTaskCheckInterval)
	return c
}

// window is how long the retry schedule takes without its jitter (RetryInitial
// doubling up to RetryMax, MaxRetry times; about 6 hours by default), but at least
// two HostCoolOffMax (time for probes): a webhook held by an open breaker after
// waiting this long since it was queued, and attempted at least once, is archived
// (Deliverer.ProcessTask).
func (c Config) window() time.Duration {
	var w time.Duration
	d := c.RetryInitial
	for range c.MaxRetry {
		w += d
		d = min(2*d, c.RetryMax)
	}
	return max(w, 2*c.HostCoolOffMax)
}

func (c Config) validate() error {
	var errs []error
	if len(c.Secrets) == 0 {
		errs = append(errs, errors.New("at least one signing secret is required"))
	}
	for i, s := range c.Secrets {
		if len(s) < 16 {
			errs = append(errs, fmt.Errorf("secret %d must be at least 16 characters", i+1))
		}
	}
	if c.DefaultURL != "" {
		if r := tasks.WebhookURLRule(c.DefaultURL); r != "" {
			errs = append(errs, errors.New("default URL "+r))
		}
	}
	if c.Events != tasks.WebhookFinal && c.Events != tasks.WebhookAll {
		errs = append(errs, fmt.Errorf("events must be %q or %q, got %q", tasks.WebhookFinal, tasks.WebhookAll, c.Events))
	}
	if c.MaxRetry < 0 || c.Concurrency < 1 || c.Timeout < time.Second {
		errs = append(errs, errors.New("max retry must be ≥ 0, concurrency ≥ 1, timeout ≥ 1s"))
	}
	if c.RetryMax < c.RetryInitial {
		errs = append(errs, errors.New("retry max must be ≥ retry initial"))
	}
	if c.HostFailures < 1 || c.HostConcurrency < 1 || c.HostCoolOff <= 0 || c.HostCoolOffMax < c.HostCoolOff {
		errs = append(errs, errors.New("host failures and host concurrency must be ≥ 1, host cool-off > 0 and ≤ host cool-off max"))
	}
	if c.TaskRetention <= c.ClaimIdle {
		errs = append(errs, fmt.Errorf("task retention (%s) must exceed claim idle (%s)", c.TaskRetention, c.ClaimIdle))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("webhook config: %w", err)
	}
	return nil
}

// Deps are a Service's collaborators. Redis and Store are required.
type Deps struct {
	// Redis holds the events stream and the asynq queues. The caller closes it.
	Redis redis.UniversalClient
	// Store reads the records (and names the events stream).
	Store *tasks.Store
	// HTTPClient, optional, replaces NewHTTPClient(Timeout, Concurrency,
	// AllowPrivate) (tests).
	HTTPClient HTTPDoer
	// Logger; the zero Logger writes nothing.
	Logger zerolog.Logger
	// Metrics may be nil.
	Metrics *Metrics
	// Now is the clock (time.Now); it dates the signatures, times the hosts'
	// breakers and tells a webhook's age.
	Now func() time.Time
}

// Service is the relay and the delivery server of one worker process.
type Service struct {
	cfg     Config
	relay   *Relay
	deliver *Deliverer
	srv     *asynq.Server
	client  *asynq.Client
	log     zerolog.Logger
}

// New checks cfg and builds the Service; Run starts it.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if deps.Redis == nil || deps.Store == nil {
		return nil, errors.New("webhook: Deps.Redis and Deps.Store are required")
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.HTTPClient == nil {
		deps.HTTPClient = NewHTTPClient(cfg.Timeout, cfg.Concurrency, cfg.AllowPrivate)
	}
	log := deps.Logger.With().Str("component", "webhook").Logger()
	client := asynq.NewClientFromRedisClient(deps.Redis)
	s := &Service{cfg: cfg, client: client, log: log}
	s.relay = &Relay{cfg: cfg, rdb: deps.Redis, store: deps.Store, client: client, log: log, metrics: deps.Metrics, now: deps.Now}
	s.deliver = &Deliverer{cfg: cfg, http: deps.HTTPClient, log: log, metrics: deps.Metrics, now: deps.Now,
		hosts: newHostGate(cfg, deps.Now, log, deps.Metrics)}
	s.srv = asynq.NewServerFromRedisClient(deps.Redis, asynq.Config{
		Concurrency:              cfg.Concurrency,
		Queues:                   map[string]int{tasks.QueueWebhooks: 1},
		TaskCheckInterval:        cfg.TaskCheckInterval,
		DelayedTaskCheckInterval: cfg.DelayedTaskCheckInterval,
		ShutdownTimeout:          cfg.ShutdownTimeout,
		RetryDelayFunc:           s.deliver.retryDelay,
		IsFailure:                isFailure,
		ErrorHandler:             asynq.ErrorHandlerFunc(s.deliver.handleError),
		Logger:                   worker.NewAsynqLogger(log),
		LogLevel:                 asynq.WarnLevel,
	})
	return s, nil
}

// Relay returns the relay (tests drive it step by step).
func (s *Service) Relay() *Relay { return s.relay }

// Deliverer returns the delivery handler.
func (s *Service) Deliverer() *Deliverer { return s.deliver }

// Run creates the consumer group if needed, starts the delivery server and relays
// events until ctx is done; then it stops reading, gives POSTs in flight
// ShutdownTimeout and returns.
func (s *Service) Run(ctx context.Context) error {
	defer s.client.Close()
	// Redis may be down at start: keep trying rather than run without webhooks.
	for {
		err := s.relay.EnsureGroup(ctx)
		if err == nil {
			break
		}
		s.log.Warn().Err(err).Msg("webhooks wait for Redis")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	if err := s.srv.Start(asynq.HandlerFunc(s.deliver.ProcessTask)); err != nil {
		return fmt.Errorf("webhook: start delivery server: %w", err)
	}
	s.log.Info().Int("concurrency", s.cfg.Concurrency).Str("events", s.cfg.Events).
		Bool("default_url", s.cfg.DefaultURL != "").Msg("webhooks started")
	err := s.relay.Run(ctx)
	s.srv.Shutdown()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil
	}
	return err
}
