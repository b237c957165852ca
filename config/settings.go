package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Setting describes one environment variable, for documentation: README's settings
// table lists every one of Describe's, with its default (TestREADMEListsEverySetting;
// the descriptions there are written by hand).
type Setting struct {
	Name        string // e.g. VIBERQ_RATE_LIMIT
	Default     string // the value used when unset, "" for none
	Description string // one sentence, with the accepted values
	Secret      bool   // held as Secret: never printed
}

// Describe returns every setting Load reads, in a stable order (grouped as in Config).
func Describe() []Setting {
	out := make([]Setting, len(settings))
	for i, s := range settings {
		out[i] = s.Setting
	}
	return out
}

// Names returns the name of every environment variable Load reads, in Describe order.
func Names() []string {
	out := make([]string, len(settings))
	for i, s := range settings {
		out[i] = s.Name
	}
	return out
}

// spec is one setting: its documentation, how to parse the (defaulted) value into a
// Config, and how to show the effective value in LogFields and Summary.
type spec struct {
	Setting
	parse func(c *Config, v string) error
	show  func(c *Config) any
}

// settings is the single list every other view (Describe, Names, Load, LogFields)
// derives from. Order matters where a parser reads a field set by an earlier one:
// VIBERQ_REDIS_PASSWORD and VIBERQ_REDIS_TLS come after VIBERQ_REDIS_URL.
var settings = []spec{
	{
		Setting: Setting{Name: EnvRedisURL, Default: DefaultRedisURL,
			Description: "Redis URL, redis://[user[:password]@]host[:port][/db] or rediss:// for TLS; go-redis query options are kept"},
		parse: parseRedisURL,
		show:  func(c *Config) any { return c.Redis.URL },
	},
	secretVar(EnvRedisPassword, "Redis password; overrides the password in VIBERQ_REDIS_URL",
		func(c *Config) *Secret { return &c.Redis.Password }, func(c *Config, v string) error {
			if err := checkSecret(v); err != nil {
				return err
			}
			if v != "" {
				c.Redis.Password = Secret(v)
			}
			return nil
		}),
	{
		Setting: Setting{Name: EnvRedisSentinelAddrs,
			Description: "comma-separated host:port of Redis Sentinels; when set, the master is found through them (the URL's host is ignored, its DB and password still apply, query options are refused)"},
		parse: parseSentinelAddrs,
		show:  func(c *Config) any { return strings.Join(c.Redis.SentinelAddrs, ",") },
	},
	stringVar(EnvRedisSentinelMaster, DefaultRedisSentinelMaster, "Sentinel master name",
		func(c *Config) *string { return &c.Redis.SentinelMaster }),
	secretVar(EnvRedisSentinelPassword, "password of the Sentinels themselves",
		func(c *Config) *Secret { return &c.Redis.SentinelPassword }, nil),
	{
		Setting: Setting{Name: EnvRedisTLS, Default: strconv.FormatBool(DefaultRedisTLS),
			Description: "use TLS to Redis (true|false); always on with a rediss:// URL"},
		parse: func(c *Config, v string) error {
			b, err := parseBool(v)
			if err != nil {
				return err
			}
			c.Redis.TLS = b || strings.HasPrefix(c.Redis.URL, "rediss://")
			return nil
		},
		show: func(c *Config) any { return c.Redis.TLS },
	},
	stringVar(EnvRedisTLSCAFile, "", "PEM file of CA certificates for Redis TLS (default: system roots); needs TLS",
		func(c *Config) *string { return &c.Redis.TLSCAFile }),
	boolVar(EnvRedisTLSInsecure, DefaultRedisTLSInsecure, "skip Redis TLS certificate verification (tests only); needs TLS",
		func(c *Config) *bool { return &c.Redis.TLSInsecure }),

	{
		Setting: Setting{Name: EnvDTBaseURL, Default: DefaultDTBaseURL,
			Description: "DecisionTelecom API base URL, absolute http(s) without credentials (the simulator: http://host:port/v1/api)"},
		parse: parseBaseURL,
		show:  func(c *Config) any { return c.Provider.BaseURL },
	},
	secretVar(EnvDTAPIKey, "DecisionTelecom API access key; required by the commands that call the provider",
		func(c *Config) *Secret { return &c.Provider.APIKey }, nil),
	boolVar(EnvDTKeyEncoded, DefaultDTKeyEncoded, "the API key is already Base64-encoded and is sent as is (true|false)",
		func(c *Config) *bool { return &c.Provider.KeyEncoded }),
	durationVar(EnvDTTimeout, DefaultDTTimeout, 100*time.Millisecond, 5*time.Minute,
		"HTTP timeout of one provider call; shorter than VIBERQ_TASK_TIMEOUT",
		func(c *Config) *time.Duration { return &c.Provider.Timeout }),

	floatVar(EnvRateLimit, DefaultRateLimit, minRate, MaxRate, "send-viber calls per second, all worker pods together",
		func(c *Config) *float64 { return &c.Limits.SendRate }),
	intVar(EnvRateBurst, DefaultRateBurst, 1, 1000000, "token bucket size for sends",
		func(c *Config) *int { return &c.Limits.SendBurst }),
	floatVar(EnvStatusRateLimit, DefaultStatusRateLimit, minRate, MaxRate, "receive-viber (status) calls per second, all worker pods together",
		func(c *Config) *float64 { return &c.Limits.StatusRate }),
	intVar(EnvStatusRateBurst, DefaultStatusRateBurst, 1, 1000000, "token bucket size for status calls",
		func(c *Config) *int { return &c.Limits.StatusBurst }),
	durationVar(EnvMaxRetryAfter, DefaultMaxRetryAfter, time.Second, 24*time.Hour,
		"longest pause (all pods) and retry delay one provider 429 can cause; a longer Retry-After is cut to it, with an alert and an error log",
		func(c *Config) *time.Duration { return &c.Limits.MaxRetryAfter }),

	intVar(EnvConcurrency, DefaultConcurrency, 1, 10000, "send tasks processed at once per worker process",
		func(c *Config) *int { return &c.Worker.Concurrency }),
	intVar(EnvPollConcurrency, DefaultPollConcurrency, 1, 10000, "poll (status) tasks processed at once per worker process, in slots of their own: a send backlog never holds them",
		func(c *Config) *int { return &c.Worker.PollConcurrency }),
	intVar(EnvFetchers, DefaultFetchers, 1, 64, "asynq servers sharing the send slots of a worker process, each fetching tasks on its own (one fetch loop bounds a process's sends per second); at most VIBERQ_CONCURRENCY are used",
		func(c *Config) *int { return &c.Worker.Fetchers }),
	{
		Setting: Setting{Name: EnvQueueWeights, Default: DefaultQueueWeights,
			Description: "asynq queue priorities as queue=weight, comma-separated; exactly the queues critical, default and status, weights 1..1000; the status weight is unused (polls have their own slots, VIBERQ_POLL_CONCURRENCY)"},
		parse: parseQueueWeights,
		show:  func(c *Config) any { return formatWeights(c.Worker.QueueWeights) },
	},
	durationVar(EnvShutdownTimeout, DefaultShutdownTimeout, time.Second, 5*time.Minute,
		"time in-flight tasks (worker) and requests (api) get on SIGTERM; keep it below the pod's termination grace period",
		func(c *Config) *time.Duration { return &c.Worker.ShutdownTimeout }),
	addrVar(EnvMetricsAddr, DefaultMetricsAddr, true, `listen address of the worker's /metrics and health endpoints; "off" disables`,
		func(c *Config) *string { return &c.Worker.MetricsAddr }),
	durationVar(EnvReconcilePeriod, DefaultReconcilePeriod, time.Second, time.Hour,
		"how often the reconciler (one leader among the workers) sweeps the non-final records; a record whose task was deleted ends within two periods",
		func(c *Config) *time.Duration { return &c.Worker.ReconcilePeriod }),
	intVar(EnvReconcileBatch, DefaultReconcileBatch, 1, 100000, "most non-final records one reconciler sweep checks",
		func(c *Config) *int { return &c.Worker.ReconcileBatch }),

	intVar(EnvMaxRetry, DefaultMaxRetry, 0, MaxRetryCeiling, "retry budget of every task a worker runs, whoever enqueued it (rate-limited attempts do not use it up)",
		func(c *Config) *int { return &c.Tasks.MaxRetry }),
	durationVar(EnvTaskTimeout, DefaultTaskTimeout, time.Second, time.Hour, "timeout of one task run",
		func(c *Config) *time.Duration { return &c.Tasks.Timeout }),
	durationVar(EnvDefaultTTL, DefaultTTL, minTTL, maxTTL, "TTL of a message enqueued without one and without text_sms",
		func(c *Config) *time.Duration { return &c.Tasks.DefaultTTL }),
	durationVar(EnvSMSTTL, DefaultSMSTTL, minTTL, maxTTL, "TTL of a message enqueued without one but with text_sms; it goes out with validity_period 40 whatever this is (the SMS follows about 40 s after the send), so this only bounds how long viberq tries to send it",
		func(c *Config) *time.Duration { return &c.Tasks.SMSTTL }),
	durationVar(EnvRecordRetention, DefaultRecordRetention, time.Hour, 8760*time.Hour,
		"how long message records are kept; at least 6h (the longest TTL) plus VIBERQ_POLL_SMS_GRACE",
		func(c *Config) *time.Duration { return &c.Tasks.RecordRetention }),
	durationVar(EnvTaskRetention, DefaultTaskRetention, 0, 720*time.Hour, "how long completed tasks (and so their IDs) are kept by asynq; not longer than VIBERQ_RECORD_RETENTION",
		func(c *Config) *time.Duration { return &c.Tasks.TaskRetention }),
	int64Var(EnvEventsMaxLen, DefaultEventsMaxLen, 1, 1000000000, "approximate length cap of the viberq:events stream",
		func(c *Config) *int64 { return &c.Tasks.EventsMaxLen }),
	boolVar(EnvTwoWay, DefaultTwoWay, "accept the two-way message types 206 and 208 (need activation on the provider account)",
		func(c *Config) *bool { return &c.Tasks.TwoWay }),

	durationVar(EnvPollFirst, DefaultPollFirst, 100*time.Millisecond, time.Hour, "delay of the first status poll after the provider accepted a message",
		func(c *Config) *time.Duration { return &c.Poll.First }),
	durationVar(EnvPollMaxInterval, DefaultPollMaxInterval, time.Second, 24*time.Hour, "longest interval between status polls; not below VIBERQ_POLL_FIRST",
		func(c *Config) *time.Duration { return &c.Poll.MaxInterval }),
	durationVar(EnvPollSMSGrace, DefaultPollSMSGrace, 0, 120*time.Hour, "how long past the TTL polling goes on, for the SMS leg",
		func(c *Config) *time.Duration { return &c.Poll.SMSGrace }),
	durationVar(EnvPollFirstWithCallback, DefaultPollFirstWithCallback, 100*time.Millisecond, 24*time.Hour,
		"delay of the first status poll when VIBERQ_CALLBACK_URL is set",
		func(c *Config) *time.Duration { return &c.Poll.FirstWithCallback }),
	floatVar(EnvPollJitter, DefaultPollJitter, 0, 1, "relative random spread of poll delays",
		func(c *Config) *float64 { return &c.Poll.Jitter }),

	boolVar(EnvPauseOnBalance, DefaultPauseOnBalance, "pause the send queues when the provider reports an empty balance (402)",
		func(c *Config) *bool { return &c.Policy.PauseOnBalance }),
	boolVar(EnvPauseOnAuth, DefaultPauseOnAuth, "pause the send queues when the provider refuses the key (401/403)",
		func(c *Config) *bool { return &c.Policy.PauseOnAuth }),
	boolVar(EnvResendUnknown, DefaultResendUnknown, "resend a message whose send was ambiguous (risking a duplicate) instead of marking it unknown",
		func(c *Config) *bool { return &c.Policy.ResendUnknown }),
	boolVar(EnvServerErrorUnknown, DefaultServerErrorUnknown, "treat a 5xx answer to a send as ambiguous (unknown, not resent) instead of retrying it: no duplicate even when the provider accepted and then failed",
		func(c *Config) *bool { return &c.Policy.ServerErrorUnknown }),

	enumVar(EnvLogLevel, DefaultLogLevel, []string{"debug", "info", "warn", "error"}, "log level",
		func(c *Config) *string { return &c.Log.Level }),
	enumVar(EnvLogFormat, DefaultLogFormat, []string{"json", "console"}, "log format",
		func(c *Config) *string { return &c.Log.Format }),

	addrVar(EnvHTTPAddr, DefaultHTTPAddr, false, "listen address of `viberq api`",
		func(c *Config) *string { return &c.API.Addr }),
	{
		Setting: Setting{Name: EnvAPITokens, Secret: true,
			Description: "comma-separated bearer tokens accepted by the HTTP API, each at least 16 characters; required by `viberq api`"},
		parse: parseAPITokens,
		show: func(c *Config) any {
			s := make([]string, len(c.API.Tokens))
			for i, t := range c.API.Tokens {
				s[i] = t.String()
			}
			return strings.Join(s, ",")
		},
	},
	userVar(EnvMonitoringUser, DefaultMonitoringUser, "basic-auth user of /monitoring (the Asynq UI)",
		func(c *Config) *string { return &c.API.MonitoringUser }),
	secretVar(EnvMonitoringPassword, "basic-auth password of /monitoring, at least 16 characters and not a placeholder; required by `viberq api`",
		func(c *Config) *Secret { return &c.API.MonitoringPassword }, func(c *Config, v string) error {
			if err := checkPassword(v); err != nil {
				return err
			}
			c.API.MonitoringPassword = Secret(v)
			return nil
		}),
	int64Var(EnvMaxBodyBytes, DefaultMaxBodyBytes, 1024, 64<<20, "request body limit in bytes (larger bodies get 413)",
		func(c *Config) *int64 { return &c.API.MaxBodyBytes }),
	durationVar(EnvHTTPReadTimeout, DefaultHTTPReadTimeout, time.Second, 10*time.Minute, "HTTP server read timeout",
		func(c *Config) *time.Duration { return &c.API.ReadTimeout }),
	durationVar(EnvHTTPWriteTimeout, DefaultHTTPWriteTimeout, time.Second, 10*time.Minute, "HTTP server write timeout",
		func(c *Config) *time.Duration { return &c.API.WriteTimeout }),

	{
		Setting: Setting{Name: EnvCallbackURL,
			Description: "public URL of the status callback endpoint, absolute http(s) without credentials or token; given to the provider as callback_url with the token appended to the path and the basic-auth user in it; needs VIBERQ_CALLBACK_TOKEN or VIBERQ_CALLBACK_USER/PASSWORD"},
		parse: parseCallbackURL,
		show:  func(c *Config) any { return c.Callback.URL },
	},
	secretVar(EnvCallbackToken, "secret last path segment of the callback endpoints, at least 16 characters of A-Z a-z 0-9 - . _ ~",
		func(c *Config) *Secret { return &c.Callback.Token }, validateToken),
	userVar(EnvCallbackUser, "", "basic-auth user expected on callbacks (with VIBERQ_CALLBACK_PASSWORD)",
		func(c *Config) *string { return &c.Callback.User }),
	secretVar(EnvCallbackPassword, "basic-auth password expected on callbacks (with VIBERQ_CALLBACK_USER)",
		func(c *Config) *Secret { return &c.Callback.Password }, nil),

	secretVar(EnvAlertWebhookURL, "absolute http(s) URL alerts are POSTed to as JSON (default: alerts are only logged); secret because webhook URLs embed their credential",
		func(c *Config) *Secret { return &c.Alert.WebhookURL }, func(c *Config, v string) error {
			if v != "" {
				if _, err := parseHTTPURL(v); err != nil {
					return errors.New(ruleHTTPURL)
				}
			}
			c.Alert.WebhookURL = Secret(v)
			return nil
		}),
	durationVar(EnvAlertWindow, DefaultAlertWindow, time.Second, 24*time.Hour, "an alert is sent at most once per window, across all pods",
		func(c *Config) *time.Duration { return &c.Alert.Window }),

	boolVar(EnvOutbox, DefaultOutbox, "workers consume the outbox stream that producers in any language XADD to",
		func(c *Config) *bool { return &c.Outbox.Enabled }),
	stringVar(EnvOutboxStream, DefaultOutboxStream, "outbox stream key",
		func(c *Config) *string { return &c.Outbox.Stream }),
	stringVar(EnvOutboxGroup, DefaultOutboxGroup, "outbox consumer group",
		func(c *Config) *string { return &c.Outbox.Group }),
	durationVar(EnvOutboxClaimIdle, DefaultOutboxClaimIdle, time.Second, 24*time.Hour, "outbox entries pending this long are claimed from a dead consumer",
		func(c *Config) *time.Duration { return &c.Outbox.ClaimIdle }),
	intVar(EnvOutboxMaxAttempts, DefaultOutboxMaxAttempts, 1, 1000, "attempts of an outbox entry that fails transiently (backoff 1s doubling to 1m) before it is dead-lettered to the rejected stream",
		func(c *Config) *int { return &c.Outbox.MaxAttempts }),

	secretVar(EnvWebhookURL, "absolute http(s) URL that receives the state changes of messages without a webhook_url of their own (default: none); needs VIBERQ_WEBHOOK_SECRET; secret because webhook URLs embed their credential",
		func(c *Config) *Secret { return &c.Webhook.URL }, func(c *Config, v string) error {
			if v != "" {
				if _, err := parseHTTPURL(v); err != nil {
					return errors.New(ruleHTTPURL)
				}
			}
			c.Webhook.URL = Secret(v)
			return nil
		}),
	{
		Setting: Setting{Name: EnvWebhookSecret, Secret: true,
			Description: "comma-separated secrets that sign status webhooks (HMAC-SHA256), each at least 16 characters; set, it turns webhooks on; several allow rotation"},
		parse: parseWebhookSecrets,
		show: func(c *Config) any {
			s := make([]string, len(c.Webhook.Secrets))
			for i, t := range c.Webhook.Secrets {
				s[i] = t.String()
			}
			return strings.Join(s, ",")
		},
	},
	enumVar(EnvWebhookEvents, DefaultWebhookEvents, []string{"final", "all"},
		"state changes POSTed to a webhook by default: only the final one, or all",
		func(c *Config) *string { return &c.Webhook.Events }),
	intVar(EnvWebhookMaxRetry, DefaultWebhookMaxRetry, 1, 100, "retries of a failed webhook POST (backoff from 5s doubling up to 1h) before it is archived",
		func(c *Config) *int { return &c.Webhook.MaxRetry }),
	durationVar(EnvWebhookTimeout, DefaultWebhookTimeout, time.Second, time.Minute, "timeout of one webhook POST",
		func(c *Config) *time.Duration { return &c.Webhook.Timeout }),
	intVar(EnvWebhookConcurrency, DefaultWebhookConcurrency, 1, 1000, "webhook POSTs in flight per worker process, apart from the send slots",
		func(c *Config) *int { return &c.Webhook.Concurrency }),
	boolVar(EnvWebhookAllowPrivate, DefaultWebhookAllowPrivate, "allow webhook POSTs to loopback, private and link-local addresses (off: no SSRF into your network)",
		func(c *Config) *bool { return &c.Webhook.AllowPrivate }),
}

