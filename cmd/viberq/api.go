package main

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/viberq/viberq/cmd/viberq/internal/app"
	"github.com/viberq/viberq/config"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/worker"
	"github.com/viberq/viberq/worker/api"
)

// runAPI is `viberq api`: the HTTP API, the provider callbacks, /monitoring (asynqmon),
// /metrics and the probes, until SIGTERM, then a graceful shutdown.
func runAPI(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("api", stdout, "[--addr HOST:PORT]")
	addr := fs.String("addr", "", "listen address (default VIBERQ_HTTP_ADDR, :8080)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	cfg, err := loadConfig(config.RequiredAPI...)
	if err != nil {
		return err
	}
	if *addr != "" {
		// The flag wins, and the config line logs the address really listened on.
		cfg.API.Addr = *addr
	}
	log := newLogger(cfg.Log).With().Str("cmd", "api").Logger()
	log.Info().Fields(cfg.LogFields()).Msg("config")

	p, err := newProducer(ctx, cfg)
	if err != nil {
		return err
	}
	defer p.Close()

	reg := prometheus.NewRegistry()
	queues, err := worker.NewQueueCollector(asynq.NewInspectorFromRedisClient(p.rdb))
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

	opts := app.APIOptions(cfg)
	opts.Redis = p.rdb
	opts.Enqueuer = p.enqueuer
	opts.Records = p.store
	opts.Status = tasks.CallbackApplier{Store: p.store, Client: p.client}
	// Two-way messages are indexed by provider message ID, so a reply's tracking_id
	// finds the message it answers.
	opts.ProviderIndex = p.store.LookupProvider
	// Resuming a queue in the Asynq UI also lifts the global buckets' 429 pauses, as
	// `viberq resume` does.
	// Only a send queue's resume does: resuming the status or webhooks queue leaves the
	// provider's pause alone.
	opts.QueueResumed = func(ctx context.Context, q string) error {
		if !slices.Contains(worker.SendQueues, q) {
			return nil
		}
		_, err := worker.ClearLimiterPauses(ctx, p.rdb, tasks.DefaultPrefix)
		return err
	}
	opts.Gatherer = reg
	opts.Registerer = reg
	opts.Logger = log
	srv, err := api.New(opts)
	if err != nil {
		return err
	}
	if cfg.Callback.URL == "" {
		log.Info().Msg("VIBERQ_CALLBACK_URL unset: the provider sends no status callbacks; polling alone decides")
	}
	return srv.ListenAndServe(ctx, cfg.API.Addr)
}
