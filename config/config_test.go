package config_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/viberq/viberq/config"
	"github.com/viberq/viberq/provider"
)

// env returns a getenv over m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func mustLoad(t *testing.T, m map[string]string) config.Config {
	t.Helper()
	c, err := config.Load(env(m))
	if err != nil {
		t.Fatalf("Load(%v): %v", m, err)
	}
	return c
}

// loadErr loads m and returns the *config.Error, failing the test when there is none.
func loadErr(t *testing.T, m map[string]string) *config.Error {
	t.Helper()
	c, err := config.Load(env(m))
	if err == nil {
		t.Fatalf("Load(%v) = nil error", m)
	}
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("Load error %T is not *config.Error: %v", err, err)
	}
	if !reflect.DeepEqual(c, config.Config{}) {
		t.Errorf("Load returned a non-zero Config with an error")
	}
	if strings.ContainsAny(err.Error(), "\n\r") {
		t.Errorf("error is not one line: %q", err)
	}
	return ce
}

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	want := config.Config{
		Redis: config.Redis{
			URL: config.DefaultRedisURL, Addr: "127.0.0.1:6379", DB: 0,
			SentinelMaster: config.DefaultRedisSentinelMaster,
		},
		Provider: config.Provider{BaseURL: config.DefaultDTBaseURL, Timeout: config.DefaultDTTimeout},
		Limits: config.Limits{
			SendRate: config.DefaultRateLimit, SendBurst: config.DefaultRateBurst,
			StatusRate: config.DefaultStatusRateLimit, StatusBurst: config.DefaultStatusRateBurst,
			MaxRetryAfter: time.Minute,
		},
		Worker: config.Worker{
			Concurrency:     config.DefaultConcurrency,
			PollConcurrency: 20,
			Fetchers:        4,
			QueueWeights:    map[string]int{"critical": 6, "default": 3, "status": 1},
			ShutdownTimeout: config.DefaultShutdownTimeout,
			MetricsAddr:     config.DefaultMetricsAddr,
			ReconcilePeriod: config.DefaultReconcilePeriod,
			ReconcileBatch:  config.DefaultReconcileBatch,
		},
		Tasks: config.Tasks{
			MaxRetry: config.DefaultMaxRetry, Timeout: config.DefaultTaskTimeout,
			DefaultTTL: config.DefaultTTL, SMSTTL: config.DefaultSMSTTL,
			RecordRetention: config.DefaultRecordRetention, TaskRetention: config.DefaultTaskRetention,
			EventsMaxLen: config.DefaultEventsMaxLen,
		},
		Poll: config.Poll{
			First: config.DefaultPollFirst, MaxInterval: config.DefaultPollMaxInterval,
			SMSGrace: config.DefaultPollSMSGrace, FirstWithCallback: config.DefaultPollFirstWithCallback,
			Jitter: config.DefaultPollJitter,
		},
		Policy: config.Policy{PauseOnBalance: true, PauseOnAuth: true},
		Log:    config.Log{Level: "info", Format: "json"},
		API: config.API{
			Addr: ":8080", MonitoringUser: "admin", MaxBodyBytes: 1 << 20,
			ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
		},
		Alert:   config.Alert{Window: 10 * time.Minute},
		Outbox:  config.Outbox{Enabled: true, Stream: "viberq:outbox", Group: "viberq", ClaimIdle: time.Minute, MaxAttempts: 10},
		Webhook: config.Webhook{Events: "final", MaxRetry: 15, Timeout: 10 * time.Second, Concurrency: 10},
	}
	got := mustLoad(t, nil)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load(empty) =\n%+v\nwant\n%+v", got, want)
	}
	// The brief's literal defaults, independently of the constants.
	if got.Provider.BaseURL != "https://web.it-decision.com/v1/api" || got.Limits.SendRate != 50 ||
		got.Tasks.SMSTTL != 40*time.Second || got.Poll.MaxInterval != 60*time.Second || got.Tasks.RecordRetention != 168*time.Hour {
		t.Errorf("defaults drifted from the documented ones: %+v", got)
	}
}

// Describe's Default strings, fed back explicitly, give the same Config as unset
// variables: the documentation cannot drift from the code.
func TestDescribeDefaultsEqualLoadDefaults(t *testing.T) {
	t.Parallel()
	m := map[string]string{}
	for _, s := range config.Describe() {
		m[s.Name] = s.Default
	}
	if got, want := mustLoad(t, m), mustLoad(t, nil); !reflect.DeepEqual(got, want) {
		t.Errorf("Load(Describe defaults) =\n%+v\nwant\n%+v", got, want)
	}
}

// Describe, Names, Load and LogFields cover the same set of variables.
func TestDescribeNamesLoadSameSet(t *testing.T) {
	t.Parallel()
	var read []string
	if _, err := config.Load(func(k string) string { read = append(read, k); return "" }); err != nil {
		t.Fatal(err)
	}
	names := config.Names()
	var described []string
	for _, s := range config.Describe() {
		described = append(described, s.Name)
		if !strings.HasPrefix(s.Name, config.Prefix) {
			t.Errorf("%s lacks the %s prefix", s.Name, config.Prefix)
		}
		if s.Description == "" {
			t.Errorf("%s has no description", s.Name)
		}
		if s.Secret && s.Default != "" {
			t.Errorf("secret %s has a default", s.Name)
		}
	}
	if !slices.Equal(names, described) {
		t.Errorf("Names() = %v\nDescribe() names = %v", names, described)
	}
	sortedRead := slices.Clone(read)
	sort.Strings(sortedRead)
	sortedNames := slices.Clone(names)
	sort.Strings(sortedNames)
	if !slices.Equal(sortedRead, sortedNames) {
		t.Errorf("Load reads %v\nNames() = %v", sortedRead, sortedNames)
	}
	if len(slices.Compact(sortedNames)) != len(names) {
		t.Errorf("duplicate names in %v", names)
	}
	fields := mustLoad(t, nil).LogFields()
	if len(fields) != len(names) {
		t.Errorf("LogFields has %d keys, want %d", len(fields), len(names))
	}
	for _, n := range names {
		if _, ok := fields[strings.ToLower(strings.TrimPrefix(n, config.Prefix))]; !ok {
			t.Errorf("LogFields lacks %s", n)
		}
	}
}

// settingCase is one row of the per-setting table: get reads the setting's field.
type settingCase struct {
	name  string
	get   func(config.Config) any
	def   any
	valid string            // an override that differs from the default
	want  any               // get() after the override
	with  map[string]string // other variables the override or the bad values need
	bad   []string          // each must fail, naming name
}