// crossCheck validates settings against each other. It runs only when every var in
// vars parsed; a failure is reported under vars[0].
type crossCheck struct {
	vars  []string
	check func(c *Config) error
}

var crossChecks = []crossCheck{
	{[]string{EnvWebhookURL, EnvWebhookSecret}, func(c *Config) error {
		if c.Webhook.URL != "" && !c.Webhook.Enabled() {
			return fmt.Errorf("needs %s: webhooks are always signed", EnvWebhookSecret)
		}
		return nil
	}},
	{[]string{EnvRedisURL, EnvRedisSentinelAddrs}, func(c *Config) error {
		// Under Sentinel the client is built from the settings, not from the URL: its
		// query options would be dropped without a word.
		if c.Redis.Sentinel() && strings.Contains(c.Redis.URL, "?") {
			return fmt.Errorf("query options are not used with %s; remove them", EnvRedisSentinelAddrs)
		}
		return nil
	}},
	{[]string{EnvRedisTLSCAFile, EnvRedisURL, EnvRedisTLS}, func(c *Config) error {
		if c.Redis.TLSCAFile != "" && !c.Redis.TLS {
			return errNeedsTLS
		}
		return nil
	}},
	{[]string{EnvRedisTLSInsecure, EnvRedisURL, EnvRedisTLS}, func(c *Config) error {
		if c.Redis.TLSInsecure && !c.Redis.TLS {
			return errNeedsTLS
		}
		return nil
	}},
	{[]string{EnvDTTimeout, EnvTaskTimeout}, func(c *Config) error {
		if c.Provider.Timeout >= c.Tasks.Timeout {
			return fmt.Errorf("must be shorter than %s (%s), got %s", EnvTaskTimeout, human(c.Tasks.Timeout), human(c.Provider.Timeout))
		}
		return nil
	}},
	{[]string{EnvRecordRetention, EnvPollSMSGrace}, func(c *Config) error {
		if need := maxTTL + c.Poll.SMSGrace; c.Tasks.RecordRetention < need {
			return fmt.Errorf("must be at least %s (the longest TTL, %s, plus %s), got %s",
				human(need), human(maxTTL), EnvPollSMSGrace, human(c.Tasks.RecordRetention))
		}
		return nil
	}},
	{[]string{EnvTaskRetention, EnvRecordRetention}, func(c *Config) error {
		// Equal is allowed: asynq's janitor then drops a completed task within seconds
		// of its record's expiry (the record's last write comes after the send task
		// completed), and only a retry inside those seconds is refused.
		if c.Tasks.TaskRetention > c.Tasks.RecordRetention {
			return fmt.Errorf("must not be longer than %s (%s): a finished task would hold its message ID after the record has expired, "+
				"and a retry of that ID would be refused as a conflict; got %s", EnvRecordRetention, human(c.Tasks.RecordRetention), human(c.Tasks.TaskRetention))
		}
		return nil
	}},
	{[]string{EnvPollMaxInterval, EnvPollFirst}, func(c *Config) error {
		if c.Poll.MaxInterval < c.Poll.First {
			return fmt.Errorf("must not be shorter than %s (%s), got %s", EnvPollFirst, human(c.Poll.First), human(c.Poll.MaxInterval))
		}
		return nil
	}},
	{[]string{EnvCallbackURL, EnvCallbackToken, EnvCallbackUser, EnvCallbackPassword}, func(c *Config) error {
		cb := c.Callback
		if cb.URL != "" && cb.Token == "" && cb.User == "" && cb.Password == "" {
			return fmt.Errorf("needs %s, or %s and %s: callbacks must be authenticated", EnvCallbackToken, EnvCallbackUser, EnvCallbackPassword)
		}
		if cb.URL != "" && cb.Token != "" && strings.Contains(cb.URL, cb.Token.Reveal()) {
			return fmt.Errorf("must not contain %s: it is appended to the path", EnvCallbackToken)
		}
		return nil
	}},
	{[]string{EnvCallbackPassword, EnvCallbackUser}, func(c *Config) error {
		if c.Callback.User != "" && c.Callback.Password == "" {
			return fmt.Errorf("required when %s is set", EnvCallbackUser)
		}
		return nil
	}},
	{[]string{EnvCallbackUser, EnvCallbackPassword}, func(c *Config) error {
		if c.Callback.Password != "" && c.Callback.User == "" {
			return fmt.Errorf("required when %s is set", EnvCallbackPassword)
		}
		return nil
	}},
}

