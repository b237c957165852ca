package faulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/viberq/viberq/config"
	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/provider/dtsim/dtsimtest"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/outbox"
	"github.com/viberq/viberq/tasks/redistest"
	"github.com/viberq/viberq/worker"
	"github.com/viberq/viberq/worker/api"
)

// The bad-input catalogue: invalid input through every entrance (Go API, CLI flags
// and CSV rows, HTTP API, outbox stream, provider callbacks, hand-made task
// payloads). Each case is refused with an error naming the field and the rule,
// crashes nothing and writes nothing: no viberq:msg:* record, no asynq task. These
// run in plain `go test ./...` (miniredis, httptest, in-process worker); the CLI
// cases run the viberq binary against the miniredis server.

const badPhone = "380501234567"

func validMsg() provider.Message {
	return provider.Message{
		SourceAddr: "Shop", DestinationAddr: badPhone, MessageType: provider.TypeText,
		Text: "Your code is 1234", TextSMS: "Code 1234", SourceType: provider.SourceTransactional,
	}
}

func valid108() provider.Message {
	return provider.Message{
		SourceAddr: "Shop", DestinationAddr: badPhone, MessageType: provider.TypeTextImageButton,
		Text: "Sale -20%", Image: "https://cdn.example.com/p.png", ButtonCaption: "Open",
		ButtonAction: "https://shop.example.com/o/1", SourceType: provider.SourcePromotional,
	}
}

// miniEnv is a miniredis with the producer side on it.
type miniEnv struct {
	mr    *miniredis.Miniredis
	rdb   *redis.Client
	store *tasks.Store
	enq   *tasks.Enqueuer
	insp  *asynq.Inspector
}

func newMiniEnv(t *testing.T) *miniEnv {
	t.Helper()
	mr, rdb := redistest.Mini(t)
	e := &miniEnv{mr: mr, rdb: rdb, store: tasks.NewStore(rdb, tasks.StoreOptions{})}
	client := asynq.NewClientFromRedisClient(rdb)
	e.enq = tasks.NewEnqueuer(client, e.store, tasks.EnqueuerConfig{})
	e.insp = asynq.NewInspectorFromRedisClient(rdb)
	return e
}

// keys returns the record keys and the asynq task keys.
func (e *miniEnv) keys() (records, taskKeys []string) {
	for _, k := range e.mr.Keys() {
		switch {
		case strings.HasPrefix(k, "viberq:msg:"):
			records = append(records, k)
		case strings.HasPrefix(k, "asynq:{") && strings.Contains(k, "}:t:"):
			taskKeys = append(taskKeys, k)
		}
	}
	return records, taskKeys
}

// nothingWritten fails unless there are exactly wantRecords records and as many tasks.
func (e *miniEnv) nothingWritten(t *testing.T, what string, wantRecords int) {
	t.Helper()
	recs, tks := e.keys()
	if len(recs) != wantRecords || len(tks) != wantRecords {
		t.Errorf("%s: %d records %v and %d asynq tasks %v, want %d of each", what, len(recs), recs, len(tks), tks, wantRecords)
	}
}

// fieldRule checks that err is a *provider.ValidationError naming field with a rule
// containing rule.
func fieldRule(err error, field, rule string) error {
	var ve *provider.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("want a *provider.ValidationError naming %s, got %T: %v", field, err, err)
	}
	for _, f := range ve.Fields {
		if f.Field == field && strings.Contains(f.Rule, rule) {
			return nil
		}
	}
	return fmt.Errorf("want field %q with a rule containing %q, got %v", field, rule, ve.Fields)
}

type goAPICase struct {
	name        string
	mut         func(r *tasks.EnqueueRequest)
	field, rule string
}

func set(f func(m *provider.Message)) func(r *tasks.EnqueueRequest) {
	return func(r *tasks.EnqueueRequest) { f(&r.Message) }
}

func as108(f func(m *provider.Message)) func(r *tasks.EnqueueRequest) {
	return func(r *tasks.EnqueueRequest) {
		r.Message = valid108()
		f(&r.Message)
	}
}

