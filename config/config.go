package config

import (
	"net/url"
	"os"
	"sort"
	"strings"
	"time"
)

// Config is the effective configuration of every viberq command, grouped by the part
// of the program that uses it. Each field's comment names its environment variable and
// default. Load returns a fully defaulted and validated Config; the zero Config is not
// meant to be used.
//
// Every field is safe to print: credentials are Secret, Redis.URL holds no password,
// and URLs that may carry credentials are either Secret (Alert.WebhookURL) or refused
// when they embed them (Provider.BaseURL, Callback.URL).
type Config struct {
	Redis    Redis
	Provider Provider
	Limits   Limits
	Worker   Worker
	Tasks    Tasks
	Poll     Poll
	Policy   Policy
	Log      Log
	API      API
	Callback Callback
	Alert    Alert
	Outbox   Outbox
	Webhook  Webhook
}

// Redis is how to reach Redis. It holds parsed fields only; the callers build the
// go-redis / asynq clients (a plain client from Addr, Username, Password and DB, or a
// failover client when SentinelAddrs is set).
type Redis struct {
	// URL is VIBERQ_REDIS_URL (default redis://127.0.0.1:6379/0) with its password
	// removed: the effective password is Password. Query options are kept.
	URL string
	// Addr is host:port from URL (port 6379 when the URL has none). Ignored in
	// Sentinel mode, where the master is found through SentinelAddrs.
	Addr string
	// Username is the user in URL, "" for none.
	Username string
	// DB is the database number in URL's path ("/0"), 0 when absent.
	DB int
	// Password is VIBERQ_REDIS_PASSWORD, or the URL's password when that is unset.
	Password Secret
	// SentinelAddrs is VIBERQ_REDIS_SENTINEL_ADDRS, comma-separated host:port (default
	// none: no Sentinel).
	SentinelAddrs []string
	// SentinelMaster is VIBERQ_REDIS_SENTINEL_MASTER (default "mymaster"), the master
	// name asked of the sentinels.
	SentinelMaster string
	// SentinelPassword is VIBERQ_REDIS_SENTINEL_PASSWORD (default none), the password of
	// the sentinels themselves.
	SentinelPassword Secret
	// TLS is VIBERQ_REDIS_TLS (default false), forced true by a rediss:// URL.
	TLS bool
	// TLSCAFile is VIBERQ_REDIS_TLS_CA_FILE (default none: the system roots), a PEM file
	// of CA certificates. Only with TLS.
	TLSCAFile string
	// TLSInsecure is VIBERQ_REDIS_TLS_INSECURE (default false): skip certificate
	// verification. Only with TLS; for tests, never production.
	TLSInsecure bool
}

// Sentinel reports whether Redis is reached through Sentinel.
func (r Redis) Sentinel() bool { return len(r.SentinelAddrs) > 0 }

// RevealURL returns URL with the effective Password put back in, for parsers such as
// redis.ParseURL or asynq.ParseRedisURI. Never log it.
func (r Redis) RevealURL() string {
	u, err := url.Parse(r.URL)
	if err != nil || r.Password == "" {
		return r.URL
	}
	u.User = url.UserPassword(r.Username, r.Password.Reveal())
	return u.String()
}

// Provider is the DecisionTelecom API client's settings.
type Provider struct {
	// BaseURL is VIBERQ_DT_BASE_URL (default https://web.it-decision.com/v1/api), an
	// absolute http(s) URL without credentials and without a trailing slash.
	BaseURL string
	// APIKey is VIBERQ_DT_API_KEY (default none). Commands that call the provider check
	// it with Config.RequireAPIKey.
	APIKey Secret
	// KeyEncoded is VIBERQ_DT_KEY_ENCODED (default false): APIKey is already Base64 and
	// is sent as is (provider.WithEncodedKey).
	KeyEncoded bool
	// Timeout is VIBERQ_DT_TIMEOUT (default 30s, provider.DefaultTimeout), the HTTP client timeout of one
	// provider call, 100ms..5m, shorter than Tasks.Timeout.
	Timeout time.Duration
}