func settingCases() []settingCase {
	const tok16 = "abcdefghijklmnop"
	sec := func(s config.Secret) any { return s.Reveal() }
	return []settingCase{
		{name: config.EnvRedisURL, get: func(c config.Config) any { return c.Redis.URL }, def: "redis://127.0.0.1:6379/0",
			valid: "redis://redis.svc:6380/2", want: "redis://redis.svc:6380/2",
			bad: []string{"http://h:6379", "redis://", "redis:///0", "redis://h:0", "redis://h:99999", "redis://h/x", "redis://h/-1", "h:6379", "unix:///tmp/r.sock"}},
		{name: config.EnvRedisPassword, get: func(c config.Config) any { return sec(c.Redis.Password) }, def: "",
			valid: "pw", want: "pw", bad: []string{"replace-me-with-a-long-random-value", "changeme"}},
		{name: config.EnvRedisSentinelAddrs, get: func(c config.Config) any { return c.Redis.SentinelAddrs }, def: []string(nil),
			valid: " s1:26379, s2:26379 ,", want: []string{"s1:26379", "s2:26379"},
			bad: []string{"s1", "s1:26379,s2", ":26379", "s1:port", "s1:0", "s1:70000"}},
		{name: config.EnvRedisSentinelMaster, get: func(c config.Config) any { return c.Redis.SentinelMaster }, def: "mymaster",
			valid: "cache", want: "cache"},
		{name: config.EnvRedisSentinelPassword, get: func(c config.Config) any { return sec(c.Redis.SentinelPassword) }, def: "",
			valid: "spw", want: "spw", bad: []string{"password"}},
		{name: config.EnvRedisTLS, get: func(c config.Config) any { return c.Redis.TLS }, def: false,
			valid: "TRUE", want: true, bad: []string{"yes", "2", "on"}},
		{name: config.EnvRedisTLSCAFile, get: func(c config.Config) any { return c.Redis.TLSCAFile }, def: "",
			valid: "/etc/ca.pem", want: "/etc/ca.pem", with: map[string]string{config.EnvRedisTLS: "true"},
			bad: []string{"/etc/ca.pem"}}, // without TLS
		{name: config.EnvRedisTLSInsecure, get: func(c config.Config) any { return c.Redis.TLSInsecure }, def: false,
			valid: "1", want: true, with: map[string]string{config.EnvRedisURL: "rediss://h:6380"},
			bad: []string{"maybe", "true"}}, // "true" without TLS

		{name: config.EnvDTBaseURL, get: func(c config.Config) any { return c.Provider.BaseURL }, def: "https://web.it-decision.com/v1/api",
			valid: "http://127.0.0.1:8090/v1/api/", want: "http://127.0.0.1:8090/v1/api",
			bad: []string{"web.it-decision.com/v1/api", "ftp://h/x", "https://", "https://h/api?x=1", "https://h/api#f", "/v1/api"}},
		{name: config.EnvDTAPIKey, get: func(c config.Config) any { return sec(c.Provider.APIKey) }, def: "",
			valid: "key-123", want: "key-123", bad: []string{"replace-me-with-a-long-random-value", "YOUR-API-KEY", "<api key>"}},
		{name: config.EnvDTKeyEncoded, get: func(c config.Config) any { return c.Provider.KeyEncoded }, def: false,
			valid: "t", want: true, bad: []string{"yes"}},
		{name: config.EnvDTTimeout, get: func(c config.Config) any { return c.Provider.Timeout }, def: 30 * time.Second,
			valid: "2.5s", want: 2500 * time.Millisecond, bad: []string{"10", "abc", "50ms", "6m", "-1s"}},

		{name: config.EnvRateLimit, get: func(c config.Config) any { return c.Limits.SendRate }, def: 50.0,
			valid: "0.5", want: 0.5, bad: []string{"abc", "0", "-1", "NaN", "Inf", "1e400", "1e308", "1e-300", "0.009", "10001"}},
		{name: config.EnvRateBurst, get: func(c config.Config) any { return c.Limits.SendBurst }, def: 1,
			valid: "10", want: 10, bad: []string{"0", "1.5", "x", "1000001"}},
		{name: config.EnvStatusRateLimit, get: func(c config.Config) any { return c.Limits.StatusRate }, def: 50.0,
			valid: "200", want: 200.0, bad: []string{"0", "-5", "fast", "1e-300", "1e308"}},
		{name: config.EnvStatusRateBurst, get: func(c config.Config) any { return c.Limits.StatusBurst }, def: 1,
			valid: "5", want: 5, bad: []string{"0", "-1"}},
		{name: config.EnvMaxRetryAfter, get: func(c config.Config) any { return c.Limits.MaxRetryAfter }, def: time.Minute,
			valid: "5m", want: 5 * time.Minute, bad: []string{"500ms", "25h", "-1m", "soon"}},

		{name: config.EnvConcurrency, get: func(c config.Config) any { return c.Worker.Concurrency }, def: 50,
			valid: "10000", want: 10000, bad: []string{"0", "10001", "many"}},
		{name: config.EnvPollConcurrency, get: func(c config.Config) any { return c.Worker.PollConcurrency }, def: 20,
			valid: "5", want: 5, bad: []string{"0", "10001", "-3"}},
		{name: config.EnvFetchers, get: func(c config.Config) any { return c.Worker.Fetchers }, def: 4,
			valid: "1", want: 1, bad: []string{"0", "65", "all"}},
		{name: config.EnvQueueWeights, get: func(c config.Config) any { return c.Worker.QueueWeights },
			def:   map[string]int{"critical": 6, "default": 3, "status": 1},
			valid: " status=2 , critical=10,default=1 ", want: map[string]int{"critical": 10, "default": 1, "status": 2},
			bad: []string{"critical=6,default=3", "critical=6,default=3,status=1,bulk=1", "critical=6,default=3,status=0",
				"critical=6,default=3,status", "critical=6,critical=1,default=3,status=1", "critical=x,default=3,status=1", "critical=1001,default=1,status=1"}},
		{name: config.EnvShutdownTimeout, get: func(c config.Config) any { return c.Worker.ShutdownTimeout }, def: 20 * time.Second,
			valid: "5m", want: 5 * time.Minute, bad: []string{"999ms", "5m1s", "20"}},
		{name: config.EnvMetricsAddr, get: func(c config.Config) any { return c.Worker.MetricsAddr }, def: ":9090",
			valid: "OFF", want: "", bad: []string{"9090", "localhost", ":http", ":70000"}},
		{name: config.EnvReconcilePeriod, get: func(c config.Config) any { return c.Worker.ReconcilePeriod }, def: 30 * time.Second,
			valid: "5s", want: 5 * time.Second, bad: []string{"999ms", "1h1s", "30"}},
		{name: config.EnvReconcileBatch, get: func(c config.Config) any { return c.Worker.ReconcileBatch }, def: 500,
			valid: "100000", want: 100000, bad: []string{"0", "100001", "all"}},

		{name: config.EnvMaxRetry, get: func(c config.Config) any { return c.Tasks.MaxRetry }, def: 100,
			valid: "0", want: 0, bad: []string{"-1", "10001", "lots"}},
		{name: config.EnvTaskTimeout, get: func(c config.Config) any { return c.Tasks.Timeout }, def: time.Minute,
			valid: "2m", want: 2 * time.Minute, bad: []string{"500ms", "2h"}},
		{name: config.EnvDefaultTTL, get: func(c config.Config) any { return c.Tasks.DefaultTTL }, def: time.Hour,
			valid: "40s", want: 40 * time.Second, bad: []string{"39s", "6h1s", "1d"}},
		{name: config.EnvSMSTTL, get: func(c config.Config) any { return c.Tasks.SMSTTL }, def: 40 * time.Second,
			valid: "6h", want: 6 * time.Hour, bad: []string{"10s", "7h"}},
		{name: config.EnvRecordRetention, get: func(c config.Config) any { return c.Tasks.RecordRetention }, def: 168 * time.Hour,
			valid: "24h", want: 24 * time.Hour, bad: []string{"30m", "8761h", "6h"}},
		{name: config.EnvTaskRetention, get: func(c config.Config) any { return c.Tasks.TaskRetention }, def: time.Hour,
			valid: "0s", want: time.Duration(0), bad: []string{"-1s", "721h"}},
		{name: config.EnvEventsMaxLen, get: func(c config.Config) any { return c.Tasks.EventsMaxLen }, def: int64(100000),
			valid: "5000000", want: int64(5000000), bad: []string{"0", "1e6", "1000000001"}},
		{name: config.EnvTwoWay, get: func(c config.Config) any { return c.Tasks.TwoWay }, def: false,
			valid: "true", want: true, bad: []string{"y"}},

		{name: config.EnvPollFirst, get: func(c config.Config) any { return c.Poll.First }, def: 5 * time.Second,
			valid: "500ms", want: 500 * time.Millisecond, bad: []string{"10ms", "2h"}},
		{name: config.EnvPollMaxInterval, get: func(c config.Config) any { return c.Poll.MaxInterval }, def: time.Minute,
			valid: "10m", want: 10 * time.Minute, bad: []string{"2s", "25h", "0"}},
		{name: config.EnvPollSMSGrace, get: func(c config.Config) any { return c.Poll.SMSGrace }, def: 10 * time.Minute,
			valid: "0s", want: time.Duration(0), bad: []string{"121h", "-1m"}},
		{name: config.EnvPollFirstWithCallback, get: func(c config.Config) any { return c.Poll.FirstWithCallback }, def: 2 * time.Minute,
			valid: "30s", want: 30 * time.Second, bad: []string{"0s", "25h"}},
		{name: config.EnvPollJitter, get: func(c config.Config) any { return c.Poll.Jitter }, def: 0.2,
			valid: "1", want: 1.0, bad: []string{"-0.1", "1.01", "NaN", "lots"}},

		{name: config.EnvPauseOnBalance, get: func(c config.Config) any { return c.Policy.PauseOnBalance }, def: true,
			valid: "false", want: false, bad: []string{"no"}},
		{name: config.EnvPauseOnAuth, get: func(c config.Config) any { return c.Policy.PauseOnAuth }, def: true,
			valid: "0", want: false, bad: []string{"off"}},
		{name: config.EnvResendUnknown, get: func(c config.Config) any { return c.Policy.ResendUnknown }, def: false,
			valid: "True", want: true, bad: []string{"sometimes"}},
		{name: config.EnvServerErrorUnknown, get: func(c config.Config) any { return c.Policy.ServerErrorUnknown }, def: false,
			valid: "true", want: true, bad: []string{"maybe"}},

		{name: config.EnvLogLevel, get: func(c config.Config) any { return c.Log.Level }, def: "info",
			valid: "DEBUG", want: "debug", bad: []string{"verbose", "warning", "trace"}},
		{name: config.EnvLogFormat, get: func(c config.Config) any { return c.Log.Format }, def: "json",
			valid: "console", want: "console", bad: []string{"text", "logfmt"}},

		{name: config.EnvHTTPAddr, get: func(c config.Config) any { return c.API.Addr }, def: ":8080",
			valid: "127.0.0.1:0", want: "127.0.0.1:0", bad: []string{"8080", "off", ":-1", "[::1]"}},
		{name: config.EnvAPITokens, get: func(c config.Config) any { return c.API.Tokens }, def: []config.Secret(nil),
			valid: tok16 + ", ,zyxwvutsrqponmlk", want: []config.Secret{tok16, "zyxwvutsrqponmlk"},
			bad: []string{"short", tok16 + ",short", "abcdefgh ijklmnopq", "replace-me-with-a-long-random-value", tok16 + ",changeme-changeme-1"}},
		{name: config.EnvMonitoringUser, get: func(c config.Config) any { return c.API.MonitoringUser }, def: "admin",
			valid: "ops", want: "ops", bad: []string{"a:b"}},
		{name: config.EnvMonitoringPassword, get: func(c config.Config) any { return sec(c.API.MonitoringPassword) }, def: "",
			valid: "monitoring-pw-0123", want: "monitoring-pw-0123",
			bad: []string{"a", "admin", "short-pw-15char", "replace-me-with-a-long-random-value", "passwordpassword-example"}},
		{name: config.EnvMaxBodyBytes, get: func(c config.Config) any { return c.API.MaxBodyBytes }, def: int64(1 << 20),
			valid: "4096", want: int64(4096), bad: []string{"1023", "67108865", "1MB"}},
		{name: config.EnvHTTPReadTimeout, get: func(c config.Config) any { return c.API.ReadTimeout }, def: 10 * time.Second,
			valid: "1m", want: time.Minute, bad: []string{"0s", "11m"}},
		{name: config.EnvHTTPWriteTimeout, get: func(c config.Config) any { return c.API.WriteTimeout }, def: 30 * time.Second,
			valid: "1s", want: time.Second, bad: []string{"999ms", "1h"}},

		{name: config.EnvCallbackURL, get: func(c config.Config) any { return c.Callback.URL }, def: "",
			valid: "https://viberq.example.com/v1/callbacks/status", want: "https://viberq.example.com/v1/callbacks/status",
			with: map[string]string{config.EnvCallbackToken: tok16},
			bad:  []string{"viberq.example.com/cb", "ftp://h/cb", "https://u:p@h/cb", "https://h/cb#x", "https://h/cb/" + tok16}},
		{name: config.EnvCallbackToken, get: func(c config.Config) any { return sec(c.Callback.Token) }, def: "",
			valid: tok16 + "-_.~", want: tok16 + "-_.~", bad: []string{"short-token", tok16 + "/x", tok16 + "%20", "replace-me-with-a-long-random-value"}},
		{name: config.EnvCallbackUser, get: func(c config.Config) any { return c.Callback.User }, def: "",
			valid: "dt", want: "dt", with: map[string]string{config.EnvCallbackPassword: "cpw"},
			bad: []string{"d:t", "d\x00t"}},
		{name: config.EnvCallbackPassword, get: func(c config.Config) any { return sec(c.Callback.Password) }, def: "",
			valid: "cpw", want: "cpw", with: map[string]string{config.EnvCallbackUser: "dt"}, bad: []string{"changeme"}},

		{name: config.EnvAlertWebhookURL, get: func(c config.Config) any { return sec(c.Alert.WebhookURL) }, def: "",
			valid: "https://hooks.example.com/services/T0/B0/xyz", want: "https://hooks.example.com/services/T0/B0/xyz",
			bad: []string{"hooks.example.com/x", "mailto:ops@example.com"}},
		{name: config.EnvAlertWindow, get: func(c config.Config) any { return c.Alert.Window }, def: 10 * time.Minute,
			valid: "1h", want: time.Hour, bad: []string{"0s", "25h"}},

		{name: config.EnvOutbox, get: func(c config.Config) any { return c.Outbox.Enabled }, def: true,
			valid: "false", want: false, bad: []string{"disabled"}},
		{name: config.EnvOutboxStream, get: func(c config.Config) any { return c.Outbox.Stream }, def: "viberq:outbox",
			valid: "app:outbox", want: "app:outbox"},
		{name: config.EnvOutboxGroup, get: func(c config.Config) any { return c.Outbox.Group }, def: "viberq",
			valid: "workers", want: "workers"},
		{name: config.EnvOutboxClaimIdle, get: func(c config.Config) any { return c.Outbox.ClaimIdle }, def: time.Minute,
			valid: "5m", want: 5 * time.Minute, bad: []string{"500ms", "2d"}},
		{name: config.EnvOutboxMaxAttempts, get: func(c config.Config) any { return c.Outbox.MaxAttempts }, def: 10,
			valid: "3", want: 3, bad: []string{"0", "1001", "many"}},

		{name: config.EnvWebhookURL, get: func(c config.Config) any { return sec(c.Webhook.URL) }, def: "",
			valid: "https://app.example.com/hooks/viberq", want: "https://app.example.com/hooks/viberq",
			with: map[string]string{config.EnvWebhookSecret: tok16},
			bad:  []string{"app.example.com/hooks", "ftp://app.example.com/x"}},
		{name: config.EnvWebhookSecret, get: func(c config.Config) any { return c.Webhook.Secrets }, def: []config.Secret(nil),
			valid: tok16 + ", zyxwvutsrqponmlk", want: []config.Secret{tok16, "zyxwvutsrqponmlk"},
			bad: []string{"shortsecret", tok16 + ",tooshort"}},
		{name: config.EnvWebhookEvents, get: func(c config.Config) any { return c.Webhook.Events }, def: "final",
			valid: "all", want: "all", bad: []string{"some"}},
		{name: config.EnvWebhookMaxRetry, get: func(c config.Config) any { return c.Webhook.MaxRetry }, def: 15,
			valid: "3", want: 3, bad: []string{"0", "101"}},
		{name: config.EnvWebhookTimeout, get: func(c config.Config) any { return c.Webhook.Timeout }, def: 10 * time.Second,
			valid: "30s", want: 30 * time.Second, bad: []string{"500ms", "2m"}},
		{name: config.EnvWebhookConcurrency, get: func(c config.Config) any { return c.Webhook.Concurrency }, def: 10,
			valid: "4", want: 4, bad: []string{"0", "1001"}},
		{name: config.EnvWebhookAllowPrivate, get: func(c config.Config) any { return c.Webhook.AllowPrivate }, def: false,
			valid: "true", want: true, bad: []string{"maybe"}},
	}
}

