package config

import (
	"time"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/scheduler"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/outbox"
	"github.com/viberq/viberq/worker"
	"github.com/viberq/viberq/worker/api"
	"github.com/viberq/viberq/worker/webhook"
)

// Prefix starts the name of every environment variable viberq reads.
const Prefix = "VIBERQ_"

// Environment variable names. Describe documents each one.
const (
	EnvRedisURL              = "VIBERQ_REDIS_URL"
	EnvRedisPassword         = "VIBERQ_REDIS_PASSWORD"
	EnvRedisSentinelAddrs    = "VIBERQ_REDIS_SENTINEL_ADDRS"
	EnvRedisSentinelMaster   = "VIBERQ_REDIS_SENTINEL_MASTER"
	EnvRedisSentinelPassword = "VIBERQ_REDIS_SENTINEL_PASSWORD"
	EnvRedisTLS              = "VIBERQ_REDIS_TLS"
	EnvRedisTLSCAFile        = "VIBERQ_REDIS_TLS_CA_FILE"
	EnvRedisTLSInsecure      = "VIBERQ_REDIS_TLS_INSECURE"

	EnvDTBaseURL    = "VIBERQ_DT_BASE_URL"
	EnvDTAPIKey     = "VIBERQ_DT_API_KEY"
	EnvDTKeyEncoded = "VIBERQ_DT_KEY_ENCODED"
	EnvDTTimeout    = "VIBERQ_DT_TIMEOUT"

	EnvRateLimit       = "VIBERQ_RATE_LIMIT"
	EnvRateBurst       = "VIBERQ_RATE_BURST"
	EnvStatusRateLimit = "VIBERQ_STATUS_RATE_LIMIT"
	EnvStatusRateBurst = "VIBERQ_STATUS_RATE_BURST"
	EnvMaxRetryAfter   = "VIBERQ_MAX_RETRY_AFTER"

	EnvConcurrency     = "VIBERQ_CONCURRENCY"
	EnvPollConcurrency = "VIBERQ_POLL_CONCURRENCY"
	EnvFetchers        = "VIBERQ_FETCHERS"
	EnvQueueWeights    = "VIBERQ_QUEUE_WEIGHTS"
	EnvShutdownTimeout = "VIBERQ_SHUTDOWN_TIMEOUT"
	EnvMetricsAddr     = "VIBERQ_METRICS_ADDR"
	// EnvReconcilePeriod and EnvReconcileBatch: see Worker.ReconcilePeriod.
	EnvReconcilePeriod = "VIBERQ_RECONCILE_PERIOD"
	EnvReconcileBatch  = "VIBERQ_RECONCILE_BATCH"

	EnvMaxRetry        = "VIBERQ_MAX_RETRY"
	EnvTaskTimeout     = "VIBERQ_TASK_TIMEOUT"
	EnvDefaultTTL      = "VIBERQ_DEFAULT_TTL"
	EnvSMSTTL          = "VIBERQ_SMS_TTL"
	EnvRecordRetention = "VIBERQ_RECORD_RETENTION"
	EnvTaskRetention   = "VIBERQ_TASK_RETENTION"
	EnvEventsMaxLen    = "VIBERQ_EVENTS_MAXLEN"
	EnvTwoWay          = "VIBERQ_TWO_WAY"

	EnvPollFirst             = "VIBERQ_POLL_FIRST"
	EnvPollMaxInterval       = "VIBERQ_POLL_MAX_INTERVAL"
	EnvPollSMSGrace          = "VIBERQ_POLL_SMS_GRACE"
	EnvPollFirstWithCallback = "VIBERQ_POLL_FIRST_WITH_CALLBACK"
	EnvPollJitter            = "VIBERQ_POLL_JITTER"

	EnvPauseOnBalance = "VIBERQ_PAUSE_ON_BALANCE"
	EnvPauseOnAuth    = "VIBERQ_PAUSE_ON_AUTH"
	EnvResendUnknown  = "VIBERQ_RESEND_UNKNOWN"
	// EnvServerErrorUnknown: see Policy.ServerErrorUnknown.
	EnvServerErrorUnknown = "VIBERQ_SERVER_ERROR_UNKNOWN"

	EnvLogLevel  = "VIBERQ_LOG_LEVEL"
	EnvLogFormat = "VIBERQ_LOG_FORMAT"

	EnvHTTPAddr           = "VIBERQ_HTTP_ADDR"
	EnvAPITokens          = "VIBERQ_API_TOKENS"
	EnvMonitoringUser     = "VIBERQ_MONITORING_USER"
	EnvMonitoringPassword = "VIBERQ_MONITORING_PASSWORD"
	EnvMaxBodyBytes       = "VIBERQ_MAX_BODY_BYTES"
	EnvHTTPReadTimeout    = "VIBERQ_HTTP_READ_TIMEOUT"
	EnvHTTPWriteTimeout   = "VIBERQ_HTTP_WRITE_TIMEOUT"

	EnvCallbackURL      = "VIBERQ_CALLBACK_URL"
	EnvCallbackToken    = "VIBERQ_CALLBACK_TOKEN"
	EnvCallbackUser     = "VIBERQ_CALLBACK_USER"
	EnvCallbackPassword = "VIBERQ_CALLBACK_PASSWORD"

	EnvAlertWebhookURL = "VIBERQ_ALERT_WEBHOOK_URL"
	EnvAlertWindow     = "VIBERQ_ALERT_WINDOW"

	EnvOutbox            = "VIBERQ_OUTBOX"
	EnvOutboxStream      = "VIBERQ_OUTBOX_STREAM"
	EnvOutboxGroup       = "VIBERQ_OUTBOX_GROUP"
	EnvOutboxClaimIdle   = "VIBERQ_OUTBOX_CLAIM_IDLE"
	EnvOutboxMaxAttempts = "VIBERQ_OUTBOX_MAX_ATTEMPTS"

	EnvWebhookURL          = "VIBERQ_WEBHOOK_URL"
	EnvWebhookSecret       = "VIBERQ_WEBHOOK_SECRET"
	EnvWebhookEvents       = "VIBERQ_WEBHOOK_EVENTS"
	EnvWebhookMaxRetry     = "VIBERQ_WEBHOOK_MAX_RETRY"
	EnvWebhookTimeout      = "VIBERQ_WEBHOOK_TIMEOUT"
	EnvWebhookConcurrency  = "VIBERQ_WEBHOOK_CONCURRENCY"
	EnvWebhookAllowPrivate = "VIBERQ_WEBHOOK_ALLOW_PRIVATE"
)