var errNeedsTLS = fmt.Errorf("needs TLS: a rediss:// URL or %s=true", EnvRedisTLS)

// ---- setting constructors ----

func stringVar(name, def, desc string, f func(*Config) *string) spec {
	return spec{
		Setting: Setting{Name: name, Default: def, Description: desc},
		parse: func(c *Config, v string) error {
			*f(c) = v
			return nil
		},
		show: func(c *Config) any { return *f(c) },
	}
}

// userVar is a basic-auth user name: no ':' and no control characters.
func userVar(name, def, desc string, f func(*Config) *string) spec {
	s := stringVar(name, def, desc, f)
	s.parse = func(c *Config, v string) error {
		if strings.ContainsAny(v, ":") || strings.ContainsFunc(v, isControl) {
			return fmt.Errorf("must not contain ':' or control characters, got %s", quote(v))
		}
		*f(c) = v
		return nil
	}
	return s
}

func enumVar(name, def string, allowed []string, desc string, f func(*Config) *string) spec {
	return spec{
		Setting: Setting{Name: name, Default: def, Description: desc + ": " + strings.Join(allowed, "|")},
		parse: func(c *Config, v string) error {
			lv := strings.ToLower(v)
			for _, a := range allowed {
				if lv == a {
					*f(c) = a
					return nil
				}
			}
			return fmt.Errorf("must be one of %s, got %s", strings.Join(allowed, ", "), quote(v))
		},
		show: func(c *Config) any { return *f(c) },
	}
}

