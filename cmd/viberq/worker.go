package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/viberq/viberq/config"
	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/scheduler"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/outbox"
	"github.com/viberq/viberq/worker"
	"github.com/viberq/viberq/worker/webhook"
)

// runWorker is `viberq worker`: the asynq server that sends and polls, with its
// metrics and health listener, until SIGTERM (ctx done); then in-flight tasks get
// VIBERQ_SHUTDOWN_TIMEOUT to finish and the rest go back to their queues.
func runWorker(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("worker", stdout, "[flags]")
	concurrency := fs.Int("concurrency", 0, "tasks processed at once by this process (default VIBERQ_CONCURRENCY)")
	rate := fs.Float64("rate", 0, "send-viber calls per second, all workers together (default VIBERQ_RATE_LIMIT)")
	statusRate := fs.Float64("status-rate", 0, "receive-viber calls per second, all workers together (default VIBERQ_STATUS_RATE_LIMIT)")
	metricsAddr := fs.String("metrics-addr", "", `listen address of /metrics, /healthz and /readyz, "off" to disable (default VIBERQ_METRICS_ADDR)`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	if *concurrency < 0 || *rate < 0 || *statusRate < 0 {
		return usagef("--concurrency, --rate and --status-rate must not be negative")
	}
	cfg, err := loadConfig(config.RequiredWorker...)
	if err != nil {
		return err
	}
	if *concurrency > 0 {
		cfg.Worker.Concurrency = *concurrency
	}
	if *rate > 0 {
		cfg.Limits.SendRate = *rate
	}
	if *statusRate > 0 {
		cfg.Limits.StatusRate = *statusRate
	}
	switch *metricsAddr {
	case "":
	case "off":
		cfg.Worker.MetricsAddr = ""
	default:
		if _, _, err := net.SplitHostPort(*metricsAddr); err != nil {
			return usagef("--metrics-addr: %v", err)
		}
		cfg.Worker.MetricsAddr = *metricsAddr
	}
	log := newLogger(cfg.Log).With().Str("cmd", "worker").Logger()
	log.Info().Fields(cfg.LogFields()).Msg("config")

	rdb, err := newRedis(ctx, cfg.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()

	prov, err := newProviderClient(cfg)
	if err != nil {
		return err
	}
	store := newStore(rdb, cfg)
	client := asynq.NewClientFromRedisClient(rdb)
	policy := pollPolicy(cfg)
	sched := scheduler.New(client, policy, scheduler.WithTaskOptions(asynq.Timeout(cfg.Tasks.Timeout)))

	reg := prometheus.NewRegistry()
	metrics, err := worker.NewMetrics(reg)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	queues, err := worker.NewQueueCollector(asynq.NewInspectorFromRedisClient(rdb))
	if err != nil {
		return err
	}
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		queues,
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}

	alerter, err := newAlerter(cfg, log, metrics, rdb)
	if err != nil {
		return err
	}

	w, err := worker.New(workerConfig(cfg, policy), worker.Deps{
		Redis:     rdb,
		Provider:  prov,
		Store:     store,
		Scheduler: sched,
		Alerter:   alerter,
		Logger:    log,
		Metrics:   metrics,
	})
	if err != nil {
		return err
	}

	var srv *http.Server
	srvErr := make(chan error, 1)
	if cfg.Worker.MetricsAddr != "" {
		ln, err := net.Listen("tcp", cfg.Worker.MetricsAddr)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		srv = &http.Server{Handler: opsHandler(reg, w), ReadHeaderTimeout: 5 * time.Second}
		log.Info().Str("addr", ln.Addr().String()).Msg("serving /metrics, /healthz, /readyz")
		go func() { srvErr <- srv.Serve(ln) }()
	}

	// The outbox stream: producers in any language XADD messages; this consumer turns
	// them into send tasks through the same Enqueuer (validation, idempotency).
	var outboxDone chan error
	if cfg.Outbox.Enabled {
		outboxDone = make(chan error, 1)
		cons := newOutboxConsumer(cfg, rdb, tasks.NewEnqueuer(client, store, enqueuerConfig(cfg)), log)
		go func() { outboxDone <- cons.Run(ctx) }()
		log.Info().Str("stream", cfg.Outbox.Stream).Str("group", cfg.Outbox.Group).Msg("consuming the outbox stream")
	}

	// Status webhooks: a relay on the events stream and a delivery server of their own.
	var hooksDone chan error
	if cfg.Webhook.Enabled() {
		hooks, err := newWebhooks(cfg, rdb, store, log, reg)
		if err != nil {
			return err
		}
		hooksDone = make(chan error, 1)
		go func() { hooksDone <- hooks.Run(ctx) }()
	}

	runErr := w.Run(ctx)
	if hooksDone != nil {
		if err := <-hooksDone; err != nil {
			log.Error().Err(err).Msg("webhooks")
		}
	}
	if outboxDone != nil {
		if err := <-outboxDone; err != nil && !errors.Is(err, context.Canceled) {
			log.Error().Err(err).Msg("outbox consumer")
		}
	}
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
		if err := <-srvErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("metrics listener")
		}
	}
	return runErr
}