func TestEverySetting(t *testing.T) {
	t.Parallel()
	cases := settingCases()
	secret := map[string]bool{}
	for _, s := range config.Describe() {
		secret[s.Name] = s.Secret
	}
	covered := map[string]bool{}
	for _, tc := range cases {
		covered[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.get(mustLoad(t, nil)); !reflect.DeepEqual(got, tc.def) {
				t.Errorf("default = %#v, want %#v", got, tc.def)
			}
			if reflect.DeepEqual(tc.want, tc.def) {
				t.Fatalf("bad test: override %q gives the default", tc.valid)
			}
			m := map[string]string{tc.name: tc.valid}
			for k, v := range tc.with {
				m[k] = v
			}
			if got := tc.get(mustLoad(t, m)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("with %q = %#v, want %#v", tc.valid, got, tc.want)
			}
			// Blank means unset.
			if got := tc.get(mustLoad(t, map[string]string{tc.name: "  \t"})); !reflect.DeepEqual(got, tc.def) {
				t.Errorf("blank = %#v, want the default %#v", got, tc.def)
			}
			for _, bad := range tc.bad {
				m := map[string]string{tc.name: bad}
				if tc.name == config.EnvCallbackURL {
					m[config.EnvCallbackToken] = "abcdefghijklmnop" // so only the URL itself is wrong
				}
				ce := loadErr(t, m)
				if got := ce.Vars(); !slices.Equal(got, []string{tc.name}) {
					t.Errorf("bad %q: error names %v, want [%s]: %v", bad, got, tc.name, ce)
					continue
				}
				msg := ce.Error()
				if !strings.HasPrefix(msg, tc.name+": ") {
					t.Errorf("bad %q: error %q does not start with the name", bad, msg)
				}
				if secret[tc.name] && len(bad) >= 4 && strings.Contains(msg, bad) {
					t.Errorf("bad %q: error quotes the secret: %q", bad, msg)
				}
			}
		})
	}
	for _, n := range config.Names() {
		if !covered[n] {
			t.Errorf("no test row for %s", n)
		}
	}
}