func boolVar(name string, def bool, desc string, f func(*Config) *bool) spec {
	return spec{
		Setting: Setting{Name: name, Default: strconv.FormatBool(def), Description: desc},
		parse: func(c *Config, v string) error {
			b, err := parseBool(v)
			*f(c) = b
			return err
		},
		show: func(c *Config) any { return *f(c) },
	}
}

func parseBool(v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("must be true or false, got %s", quote(v))
	}
	return b, nil
}

func intVar(name string, def, lo, hi int, desc string, f func(*Config) *int) spec {
	return spec{
		Setting: Setting{Name: name, Default: strconv.Itoa(def), Description: fmt.Sprintf("%s (%d..%d)", desc, lo, hi)},
		parse: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < lo || n > hi {
				return fmt.Errorf("must be a whole number between %d and %d, got %s", lo, hi, quote(v))
			}
			*f(c) = n
			return nil
		},
		show: func(c *Config) any { return *f(c) },
	}
}

func int64Var(name string, def, lo, hi int64, desc string, f func(*Config) *int64) spec {
	return spec{
		Setting: Setting{Name: name, Default: strconv.FormatInt(def, 10), Description: fmt.Sprintf("%s (%d..%d)", desc, lo, hi)},
		parse: func(c *Config, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < lo || n > hi {
				return fmt.Errorf("must be a whole number between %d and %d, got %s", lo, hi, quote(v))
			}
			*f(c) = n
			return nil
		},
		show: func(c *Config) any { return *f(c) },
	}
}