// Limits are the global (all pods together) token buckets in front of the provider.
type Limits struct {
	// SendRate is VIBERQ_RATE_LIMIT (default 50): send-viber calls per second,
	// 0.01..10000.
	SendRate float64
	// SendBurst is VIBERQ_RATE_BURST (default 1): bucket size for sends, >= 1.
	SendBurst int
	// StatusRate is VIBERQ_STATUS_RATE_LIMIT (default 50): receive-viber calls per
	// second, 0.01..10000.
	StatusRate float64
	// StatusBurst is VIBERQ_STATUS_RATE_BURST (default 1): bucket size for status
	// calls, >= 1.
	StatusBurst int
	// MaxRetryAfter is VIBERQ_MAX_RETRY_AFTER (default 1m, 1s..24h): the longest
	// pause of a bucket and retry delay one provider 429 can cause; a longer
	// Retry-After hint is cut to it and raises an alert.
	MaxRetryAfter time.Duration
}

// Worker is the asynq server's settings.
type Worker struct {
	// Concurrency is VIBERQ_CONCURRENCY (default 50): send tasks processed at once
	// per worker process, 1..10000.
	Concurrency int
	// PollConcurrency is VIBERQ_POLL_CONCURRENCY (default 20): poll tasks processed
	// at once per worker process, 1..10000, in slots of their own (a send backlog
	// never holds them).
	PollConcurrency int
	// Fetchers is VIBERQ_FETCHERS (default 4, 1..64): asynq servers sharing the send
	// slots, each with its own fetch loop (worker.Config.Fetchers).
	Fetchers int
	// QueueWeights is VIBERQ_QUEUE_WEIGHTS (default "critical=6,default=3,status=1"):
	// the asynq queue priorities. It always holds exactly the queues critical, default
	// and status (names as in package tasks), each weight 1..1000.
	QueueWeights map[string]int
	// ShutdownTimeout is VIBERQ_SHUTDOWN_TIMEOUT (default 20s, 1s..5m): how long
	// in-flight tasks get on SIGTERM. Keep it below the pod's grace period.
	ShutdownTimeout time.Duration
	// MetricsAddr is VIBERQ_METRICS_ADDR (default ":9090"): the worker's /metrics and
	// health listener. "" when disabled with the value "off".
	MetricsAddr string
	// ReconcilePeriod is VIBERQ_RECONCILE_PERIOD (default 30s, 1s..1h): how often the
	// reconciler's leader sweeps the non-final records, and how long one goes
	// unchecked at most (README, "Message states").
	ReconcilePeriod time.Duration
	// ReconcileBatch is VIBERQ_RECONCILE_BATCH (default 500, 1..100000): the most
	// records one sweep checks.
	ReconcileBatch int
}

// Tasks are the settings of enqueueing and of message records.
type Tasks struct {
	// MaxRetry is VIBERQ_MAX_RETRY (default 100, 0..10000): the retry budget of every
	// task a worker runs, a setting of the worker (tasks are enqueued with
	// MaxRetryCeiling and the worker archives them when its budget is used up). Rate
	// limiting (429) does not use it up.
	MaxRetry int
	// Timeout is VIBERQ_TASK_TIMEOUT (default 60s, 1s..1h): asynq timeout of one task
	// run. Must be longer than Provider.Timeout.
	Timeout time.Duration
	// DefaultTTL is VIBERQ_DEFAULT_TTL (default 1h, 40s..6h): the TTL of a message
	// enqueued without one and without text_sms.
	DefaultTTL time.Duration
	// SMSTTL is VIBERQ_SMS_TTL (default 40s, 40s..6h): the TTL of a message enqueued
	// without one but with text_sms (vendor notes: TTL; the SMS fallback waits about the TTL).
	SMSTTL time.Duration
	// RecordRetention is VIBERQ_RECORD_RETENTION (default 168h): how long message
	// records are kept, at least 6h (the longest TTL) + Poll.SMSGrace, at most 8760h.
	RecordRetention time.Duration
	// TaskRetention is VIBERQ_TASK_RETENTION (default 1h, 0..720h, not longer than
	// RecordRetention): asynq retention of completed tasks, which keeps their IDs
	// reserved.
	TaskRetention time.Duration
	// EventsMaxLen is VIBERQ_EVENTS_MAXLEN (default 100000, 1..1e9): approximate cap of
	// the viberq:events stream.
	EventsMaxLen int64
	// TwoWay is VIBERQ_TWO_WAY (default false): accept the two-way message types 206
	// and 208, which need activation on the provider account (the vendor page marks
	// them with an asterisk it does not explain).
	TwoWay bool
}

