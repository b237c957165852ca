package app

import (
	"context"
	"fmt"
	"net/http"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/viberq/viberq/config"
	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/scheduler"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/outbox"
	"github.com/viberq/viberq/worker"
	"github.com/viberq/viberq/worker/api"
	"github.com/viberq/viberq/worker/webhook"
)

// NewWorker builds the worker that cfg describes, on rdb (the caller closes it): the
// provider client, the record store, the poll scheduler with the task timeout, the
// alerter and the worker's metrics, registered on reg (nil: a private registry).
func NewWorker(cfg config.Config, rdb redis.UniversalClient, log zerolog.Logger, reg prometheus.Registerer) (*worker.Worker, error) {
	metrics, err := worker.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	prov, err := NewProviderClient(cfg)
	if err != nil {
		return nil, err
	}
	alerter, err := NewAlerter(cfg, log, metrics, rdb)
	if err != nil {
		return nil, err
	}
	return worker.New(WorkerConfig(cfg), worker.Deps{
		Redis:     rdb,
		Provider:  prov,
		Store:     NewStore(rdb, cfg),
		Scheduler: PollScheduler(cfg, asynq.NewClientFromRedisClient(rdb)),
		Alerter:   alerter,
		Logger:    log,
		Metrics:   metrics,
	})
}

// NewStore returns the record store configured by cfg.
func NewStore(rdb redis.UniversalClient, cfg config.Config) *tasks.Store {
	return tasks.NewStore(rdb, tasks.StoreOptions{
		Retention:    cfg.Tasks.RecordRetention,
		EventsMaxLen: cfg.Tasks.EventsMaxLen,
	})
}

// EnqueuerConfig maps the settings onto the enqueuer.
func EnqueuerConfig(cfg config.Config) tasks.EnqueuerConfig {
	return tasks.EnqueuerConfig{
		DefaultTTL:    cfg.Tasks.DefaultTTL,
		SMSTTL:        cfg.Tasks.SMSTTL,
		TaskRetention: cfg.Tasks.TaskRetention,
		// The retry budget is the worker's VIBERQ_MAX_RETRY (worker.Config.MaxRetry):
		// tasks carry the ceiling.
		MaxRetry: config.MaxRetryCeiling,
		TwoWay:   cfg.Tasks.TwoWay,
	}
}

// NewOutboxConsumer builds the outbox consumer of a worker, logging each entry's fate
// (entry IDs and reasons only: never a phone number or a text).
func NewOutboxConsumer(cfg config.Config, rdb redis.UniversalClient, enq *tasks.Enqueuer, log zerolog.Logger) *outbox.Consumer {
	lg := log.With().Str("component", "outbox").Logger()
	return outbox.New(rdb, enq, outbox.Options{
		Stream:      cfg.Outbox.Stream,
		Group:       cfg.Outbox.Group,
		ClaimIdle:   cfg.Outbox.ClaimIdle,
		MaxAttempts: int64(cfg.Outbox.MaxAttempts),
		Hooks: outbox.Hooks{
			Enqueued: func(entryID string, res tasks.EnqueueResult) {
				lg.Debug().Str("entry_id", entryID).Str("msg_id", provider.MaskID(res.ID)).Bool("duplicate", res.Duplicate).Msg("outbox entry enqueued")
			},
			Rejected: func(entryID string, reasons []provider.FieldError) {
				rs := make([]string, len(reasons))
				for i, r := range reasons {
					rs[i] = provider.MaskPhones(r.Error()) // a rule may quote the entry's id
				}
				lg.Warn().Str("entry_id", entryID).Strs("reasons", rs).Msg("outbox entry rejected")
			},
			Failed: func(entryID string, err error) {
				lg.Warn().Str("entry_id", entryID).Err(err).Msg("outbox entry left pending")
			},
		},
	})
}

// NewProviderClient builds the provider client with a transport sized for the
// worker's concurrency (the default keeps 2 idle connections per host: every other
// request would open a new one) and redirects not followed (a redirected POST loses
// its body).
func NewProviderClient(cfg config.Config) (*provider.Client, error) {
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

// PollScheduler is the poll scheduler of a worker: PollPolicy, and poll tasks with the
// task timeout and, as every task producers enqueue, MaxRetryCeiling as their asynq
// MaxRetry, so that the worker's VIBERQ_MAX_RETRY is their retry budget (asynq's
// default of 25 would otherwise cut it short).
func PollScheduler(cfg config.Config, client *asynq.Client) *scheduler.Scheduler {
	return scheduler.New(client, PollPolicy(cfg),
		scheduler.WithTaskOptions(asynq.Timeout(cfg.Tasks.Timeout), asynq.MaxRetry(config.MaxRetryCeiling)))
}

// PollPolicy maps the VIBERQ_POLL_* settings onto the scheduler's policy.
func PollPolicy(cfg config.Config) scheduler.Policy {
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

// WorkerConfig maps the settings onto worker.Config.
func WorkerConfig(cfg config.Config) worker.Config {
	return worker.Config{
		Concurrency:        cfg.Worker.Concurrency,
		PollConcurrency:    cfg.Worker.PollConcurrency,
		Fetchers:           cfg.Worker.Fetchers,
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
		Poll:               PollPolicy(cfg),
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

// NewAlerter logs every alert and POSTs it to VIBERQ_ALERT_WEBHOOK_URL when set, at
// most once per VIBERQ_ALERT_WINDOW for all workers together (Redis dedup).
func NewAlerter(cfg config.Config, log zerolog.Logger, m *worker.Metrics, rdb redis.UniversalClient) (worker.Alerter, error) {
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

// NewWebhooks builds the status webhook service of a worker from VIBERQ_WEBHOOK_*.
func NewWebhooks(cfg config.Config, rdb redis.UniversalClient, store *tasks.Store, log zerolog.Logger, reg prometheus.Registerer) (*webhook.Service, error) {
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

// APIOptions maps the settings onto the HTTP server's options (the credentials, the
// body limit and the timeouts); the caller adds Redis, the enqueuer and the rest.
func APIOptions(cfg config.Config) api.Options {
	tokens := make([]string, len(cfg.API.Tokens))
	for i, t := range cfg.API.Tokens {
		tokens[i] = t.Reveal()
	}
	return api.Options{
		Tokens:             tokens,
		MonitoringUser:     cfg.API.MonitoringUser,
		MonitoringPassword: cfg.API.MonitoringPassword.Reveal(),
		MaxBodyBytes:       cfg.API.MaxBodyBytes,
		ReadTimeout:        cfg.API.ReadTimeout,
		WriteTimeout:       cfg.API.WriteTimeout,
		CallbackToken:      cfg.Callback.Token.Reveal(),
		CallbackUser:       cfg.Callback.User,
		CallbackPassword:   cfg.Callback.Password.Reveal(),
		// Every long-running command drains within VIBERQ_SHUTDOWN_TIMEOUT (README).
		ShutdownTimeout: cfg.Worker.ShutdownTimeout,
	}
}