// Non-secret bad values are quoted in the error, so the operator sees what was read.
func TestErrorQuotesTheValue(t *testing.T) {
	t.Parallel()
	for name, v := range map[string]string{
		config.EnvRateLimit:    "abc",
		config.EnvDTTimeout:    "10",
		config.EnvLogLevel:     "verbose",
		config.EnvQueueWeights: "critical=6,default=3,bulk=1",
		config.EnvRedisURL:     "http://cache:6379",
	} {
		msg := loadErr(t, map[string]string{name: v}).Error()
		if !strings.Contains(msg, v) && !strings.Contains(msg, "bulk") {
			t.Errorf("%s=%q: error %q does not show the value", name, v, msg)
		}
	}
	got := loadErr(t, map[string]string{config.EnvRateLimit: "abc"}).Error()
	if want := `VIBERQ_RATE_LIMIT: must be a number between 0.01 and 10000, got "abc"`; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
}

func TestSeveralBadAtOnce(t *testing.T) {
	t.Parallel()
	ce := loadErr(t, map[string]string{
		config.EnvLogFormat:   "xml",
		config.EnvRateLimit:   "abc",
		config.EnvConcurrency: "0",
		config.EnvRedisURL:    "mysql://db",
		config.EnvPollJitter:  "2",
	})
	want := []string{config.EnvRedisURL, config.EnvRateLimit, config.EnvConcurrency, config.EnvPollJitter, config.EnvLogFormat}
	if got := ce.Vars(); !slices.Equal(got, want) {
		t.Errorf("Vars() = %v, want %v (Describe order)", got, want)
	}
	parts := strings.Split(ce.Error(), "; ")
	if len(parts) != len(want) {
		t.Fatalf("error %q has %d parts, want %d", ce, len(parts), len(want))
	}
	for i, p := range parts {
		if !strings.HasPrefix(p, want[i]+": ") {
			t.Errorf("part %d = %q, want it to start with %s", i, p, want[i])
		}
	}
}

