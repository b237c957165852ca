package config

import "time"

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

// Defaults. A setting without a constant here (the secrets, the optional URLs, the
// Sentinel addresses, the Redis CA file, the callback user) defaults to empty: unset.
const (
	DefaultRedisURL            = "redis://127.0.0.1:6379/0"
	DefaultRedisPort           = "6379" // when VIBERQ_REDIS_URL has no port
	DefaultRedisSentinelMaster = "mymaster"
	DefaultRedisTLS            = false
	DefaultRedisTLSInsecure    = false

	// DefaultDTBaseURL is the real API; it equals provider.DefaultBaseURL.
	DefaultDTBaseURL    = "https://web.it-decision.com/v1/api"
	DefaultDTKeyEncoded = false
	// DefaultDTTimeout mirrors provider.DefaultTimeout, which owns the value and says
	// why it is 30 s (config imports only the standard library; a test checks they
	// agree).
	DefaultDTTimeout = 30 * time.Second

	DefaultRateLimit       = 50.0
	DefaultRateBurst       = 1
	DefaultStatusRateLimit = 50.0
	DefaultStatusRateBurst = 1
	// DefaultMaxRetryAfter equals worker.DefaultMaxRetryAfter (the worker owns the
	// rule; checked by a test of cmd/viberq).
	DefaultMaxRetryAfter = time.Minute

	DefaultConcurrency     = 50
	DefaultPollConcurrency = 20
	DefaultQueueWeights    = "critical=6,default=3,status=1"
	DefaultShutdownTimeout = 20 * time.Second
	DefaultMetricsAddr     = ":9090"
	// DefaultReconcilePeriod and DefaultReconcileBatch are worker.DefaultReconcilePeriod
	// and worker.DefaultReconcileBatch (config imports only the standard library).
	DefaultReconcilePeriod = 30 * time.Second
	DefaultReconcileBatch  = 500
	// MetricsAddrOff is the VIBERQ_METRICS_ADDR value that disables the listener
	// (an empty value means the default, as for every setting).
	MetricsAddrOff = "off"

	DefaultMaxRetry = 100
	// MaxRetryCeiling is the largest VIBERQ_MAX_RETRY. The retry budget is the
	// worker's setting: producers enqueue every task with this ceiling as its asynq
	// MaxRetry, and the worker archives it when its own VIBERQ_MAX_RETRY is used up.
	MaxRetryCeiling        = 10000
	DefaultTaskTimeout     = 60 * time.Second
	DefaultTTL             = time.Hour
	DefaultSMSTTL          = 40 * time.Second
	DefaultRecordRetention = 168 * time.Hour
	DefaultTaskRetention   = time.Hour
	DefaultEventsMaxLen    = 100000
	DefaultTwoWay          = false

	DefaultPollFirst             = 3 * time.Second
	DefaultPollMaxInterval       = 60 * time.Second
	DefaultPollSMSGrace          = 10 * time.Minute
	DefaultPollFirstWithCallback = 2 * time.Minute
	DefaultPollJitter            = 0.2

	DefaultPauseOnBalance = true
	DefaultPauseOnAuth    = true
	DefaultResendUnknown  = false
	// DefaultServerErrorUnknown keeps DESIGN §4: a 5xx on a send is retried.
	DefaultServerErrorUnknown = false

	DefaultLogLevel  = "info"
	DefaultLogFormat = "json"

	DefaultHTTPAddr         = ":8080"
	DefaultMonitoringUser   = "admin"
	DefaultMaxBodyBytes     = 1 << 20
	DefaultHTTPReadTimeout  = 10 * time.Second
	DefaultHTTPWriteTimeout = 30 * time.Second

	DefaultAlertWindow = 10 * time.Minute

	DefaultOutbox          = true
	DefaultOutboxStream    = "viberq:outbox"
	DefaultOutboxGroup     = "viberq"
	DefaultOutboxClaimIdle = 60 * time.Second
	// DefaultOutboxMaxAttempts equals outbox.DefaultMaxAttempts (tested there).
	DefaultOutboxMaxAttempts = 10

	// The status webhook defaults; worker/webhook owns them (DefaultMaxRetry, ...)
	// and its tests check these equal its constants.
	DefaultWebhookEvents       = "final"
	DefaultWebhookMaxRetry     = 15
	DefaultWebhookTimeout      = 10 * time.Second
	DefaultWebhookConcurrency  = 10
	DefaultWebhookAllowPrivate = false
)

// The asynq queue names VIBERQ_QUEUE_WEIGHTS accepts; they equal tasks.QueueCritical,
// tasks.QueueDefault and tasks.QueueStatus (config imports only the standard library).
const (
	QueueCritical = "critical"
	QueueDefault  = "default"
	QueueStatus   = "status"
)

// queueNames is the order queues are listed in.
var queueNames = []string{QueueCritical, QueueDefault, QueueStatus}

// Limits of values that are checked in more than one place.
const (
	minTTL          = 40 * time.Second // provider.MinValidityPeriod
	maxTTL          = 6 * time.Hour    // provider.MaxValidityPeriod
	minSecretLength = 16               // API tokens, the callback token, the /monitoring password
	// minRate and maxRate bound VIBERQ_RATE_LIMIT and VIBERQ_STATUS_RATE_LIMIT: one
	// call per 100 s at the slowest; at the fastest 10000/s, far above any provider
	// account's limit and still a whole number of microseconds between calls (the
	// limiter's resolution, package worker).
	minRate = 0.01
	maxRate = 10000.0
)