var goAPICases = []goAPICase{
	{"source_addr missing", set(func(m *provider.Message) { m.SourceAddr = "" }), "source_addr", "is required"},
	{"source_addr 21 characters", set(func(m *provider.Message) { m.SourceAddr = strings.Repeat("S", 21) }), "source_addr", "at most 20 characters, got 21"},
	{"source_addr invalid UTF-8", set(func(m *provider.Message) { m.SourceAddr = "Sh\xffop" }), "source_addr", "valid UTF-8"},
	{"destination_addr missing", set(func(m *provider.Message) { m.DestinationAddr = "" }), "destination_addr", "is required"},
	{"destination_addr with +", set(func(m *provider.Message) { m.DestinationAddr = "+" + badPhone }), "destination_addr", "digits only"},
	{"destination_addr with spaces", set(func(m *provider.Message) { m.DestinationAddr = "380 50 123 45 67" }), "destination_addr", "digits only"},
	{"destination_addr 16 digits (over E.164's 15)", set(func(m *provider.Message) { m.DestinationAddr = strings.Repeat("3", 16) }), "destination_addr", "must be 7 to 15 digits"},
	{"destination_addr 1 digit", set(func(m *provider.Message) { m.DestinationAddr = "1" }), "destination_addr", "must be 7 to 15 digits (an international number, E.164), got 1"},
	{"destination_addr 6 digits", set(func(m *provider.Message) { m.DestinationAddr = "683432" }), "destination_addr", "got 6"},
	{"destination_addr letters", set(func(m *provider.Message) { m.DestinationAddr = "38050CALLME" }), "destination_addr", "digits only"},
	{"message_type 0", set(func(m *provider.Message) { m.MessageType = 0 }), "message_type", "must be one of 106, 108, 206, 208"},
	{"message_type 225", set(func(m *provider.Message) { m.MessageType = 225 }), "message_type", "got 225"},
	{"message_type 206 (two-way off)", set(func(m *provider.Message) { m.MessageType = provider.TypeTwoWayText }), "message_type", "two-way types 206/208 are disabled"},
	{"text missing", set(func(m *provider.Message) { m.Text = "" }), "text", "is required"},
	{"text 1001 characters", set(func(m *provider.Message) { m.Text = strings.Repeat("я", 1001) }), "text", "at most 1000 characters, got 1001"},
	{"text invalid UTF-8", set(func(m *provider.Message) { m.Text = "code \xc3\x28" }), "text", "valid UTF-8"},
	{"text_sms on a promotional message", set(func(m *provider.Message) { m.SourceType = provider.SourcePromotional }), "text_sms", "only with message_type 106 and source_type 2"},
	{"text_sms 161 GSM-7 units", set(func(m *provider.Message) { m.TextSMS = strings.Repeat("a", 161) }), "text_sms", "at most 160 GSM-7 units, got 161"},
	{"text_sms 81 euro signs (162 septets)", set(func(m *provider.Message) { m.TextSMS = strings.Repeat("€", 81) }), "text_sms", "at most 160 GSM-7 units, got 162"},
	{"text_sms 71 UCS-2 characters", set(func(m *provider.Message) { m.TextSMS = strings.Repeat("ж", 71) }), "text_sms", "at most 70 UCS-2 units, got 71"},
	{"text_sms 36 emoji (72 UTF-16 units)", set(func(m *provider.Message) { m.TextSMS = strings.Repeat("😀", 36) }), "text_sms", "at most 70 UCS-2 units, got 72"},
	{"text_sms invalid UTF-8", set(func(m *provider.Message) { m.TextSMS = "\xff" }), "text_sms", "valid UTF-8"},
	{"image on a text message", set(func(m *provider.Message) { m.Image = "https://cdn.example.com/p.png" }), "image", "must be empty for message_type 106"},
	{"button_caption on a text message", set(func(m *provider.Message) { m.ButtonCaption = "Open" }), "button_caption", "must be empty for message_type 106"},
	{"button_action on a text message", set(func(m *provider.Message) { m.ButtonAction = "https://x.example.com" }), "button_action", "must be empty for message_type 106"},
	{"108 without image", as108(func(m *provider.Message) { m.Image = "" }), "image", "is required for message_type 108"},
	{"108 image not http", as108(func(m *provider.Message) { m.Image = "ftp://cdn.example.com/p.png" }), "image", "absolute http or https URL"},
	{"108 image .gif", as108(func(m *provider.Message) { m.Image = "https://cdn.example.com/p.gif" }), "image", "must be a jpg, jpeg or png image"},
	{"108 button_caption 31 characters", as108(func(m *provider.Message) { m.ButtonCaption = strings.Repeat("b", 31) }), "button_caption", "at most 30 characters, got 31"},
	{"108 button_action javascript:", as108(func(m *provider.Message) { m.ButtonAction = "javascript:alert(1)" }), "button_action", "absolute http or https URL"},
	{"108 button_action missing", as108(func(m *provider.Message) { m.ButtonAction = "" }), "button_action", "is required for message_type 108"},
	{"108 transactional", as108(func(m *provider.Message) { m.SourceType = provider.SourceTransactional }), "source_type", "must be 1 (promotional) for message_type 108"},
	{"source_type 0", set(func(m *provider.Message) { m.SourceType = 0; m.TextSMS = "" }), "source_type", "must be 1 (promotional) or 2 (transactional), got 0"},
	{"source_type 3", set(func(m *provider.Message) { m.SourceType = 3; m.TextSMS = "" }), "source_type", "got 3"},
	{"callback_url not a URL", set(func(m *provider.Message) { m.CallbackURL = "not a url" }), "callback_url", "absolute http or https URL"},
	{"callback_url file:", set(func(m *provider.Message) { m.CallbackURL = "file:///etc/passwd" }), "callback_url", "absolute http or https URL"},
	{"validity_period 39", set(func(m *provider.Message) { m.ValidityPeriod = 39; m.TextSMS = "" }), "validity_period", "between 40 and 21600 seconds, got 39"},
	{"validity_period 60 with text_sms", set(func(m *provider.Message) { m.ValidityPeriod = 60 }), "validity_period", "must be 40 seconds for a transactional message with text_sms"},
	{"validity_period 21601", set(func(m *provider.Message) { m.ValidityPeriod = 21601 }), "validity_period", "got 21601"},
	{"ttl 500ms", func(r *tasks.EnqueueRequest) { r.TTL = 500 * time.Millisecond }, "ttl", fmt.Sprintf("between %s and %s, got 500ms", tasks.MinTTL, tasks.MaxTTL)},
	{"ttl 7h", func(r *tasks.EnqueueRequest) { r.TTL = 7 * time.Hour }, "ttl", "got 7h0m0s"},
	{"ttl negative", func(r *tasks.EnqueueRequest) { r.TTL = -time.Minute }, "ttl", "got -1m0s"},
	{"id with a space", func(r *tasks.EnqueueRequest) { r.ID = "order 42" }, "id", "only letters, digits and . _ : -"},
	{"id with a slash", func(r *tasks.EnqueueRequest) { r.ID = "../../etc/passwd" }, "id", "only letters, digits"},
	{"id with a newline", func(r *tasks.EnqueueRequest) { r.ID = "a\nb" }, "id", "only letters, digits"},
	{"id with a Redis glob", func(r *tasks.EnqueueRequest) { r.ID = "viberq:msg:*" }, "id", "only letters, digits"},
	{"id 129 characters", func(r *tasks.EnqueueRequest) { r.ID = strings.Repeat("i", 129) }, "id", "at most 128 characters, got 129"},
	{"empty message", func(r *tasks.EnqueueRequest) { r.Message = provider.Message{} }, "source_type", "got 0"},
}

// TestBadInputGoAPI: the Go Enqueuer refuses each case with a
// *provider.ValidationError naming the field and the rule, and writes nothing.
func TestBadInputGoAPI(t *testing.T) {
	t.Parallel()
	e := newMiniEnv(t)
	ctx := context.Background()
	for _, c := range goAPICases {
		req := tasks.EnqueueRequest{ID: "bad-1", Message: validMsg()}
		c.mut(&req)
		_, err := e.enq.Enqueue(ctx, req)
		if ferr := fieldRule(err, c.field, c.rule); ferr != nil {
			t.Errorf("%s: %v", c.name, ferr)
		}
		e.nothingWritten(t, c.name, 0)
	}
	// The empty message names every required field at once.
	_, err := e.enq.Enqueue(ctx, tasks.EnqueueRequest{})
	for _, f := range []string{"source_addr", "destination_addr", "message_type", "text", "source_type"} {
		if ferr := fieldRule(err, f, ""); ferr != nil {
			t.Errorf("empty message: %v", ferr)
		}
	}
	// An idempotency key reused with another message: refused, the first untouched.
	first := tasks.EnqueueRequest{ID: "order-42", Message: validMsg()}
	if _, err := e.enq.Enqueue(ctx, first); err != nil {
		t.Fatal(err)
	}
	other := first
	other.Message.Text = "Your code is 9999"
	if _, err := e.enq.Enqueue(ctx, other); !errors.Is(err, tasks.ErrIdempotencyConflict) {
		t.Errorf("id reused with another message: %v, want ErrIdempotencyConflict", err)
	}
	e.nothingWritten(t, "idempotency conflict", 1)
	rec, err := e.store.Get(ctx, "order-42")
	if err != nil || rec.PayloadHash != tasks.PayloadHash(first.Message, 0) {
		t.Errorf("the first message's record changed: %+v %v", rec, err)
	}
}

// cliEnv is the environment of `viberq send` against the miniredis server.
func cliEnv(e *miniEnv) []string {
	return baseEnv("VIBERQ_REDIS_URL=redis://"+e.mr.Addr()+"/0", "VIBERQ_LOG_FORMAT=json")
}