// newWebhooks builds the status webhook service of a worker from VIBERQ_WEBHOOK_*.
func newWebhooks(cfg config.Config, rdb redis.UniversalClient, store *tasks.Store, log zerolog.Logger, reg prometheus.Registerer) (*webhook.Service, error) {
	m, err := webhook.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	secrets := make([]string, len(cfg.Webhook.Secrets))
	for i, s := range cfg.Webhook.Secrets {
		secrets[i] = s.Reveal()
	}
	return webhook.New(webhook.Config{
		DefaultURL:      cfg.Webhook.URL.Reveal(),
		Secrets:         secrets,
		Events:          cfg.Webhook.Events,
		MaxRetry:        cfg.Webhook.MaxRetry,
		Timeout:         cfg.Webhook.Timeout,
		Concurrency:     cfg.Webhook.Concurrency,
		AllowPrivate:    cfg.Webhook.AllowPrivate,
		ShutdownTimeout: cfg.Worker.ShutdownTimeout,
	}, webhook.Deps{Redis: rdb, Store: store, Logger: log, Metrics: m})
}

// newOutboxConsumer builds the outbox consumer of a worker, logging each entry's fate
// (entry IDs and reasons only: never a phone number or a text).
func newOutboxConsumer(cfg config.Config, rdb redis.UniversalClient, enq *tasks.Enqueuer, log zerolog.Logger) *outbox.Consumer {
	lg := log.With().Str("component", "outbox").Logger()
	return outbox.New(rdb, enq, outbox.Options{
		Stream:      cfg.Outbox.Stream,
		Group:       cfg.Outbox.Group,
		ClaimIdle:   cfg.Outbox.ClaimIdle,
		MaxAttempts: int64(cfg.Outbox.MaxAttempts),
		Hooks: outbox.Hooks{
			Enqueued: func(entryID string, res tasks.EnqueueResult) {
				lg.Debug().Str("entry_id", entryID).Str("msg_id", res.ID).Bool("duplicate", res.Duplicate).Msg("outbox entry enqueued")
			},
			Rejected: func(entryID string, reasons []provider.FieldError) {
				rs := make([]string, len(reasons))
				for i, r := range reasons {
					rs[i] = r.Error()
				}
				lg.Warn().Str("entry_id", entryID).Strs("reasons", rs).Msg("outbox entry rejected")
			},
			Failed: func(entryID string, err error) {
				lg.Warn().Str("entry_id", entryID).Err(err).Msg("outbox entry left pending")
			},
		},
	})
}

// newProviderClient builds the provider client with a transport sized for the
// worker's concurrency (the default keeps 2 idle connections per host: every other
// request would open a new one) and redirects not followed (a redirected POST loses
// its body).
func newProviderClient(cfg config.Config) (*provider.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = max(100, cfg.Worker.Concurrency)
	tr.MaxIdleConnsPerHost = max(10, cfg.Worker.Concurrency)
	hc := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	opts := []provider.Option{provider.WithHTTPClient(hc), provider.WithTimeout(cfg.Provider.Timeout)}
	if cfg.Provider.KeyEncoded {
		opts = append(opts, provider.WithEncodedKey())
	}
	prov, err := provider.New(cfg.Provider.BaseURL, cfg.Provider.APIKey.Reveal(), opts...)
	if err != nil {
		return nil, fmt.Errorf("VIBERQ_DT_BASE_URL / VIBERQ_DT_API_KEY: %w", err)
	}
	return prov, nil
}