// Poll is the status polling policy (package scheduler).
type Poll struct {
	// First is VIBERQ_POLL_FIRST (default DefaultPollFirst, 100ms..1h): delay of the first status poll
	// after the provider accepted a message.
	First time.Duration
	// MaxInterval is VIBERQ_POLL_MAX_INTERVAL (default 60s, 1s..24h, >= First): cap of
	// the backoff between polls.
	MaxInterval time.Duration
	// SMSGrace is VIBERQ_POLL_SMS_GRACE (default 10m, 0..120h): how long past the TTL
	// polling goes on, for the SMS leg.
	SMSGrace time.Duration
	// FirstWithCallback is VIBERQ_POLL_FIRST_WITH_CALLBACK (default 2m, 100ms..24h): delay
	// of the first poll when a status callback URL is configured.
	FirstWithCallback time.Duration
	// Jitter is VIBERQ_POLL_JITTER (default 0.2, 0..1): relative random spread of poll
	// delays.
	Jitter float64
}

// Policy are the switches of the error policy (README, Error policy and Exactly once).
type Policy struct {
	// PauseOnBalance is VIBERQ_PAUSE_ON_BALANCE (default true): pause the send queues on
	// a provider 402 (balance empty).
	PauseOnBalance bool
	// PauseOnAuth is VIBERQ_PAUSE_ON_AUTH (default true): pause the send queues on a
	// provider 401/403.
	PauseOnAuth bool
	// ResendUnknown is VIBERQ_RESEND_UNKNOWN (default false): resend a message whose
	// send was ambiguous, accepting a possible duplicate, instead of marking it unknown.
	ResendUnknown bool
	// ServerErrorUnknown is VIBERQ_SERVER_ERROR_UNKNOWN (default false): a 5xx answer
	// to a send is taken as ambiguous (unknown, not resent unless ResendUnknown)
	// instead of being retried. The provider can fail after accepting a message, so a
	// retried 5xx can duplicate it (RELIABILITY.md, finding 3).
	ServerErrorUnknown bool
}

// Log is the logger's settings.
type Log struct {
	// Level is VIBERQ_LOG_LEVEL (default "info"): debug, info, warn or error.
	Level string
	// Format is VIBERQ_LOG_FORMAT (default "json"): json or console.
	Format string
}

// API is the settings of `viberq api`.
type API struct {
	// Addr is VIBERQ_HTTP_ADDR (default ":8080"): the API's listen address.
	Addr string
	// Tokens is VIBERQ_API_TOKENS (default none): the accepted bearer tokens, from a
	// comma-separated list, each at least 16 characters. Required by `viberq api`
	// (Config.RequireAPITokens). Check a request's token with ValidToken.
	Tokens []Secret
	// MonitoringUser is VIBERQ_MONITORING_USER (default "admin"): basic-auth user of
	// /monitoring.
	MonitoringUser string
	// MonitoringPassword is VIBERQ_MONITORING_PASSWORD (default none): basic-auth
	// password of /monitoring, at least 16 characters and not a placeholder, required
	// by `viberq api` (RequiredAPI).
	MonitoringPassword Secret
	// MaxBodyBytes is VIBERQ_MAX_BODY_BYTES (default 1048576, 1024..67108864): request
	// body limit; larger bodies get 413.
	MaxBodyBytes int64
	// ReadTimeout is VIBERQ_HTTP_READ_TIMEOUT (default 10s, 1s..10m).
	ReadTimeout time.Duration
	// WriteTimeout is VIBERQ_HTTP_WRITE_TIMEOUT (default 30s, 1s..10m).
	WriteTimeout time.Duration
}

// ValidToken reports whether tok is one of Tokens, comparing in constant time against
// every token. An empty tok is never valid.
func (a API) ValidToken(tok string) bool {
	ok := false
	for _, t := range a.Tokens {
		if t.Equal(tok) {
			ok = true
		}
	}
	return ok
}