// Defaults. Each default is declared once, by the package that uses the value, and
// referred to here; the settings only config itself uses (Redis, logging, the
// listeners) are declared here. A test in cmd/viberq/internal/app checks that every
// setting, loaded from an empty environment and mapped onto the packages' options,
// gives what those packages do by default. A setting without a constant here (the
// secrets, the optional URLs, the Sentinel addresses, the Redis CA file, the callback
// user) defaults to empty: unset.
const (
	DefaultRedisURL            = "redis://127.0.0.1:6379/0"
	DefaultRedisPort           = "6379" // when VIBERQ_REDIS_URL has no port
	DefaultRedisSentinelMaster = "mymaster"
	DefaultRedisTLS            = false
	DefaultRedisTLSInsecure    = false

	DefaultDTBaseURL    = provider.DefaultBaseURL
	DefaultDTKeyEncoded = false
	DefaultDTTimeout    = provider.DefaultTimeout

	DefaultRateLimit       = float64(worker.DefaultSendRate)
	DefaultRateBurst       = worker.DefaultSendBurst
	DefaultStatusRateLimit = float64(worker.DefaultStatusRate)
	DefaultStatusRateBurst = worker.DefaultStatusBurst
	DefaultMaxRetryAfter   = worker.DefaultMaxRetryAfter

	DefaultConcurrency     = worker.DefaultConcurrency
	DefaultPollConcurrency = worker.DefaultPollConcurrency
	DefaultFetchers        = worker.DefaultFetchers
	// DefaultQueueWeights is worker.DefaultQueues written as the setting reads it.
	DefaultQueueWeights    = "critical=6,default=3,status=1"
	DefaultShutdownTimeout = worker.DefaultShutdownTimeout
	DefaultMetricsAddr     = ":9090"
	DefaultReconcilePeriod = worker.DefaultReconcilePeriod
	DefaultReconcileBatch  = worker.DefaultReconcileBatch
	// MetricsAddrOff is the VIBERQ_METRICS_ADDR value that disables the listener
	// (an empty value means the default, as for every setting).
	MetricsAddrOff = "off"

	DefaultMaxRetry = tasks.DefaultMaxRetry
	// MaxRetryCeiling is the largest VIBERQ_MAX_RETRY. The retry budget is the
	// worker's setting: producers enqueue every task with this ceiling as its asynq
	// MaxRetry, and the worker archives it when its own VIBERQ_MAX_RETRY is used up.
	MaxRetryCeiling        = 10000
	DefaultTaskTimeout     = worker.DefaultTaskTimeout
	DefaultTTL             = tasks.DefaultTTL
	DefaultSMSTTL          = tasks.DefaultSMSTTL
	DefaultRecordRetention = tasks.DefaultRetention
	DefaultTaskRetention   = tasks.DefaultTaskRetention
	DefaultEventsMaxLen    = tasks.DefaultEventsMaxLen
	DefaultTwoWay          = false

	// The poll schedule: scheduler.DefaultFirst says why the first poll waits 5 s.
	DefaultPollFirst             = scheduler.DefaultFirst
	DefaultPollMaxInterval       = scheduler.DefaultMaxInterval
	DefaultPollSMSGrace          = scheduler.DefaultSMSGrace
	DefaultPollFirstWithCallback = scheduler.DefaultFirstWithCallback
	DefaultPollJitter            = scheduler.DefaultJitter

	DefaultPauseOnBalance     = worker.DefaultPauseOnBalance
	DefaultPauseOnAuth        = worker.DefaultPauseOnAuth
	DefaultResendUnknown      = worker.DefaultResendUnknown
	DefaultServerErrorUnknown = worker.DefaultServerErrorUnknown

	DefaultLogLevel  = "info"
	DefaultLogFormat = "json"

	DefaultHTTPAddr         = ":8080"
	DefaultMonitoringUser   = "admin"
	DefaultMaxBodyBytes     = api.DefaultMaxBodyBytes
	DefaultHTTPReadTimeout  = api.DefaultReadTimeout
	DefaultHTTPWriteTimeout = api.DefaultWriteTimeout

	DefaultAlertWindow = worker.DefaultAlertWindow

	DefaultOutbox            = true
	DefaultOutboxStream      = outbox.DefaultStream
	DefaultOutboxGroup       = outbox.DefaultGroup
	DefaultOutboxClaimIdle   = outbox.DefaultClaimIdle
	DefaultOutboxMaxAttempts = outbox.DefaultMaxAttempts

	DefaultWebhookEvents       = string(webhook.DefaultEvents)
	DefaultWebhookMaxRetry     = webhook.DefaultMaxRetry
	DefaultWebhookTimeout      = webhook.DefaultTimeout
	DefaultWebhookConcurrency  = webhook.DefaultConcurrency
	DefaultWebhookAllowPrivate = false
)

// The asynq queue names VIBERQ_QUEUE_WEIGHTS accepts (package tasks owns them).
const (
	QueueCritical = tasks.QueueCritical
	QueueDefault  = tasks.QueueDefault
	QueueStatus   = tasks.QueueStatus
)

// queueNames is the order queues are listed in.
var queueNames = []string{QueueCritical, QueueDefault, QueueStatus}

// Limits of values that are checked in more than one place.
const (
	minTTL          = provider.MinValidityPeriod * time.Second
	maxTTL          = provider.MaxValidityPeriod * time.Second
	minSecretLength = 16 // API tokens, the callback token, the /monitoring password
	// minRate and MaxRate bound VIBERQ_RATE_LIMIT and VIBERQ_STATUS_RATE_LIMIT: one
	// call per 100 s at the slowest; at the fastest 10000/s, far above any provider
	// account's limit and still a whole number of microseconds between calls (the
	// limiter's resolution, package worker).
	minRate = 0.01
	MaxRate = 10000.0
)
