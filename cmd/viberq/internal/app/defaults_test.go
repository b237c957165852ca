package app_test

import (
	"reflect"
	"testing"

	"github.com/rs/zerolog"

	"github.com/viberq/viberq/cmd/viberq/internal/app"
	"github.com/viberq/viberq/config"
	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/scheduler"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/outbox"
	"github.com/viberq/viberq/worker"
	"github.com/viberq/viberq/worker/api"
	"github.com/viberq/viberq/worker/webhook"
)

// configOwned are the settings no package below cmd has a default for: config declares
// them (they configure the process, not a package's behaviour).
var configOwned = map[string]string{
	config.EnvRedisURL:              "the Redis client is built in cmd",
	config.EnvRedisPassword:         "the Redis client is built in cmd",
	config.EnvRedisSentinelAddrs:    "the Redis client is built in cmd",
	config.EnvRedisSentinelMaster:   "the Redis client is built in cmd",
	config.EnvRedisSentinelPassword: "the Redis client is built in cmd",
	config.EnvRedisTLS:              "the Redis client is built in cmd",
	config.EnvRedisTLSCAFile:        "the Redis client is built in cmd",
	config.EnvRedisTLSInsecure:      "the Redis client is built in cmd",
	config.EnvDTAPIKey:              "a credential: no default",
	config.EnvDTKeyEncoded:          "how cmd hands the key to provider.New",
	config.EnvMetricsAddr:           "the worker command's listener",
	config.EnvLogLevel:              "the process logger",
	config.EnvLogFormat:             "the process logger",
	config.EnvHTTPAddr:              "the api command's listener",
	config.EnvAPITokens:             "a credential: no default",
	config.EnvMonitoringUser:        "a credential",
	config.EnvMonitoringPassword:    "a credential: no default",
	config.EnvCallbackURL:           "no default: callbacks are off",
	config.EnvCallbackToken:         "a credential: no default",
	config.EnvCallbackUser:          "a credential: no default",
	config.EnvCallbackPassword:      "a credential: no default",
	config.EnvAlertWebhookURL:       "no default: alerts are only logged",
	config.EnvOutbox:                "whether the worker command runs the consumer",
	config.EnvWebhookURL:            "no default: webhooks are off unless a message names one",
	config.EnvWebhookSecret:         "a credential: no default",
}