// floatVar accepts a finite lo <= v <= hi: every numeric setting is bounded, so that a
// value such as 1e308 or 1e-300 is refused rather than overflowing a duration
// computed from it.
func floatVar(name string, def, lo, hi float64, desc string, f func(*Config) *float64) spec {
	rule := fmt.Sprintf("must be a number between %g and %g", lo, hi)
	return spec{
		Setting: Setting{Name: name, Default: strconv.FormatFloat(def, 'f', -1, 64), Description: desc + fmt.Sprintf(" (%g..%g)", lo, hi)},
		parse: func(c *Config, v string) error {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil || math.IsNaN(x) || x < lo || x > hi {
				return fmt.Errorf("%s, got %s", rule, quote(v))
			}
			*f(c) = x
			return nil
		},
		show: func(c *Config) any { return *f(c) },
	}
}

func durationVar(name string, def, lo, hi time.Duration, desc string, f func(*Config) *time.Duration) spec {
	return spec{
		Setting: Setting{Name: name, Default: human(def), Description: desc + fmt.Sprintf(" (%s..%s)", human(lo), human(hi))},
		parse: func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < lo || d > hi {
				return fmt.Errorf("must be a duration between %s and %s (like %q), got %s", human(lo), human(hi), human(def), quote(v))
			}
			*f(c) = d
			return nil
		},
		show: func(c *Config) any { return human(*f(c)) },
	}
}

