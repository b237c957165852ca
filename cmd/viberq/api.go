package main

import (
	"context"
	"fmt"
	"io"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/viberq/viberq/provider"
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
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	if err := cfg.RequireAPITokens(); err != nil {
		return err
	}
	if err := cfg.RequireMonitoringPassword(); err != nil {
		return err
	}
	if *addr == "" {
		*addr = cfg.API.Addr
	}
	log := newLogger(cfg.Log).With().Str("cmd", "api").Logger()

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

	srv, err := api.New(api.Options{
		API:        cfg.API,
		Callback:   cfg.Callback,
		Redis:      p.rdb,
		Enqueuer:   p.enqueuer,
		Records:    p.store,
		Status:     storeStatusApplier{store: p.store},
		Gatherer:   reg,
		Registerer: reg,
		Logger:     log,
	})
	if err != nil {
		return err
	}
	if cfg.Callback.URL == "" {
		log.Info().Msg("VIBERQ_CALLBACK_URL unset: the provider sends no status callbacks; polling alone decides")
	}
	return srv.ListenAndServe(ctx, *addr)
}

// storeStatusApplier applies a status callback to a record the way the poll handler
// applies a receive-viber answer: both legs combined (provider.Combine), a final
// outcome moves accepted → delivered (channel viber or sms) or undelivered and
// appends the event; a pending one records the statuses only. The next poll then
// finds the record final and ends without calling the provider.
//
// It stands in until package worker exports the poll handler's own logic; it does not
// count viberq_final_states_total (those counters live in the worker processes).
type storeStatusApplier struct{ store *tasks.Store }

func (a storeStatusApplier) ApplyStatus(ctx context.Context, id string, st provider.StatusResult, source string) (tasks.Record, error) {
	rec, err := a.store.Get(ctx, id)
	if err != nil {
		return tasks.Record{}, err
	}
	upd := tasks.Update{ViberStatus: &st.Status, SMSMessageID: st.SMSMessageID, SMSStatus: st.SMSStatus}
	to := tasks.StateAccepted
	switch provider.Combine(st.Status, st.SMSStatus, rec.HasSMS) {
	case provider.OutcomeDeliveredViber:
		to, upd.Channel = tasks.StateDelivered, tasks.ChannelViber
	case provider.OutcomeDeliveredSMS:
		to, upd.Channel = tasks.StateDelivered, tasks.ChannelSMS
	case provider.OutcomeUndelivered:
		to = tasks.StateUndelivered
		msg := "undelivered: viber " + st.Status.String()
		if st.SMSStatus != nil {
			msg += ", sms " + st.SMSStatus.String()
		}
		msg += " (" + source + ")"
		upd.Error = &msg
	}
	got, _, err := a.store.Transition(ctx, id, []tasks.State{tasks.StateAccepted}, to, upd)
	if err != nil {
		return tasks.Record{}, fmt.Errorf("apply %s status to %s: %w", source, id, err)
	}
	return got, nil
}