func TestCrossChecks(t *testing.T) {
	t.Parallel()
	const tok = "abcdefghijklmnop"
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantVar string // "" = valid
		wantIn  string
	}{
		{"TimeoutBelowTaskTimeout", map[string]string{config.EnvDTTimeout: "59s"}, "", ""},
		{"TimeoutEqualsTaskTimeout", map[string]string{config.EnvDTTimeout: "60s"}, config.EnvDTTimeout, config.EnvTaskTimeout},
		{"TimeoutAboveShorterTaskTimeout", map[string]string{config.EnvTaskTimeout: "5s"}, config.EnvDTTimeout, "(5s), got 30s"},
		{"RetentionCoversTTLAndGrace", map[string]string{config.EnvRecordRetention: "6h10m"}, "", ""},
		{"RetentionBelowTTLAndGrace", map[string]string{config.EnvRecordRetention: "6h9m"}, config.EnvRecordRetention, "6h10m"},
		{"RetentionBelowBiggerGrace", map[string]string{config.EnvPollSMSGrace: "24h", config.EnvRecordRetention: "24h"}, config.EnvRecordRetention, "30h"},
		{"TaskRetentionAboveRecordRetention", map[string]string{config.EnvTaskRetention: "200h"}, config.EnvTaskRetention, "(168h)"},
		{"TaskRetentionEqualsRecordRetention", map[string]string{config.EnvTaskRetention: "168h"}, "", ""},
		{"TaskRetentionAboveShorterRecordRetention", map[string]string{config.EnvRecordRetention: "12h", config.EnvTaskRetention: "13h"}, config.EnvTaskRetention, "got 13h"},
		{"MaxIntervalBelowFirst", map[string]string{config.EnvPollFirst: "10s", config.EnvPollMaxInterval: "5s"}, config.EnvPollMaxInterval, config.EnvPollFirst},
		{"MaxIntervalEqualsFirst", map[string]string{config.EnvPollFirst: "10s", config.EnvPollMaxInterval: "10s"}, "", ""},
		{"CAFileWithoutTLS", map[string]string{config.EnvRedisTLSCAFile: "/ca.pem"}, config.EnvRedisTLSCAFile, "rediss://"},
		{"CAFileWithRediss", map[string]string{config.EnvRedisTLSCAFile: "/ca.pem", config.EnvRedisURL: "rediss://h"}, "", ""},
		{"InsecureWithoutTLS", map[string]string{config.EnvRedisTLSInsecure: "true"}, config.EnvRedisTLSInsecure, config.EnvRedisTLS},
		{"InsecureFalseWithoutTLS", map[string]string{config.EnvRedisTLSInsecure: "false"}, "", ""},
		{"CallbackURLWithoutAuth", map[string]string{config.EnvCallbackURL: "https://h/cb"}, config.EnvCallbackURL, "authenticated"},
		{"WebhookURLWithoutSecret", map[string]string{config.EnvWebhookURL: "https://h/hook"}, config.EnvWebhookURL, config.EnvWebhookSecret},
		{"WebhookURLWithSecret", map[string]string{config.EnvWebhookURL: "https://h/hook", config.EnvWebhookSecret: tok}, "", ""},
		{"CallbackURLWithBasicAuth", map[string]string{config.EnvCallbackURL: "https://h/cb", config.EnvCallbackUser: "u", config.EnvCallbackPassword: "p"}, "", ""},
		{"CallbackURLContainsToken", map[string]string{config.EnvCallbackURL: "https://h/cb/" + tok, config.EnvCallbackToken: tok}, config.EnvCallbackURL, config.EnvCallbackToken},
		{"CallbackUserWithoutPassword", map[string]string{config.EnvCallbackUser: "u"}, config.EnvCallbackPassword, config.EnvCallbackUser},
		{"CallbackPasswordWithoutUser", map[string]string{config.EnvCallbackPassword: "p"}, config.EnvCallbackUser, config.EnvCallbackPassword},
		{"TokenWithoutURL", map[string]string{config.EnvCallbackToken: tok}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.wantVar == "" {
				mustLoad(t, tc.env)
				return
			}
			ce := loadErr(t, tc.env)
			if got := ce.Vars(); !slices.Equal(got, []string{tc.wantVar}) {
				t.Errorf("Vars() = %v, want [%s]: %v", got, tc.wantVar, ce)
			}
			if !strings.Contains(ce.Error(), tc.wantIn) {
				t.Errorf("error %q does not contain %q", ce, tc.wantIn)
			}
		})
	}
}

// A check between two settings is skipped when one of them is already bad, so that
// one mistake gives one problem.
func TestCrossCheckSkippedWhenInputBad(t *testing.T) {
	t.Parallel()
	ce := loadErr(t, map[string]string{config.EnvTaskTimeout: "soon", config.EnvDTTimeout: "5m"})
	if got := ce.Vars(); !slices.Equal(got, []string{config.EnvTaskTimeout}) {
		t.Errorf("Vars() = %v, want only %s", got, config.EnvTaskTimeout)
	}
}