// secretVar is a credential. parse, when not nil, replaces the plain assignment (and
// the placeholder check, see checkSecret); it must not quote the value in its error.
func secretVar(name, desc string, f func(*Config) *Secret, parse func(*Config, string) error) spec {
	if parse == nil {
		parse = func(c *Config, v string) error {
			if err := checkSecret(v); err != nil {
				return err
			}
			*f(c) = Secret(v)
			return nil
		}
	}
	return spec{
		Setting: Setting{Name: name, Description: desc, Secret: true},
		parse:   parse,
		show:    func(c *Config) any { return f(c).String() },
	}
}

// addrVar is a listen address host:port (host may be empty, port 0..65535). With
// allowOff, MetricsAddrOff stores "".
func addrVar(name, def string, allowOff bool, desc string, f func(*Config) *string) spec {
	return spec{
		Setting: Setting{Name: name, Default: def, Description: desc},
		parse: func(c *Config, v string) error {
			if allowOff && strings.EqualFold(v, MetricsAddrOff) {
				*f(c) = ""
				return nil
			}
			_, port, err := net.SplitHostPort(v)
			if err != nil || !validPort(port, 0) {
				rule := `must be a listen address like ":8080" or "127.0.0.1:8080"`
				if allowOff {
					rule += ` or "off"`
				}
				return fmt.Errorf("%s, got %s", rule, quote(v))
			}
			*f(c) = v
			return nil
		},
		show: func(c *Config) any {
			if allowOff && *f(c) == "" {
				return MetricsAddrOff
			}
			return *f(c)
		},
	}
}