// Every setting, loaded from an empty environment and mapped by package app onto the
// packages' own options, gives what the package that uses it does by default. A new
// setting fails here until it is listed: either checked against its owner or
// configOwned.
func TestEverySettingDefaultsToItsOwnersDefault(t *testing.T) {
	cfg, err := config.Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	wc := app.WorkerConfig(cfg)
	wdef := worker.DefaultConfig()
	pol, pdef := app.PollPolicy(cfg), scheduler.DefaultPolicy()
	ec := app.EnqueuerConfig(cfg)
	ao := app.APIOptions(cfg)
	// The consumer's options with every default filled, from the settings and from
	// the zero Options (New connects to nothing).
	oc := app.NewOutboxConsumer(cfg, nil, nil, zerolog.Nop()).Options()
	odef := outbox.New(nil, nil, outbox.Options{}).Options()
	withKey := cfg
	withKey.Provider.APIKey = "key" // the client needs one; the default has none
	prov, err := app.NewProviderClient(withKey)
	if err != nil {
		t.Fatal(err)
	}

	type pair struct{ got, want any }
	owned := map[string]pair{
		config.EnvDTBaseURL:             {prov.BaseURL(), provider.DefaultBaseURL},
		config.EnvDTTimeout:             {cfg.Provider.Timeout, provider.DefaultTimeout},
		config.EnvRateLimit:             {wc.SendRate, float64(worker.DefaultSendRate)},
		config.EnvRateBurst:             {wc.SendBurst, worker.DefaultSendBurst},
		config.EnvStatusRateLimit:       {wc.StatusRate, float64(worker.DefaultStatusRate)},
		config.EnvStatusRateBurst:       {wc.StatusBurst, worker.DefaultStatusBurst},
		config.EnvConcurrency:           {wc.Concurrency, worker.DefaultConcurrency},
		config.EnvPollConcurrency:       {wc.PollConcurrency, worker.DefaultPollConcurrency},
		config.EnvFetchers:              {wc.Fetchers, worker.DefaultFetchers},
		config.EnvMaxRetryAfter:         {wc.MaxRetryAfter, worker.DefaultMaxRetryAfter},
		config.EnvQueueWeights:          {wc.Queues, worker.DefaultQueues()},
		config.EnvShutdownTimeout:       {wc.ShutdownTimeout, worker.DefaultShutdownTimeout},
		config.EnvTaskTimeout:           {wc.TaskTimeout, worker.DefaultTaskTimeout},
		config.EnvPauseOnBalance:        {wc.PauseOnBalance, wdef.PauseOnBalance},
		config.EnvPauseOnAuth:           {wc.PauseOnAuth, wdef.PauseOnAuth},
		config.EnvResendUnknown:         {wc.ResendUnknown, wdef.ResendUnknown},
		config.EnvServerErrorUnknown:    {wc.ServerErrorUnknown, wdef.ServerErrorUnknown},
		config.EnvAlertWindow:           {wc.AlertWindow, worker.DefaultAlertWindow},
		config.EnvPollFirst:             {pol.First, pdef.First},
		config.EnvPollMaxInterval:       {pol.MaxInterval, pdef.MaxInterval},
		config.EnvPollSMSGrace:          {pol.SMSGrace, pdef.SMSGrace},
		config.EnvPollFirstWithCallback: {pol.FirstWithCallback, pdef.FirstWithCallback},
		config.EnvPollJitter:            {pol.Jitter, pdef.Jitter},
		config.EnvMaxRetry:              {wc.MaxRetry, tasks.DefaultMaxRetry},
		config.EnvReconcilePeriod:       {wc.Reconcile.Period, worker.DefaultReconcilePeriod},
		config.EnvReconcileBatch:        {wc.Reconcile.Batch, worker.DefaultReconcileBatch},
		config.EnvDefaultTTL:            {ec.DefaultTTL, tasks.DefaultTTL},
		config.EnvSMSTTL:                {ec.SMSTTL, tasks.DefaultSMSTTL},
		config.EnvTaskRetention:         {ec.TaskRetention, tasks.DefaultTaskRetention},
		config.EnvTwoWay:                {ec.TwoWay, tasks.EnqueuerConfig{}.TwoWay},
		config.EnvRecordRetention:       {cfg.Tasks.RecordRetention, tasks.DefaultRetention},
		config.EnvEventsMaxLen:          {cfg.Tasks.EventsMaxLen, int64(tasks.DefaultEventsMaxLen)},
		config.EnvMaxBodyBytes:          {ao.MaxBodyBytes, int64(api.DefaultMaxBodyBytes)},
		config.EnvHTTPReadTimeout:       {ao.ReadTimeout, api.DefaultReadTimeout},
		config.EnvHTTPWriteTimeout:      {ao.WriteTimeout, api.DefaultWriteTimeout},
		config.EnvOutboxStream:          {oc.Stream, odef.Stream},
		config.EnvOutboxGroup:           {oc.Group, odef.Group},
		config.EnvOutboxClaimIdle:       {oc.ClaimIdle, odef.ClaimIdle},
		config.EnvOutboxMaxAttempts:     {oc.MaxAttempts, odef.MaxAttempts},
		config.EnvWebhookEvents:         {cfg.Webhook.Events, string(webhook.DefaultEvents)},
		config.EnvWebhookMaxRetry:       {cfg.Webhook.MaxRetry, webhook.DefaultMaxRetry},
		config.EnvWebhookTimeout:        {cfg.Webhook.Timeout, webhook.DefaultTimeout},
		config.EnvWebhookConcurrency:    {cfg.Webhook.Concurrency, webhook.DefaultConcurrency},
		config.EnvWebhookAllowPrivate:   {cfg.Webhook.AllowPrivate, webhook.Config{}.AllowPrivate},
	}
	for _, s := range config.Describe() {
		p, ok := owned[s.Name]
		if !ok {
			if _, ok := configOwned[s.Name]; !ok {
				t.Errorf("%s: neither checked against the package that uses it nor listed as config's own", s.Name)
			}
			continue
		}
		if !reflect.DeepEqual(p.got, p.want) {
			t.Errorf("%s: the setting's default maps to %v (%T), the owning package's default is %v (%T)", s.Name, p.got, p.got, p.want, p.want)
		}
		delete(owned, s.Name)
	}
	for name := range owned {
		t.Errorf("%s is checked here but is not a setting", name)
	}
	// VIBERQ_SHUTDOWN_TIMEOUT serves the API too (its default is the worker's).
	if ao.ShutdownTimeout != wc.ShutdownTimeout {
		t.Errorf("the API drains within %s, VIBERQ_SHUTDOWN_TIMEOUT is %s", ao.ShutdownTimeout, wc.ShutdownTimeout)
	}
}