func TestRedis(t *testing.T) {
	t.Parallel()
	t.Run("PasswordFromURL", func(t *testing.T) {
		t.Parallel()
		c := mustLoad(t, map[string]string{config.EnvRedisURL: "redis://app:s3cr3t@cache:6380/4?dial_timeout=3s"})
		r := c.Redis
		if r.URL != "redis://app@cache:6380/4?dial_timeout=3s" || r.Addr != "cache:6380" || r.Username != "app" || r.DB != 4 ||
			r.Password.Reveal() != "s3cr3t" || r.TLS {
			t.Errorf("Redis = %#v (password %q)", r, r.Password.Reveal())
		}
		if got := r.RevealURL(); got != "redis://app:s3cr3t@cache:6380/4?dial_timeout=3s" {
			t.Errorf("RevealURL = %q", got)
		}
	})
	// A password not percent-encoded ends the host early at its / ? or #, and the
	// rest reads as a path, query or fragment: refused, and the error shows neither.
	// Unknown query options are refused here, naming the variable, not at connect.
	t.Run("MisparsedPasswordRefusedUnshown", func(t *testing.T) {
		t.Parallel()
		for _, u := range []string{
			"redis://default:/Sup3rS3cretPw@redis:6379/0",
			"redis://default:#Sup3rS3cretPw@redis:6379/0",
			"redis://default:?Sup3rS3cretPw@redis:6379/0",
			"redis://cache:6379/0?poolsize=10&x=Sup3rS3cretPw",
		} {
			ce := loadErr(t, map[string]string{config.EnvRedisURL: u})
			if got := ce.Vars(); !slices.Equal(got, []string{config.EnvRedisURL}) {
				t.Errorf("%s: Vars() = %v", u, got)
			}
			if msg := ce.Error(); strings.Contains(msg, "Sup3rS3cret") || !strings.Contains(msg, "must") {
				t.Errorf("%s: error %q", u, msg)
			}
		}
		ce := loadErr(t, map[string]string{config.EnvRedisSentinelAddrs: "redis://:Sup3rS3cretPw@s:26379", config.EnvRedisURL: "redis://h"})
		if msg := ce.Error(); strings.Contains(msg, "Sup3rS3cret") || !strings.Contains(msg, config.EnvRedisSentinelAddrs) {
			t.Errorf("sentinel URL: error %q", msg)
		}
	})
	// The URL's password is checked as VIBERQ_REDIS_PASSWORD is (a placeholder is
	// refused, unquoted); query options that Sentinel would drop are refused.
	t.Run("URLPasswordPlaceholderAndSentinelQuery", func(t *testing.T) {
		t.Parallel()
		ce := loadErr(t, map[string]string{config.EnvRedisURL: "redis://:changeme@cache:6379/0"})
		if got := ce.Vars(); !slices.Equal(got, []string{config.EnvRedisURL}) || strings.Contains(ce.Error(), "changeme") {
			t.Errorf("placeholder password: %v", ce)
		}
		ce = loadErr(t, map[string]string{config.EnvRedisURL: "redis://cache/0?db=3", config.EnvRedisSentinelAddrs: "s1:26379"})
		if got := ce.Vars(); !slices.Equal(got, []string{config.EnvRedisURL}) || !strings.Contains(ce.Error(), "not used with VIBERQ_REDIS_SENTINEL_ADDRS") {
			t.Errorf("sentinel with query options: %v", ce)
		}
		mustLoad(t, map[string]string{config.EnvRedisURL: "redis://cache/3", config.EnvRedisSentinelAddrs: "s1:26379"})
	})
	t.Run("PasswordOverride", func(t *testing.T) {
		t.Parallel()
		c := mustLoad(t, map[string]string{config.EnvRedisURL: "redis://:old@cache", config.EnvRedisPassword: "new"})
		if c.Redis.Password.Reveal() != "new" || c.Redis.URL != "redis://cache" || c.Redis.Addr != "cache:6379" {
			t.Errorf("Redis = %#v (password %q)", c.Redis, c.Redis.Password.Reveal())
		}
		if got := c.Redis.RevealURL(); got != "redis://:new@cache" {
			t.Errorf("RevealURL = %q", got)
		}
	})
	t.Run("NoPassword", func(t *testing.T) {
		t.Parallel()
		c := mustLoad(t, nil)
		if got := c.Redis.RevealURL(); got != config.DefaultRedisURL {
			t.Errorf("RevealURL = %q", got)
		}
	})
	t.Run("RedissImpliesTLS", func(t *testing.T) {
		t.Parallel()
		c := mustLoad(t, map[string]string{config.EnvRedisURL: "rediss://[::1]:6390", config.EnvRedisTLS: "false"})
		if !c.Redis.TLS || c.Redis.Addr != "[::1]:6390" || c.Redis.DB != 0 {
			t.Errorf("Redis = %#v", c.Redis)
		}
	})
	t.Run("Sentinel", func(t *testing.T) {
		t.Parallel()
		c := mustLoad(t, map[string]string{config.EnvRedisSentinelAddrs: "a:26379,b:26379"})
		if !c.Redis.Sentinel() || c.Redis.SentinelMaster != "mymaster" {
			t.Errorf("Redis = %#v", c.Redis)
		}
		if mustLoad(t, nil).Redis.Sentinel() {
			t.Error("Sentinel() without addrs = true")
		}
	})
}

func TestCallbackRevealURL(t *testing.T) {
	t.Parallel()
	const tok = "abcdefghijklmnop"
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, ""},
		{map[string]string{config.EnvCallbackURL: "https://h/cb/", config.EnvCallbackToken: tok}, "https://h/cb/" + tok},
		{map[string]string{config.EnvCallbackURL: "https://h/cb?src=dt", config.EnvCallbackToken: tok}, "https://h/cb/" + tok + "?src=dt"},
		{map[string]string{config.EnvCallbackURL: "https://h", config.EnvCallbackToken: tok}, "https://h/" + tok},
		{map[string]string{config.EnvCallbackURL: "http://h:8080/cb", config.EnvCallbackUser: "dt", config.EnvCallbackPassword: "p@ss"}, "http://dt:p%40ss@h:8080/cb"},
	} {
		c := mustLoad(t, tc.env)
		if got := c.Callback.RevealURL(); got != tc.want {
			t.Errorf("%v: RevealURL = %q, want %q", tc.env, got, tc.want)
		}
	}
}

func TestRequire(t *testing.T) {
	t.Parallel()
	empty := mustLoad(t, nil)
	full := mustLoad(t, map[string]string{
		config.EnvDTAPIKey: "k", config.EnvAPITokens: "abcdefghijklmnop", config.EnvMonitoringPassword: "monitoring-pw-0123",
	})
	for _, tc := range []struct {
		name string
		fn   func(config.Config) error
	}{
		{config.EnvDTAPIKey, config.Config.RequireAPIKey},
		{config.EnvAPITokens, config.Config.RequireAPITokens},
		{config.EnvMonitoringPassword, config.Config.RequireMonitoringPassword},
	} {
		if err := tc.fn(full); err != nil {
			t.Errorf("%s set: %v", tc.name, err)
		}
		err := tc.fn(empty)
		var ce *config.Error
		if !errors.As(err, &ce) || !slices.Equal(ce.Vars(), []string{tc.name}) || !strings.HasPrefix(err.Error(), tc.name+": required") {
			t.Errorf("%s unset: %v", tc.name, err)
		}
	}
}