// ---- special parsers ----

func parseRedisURL(c *Config, v string) error {
	const rule = "must be a redis:// or rediss:// URL like redis://[user[:password]@]host[:port][/db]"
	u, err := url.Parse(v)
	if err != nil {
		// url.Parse's error quotes the input, which may hold a password: drop it.
		return errors.New(rule + ", got an unparsable value")
	}
	// A bad URL is shown by its scheme and host alone: a password that was not
	// percent-encoded ends the host early at its first / ? or #, and the rest of it
	// then reads as a path, query or fragment (u.Redacted has no password to hide).
	got := ", got " + quote(u.Scheme+"://"+u.Host+"/…")
	if (u.Scheme != "redis" && u.Scheme != "rediss") || u.Opaque != "" || u.Hostname() == "" {
		return errors.New(rule + got)
	}
	if u.Fragment != "" || strings.Contains(v, "#") || strings.Contains(u.Path+u.RawQuery, "@") {
		return errors.New(rule + ": a password holding / ? # or @ must be percent-encoded" + got)
	}
	port := u.Port()
	if port == "" {
		port = DefaultRedisPort
	} else if !validPort(port, 1) {
		return errors.New("port must be between 1 and 65535" + got)
	}
	db := 0
	if p := strings.Trim(u.Path, "/"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return errors.New("path must be a database number like /0" + got)
		}
		db = n
	}
	if _, err := redis.ParseURL(v); err != nil {
		// go-redis reads the URL again, query options and all (README: they are kept);
		// its error may quote the URL, so it is not passed on.
		if u.RawQuery != "" {
			return errors.New("query options must be go-redis's (redis.ParseURL), such as ?dial_timeout=3s" + got)
		}
		return errors.New(rule + " that go-redis can read" + got)
	}
	r := &c.Redis
	r.Addr = net.JoinHostPort(u.Hostname(), port)
	r.DB = db
	r.Username = u.User.Username()
	if pw, ok := u.User.Password(); ok && pw != "" {
		// The URL's password is a secret like VIBERQ_REDIS_PASSWORD: a placeholder
		// (redis://:changeme@...) is refused the same way.
		if err := checkSecret(pw); err != nil {
			return fmt.Errorf("password: %w", err)
		}
		r.Password = Secret(pw)
	}
	u.User = nil
	if r.Username != "" {
		u.User = url.User(r.Username)
	}
	r.URL = u.String()
	return nil
}

func parseSentinelAddrs(c *Config, v string) error {
	var addrs []string
	for _, a := range strings.Split(v, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" || !validPort(port, 1) {
			if strings.ContainsAny(a, "@/") {
				// A URL pasted here may hold a password: not quoted.
				return errors.New("must be a comma-separated list of host:port, got a URL (the password goes in VIBERQ_REDIS_SENTINEL_PASSWORD)")
			}
			return fmt.Errorf("must be a comma-separated list of host:port, got %s", quote(a))
		}
		addrs = append(addrs, a)
	}
	c.Redis.SentinelAddrs = addrs
	return nil
}

const ruleHTTPURL = "must be an absolute http:// or https:// URL"

// parseHTTPURL accepts an absolute http(s) URL with a host.
func parseHTTPURL(v string) (*url.URL, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return nil, errors.New(ruleHTTPURL)
	}
	return u, nil
}

// gotURL quotes v for an error, with any password replaced.
func gotURL(v string) string {
	u, err := url.Parse(v)
	if err != nil {
		return "an unparsable value"
	}
	return quote(u.Redacted())
}

