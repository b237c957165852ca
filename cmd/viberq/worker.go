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

	"github.com/viberq/viberq/cmd/viberq/internal/app"
	"github.com/viberq/viberq/config"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/worker"
)

// runWorker is `viberq worker`: the asynq server that sends and polls, with its
// metrics and health listener, until SIGTERM (ctx done); then in-flight tasks get
// VIBERQ_SHUTDOWN_TIMEOUT to finish and the rest go back to their queues.
func runWorker(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("worker", stdout, "[flags]")
	// Each flag is read as its setting would be, by config's parser and bounds.
	concurrency := fs.String("concurrency", "", "tasks processed at once by this process (default VIBERQ_CONCURRENCY)")
	rate := fs.String("rate", "", "send-viber calls per second, all workers together (default VIBERQ_RATE_LIMIT)")
	statusRate := fs.String("status-rate", "", "receive-viber calls per second, all workers together (default VIBERQ_STATUS_RATE_LIMIT)")
	metricsAddr := fs.String("metrics-addr", "", `listen address of /metrics, /healthz and /readyz, "off" to disable (default VIBERQ_METRICS_ADDR)`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	cfg, err := loadConfigWith(map[string]settingFlag{
		config.EnvConcurrency:     {"--concurrency", *concurrency},
		config.EnvRateLimit:       {"--rate", *rate},
		config.EnvStatusRateLimit: {"--status-rate", *statusRate},
		config.EnvMetricsAddr:     {"--metrics-addr", *metricsAddr},
	}, config.RequiredWorker...)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log).With().Str("cmd", "worker").Logger()
	log.Info().Fields(cfg.LogFields()).Msg("config")

	rdb, err := newRedis(ctx, cfg.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()

	reg := prometheus.NewRegistry()
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
	w, err := app.NewWorker(cfg, rdb, log, reg)
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
		client := asynq.NewClientFromRedisClient(rdb)
		cons := app.NewOutboxConsumer(cfg, rdb, tasks.NewEnqueuer(client, app.NewStore(rdb, cfg), app.EnqueuerConfig(cfg)), log)
		go func() { outboxDone <- cons.Run(ctx) }()
		log.Info().Str("stream", cfg.Outbox.Stream).Str("group", cfg.Outbox.Group).Msg("consuming the outbox stream")
	}

	// Status webhooks: a relay on the events stream and a delivery server of their own.
	var hooksDone chan error
	if cfg.Webhook.Enabled() {
		hooks, err := app.NewWebhooks(cfg, rdb, app.NewStore(rdb, cfg), log, reg)
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