type cliCase struct {
	name string
	args []string
	code int
	want []string // in stderr
}

var cliFlagCases = []cliCase{
	{"--to with +", []string{"--to", "+" + badPhone}, 2, []string{"destination_addr: must contain digits only"}},
	{"--from missing", []string{"--from", ""}, 2, []string{"source_addr: is required"}},
	{"--text too long", []string{"--text", strings.Repeat("t", 1001)}, 2, []string{"text: must be at most 1000 characters, got 1001"}},
	{"--type 225", []string{"--type", "225"}, 2, []string{"message_type: must be one of 106, 108, 206, 208, got 225"}},
	{"--type not a number", []string{"--type", "viber"}, 2, []string{`invalid value "viber" for flag -type`}},
	{"--source 3", []string{"--source", "3"}, 2, []string{"source_type: must be 1 (promotional) or 2 (transactional), got 3"}},
	{"--sms-text on a promotional", []string{"--source", "1", "--sms-text", "Code 1"}, 2, []string{"text_sms: is allowed only with message_type 106 and source_type 2"}},
	{"--sms-text two segments", []string{"--sms-text", strings.Repeat("s", 161)}, 2, []string{"text_sms: must fit one SMS segment"}},
	{"--ttl 500ms", []string{"--ttl", "500ms"}, 2, []string{fmt.Sprintf("ttl: must be between %s and %s, got 500ms", tasks.MinTTL, tasks.MaxTTL)}},
	{"--ttl not a duration", []string{"--ttl", "soon"}, 2, []string{`invalid value "soon" for flag -ttl`}},
	{"--id with a space", []string{"--id", "order 42"}, 2, []string{"id: may contain only letters, digits and . _ : -"}},
	{"--image on 106", []string{"--image", "https://cdn.example.com/p.png"}, 2, []string{"image: must be empty for message_type 106"}},
	{"--callback-url relative", []string{"--callback-url", "/cb"}, 2, []string{"callback_url: must be an absolute http or https URL"}},
	{"108 without image and caption", []string{"--type", "108", "--source", "1"}, 2, []string{"image: is required for message_type 108", "button_caption: is required", "button_action: is required"}},
	{"unexpected argument", []string{"extra"}, 2, []string{`unexpected argument "extra"`}},
}

// TestBadInputCLIFlags: `viberq send` with a bad flag exits 2 naming the field and
// the rule, and writes nothing.
func TestBadInputCLIFlags(t *testing.T) {
	t.Parallel()
	e := newMiniEnv(t)
	bin := viberqBin(t)
	for _, c := range cliFlagCases {
		args := append([]string{"send", "--from", "Shop", "--to", badPhone, "--text", "Your code is 1234"}, c.args...)
		stdout, stderr, code := runCmd(t, cliEnv(e), nil, 30*time.Second, bin, args...)
		if code != c.code {
			t.Errorf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", c.name, code, c.code, stdout, stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: stderr lacks %q:\n%s", c.name, w, stderr)
			}
		}
		if strings.Contains(stdout+stderr, badPhone) {
			t.Errorf("%s: the output holds the full phone number", c.name)
		}
		e.nothingWritten(t, c.name, 0)
	}
	// Control: the same command without the bad flag succeeds and prints the ID.
	stdout, stderr, code := runCmd(t, cliEnv(e), nil, 30*time.Second, bin, "send", "--from", "Shop", "--to", badPhone,
		"--text", "Your code is 1234", "--id", "cli-ok")
	if code != 0 || strings.TrimSpace(stdout) != "cli-ok" {
		t.Errorf("control send: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	e.nothingWritten(t, "control", 1)
}

// settingsCase is a bad environment for `viberq api` or `viberq worker`.
type settingsCase struct {
	name string
	cmd  string   // api or worker
	env  []string // K=V on top of a valid environment for cmd
	want []string // in stderr: the variable and the rule
}

// Secrets the example manifests held, and values that switched limiting off.
var settingsCases = []settingsCase{
	{"send rate 1e308", "worker", []string{"VIBERQ_RATE_LIMIT=1e308"}, []string{"VIBERQ_RATE_LIMIT: must be a number between 0.01 and 10000"}},
	{"status rate 1e-300 (limiting off)", "worker", []string{"VIBERQ_STATUS_RATE_LIMIT=1e-300"}, []string{"VIBERQ_STATUS_RATE_LIMIT: must be a number between 0.01 and 10000"}},
	{"max retry over the ceiling", "worker", []string{"VIBERQ_MAX_RETRY=10001"}, []string{"VIBERQ_MAX_RETRY: must be a whole number between 0 and 10000"}},
	{"placeholder API key", "worker", []string{"VIBERQ_DT_API_KEY=replace-me-with-a-long-random-value"}, []string{"VIBERQ_DT_API_KEY: is a placeholder"}},
	{"placeholder API token", "api", []string{"VIBERQ_API_TOKENS=replace-me-with-a-long-random-value"}, []string{"VIBERQ_API_TOKENS: token 1 of 1 is a placeholder"}},
	{"placeholder /monitoring password", "api", []string{"VIBERQ_MONITORING_PASSWORD=replace-me-with-a-long-random-value"}, []string{"VIBERQ_MONITORING_PASSWORD: is a placeholder"}},
	{"one-character /monitoring password", "api", []string{"VIBERQ_MONITORING_PASSWORD=x"}, []string{"VIBERQ_MONITORING_PASSWORD: must be at least 16 characters, got 1"}},
	{"placeholder callback token", "api", []string{"VIBERQ_CALLBACK_TOKEN=replace-me-with-a-long-random-value"}, []string{"VIBERQ_CALLBACK_TOKEN: is a placeholder"}},
	{"placeholder Redis password", "api", []string{"VIBERQ_REDIS_PASSWORD=replace-me-with-a-long-random-value"}, []string{"VIBERQ_REDIS_PASSWORD: is a placeholder"}},
	{"every required setting missing", "api", []string{"VIBERQ_API_TOKENS=", "VIBERQ_MONITORING_PASSWORD=", "VIBERQ_POLL_JITTER=2"},
		[]string{"VIBERQ_POLL_JITTER: must be a number between 0 and 1", "VIBERQ_API_TOKENS: required by this command, not set", "VIBERQ_MONITORING_PASSWORD: required by this command, not set"}},
}

// TestBadInputSettings: `viberq api` and `viberq worker` refuse to start (exit 1,
// one line naming each bad variable and its rule, never the secret's value) on the
// placeholders of the example manifests and on unbounded numbers; a misspelt variable
// is warned about with the closest name.
func TestBadInputSettings(t *testing.T) {
	t.Parallel()
	e := newMiniEnv(t)
	bin := viberqBin(t)
	valid := map[string][]string{
		"api":    {"VIBERQ_API_TOKENS=" + apiTok, "VIBERQ_MONITORING_PASSWORD=" + monPass, "VIBERQ_HTTP_ADDR=127.0.0.1:0"},
		"worker": {"VIBERQ_DT_API_KEY=" + testKey, "VIBERQ_METRICS_ADDR=off", "VIBERQ_OUTBOX=false"},
	}
	for _, c := range settingsCases {
		env := append(append(cliEnv(e), valid[c.cmd]...), c.env...)
		stdout, stderr, code := runCmd(t, env, nil, 30*time.Second, bin, c.cmd)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1\nstdout: %s\nstderr: %s", c.name, code, stdout, stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: stderr lacks %q:\n%s", c.name, w, stderr)
			}
		}
		if strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%s: the error is not one line:\n%s", c.name, stderr)
		}
		if strings.Contains(stderr, "replace-me") {
			t.Errorf("%s: stderr quotes the secret: %s", c.name, stderr)
		}
	}
	e.nothingWritten(t, "settings", 0)

	// A misspelt variable is named, with the closest setting, on the same line as the
	// setting it left missing. (A running command warns in its log instead; see
	// cmd/viberq.)
	env := append(cliEnv(e), "VIBERQ_API_TOKEN="+apiTok, "VIBERQ_MONITORING_PASSWORD="+monPass)
	_, stderr, code := runCmd(t, env, nil, 30*time.Second, bin, "api")
	if code != 1 || !strings.Contains(stderr, "VIBERQ_API_TOKENS: required by this command, not set") ||
		!strings.Contains(stderr, "VIBERQ_API_TOKEN is not a viberq setting (did you mean VIBERQ_API_TOKENS?)") {
		t.Errorf("misspelt variable: exit %d, want 1 naming it and the closest setting:\n%s", code, stderr)
	}
}