// Callback is how the provider's callbacks reach `viberq api` and authenticate.
type Callback struct {
	// URL is VIBERQ_CALLBACK_URL (default none: no status callbacks requested): the
	// public absolute http(s) URL of the status callback endpoint, without credentials
	// and without the token. The provider is given RevealURL. When set, Token or
	// User+Password must be set too (callbacks are always authenticated).
	URL string
	// Token is VIBERQ_CALLBACK_TOKEN (default none): the secret last path segment of the
	// callback endpoints, at least 16 characters of A-Z a-z 0-9 - . _ ~.
	Token Secret
	// User is VIBERQ_CALLBACK_USER (default none): basic-auth user expected on callbacks
	// (with Password; no ':').
	User string
	// Password is VIBERQ_CALLBACK_PASSWORD (default none): basic-auth password expected
	// on callbacks (with User).
	Password Secret
}

// RevealURL is the callback_url handed to the provider: URL with User and Password as
// its userinfo (when set) and "/"+Token appended to its path (when set). "" when URL
// is unset. It carries credentials: never log it.
func (c Callback) RevealURL() string {
	if c.URL == "" {
		return ""
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return c.URL
	}
	if c.User != "" {
		u.User = url.UserPassword(c.User, c.Password.Reveal())
	}
	if c.Token != "" {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/" + c.Token.Reveal()
		u.RawPath = ""
	}
	return u.String()
}

// Alert is where operator alerts go.
type Alert struct {
	// WebhookURL is VIBERQ_ALERT_WEBHOOK_URL (default none: alerts are only logged): an
	// absolute http(s) URL that alerts are POSTed to as JSON. It is a Secret because
	// webhook URLs usually embed their credential (Slack, Teams).
	WebhookURL Secret
	// Window is VIBERQ_ALERT_WINDOW (default 10m, 1s..24h): an alert is sent once per
	// window across all pods.
	Window time.Duration
}

// Outbox is the viberq:outbox stream that producers in any language XADD to.
type Outbox struct {
	// Enabled is VIBERQ_OUTBOX (default true): workers consume the outbox stream.
	Enabled bool
	// Stream is VIBERQ_OUTBOX_STREAM (default "viberq:outbox").
	Stream string
	// Group is VIBERQ_OUTBOX_GROUP (default "viberq"): the consumer group.
	Group string
	// ClaimIdle is VIBERQ_OUTBOX_CLAIM_IDLE (default 60s, 1s..24h): pending entries idle
	// this long are claimed from a dead consumer.
	ClaimIdle time.Duration
	// MaxAttempts is VIBERQ_OUTBOX_MAX_ATTEMPTS (default 10, 1..1000): attempts of an
	// entry that fails transiently (with backoff from 1s doubling to 1m) before it is
	// dead-lettered to the rejected stream.
	MaxAttempts int
}

// FromEnv is Load(os.Getenv).
func FromEnv() (Config, error) { return Load(os.Getenv) }

// The settings each command cannot start without (pass them to LoadFor).
var (
	// RequiredWorker: `viberq worker` calls the provider.
	RequiredWorker = []string{EnvDTAPIKey}
	// RequiredAPI: `viberq api` serves bearer-token and basic-auth routes.
	RequiredAPI = []string{EnvAPITokens, EnvMonitoringPassword}
)

// Load reads every setting through getenv, applies the defaults and validates. An
// unset or blank variable takes its default; values are trimmed of surrounding
// whitespace. On failure it returns the zero Config and an *Error listing every bad
// variable, whose message is one line: `VIBERQ_X: rule, got "v"; VIBERQ_Y: ...`.
// Secret values are never quoted in errors.
func Load(getenv func(string) string) (Config, error) { return LoadFor(getenv) }