func TestValidToken(t *testing.T) {
	t.Parallel()
	c := mustLoad(t, map[string]string{config.EnvAPITokens: "abcdefghijklmnop,qrstuvwxyz012345"})
	for tok, want := range map[string]bool{
		"abcdefghijklmnop": true, "qrstuvwxyz012345": true,
		"": false, "abcdefghijklmno": false, "abcdefghijklmnopq": false, "abcdefghijklmnop,qrstuvwxyz012345": false,
	} {
		if got := c.API.ValidToken(tok); got != want {
			t.Errorf("ValidToken(%q) = %v, want %v", tok, got, want)
		}
	}
	if mustLoad(t, nil).API.ValidToken("") {
		t.Error(`ValidToken("") with no tokens = true`)
	}
}

func TestUnknown(t *testing.T) {
	t.Parallel()
	got := config.Unknown([]string{"PATH=/bin", "VIBERQ_RATE_LIMIT=5", "VIBERQ_RATE_LIMT=5", "VIBERQ_REDIS_URL", "VIBERQ_X="})
	if want := []string{"VIBERQ_RATE_LIMT", "VIBERQ_X"}; !slices.Equal(got, want) {
		t.Errorf("Unknown = %v, want %v", got, want)
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv(config.EnvRateLimit, "7")
	t.Setenv(config.EnvLogFormat, "console")
	c, err := config.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.SendRate != 7 || c.Log.Format != "console" {
		t.Errorf("FromEnv: %+v", c)
	}
	t.Setenv(config.EnvRateLimit, "-7")
	if _, err := config.FromEnv(); err == nil || !strings.Contains(err.Error(), config.EnvRateLimit) {
		t.Errorf("FromEnv with a bad value: %v", err)
	}
}

func TestSummaryAndLogFields(t *testing.T) {
	t.Parallel()
	c := mustLoad(t, map[string]string{config.EnvMetricsAddr: "off", config.EnvDTAPIKey: "the-key-value"})
	s := c.Summary()
	if strings.ContainsAny(s, "\n\r") {
		t.Errorf("Summary is not one line: %q", s)
	}
	for _, want := range []string{
		"redis_url=redis://127.0.0.1:6379/0 ", "rate_limit=50 ", "dt_timeout=30s ", "dt_api_key=[REDACTED] ",
		`redis_password="" `, `queue_weights="critical=6,default=3,status=1" `, "metrics_addr=off ", "record_retention=168h ",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("Summary lacks %q:\n%s", want, s)
		}
	}
	f := c.LogFields()
	for k, want := range map[string]any{
		"rate_limit": 50.0, "concurrency": 50, "events_maxlen": int64(100000), "outbox": true,
		"dt_api_key": "[REDACTED]", "poll_first": "5s", "metrics_addr": "off", "api_tokens": "",
	} {
		if got := f[k]; got != want {
			t.Errorf("LogFields[%q] = %#v, want %#v", k, got, want)
		}
	}
}

// Every secret, set to a distinctive value, appears in no printed form of the Config.
func TestSecretsNeverPrinted(t *testing.T) {
	t.Parallel()
	secrets := map[string]string{
		config.EnvRedisPassword:         "sec-redis-pw-1",
		config.EnvRedisSentinelPassword: "sec-sentinel-pw-2",
		config.EnvDTAPIKey:              "sec-dt-api-key-3",
		config.EnvAPITokens:             "sec-api-token-aaaa4,sec-api-token-bbbb5",
		config.EnvMonitoringPassword:    "sec-monitoring-pw-6",
		config.EnvCallbackToken:         "sec-callback-token-7",
		config.EnvCallbackPassword:      "sec-callback-pw-8",
		config.EnvAlertWebhookURL:       "https://hooks.example.com/sec-webhook-9",
	}
	m := map[string]string{
		config.EnvCallbackUser: "dt",
		config.EnvCallbackURL:  "https://viberq.example.com/cb",
		// The Redis URL's own password must not show either, even when overridden.
		config.EnvRedisURL: "redis://app:sec-url-pw-10@cache:6379/1",
	}
	for k, v := range secrets {
		m[k] = v
	}
	c := mustLoad(t, m)
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	lf, err := json.Marshal(c.LogFields())
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"%v": fmt.Sprintf("%v", c), "%+v": fmt.Sprintf("%+v", c), "%#v": fmt.Sprintf("%#v", c),
		"Println": fmt.Sprintln(c, &c), "json": string(js), "Summary": c.Summary(), "LogFields json": string(lf),
		"LogFields %v": fmt.Sprintf("%v", c.LogFields()), "Redis %+v": fmt.Sprintf("%+v", c.Redis), "API %#v": fmt.Sprintf("%#v", c.API),
	}
	for name, out := range outputs {
		for _, marker := range []string{"sec-", "sec-url-pw-10"} {
			if strings.Contains(out, marker) {
				t.Errorf("%s leaks %q:\n%s", name, marker, out)
			}
		}
		if !strings.Contains(out, config.Redacted) {
			t.Errorf("%s shows no %s:\n%s", name, config.Redacted, out)
		}
	}
	// The values are there for whoever asks explicitly.
	if c.Provider.APIKey.Reveal() != "sec-dt-api-key-3" || c.Redis.Password.Reveal() != "sec-redis-pw-1" ||
		len(c.API.Tokens) != 2 || c.API.Tokens[1].Reveal() != "sec-api-token-bbbb5" ||
		c.Alert.WebhookURL.Reveal() != "https://hooks.example.com/sec-webhook-9" {
		t.Error("Reveal does not give the configured values")
	}
}

// Error messages never quote a secret, nor a password inside the Redis URL.
func TestSecretsNeverInErrors(t *testing.T) {
	t.Parallel()
	for _, m := range []map[string]string{
		{config.EnvCallbackToken: "sec-short-1"},
		{config.EnvCallbackToken: "sec-token-with/slash-2"},
		{config.EnvAPITokens: "sec-api-token-ok-3333,sec-4"},
		{config.EnvAPITokens: "sec-api-token with space 5"},
		{config.EnvAlertWebhookURL: "ftp://hooks.example.com/sec-webhook-6"},
		{config.EnvAlertWebhookURL: "sec-webhook-7"},
		{config.EnvRedisURL: "redis://u:sec-url-pw-8@cache:99999/0"},
		{config.EnvRedisURL: "redis://u:sec-url-pw-9@cache/db"},
		{config.EnvRedisURL: "http://u:sec-url-pw-10@cache"},
		{config.EnvRedisURL: "redis://u:sec-url-pw-11@cache:port%zz/0"},
		{config.EnvDTBaseURL: "https://u:sec-base-pw-12@h/v1/api"},
		{config.EnvCallbackURL: "https://u:sec-cb-pw-13@h/cb", config.EnvCallbackToken: "abcdefghijklmnop"},
		// A secret pasted into a non-secret setting is scrubbed from that one's error.
		{config.EnvDTAPIKey: "sec-pasted-key-14", config.EnvLogLevel: "sec-pasted-key-14"},
	} {
		_, err := config.Load(env(m))
		if err == nil {
			t.Errorf("Load(%v) = nil error", m)
			continue
		}
		if strings.Contains(err.Error(), "sec-") {
			t.Errorf("Load(%v) error leaks: %v", m, err)
		}
	}
}