// TestBadInputCLICSV: bad CSV rows are each reported with their line, field and rule;
// the good rows are enqueued, the bad ones leave nothing; exit 1. A bad header
// refuses the file (exit 2).
func TestBadInputCLICSV(t *testing.T) {
	t.Parallel()
	e := newMiniEnv(t)
	bin := viberqBin(t)
	dir := t.TempDir()
	rows := strings.Join([]string{
		"id,from,to,text,type,source,sms_text,ttl",
		"csv-ok,Shop," + badPhone + ",Your code is 1,106,2,Code 1,90",          // line 2: good
		"csv-plus,Shop,+" + badPhone + ",Your code is 2,106,2,Code 2,90",       // line 3
		"csv-type,Shop," + badPhone + ",Your code is 3,abc,2,,90",              // line 4
		"csv-ttl,Shop," + badPhone + ",Your code is 4,106,2,Code 4,forever",    // line 5
		"csv-extra,Shop," + badPhone + ",Your code is 5,106,2,Code 5,90,extra", // line 6
		`csv-quote,Shop,` + badPhone + `,"Your code is 6,106,2,,90`,            // line 7: unterminated quote
	}, "\n") + "\n"
	path := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(path, []byte(rows), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCmd(t, cliEnv(e), nil, 30*time.Second, bin, "send", "--csv", path)
	if code != 1 {
		t.Errorf("csv: exit %d, want 1\n%s\n%s", code, stdout, stderr)
	}
	for _, w := range []string{
		"rows 6: enqueued 1, duplicates 0, refused 5",
		"line 3: destination_addr: must contain digits only",
		`line 4: type: must be an integer, got "abc"`,
		`line 5: ttl: must be a Go duration such as "90s" or "1h", or a number of seconds, got "forever"`,
		"line 6: column 9: no header for it",
		"line 7: ",
	} {
		if !strings.Contains(stdout, w) {
			t.Errorf("csv: stdout lacks %q:\n%s", w, stdout)
		}
	}
	if strings.Contains(stdout+stderr, badPhone) {
		t.Errorf("csv: the output holds a full phone number:\n%s\n%s", stdout, stderr)
	}
	e.nothingWritten(t, "csv (only the good row)", 1)
	if _, err := e.store.Get(context.Background(), "csv-ok"); err != nil {
		t.Errorf("csv: the good row: %v", err)
	}

	hdr := filepath.Join(dir, "header.csv")
	if err := os.WriteFile(hdr, []byte("id,from,to,text,phone\nx,Shop,"+badPhone+",hi,1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = runCmd(t, cliEnv(e), nil, 30*time.Second, bin, "send", "--csv", hdr)
	if code != 2 || !strings.Contains(stderr, `unknown column "phone"`) {
		t.Errorf("csv with an unknown column: exit %d, stderr %q", code, stderr)
	}
	e.nothingWritten(t, "csv bad header", 1)
}

// apiEnv is the HTTP API in the test process on a miniredis, with its log captured.
type apiEnv struct {
	*miniEnv
	srv  *httptest.Server
	logs *lockedBuffer
}

const (
	apiTok  = "api-token-0123456789abcdef"
	cbTok   = "cb-token-0123456789abcdef"
	monPass = "monitor-pass-0123456789"
	maxBody = 4096
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.b.Bytes()...)
}

func newAPIEnv(t *testing.T, cb config.Callback) *apiEnv {
	t.Helper()
	e := &apiEnv{miniEnv: newMiniEnv(t), logs: &lockedBuffer{}}
	srv, err := api.New(api.Options{
		Tokens:             []string{apiTok},
		MonitoringUser:     "admin",
		MonitoringPassword: monPass,
		MaxBodyBytes:       maxBody,
		CallbackToken:      cb.Token.Reveal(),
		CallbackUser:       cb.User,
		CallbackPassword:   cb.Password.Reveal(),
		Redis:              e.rdb,
		Enqueuer:           e.enq,
		Records:            e.store,
		Status:             tasks.CallbackApplier{Store: e.store, Client: asynq.NewClientFromRedisClient(e.rdb)},
		Monitoring:         http.NotFoundHandler(),
		Logger:             zerolog.New(e.logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(srv.Handler())
	t.Cleanup(e.srv.Close)
	return e
}

func (e *apiEnv) do(t *testing.T, method, path, ctype string, body []byte, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b
}

type httpCase struct {
	name  string
	ctype string
	body  string
	hdr   map[string]string
	code  int
	want  []string // field names / texts in the answer
}

func jsonMsg(extra string) string {
	base := `"source_addr":"Shop","destination_addr":"` + badPhone + `","message_type":106,"source_type":2,"text":"Your code is 1234","text_sms":"Code 1234"`
	if extra != "" {
		base += "," + extra
	}
	return "{" + base + "}"
}

var auth = map[string]string{"Authorization": "Bearer " + apiTok}

var httpCases = []httpCase{
	{"no token", "application/json", jsonMsg(""), nil, http.StatusUnauthorized, []string{"missing bearer token"}},
	{"wrong token", "application/json", jsonMsg(""), map[string]string{"Authorization": "Bearer wrong-token-0123456789"}, http.StatusUnauthorized, []string{"invalid bearer token"}},
	{"basic auth instead of bearer", "application/json", jsonMsg(""), map[string]string{"Authorization": "Basic YWRtaW46eA=="}, http.StatusUnauthorized, nil},
	{"text/plain", "text/plain", jsonMsg(""), auth, http.StatusUnsupportedMediaType, []string{"Content-Type must be application/json"}},
	{"form content type", "application/x-www-form-urlencoded", "source_addr=Shop", auth, http.StatusUnsupportedMediaType, nil},
	{"malformed JSON", "application/json", `{"source_addr":"Shop",`, auth, http.StatusBadRequest, nil},
	{"JSON array", "application/json", `[1,2]`, auth, http.StatusBadRequest, nil},
	{"two JSON documents", "application/json", jsonMsg("") + jsonMsg(""), auth, http.StatusBadRequest, nil},
	{"unknown field", "application/json", jsonMsg(`"colour":"red"`), auth, http.StatusBadRequest, []string{`"field":"colour"`, "unknown field"}},
	{"message_type a word", "application/json", `{"source_addr":"Shop","destination_addr":"` + badPhone + `","message_type":"viber","source_type":2,"text":"hi"}`, auth, http.StatusUnprocessableEntity, []string{`"field":"message_type"`}},
	{"destination_addr an object", "application/json", `{"source_addr":"Shop","destination_addr":{"n":1},"message_type":106,"source_type":2,"text":"hi"}`, auth, http.StatusUnprocessableEntity, []string{`"field":"destination_addr"`}},
	{"destination_addr with +", "application/json", `{"source_addr":"Shop","destination_addr":"+` + badPhone + `","message_type":106,"source_type":2,"text":"hi"}`, auth, http.StatusUnprocessableEntity, []string{`"field":"destination_addr"`, "digits only"}},
	{"every field missing", "application/json", `{}`, auth, http.StatusUnprocessableEntity, []string{`"field":"source_addr"`, `"field":"destination_addr"`, `"field":"text"`, `"field":"message_type"`, `"field":"source_type"`}},
	{"ttl 7h", "application/json", jsonMsg(`"ttl":"7h"`), auth, http.StatusUnprocessableEntity, []string{`"field":"ttl"`}},
	{"ttl a word", "application/json", jsonMsg(`"ttl":"soon"`), auth, http.StatusUnprocessableEntity, []string{`"field":"ttl"`}},
	{"id with a slash", "application/json", jsonMsg(`"id":"a/b"`), auth, http.StatusUnprocessableEntity, []string{`"field":"id"`}},
	{"Idempotency-Key differs from id", "application/json", jsonMsg(`"id":"order-1"`), map[string]string{"Authorization": "Bearer " + apiTok, "Idempotency-Key": "order-2"}, http.StatusUnprocessableEntity, []string{`"field":"id"`, "differs from the Idempotency-Key header"}},
	{"108 transactional with text_sms", "application/json", `{"source_addr":"Shop","destination_addr":"` + badPhone + `","message_type":108,"source_type":2,"text":"hi","text_sms":"x","image":"https://c.example.com/a.png","button_caption":"Go","button_action":"https://c.example.com"}`, auth, http.StatusUnprocessableEntity, []string{`"field":"source_type"`, `"field":"text_sms"`}},
	{"button_caption invalid UTF-8 byte", "application/json", jsonMsg("\"button_caption\":\"Go \xff\""), auth, http.StatusUnprocessableEntity, []string{`"field":"button_caption"`, "valid UTF-8"}},
	{"text lone high surrogate", "application/json", `{"source_addr":"Shop","destination_addr":"` + badPhone + `","message_type":106,"source_type":2,"text":"Hi \ud83d"}`, auth, http.StatusUnprocessableEntity, []string{`"field":"text"`, "lone UTF-16 surrogate"}},
	{"source_addr lone low surrogate", "application/json", `{"source_addr":"Sh\udc00op","destination_addr":"` + badPhone + `","message_type":106,"source_type":2,"text":"Hi"}`, auth, http.StatusUnprocessableEntity, []string{`"field":"source_addr"`, "valid UTF-8"}},
	{"duplicate key text", "application/json", jsonMsg(`"text":"Your code is 9999"`), auth, http.StatusBadRequest, []string{`"field":"text"`, "given more than once"}},
	{"duplicate key destination_addr", "application/json", jsonMsg(`"destination_addr":"380509999999"`), auth, http.StatusBadRequest, []string{`"field":"destination_addr"`, "given more than once"}},
	{"destination_addr 1", "application/json", `{"source_addr":"Shop","destination_addr":"1","message_type":106,"source_type":2,"text":"hi"}`, auth, http.StatusUnprocessableEntity, []string{`"field":"destination_addr"`, "7 to 15 digits"}},
	{"destination_addr 16 digits", "application/json", `{"source_addr":"Shop","destination_addr":"3805012345678901","message_type":106,"source_type":2,"text":"hi"}`, auth, http.StatusUnprocessableEntity, []string{`"field":"destination_addr"`, "7 to 15 digits"}},
	{"cross-origin POST from a page", "application/json", jsonMsg(""), map[string]string{"Authorization": "Bearer " + apiTok, "Origin": "http://evil.example"}, http.StatusForbidden, []string{"cross-origin request refused"}},
	{"cross-site fetch", "text/plain", jsonMsg(""), map[string]string{"Authorization": "Bearer " + apiTok, "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden, []string{"cross-origin request refused"}},
	{"body over the limit", "application/json", `{"text":"` + strings.Repeat("x", maxBody) + `"}`, auth, http.StatusRequestEntityTooLarge, []string{"larger than the limit"}},
}

// TestBadInputHTTPAPI: POST /v1/messages refuses bad requests (401, 415, 400, 422
// listing every field, 413) and writes nothing; a conflicting id gets 409.
func TestBadInputHTTPAPI(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, config.Callback{})
	for _, c := range httpCases {
		code, body := e.do(t, http.MethodPost, "/v1/messages", c.ctype, []byte(c.body), c.hdr)
		if code != c.code {
			t.Errorf("%s: HTTP %d, want %d: %s", c.name, code, c.code, body)
		}
		var eb struct {
			Error  string `json:"error"`
			Fields []struct{ Field, Rule string }
		}
		if err := json.Unmarshal(body, &eb); err != nil || eb.Error == "" {
			t.Errorf("%s: answer is not {\"error\":...}: %s", c.name, body)
		}
		if code == http.StatusUnprocessableEntity {
			for _, f := range eb.Fields {
				if f.Field == "" || f.Rule == "" {
					t.Errorf("%s: a field error without field or rule: %s", c.name, body)
				}
			}
		}
		for _, w := range c.want {
			if !strings.Contains(string(body), w) {
				t.Errorf("%s: answer lacks %s: %s", c.name, w, body)
			}
		}
		if strings.Contains(string(body), badPhone) {
			t.Errorf("%s: the answer echoes the phone number: %s", c.name, body)
		}
		e.nothingWritten(t, c.name, 0)
	}
	// Other methods and paths need the token too and reveal nothing.
	for _, p := range []string{"/v1/messages/x", "/v1/anything"} {
		if code, _ := e.do(t, http.MethodGet, p, "", nil, nil); code != http.StatusUnauthorized {
			t.Errorf("GET %s without a token: HTTP %d, want 401", p, code)
		}
	}
	// Conflict: same id, other message.
	if code, body := e.do(t, http.MethodPost, "/v1/messages", "application/json", []byte(jsonMsg(`"id":"dup-1"`)), auth); code != http.StatusAccepted {
		t.Fatalf("control: HTTP %d %s", code, body)
	}
	conflicting := strings.Replace(jsonMsg(`"id":"dup-1"`), "1234", "9999", 1)
	if code, body := e.do(t, http.MethodPost, "/v1/messages", "application/json", []byte(conflicting), auth); code != http.StatusConflict {
		t.Errorf("conflicting id: HTTP %d, want 409: %s", code, body)
	}
	e.nothingWritten(t, "after the control message", 1)
	scanLogBytes(t, "api log", e.logs.Bytes())
}

// scanLogBytes fails if b holds the phone number of the catalogue or a test secret.
func scanLogBytes(t *testing.T, name string, b []byte) {
	t.Helper()
	scanSources(t, map[string][]byte{name: b}, []string{apiTok, cbTok, monPass, testKey}, map[string]bool{badPhone: true})
}

type outboxCase struct {
	name   string
	values map[string]any
	field  string
	rule   string
}

var outboxCases = []outboxCase{
	{"malformed JSON document", map[string]any{"message": `{"source_addr":`}, "message", "malformed JSON"},
	{"document not an object", map[string]any{"message": `"hello"`}, "message", ""},
	{"unknown flat field", map[string]any{"phone": badPhone, "text": "hi"}, "phone", "unknown field"},
	{"flat destination with +", map[string]any{"source_addr": "Shop", "destination_addr": "+" + badPhone, "message_type": "106", "source_type": "2", "text": "hi"}, "destination_addr", "digits only"},
	{"flat message_type a word", map[string]any{"source_addr": "Shop", "destination_addr": badPhone, "message_type": "viber", "source_type": "2", "text": "hi"}, "message_type", ""},
	{"flat ttl 7h", map[string]any{"source_addr": "Shop", "destination_addr": badPhone, "message_type": "106", "source_type": "2", "text": "hi", "ttl": "7h"}, "ttl", "between"},
	{"document with an unknown field", map[string]any{"message": jsonMsg(`"colour":"red"`)}, "colour", "unknown field"},
	{"id beside the document differs", map[string]any{"message": jsonMsg(`"id":"a-1"`), "id": "a-2"}, "id", "differs from the id inside message"},
	{"extra field beside the document", map[string]any{"message": jsonMsg(""), "priority": "high"}, "priority", "unknown field"},
	{"document text invalid UTF-8", map[string]any{"message": jsonMsg("\"button_caption\":\"\xc3\x28\"")}, "button_caption", "valid UTF-8"},
	{"document text lone surrogate", map[string]any{"message": jsonMsg(`"id":"x\udfff"`)}, "id", "lone UTF-16 surrogate"},
	{"document duplicate key", map[string]any{"message": jsonMsg(`"source_type":1`)}, "source_type", "given more than once"},
	{"document destination_addr 1", map[string]any{"message": `{"source_addr":"Shop","destination_addr":"1","message_type":106,"source_type":2,"text":"hi"}`}, "destination_addr", "7 to 15 digits"},
	{"flat destination_addr 20 digits", map[string]any{"source_addr": "Shop", "destination_addr": strings.Repeat("3", 20), "message_type": "106", "source_type": "2", "text": "hi"}, "destination_addr", "7 to 15 digits"},
	{"text too long", map[string]any{"source_addr": "Shop", "destination_addr": badPhone, "message_type": "106", "source_type": "2", "text": strings.Repeat("t", 1001)}, "text", "at most 1000"},
}

// TestBadInputOutbox: invalid outbox entries land on viberq:outbox:rejected with
// their reasons (field and rule), destination masked; nothing else is written.
func TestBadInputOutbox(t *testing.T) {
	t.Parallel()
	e := newMiniEnv(t)
	ctx := context.Background()
	for _, c := range outboxCases {
		if err := e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: outbox.DefaultStream, Values: c.values}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	c := outbox.New(e.rdb, e.enq, outbox.Options{Block: 50 * time.Millisecond, RetryDelay: 50 * time.Millisecond})
	go func() { defer close(done); _ = c.Run(cctx) }()
	rejected := outbox.DefaultStream + outbox.DefaultRejectedSuffix
	deadline := time.Now().Add(15 * time.Second)
	for {
		n, _ := e.rdb.XLen(ctx, rejected).Result()
		if n >= int64(len(outboxCases)) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	entries, err := e.rdb.XRange(ctx, rejected, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(outboxCases) {
		t.Fatalf("rejected entries: %d, want %d", len(entries), len(outboxCases))
	}
	var all []byte
	for i, c := range outboxCases {
		ent := entries[i]
		reasons, _ := ent.Values["reasons"].(string)
		var rs []outbox.Reason
		if err := json.Unmarshal([]byte(reasons), &rs); err != nil {
			t.Errorf("%s: reasons %q: %v", c.name, reasons, err)
			continue
		}
		ok := false
		for _, r := range rs {
			ok = ok || (r.Field == c.field && strings.Contains(r.Rule, c.rule) && r.Rule != "")
		}
		if !ok {
			t.Errorf("%s: reasons %v lack field %q with rule %q", c.name, rs, c.field, c.rule)
		}
		b, _ := json.Marshal(ent.Values)
		all = append(all, b...)
	}
	if n, _ := e.rdb.XLen(ctx, outbox.DefaultStream).Result(); n != 0 {
		t.Errorf("outbox stream still holds %d entries", n)
	}
	e.nothingWritten(t, "outbox", 0)
	scanLogBytes(t, "rejected stream", all)
}

// TestBadInputCallbacks: bad callback payloads are answered without a crash and
// change nothing: unknown or broken payloads are acknowledged (200 "ignored": the
// provider must not retry what can never succeed; vendor notes: status callbacks), wrong
// credentials get 404/401, oversized bodies 413.
func TestBadInputCallbacks(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, config.Callback{Token: cbTok, User: "dt", Password: "cb-pass-0123456789"})
	ctx := context.Background()
	// One accepted message the callbacks could wrongly change.
	if _, err := e.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "cb-1", Message: validMsg()}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.Transition(ctx, "cb-1", []tasks.State{tasks.StateQueued}, tasks.StateSending, tasks.Update{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.Transition(ctx, "cb-1", []tasks.State{tasks.StateSending}, tasks.StateAccepted, tasks.Update{ProviderMessageID: 100001}); err != nil {
		t.Fatal(err)
	}
	before, _ := e.store.Get(ctx, "cb-1")
	path := "/callbacks/status/" + cbTok + "?id=cb-1"
	basic := func(h map[string]string) map[string]string {
		out := map[string]string{"Authorization": "Basic ZHQ6Y2ItcGFzcy0wMTIzNDU2Nzg5"} // dt:cb-pass-0123456789
		for k, v := range h {
			out[k] = v
		}
		return out
	}
	cases := []struct {
		name, path, ctype, body string
		hdr                     map[string]string
		code                    int
		result                  string
	}{
		{"not JSON", path, "application/json", "<html>hello</html>", basic(nil), 200, "ignored"},
		{"truncated JSON", path, "application/json", `{"message_id":100001,"sta`, basic(nil), 200, "ignored"},
		{"wrong types", path, "application/json", `{"message_id":"abc","status":"delivered"}`, basic(nil), 200, "ignored"},
		{"negative id", path, "application/json", `{"message_id":-5,"status":1}`, basic(nil), 200, "ignored"},
		{"fractional status", path, "application/json", `{"message_id":100001,"status":1.5}`, basic(nil), 200, "ignored"},
		{"empty body", path, "application/json", ``, basic(nil), 200, "ignored"},
		{"form garbage", path, "application/x-www-form-urlencoded", "message_id=%zz&status=", basic(nil), 200, "ignored"},
		{"other provider id", path, "application/json", `{"message_id":999999,"status":1}`, basic(nil), 200, "ignored"},
		{"unknown message", "/callbacks/status/" + cbTok + "?id=nope", "application/json", `{"message_id":100001,"status":1}`, basic(nil), 200, "unknown_message"},
		{"bad id parameter", "/callbacks/status/" + cbTok + "?id=../x", "application/json", `{"message_id":100001,"status":1}`, basic(nil), 200, "unknown_message"},
		{"wrong token", "/callbacks/status/wrong-token-0123456789?id=cb-1", "application/json", `{"message_id":100001,"status":1}`, basic(nil), 404, ""},
		{"no token", "/callbacks/status?id=cb-1", "application/json", `{"message_id":100001,"status":1}`, basic(nil), 404, ""},
		{"no basic auth", path, "application/json", `{"message_id":100001,"status":1}`, nil, 401, ""},
		{"unknown kind", "/callbacks/" + cbTok + "/other", "application/json", `{"message_id":100001,"status":1}`, basic(nil), 404, ""},
		{"body over the limit", path, "application/json", `{"message_id":100001,"status":1,"x":"` + strings.Repeat("x", maxBody) + `"}`, basic(nil), 413, ""},
	}
	for _, c := range cases {
		code, body := e.do(t, http.MethodPost, c.path, c.ctype, []byte(c.body), c.hdr)
		if code != c.code {
			t.Errorf("%s: HTTP %d, want %d: %s", c.name, code, c.code, body)
		}
		if c.result != "" && !strings.Contains(string(body), `"result":"`+c.result+`"`) {
			t.Errorf("%s: answer %s, want result %q", c.name, body, c.result)
		}
		after, err := e.store.Get(ctx, "cb-1")
		if err != nil || after.State != before.State || !after.UpdatedAt.Equal(before.UpdatedAt) {
			t.Errorf("%s: the record changed: %s → %s", c.name, before.State, after.State)
		}
	}
	if n, _ := e.rdb.XLen(ctx, api.DefaultInboundStream).Result(); n != 0 {
		t.Errorf("inbound stream holds %d entries after bad replies", n)
	}
	// A reply whose time cannot be read is kept, with the unreadable part (a reply is
	// the customer's text: provider.ParseReply keeps what it can), and changes no record.
	reply := `{"message_token":"t1","phone_number":"` + badPhone + `","time":"yesterday","message":{"text":"hi"}}`
	if code, body := e.do(t, http.MethodPost, path, "application/json", []byte(reply), basic(nil)); code != 200 || !strings.Contains(string(body), `"result":"stored"`) {
		t.Errorf("reply with a bad time: HTTP %d %s, want 200 stored", code, body)
	}
	if after, _ := e.store.Get(ctx, "cb-1"); after.State != before.State || !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Errorf("reply with a bad time: the record changed")
	}
	e.nothingWritten(t, "callbacks", 1)
	scanLogBytes(t, "api log (callbacks)", e.logs.Bytes())
}

type taskCase struct {
	name    string
	typ     string
	queue   string
	payload []byte
}

func sendPayload(mut func(m map[string]any)) []byte {
	m := map[string]any{
		"v": 1, "id": "hand-1",
		"message":     validMsg(),
		"expires_at":  time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano),
		"enqueued_at": time.Now().UTC().Format(time.RFC3339Nano),
	}
	mut(m)
	b, _ := json.Marshal(m)
	return b
}

func pollPayload(mut func(m map[string]any)) []byte {
	m := map[string]any{
		"v": 1, "id": "hand-2", "provider_message_id": 100001, "poll": 0, "has_sms": true,
		"accepted_at": time.Now().UTC().Format(time.RFC3339Nano),
		"expires_at":  time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano),
	}
	mut(m)
	b, _ := json.Marshal(m)
	return b
}

var taskCases = []taskCase{
	{"send: binary garbage", tasks.TypeSend, tasks.QueueCritical, []byte{0x00, 0xff, 0xfe, 'n', 'o'}},
	{"send: empty payload", tasks.TypeSend, tasks.QueueCritical, nil},
	{"send: JSON array", tasks.TypeSend, tasks.QueueDefault, []byte(`[1,2,3]`)},
	{"send: version 2", tasks.TypeSend, tasks.QueueCritical, sendPayload(func(m map[string]any) { m["v"] = 2 })},
	{"send: version missing", tasks.TypeSend, tasks.QueueCritical, sendPayload(func(m map[string]any) { delete(m, "v") })},
	{"send: id missing", tasks.TypeSend, tasks.QueueCritical, sendPayload(func(m map[string]any) { delete(m, "id") })},
	{"send: expires_at not a time", tasks.TypeSend, tasks.QueueCritical, sendPayload(func(m map[string]any) { m["expires_at"] = "tomorrow" })},
	{"send: message a string", tasks.TypeSend, tasks.QueueCritical, sendPayload(func(m map[string]any) { m["message"] = "hello" })},
	{"poll: binary garbage", tasks.TypePoll, tasks.QueueStatus, []byte("\x1b[31mnot json")},
	{"poll: version 0", tasks.TypePoll, tasks.QueueStatus, pollPayload(func(m map[string]any) { m["v"] = 0 })},
	{"poll: provider id missing", tasks.TypePoll, tasks.QueueStatus, pollPayload(func(m map[string]any) { delete(m, "provider_message_id") })},
	{"poll: provider id a word", tasks.TypePoll, tasks.QueueStatus, pollPayload(func(m map[string]any) { m["provider_message_id"] = "abc" })},
	{"poll: negative poll", tasks.TypePoll, tasks.QueueStatus, pollPayload(func(m map[string]any) { m["poll"] = -1 })},
}

// foreignTypeCases are tasks of a type this worker does not handle. They must never
// run as a send or a poll — not even a type with a known type as its prefix (asynq's
// ServeMux routes by prefix; the worker dispatches on the exact type) — and they are
// retried without using the retry budget, so that a newer worker can take a type added
// by a newer producer during a rolling deploy.
var foreignTypeCases = []taskCase{
	{"type viber:send2 (a known type as its prefix)", "viber:send2", tasks.QueueCritical, sendPayload(func(map[string]any) {})},
	{"type viber:poll:v2", "viber:poll:v2", tasks.QueueStatus, pollPayload(func(map[string]any) {})},
	{"unknown type", "viber:unknown", tasks.QueueDefault, []byte(`{"v":1}`)},
}

// TestBadInputTaskPayloads: malformed task payloads put in the queues by hand are
// archived at once (no retry), never reach the provider and leave no record.
func TestBadInputTaskPayloads(t *testing.T) {
	t.Parallel()
	e := newMiniEnv(t)
	simCfg, err := dtsim.ProfileConfig(dtsim.ProfileInstant)
	if err != nil {
		t.Fatal(err)
	}
	simCfg.Key = testKey
	sim, simSrv := dtsimtest.NewServer(t, simCfg)
	prov, err := provider.New(simSrv.URL+dtsim.BasePath, testKey)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	runWorker(t, worker.Config{TaskTimeout: 10 * time.Second, SendRate: 1000, StatusRate: 1000, LogBurst: -1},
		worker.Deps{Redis: e.rdb, Provider: prov, Store: e.store, Logger: zerolog.New(logs)})

	client := asynq.NewClientFromRedisClient(e.rdb)
	ids := map[string]taskCase{}
	for i, c := range taskCases {
		info, err := client.Enqueue(asynq.NewTask(c.typ, c.payload), asynq.Queue(c.queue), asynq.MaxRetry(25),
			asynq.TaskID(fmt.Sprintf("hand-%02d", i)))
		if err != nil {
			t.Fatalf("%s: enqueue: %v", c.name, err)
		}
		ids[info.ID] = c
	}
	// Wait until every task is archived, or one is scheduled for a retry.
	deadline := time.Now().Add(20 * time.Second)
	archived := map[string]*asynq.TaskInfo{}
	for len(archived) < len(ids) && time.Now().Before(deadline) {
		for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault, tasks.QueueStatus} {
			list, _ := e.insp.ListArchivedTasks(q, asynq.PageSize(100))
			for _, ti := range list {
				archived[ti.ID] = ti
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	for id, c := range ids {
		ti, ok := archived[id]
		if !ok {
			state := "?"
			if info, err := e.insp.GetTaskInfo(c.queue, id); err == nil {
				state = fmt.Sprintf("%s (retried %d, last error %q)", info.State, info.Retried, info.LastErr)
			}
			t.Errorf("%s: not archived at once: %s", c.name, state)
			continue
		}
		if ti.Retried != 0 {
			t.Errorf("%s: archived after %d retries, want 0", c.name, ti.Retried)
		}
		if !strings.Contains(ti.LastErr, "bad task payload") {
			t.Errorf("%s: archive reason %q does not say bad task payload", c.name, ti.LastErr)
		}
	}
	// Foreign task types: never run as a send or a poll.
	for i, c := range foreignTypeCases {
		id := fmt.Sprintf("foreign-%02d", i)
		if _, err := client.Enqueue(asynq.NewTask(c.typ, c.payload), asynq.Queue(c.queue), asynq.MaxRetry(25), asynq.TaskID(id)); err != nil {
			t.Fatalf("%s: enqueue: %v", c.name, err)
		}
	}
	time.Sleep(3 * time.Second)
	for i, c := range foreignTypeCases {
		info, err := e.insp.GetTaskInfo(c.queue, fmt.Sprintf("foreign-%02d", i))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		t.Logf("%s: %s after %d retries, last error %q", c.name, info.State, info.Retried, info.LastErr)
		if info.State != asynq.TaskStateRetry || info.Retried != 0 || !strings.Contains(info.LastErr, "not handled by this worker version") {
			t.Errorf("%s: %s after %d retries (%q), want waiting for a retry with the budget untouched", c.name, info.State, info.Retried, info.LastErr)
		}
	}
	if n := sim.Stats().Requests[string(dtsim.EndpointSend)] + sim.Stats().Requests[string(dtsim.EndpointStatus)]; n != 0 {
		t.Errorf("%d provider calls for malformed tasks", n)
	}
	if recs, _ := e.keys(); len(recs) != 0 {
		t.Errorf("records written for malformed tasks: %v", recs)
	}

	// A well-formed payload whose message breaks the rules (a producer writing the
	// queue directly): refused before the provider, record rejected with the field,
	// task archived.
	bad := sendPayload(func(m map[string]any) {
		msg := validMsg()
		msg.DestinationAddr = "+" + badPhone
		m["id"], m["message"] = "hand-invalid", msg
	})
	if _, err := client.Enqueue(asynq.NewTask(tasks.TypeSend, bad), asynq.Queue(tasks.QueueCritical), asynq.TaskID("hand-invalid")); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	var rec tasks.Record
	for time.Now().Before(deadline) {
		if rec, err = e.store.Get(context.Background(), "hand-invalid"); err == nil && rec.State.Final() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rec.State != tasks.StateRejected || !strings.Contains(rec.Error, "destination_addr") {
		t.Errorf("hand-made invalid message: record %s %q, want rejected naming destination_addr", rec.State, rec.Error)
	}
	if ti, err := e.insp.GetTaskInfo(tasks.QueueCritical, "hand-invalid"); err != nil || ti.State != asynq.TaskStateArchived {
		t.Errorf("hand-made invalid message: task %v %v, want archived", ti, err)
	}
	if n := sim.Stats().Requests[string(dtsim.EndpointSend)]; n != 0 {
		t.Errorf("the invalid message reached the provider (%d sends)", n)
	}
	scanLogBytes(t, "worker log", logs.Bytes())
}

// TestBadInputCatalogueSize keeps the catalogue at its promised size.
func TestBadInputCatalogueSize(t *testing.T) {
	n := len(goAPICases) + len(cliFlagCases) + len(settingsCases) + 6 + len(httpCases) + len(outboxCases) + 16 + len(taskCases) + len(foreignTypeCases) + 1
	if n < 40 || len(goAPICases) < 40 {
		t.Errorf("bad-input catalogue: %d cases (%d through the Go API), want at least 40", n, len(goAPICases))
	}
	t.Logf("bad-input catalogue: %d cases through 8 entrances", n)
}