// LoadFor is Load for a command that cannot run without the settings named in
// required (RequiredAPI, RequiredWorker): one *Error names every bad setting and
// every required one that is unset, together, in Describe order, so that the
// operator fixes the environment in one go.
func LoadFor(getenv func(string) string, required ...string) (Config, error) {
	var c Config
	e := &Error{}
	bad := map[string]bool{}
	need := map[string]bool{}
	for _, r := range required {
		need[r] = true
	}
	for _, s := range settings {
		v := strings.TrimSpace(getenv(s.Name))
		if v == "" && need[s.Name] {
			e.Problems = append(e.Problems, Problem{Var: s.Name, Rule: ruleRequired})
			bad[s.Name] = true
			continue
		}
		if v == "" {
			v = s.Default
		}
		if err := s.parse(&c, v); err != nil {
			e.Problems = append(e.Problems, Problem{Var: s.Name, Rule: err.Error()})
			bad[s.Name] = true
		}
	}
	for _, chk := range crossChecks {
		if anyBad(bad, chk.vars) {
			continue
		}
		if err := chk.check(&c); err != nil {
			e.Problems = append(e.Problems, Problem{Var: chk.vars[0], Rule: err.Error()})
		}
	}
	if len(e.Problems) > 0 {
		scrub(e, getenv)
		return Config{}, e
	}
	return c, nil
}

// scrub replaces, as a last line of defence, any secret value (of at least
// minScrubLength bytes) that a rule might quote with Redacted. The parsers already
// never quote secrets; this covers one setting's value pasted into another's.
func scrub(e *Error, getenv func(string) string) {
	var vals []string
	for _, s := range settings {
		if !s.Secret {
			continue
		}
		for _, v := range strings.Split(getenv(s.Name), ",") {
			if v = strings.TrimSpace(v); len(v) >= minScrubLength {
				vals = append(vals, v)
			}
		}
	}
	// Longest first, so that a secret containing another is replaced whole.
	sort.Slice(vals, func(i, j int) bool { return len(vals[i]) > len(vals[j]) })
	for i := range e.Problems {
		for _, v := range vals {
			e.Problems[i].Rule = strings.ReplaceAll(e.Problems[i].Rule, v, Redacted)
		}
	}
}

// minScrubLength is the shortest secret scrub looks for: shorter ones would match
// ordinary words of the rules.
const minScrubLength = 8

func anyBad(bad map[string]bool, vars []string) bool {
	for _, v := range vars {
		if bad[v] {
			return true
		}
	}
	return false
}

// RequireAPIKey returns an *Error naming VIBERQ_DT_API_KEY when it is not set. Commands
// that call the provider (the worker, and anything run against the real API) call it.
func (c Config) RequireAPIKey() error {
	return require(EnvDTAPIKey, c.Provider.APIKey.IsSet())
}

// RequireAPITokens returns an *Error naming VIBERQ_API_TOKENS when no token is set.
// `viberq api` calls it.
func (c Config) RequireAPITokens() error {
	return require(EnvAPITokens, len(c.API.Tokens) > 0)
}

// RequireMonitoringPassword returns an *Error naming VIBERQ_MONITORING_PASSWORD when it
// is not set. `viberq api` calls it before serving /monitoring.
func (c Config) RequireMonitoringPassword() error {
	return require(EnvMonitoringPassword, c.API.MonitoringPassword.IsSet())
}

const ruleRequired = "required by this command, not set"

func require(name string, ok bool) error {
	if ok {
		return nil
	}
	return &Error{Problems: []Problem{{Var: name, Rule: ruleRequired}}}
}

// Problem is one bad setting.
type Problem struct {
	Var  string // the environment variable, e.g. VIBERQ_RATE_LIMIT
	Rule string // what is wrong, e.g. `must be a positive number, got "abc"`
}

func (p Problem) String() string { return p.Var + ": " + p.Rule }

// Error is the error of Load and of the Require methods: every bad setting, in the
// order of Describe, then the checks between settings.
type Error struct {
	Problems []Problem
}

// Error joins the problems on one line: "VIBERQ_A: rule; VIBERQ_B: rule".
func (e *Error) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return strings.Join(parts, "; ")
}

// NameFlag names the problems of variable v by flag, the command-line flag whose value
// was read in its place: "--rate (VIBERQ_RATE_LIMIT): must be ...". A program that
// reads a flag through Load (rather than parsing it with rules of its own) calls it
// on Load's error.
func (e *Error) NameFlag(v, flag string) {
	for i, p := range e.Problems {
		if p.Var == v {
			e.Problems[i].Var = flag + " (" + v + ")"
		}
	}
}