// pollPolicy maps the VIBERQ_POLL_* settings onto the scheduler's policy.
func pollPolicy(cfg config.Config) scheduler.Policy {
	p := scheduler.Policy{
		First:             cfg.Poll.First,
		MaxInterval:       cfg.Poll.MaxInterval,
		SMSGrace:          cfg.Poll.SMSGrace,
		FirstWithCallback: cfg.Poll.FirstWithCallback,
		Jitter:            cfg.Poll.Jitter,
		Callbacks:         cfg.Callback.URL != "",
	}
	if p.Jitter == 0 {
		p.Jitter = -1 // VIBERQ_POLL_JITTER=0 means none; the policy's zero means its default
	}
	return p
}

// workerConfig maps the settings onto worker.Config.
func workerConfig(cfg config.Config, policy scheduler.Policy) worker.Config {
	return worker.Config{
		Concurrency:        cfg.Worker.Concurrency,
		PollConcurrency:    cfg.Worker.PollConcurrency,
		MaxRetryAfter:      cfg.Limits.MaxRetryAfter,
		Queues:             cfg.Worker.QueueWeights,
		ShutdownTimeout:    cfg.Worker.ShutdownTimeout,
		TaskTimeout:        cfg.Tasks.Timeout,
		SendRate:           cfg.Limits.SendRate,
		SendBurst:          cfg.Limits.SendBurst,
		StatusRate:         cfg.Limits.StatusRate,
		StatusBurst:        cfg.Limits.StatusBurst,
		PauseOnBalance:     cfg.Policy.PauseOnBalance,
		PauseOnAuth:        cfg.Policy.PauseOnAuth,
		ResendUnknown:      cfg.Policy.ResendUnknown,
		ServerErrorUnknown: cfg.Policy.ServerErrorUnknown,
		AlertWindow:        cfg.Alert.Window,
		CallbackURL:        cfg.Callback.RevealURL(),
		Poll:               policy,
		Prefix:             tasks.DefaultPrefix,
		MaxRetry:           workerMaxRetry(cfg.Tasks.MaxRetry),
		Reconcile:          worker.ReconcileConfig{Period: cfg.Worker.ReconcilePeriod, Batch: cfg.Worker.ReconcileBatch},
	}
}

// workerMaxRetry maps VIBERQ_MAX_RETRY onto worker.Config.MaxRetry, where 0 means the
// default and a negative value no retry.
func workerMaxRetry(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// newAlerter logs every alert and POSTs it to VIBERQ_ALERT_WEBHOOK_URL when set, at
// most once per VIBERQ_ALERT_WINDOW for all workers together (Redis dedup).
func newAlerter(cfg config.Config, log zerolog.Logger, m *worker.Metrics, rdb redis.UniversalClient) (worker.Alerter, error) {
	var sink worker.Alerter = worker.LogAlerter{Logger: log}
	if cfg.Alert.WebhookURL.IsSet() {
		hook, err := worker.NewWebhookAlerter(cfg.Alert.WebhookURL.Reveal(), 0, nil)
		if err != nil {
			return nil, fmt.Errorf("VIBERQ_ALERT_WEBHOOK_URL: %w", err)
		}
		logged := sink
		sink = worker.AlerterFunc(func(ctx context.Context, a worker.Alert) error {
			_ = logged.Alert(ctx, a)
			return hook.Alert(ctx, a)
		})
	}
	return worker.NewDedupAlerter(rdb, tasks.DefaultPrefix, cfg.Alert.Window, m.CountAlerts(sink)), nil
}

// opsHandler serves /metrics, /healthz (the process is up) and /readyz (Redis
// answers).
func opsHandler(reg *prometheus.Registry, w *worker.Worker) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(rw, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := w.Ready(ctx); err != nil {
			http.Error(rw, "redis unavailable", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(rw, "ok\n")
	})
	return mux
}