func parseBaseURL(c *Config, v string) error {
	u, err := parseHTTPURL(v)
	switch {
	case err != nil:
		return fmt.Errorf("%s, got %s", ruleHTTPURL, gotURL(v))
	case u.User != nil:
		return fmt.Errorf("must not contain credentials (the key is %s), got %s", EnvDTAPIKey, gotURL(v))
	case u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(v, "?"):
		return fmt.Errorf("must not have a query or fragment, got %s", quote(v))
	}
	c.Provider.BaseURL = strings.TrimRight(v, "/")
	return nil
}

func parseCallbackURL(c *Config, v string) error {
	if v == "" {
		c.Callback.URL = ""
		return nil
	}
	u, err := parseHTTPURL(v)
	switch {
	case err != nil:
		return fmt.Errorf("%s, got %s", ruleHTTPURL, gotURL(v))
	case u.User != nil:
		return fmt.Errorf("must not contain credentials (use %s and %s), got %s", EnvCallbackUser, EnvCallbackPassword, gotURL(v))
	case u.Fragment != "":
		return fmt.Errorf("must not have a fragment, got %s", quote(v))
	}
	c.Callback.URL = v
	return nil
}

func parseQueueWeights(c *Config, v string) error {
	w := map[string]int{}
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, num, ok := strings.Cut(part, "=")
		name, num = strings.TrimSpace(name), strings.TrimSpace(num)
		if !ok {
			return fmt.Errorf("must be a comma-separated list of queue=weight, got %s", quote(part))
		}
		if !isQueue(name) {
			return fmt.Errorf("unknown queue %s (the queues are %s)", quote(name), strings.Join(queueNames, ", "))
		}
		if _, dup := w[name]; dup {
			return fmt.Errorf("queue %s is given twice", quote(name))
		}
		n, err := strconv.Atoi(num)
		if err != nil || n < 1 || n > 1000 {
			return fmt.Errorf("weight of queue %s must be a whole number between 1 and 1000, got %s", quote(name), quote(num))
		}
		w[name] = n
	}
	for _, q := range queueNames {
		if _, ok := w[q]; !ok {
			return fmt.Errorf("missing queue %s (each of %s needs a weight), got %s", quote(q), strings.Join(queueNames, ", "), quote(v))
		}
	}
	c.Worker.QueueWeights = w
	return nil
}

func isQueue(name string) bool {
	for _, q := range queueNames {
		if q == name {
			return true
		}
	}
	return false
}

func formatWeights(w map[string]int) string {
	parts := make([]string, 0, len(w))
	for _, q := range queueNames {
		if n, ok := w[q]; ok {
			parts = append(parts, q+"="+strconv.Itoa(n))
		}
	}
	return strings.Join(parts, ",")
}

func parseAPITokens(c *Config, v string) (err error) {
	c.API.Tokens, err = tokenList(v, "token")
	return err
}

func parseWebhookSecrets(c *Config, v string) (err error) {
	c.Webhook.Secrets, err = tokenList(v, "secret")
	return err
}

// tokenList reads a comma-separated list of secrets, each under checkToken's rules;
// an error names the item ("token 2 of 3 must be ...") without quoting it.
func tokenList(v, item string) ([]Secret, error) {
	var out []Secret
	all := strings.Split(v, ",")
	for i, t := range all {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if err := checkToken(t, false); err != nil {
			return nil, fmt.Errorf("%s %d of %d %w", item, i+1, len(all), err)
		}
		out = append(out, Secret(t))
	}
	return out, nil
}

func validateToken(c *Config, v string) error {
	if v != "" {
		if err := checkToken(v, true); err != nil {
			return err
		}
	}
	c.Callback.Token = Secret(v)
	return nil
}

// checkToken applies the rules of a bearer or path token; its error never holds t.
// pathSafe restricts t to URL-unreserved characters.
func checkToken(t string, pathSafe bool) error {
	if n := len(t); n < minSecretLength {
		return fmt.Errorf("must be at least %d characters, got %d", minSecretLength, n)
	}
	if isPlaceholder(t) {
		return errPlaceholder
	}
	for _, r := range t {
		switch {
		case pathSafe && !isUnreserved(r):
			return errors.New("may hold only A-Z a-z 0-9 - . _ ~")
		case r <= ' ' || r == 0x7f:
			return errors.New("must not contain spaces or control characters")
		}
	}
	return nil
}

func isUnreserved(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
		r == '-' || r == '.' || r == '_' || r == '~'
}

func isControl(r rune) bool { return r < ' ' || r == 0x7f }

// validPort reports whether p is a decimal port in min..65535.
func validPort(p string, min int) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= min && n <= 65535 && p[0] != '+' && p[0] != '-'
}

// human formats d without zero tails: 1h, 5m, 1m30s, 100ms.
func human(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// quote quotes a (non-secret) value for an error, shortened to keep the line short.
func quote(v string) string {
	const max = 80
	if r := []rune(v); len(r) > max {
		v = string(r[:max]) + "..."
	}
	return strconv.Quote(v)
}