// Vars returns the names of the bad variables, in order.
func (e *Error) Vars() []string {
	out := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p.Var
	}
	return out
}

// toolPrefixes start the names of variables read by viberq's tests, benchmarks and
// fault harness (VIBERQ_TEST_REDIS_URL, ...), not by the program: Unknown skips them.
var toolPrefixes = []string{"VIBERQ_TEST_", "VIBERQ_BENCH_", "VIBERQ_FAULT_", "VIBERQ_WORKER_TEST_"}

// Unknown returns the VIBERQ_-prefixed names in environ (os.Environ form, "K=V") that
// this package does not read, such as typos, in the order given; the variables of
// the test and benchmark tools (toolPrefixes) are not reported. Callers warn, with
// Closest.
func Unknown(environ []string) []string {
	known := map[string]bool{}
	for _, s := range settings {
		known[s.Name] = true
	}
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, Prefix) && !known[k] && !isToolVar(k) {
			out = append(out, k)
		}
	}
	return out
}

func isToolVar(k string) bool {
	for _, p := range toolPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// Closest returns the setting name nearest to name (Levenshtein distance over the
// part after VIBERQ_, at most a third of its length, and at least 1 edit allowed), or
// "" when none is that close: VIBERQ_RATE_LIMT gives VIBERQ_RATE_LIMIT.
func Closest(name string) string {
	n := strings.TrimPrefix(strings.ToUpper(name), Prefix)
	best, bestD := "", max(1, len(n)/3)+1
	for _, s := range settings {
		if d := editDistance(n, strings.TrimPrefix(s.Name, Prefix)); d < bestD {
			best, bestD = s.Name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (bytes; names are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// UnknownWarnings returns one line per unknown variable of environ (see Unknown), for
// a start-up warning: `VIBERQ_RATE_LIMT is not a viberq setting (did you mean
// VIBERQ_RATE_LIMIT?); it is ignored`.
func UnknownWarnings(environ []string) []string {
	var out []string
	for _, k := range Unknown(environ) {
		line := k + " is not a viberq setting"
		if c := Closest(k); c != "" {
			line += " (did you mean " + c + "?)"
		}
		out = append(out, line+"; it is ignored")
	}
	return out
}

// Webhook is the status webhooks to producers (README "Status webhooks"). They are on
// when Secret is set: every POST is signed with it.
type Webhook struct {
	// URL is VIBERQ_WEBHOOK_URL (default none): the absolute http(s) URL that receives
	// the state changes of messages enqueued without a webhook_url of their own. A
	// Secret because webhook URLs often embed their credential. Needs Secret.
	URL Secret
	// Secrets is VIBERQ_WEBHOOK_SECRET (default none: webhooks off): comma-separated
	// signing secrets, each at least 16 characters. Every POST carries one v1
	// signature per secret, so a receiver can move to a new secret without a gap.
	Secrets []Secret
	// Events is VIBERQ_WEBHOOK_EVENTS (default "final"): "final" POSTs only the move to
	// a final state, "all" every state change; a message's webhook_events overrides it.
	Events string
	// MaxRetry is VIBERQ_WEBHOOK_MAX_RETRY (default 15, 1..100): failed deliveries are
	// retried this often with exponential backoff (5s doubling, at most 1h apart, about
	// 6 hours in all) and then archived in the Asynq UI.
	MaxRetry int
	// Timeout is VIBERQ_WEBHOOK_TIMEOUT (default 10s, 1s..1m): one POST's timeout.
	Timeout time.Duration
	// Concurrency is VIBERQ_WEBHOOK_CONCURRENCY (default 10, 1..1000): POSTs in flight
	// per worker process, apart from the send and poll slots.
	Concurrency int
	// AllowPrivate is VIBERQ_WEBHOOK_ALLOW_PRIVATE (default false): allow webhook POSTs
	// to loopback, private, link-local and other non-public addresses. Off, a producer
	// cannot make the workers call into their own network (SSRF).
	AllowPrivate bool
}

// Enabled reports whether webhooks are on (a signing secret is set).
func (w Webhook) Enabled() bool { return len(w.Secrets) > 0 }