func TestDescribeIsACopy(t *testing.T) {
	t.Parallel()
	d := config.Describe()
	d[0].Name = "changed"
	n := config.Names()
	n[0] = "changed"
	if config.Describe()[0].Name != config.EnvRedisURL || config.Names()[0] != config.EnvRedisURL {
		t.Error("Describe/Names expose the package's table")
	}
}

// FuzzLoad: any value of any setting gives a valid Config or an *Error on one line that
// names only known variables and, for secrets, never shows the value.
func FuzzLoad(f *testing.F) {
	for i, s := range config.Describe() {
		f.Add(uint8(i), s.Default)
		f.Add(uint8(i), "x")
	}
	f.Add(uint8(0), "redis://u:p@h:6379/0?x=1")
	f.Add(uint8(0), "redis://[::1")
	names := config.Names()
	secret := map[string]bool{}
	for _, s := range config.Describe() {
		secret[s.Name] = s.Secret
	}
	const marker = "ZQXJ" // not a substring of any rule text
	f.Fuzz(func(t *testing.T, idx uint8, v string) {
		name := names[int(idx)%len(names)]
		if secret[name] {
			v = marker + v + marker
		}
		c, err := config.Load(env(map[string]string{name: v}))
		if err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error %T %v", err, err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error not one line: %q", err)
			}
			for _, p := range ce.Problems {
				if !slices.Contains(names, p.Var) {
					t.Fatalf("unknown var %q in %v", p.Var, err)
				}
			}
			if secret[name] && strings.Contains(err.Error(), marker) {
				t.Fatalf("error shows the secret: %v", err)
			}
			return
		}
		if secret[name] {
			for _, out := range []string{c.Summary(), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c)} {
				if strings.Contains(out, marker) {
					t.Fatalf("output shows the secret: %s", out)
				}
			}
		}
		_ = c.Redis.RevealURL()
		_ = c.Callback.RevealURL()
	})
}

// LoadFor names every required setting that is unset together with every bad one,
// in one error, in Describe order.
func TestLoadForNamesEveryRequiredAtOnce(t *testing.T) {
	t.Parallel()
	_, err := config.LoadFor(env(map[string]string{config.EnvRateLimit: "fast"}), config.RequiredAPI...)
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("LoadFor = %v, want *config.Error", err)
	}
	want := []string{config.EnvRateLimit, config.EnvAPITokens, config.EnvMonitoringPassword}
	if got := ce.Vars(); !slices.Equal(got, want) {
		t.Errorf("Vars() = %v, want %v", got, want)
	}
	if strings.Count(ce.Error(), "required by this command, not set") != 2 {
		t.Errorf("error %q does not say both are required", ce)
	}
	// Set, they are read as by Load.
	c, err := config.LoadFor(env(map[string]string{
		config.EnvAPITokens: "abcdefghijklmnop", config.EnvMonitoringPassword: "monitoring-pw-0123",
	}), config.RequiredAPI...)
	if err != nil || len(c.API.Tokens) != 1 || !c.API.MonitoringPassword.IsSet() {
		t.Errorf("LoadFor with the required settings: %v", err)
	}
	if _, err := config.LoadFor(env(nil), config.RequiredWorker...); err == nil || !strings.HasPrefix(err.Error(), config.EnvDTAPIKey+": required") {
		t.Errorf("worker without the key: %v", err)
	}
}

// The secrets of the example manifests are refused wherever they are pasted.
func TestPlaceholderSecretsRefused(t *testing.T) {
	t.Parallel()
	const placeholder = "replace-me-with-a-long-random-value"
	m := map[string]string{}
	for _, s := range config.Describe() {
		if s.Secret && s.Name != config.EnvAlertWebhookURL && s.Name != config.EnvWebhookURL {
			m[s.Name] = placeholder
		}
	}
	m[config.EnvCallbackUser] = "dt" // the callback password needs its user
	ce := loadErr(t, m)
	for name := range m {
		if name == config.EnvCallbackUser {
			continue
		}
		if !slices.Contains(ce.Vars(), name) {
			t.Errorf("%s=%s accepted: %v", name, placeholder, ce)
		}
	}
	if strings.Contains(ce.Error(), placeholder) {
		t.Errorf("error quotes the value: %v", ce)
	}
}

func TestUnknownWarnings(t *testing.T) {
	t.Parallel()
	got := config.UnknownWarnings([]string{"VIBERQ_RATE_LIMT=5", "VIBERQ_MONITORING_PASWORD=x", "VIBERQ_ZZZZZZZZZZZZ=1",
		"VIBERQ_TEST_REDIS_URL=redis://x", "VIBERQ_BENCH_CHILD=1", "VIBERQ_LOG_LEVEL=info"})
	want := []string{
		"VIBERQ_RATE_LIMT is not a viberq setting (did you mean VIBERQ_RATE_LIMIT?); it is ignored",
		"VIBERQ_MONITORING_PASWORD is not a viberq setting (did you mean VIBERQ_MONITORING_PASSWORD?); it is ignored",
		"VIBERQ_ZZZZZZZZZZZZ is not a viberq setting; it is ignored",
	}
	if !slices.Equal(got, want) {
		t.Errorf("UnknownWarnings =\n%q\nwant\n%q", got, want)
	}
	for in, want := range map[string]string{
		"VIBERQ_CONCURENCY": config.EnvConcurrency, "viberq_log_levle": config.EnvLogLevel,
		"VIBERQ_STATUS_RATE_LIMITS": config.EnvStatusRateLimit, "VIBERQ_Q": "",
	} {
		if got := config.Closest(in); got != want {
			t.Errorf("Closest(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDefaultsMirrorProvider: the provider package owns these defaults; config repeats
// them because it imports only the standard library.
func TestDefaultsMirrorProvider(t *testing.T) {
	t.Parallel()
	if provider.DefaultTimeout != config.DefaultDTTimeout {
		t.Errorf("config.DefaultDTTimeout %s, provider.DefaultTimeout %s", config.DefaultDTTimeout, provider.DefaultTimeout)
	}
	if provider.DefaultBaseURL != config.DefaultDTBaseURL {
		t.Errorf("config.DefaultDTBaseURL %s, provider.DefaultBaseURL %s", config.DefaultDTBaseURL, provider.DefaultBaseURL)
	}
}
