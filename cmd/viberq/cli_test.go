package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/viberq/viberq/config"
	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/worker"
)

// cli runs the binary's realMain against a miniredis that VIBERQ_REDIS_URL points at.
// Every other VIBERQ_ variable of the environment is blanked (blank means default), so
// the developer's shell cannot change the outcome. It uses t.Setenv: tests using it
// cannot be parallel.
type cli struct {
	t    *testing.T
	mr   *miniredis.Miniredis
	rdb  *redis.Client
	insp *asynq.Inspector
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	clearViberqEnv(t)
	mr := miniredis.RunT(t)
	t.Setenv("VIBERQ_REDIS_URL", "redis://"+mr.Addr()+"/0")
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	// An inspector made FromRedisClient does not own rdb: it is not closed here.
	return &cli{t: t, mr: mr, rdb: rdb, insp: asynq.NewInspectorFromRedisClient(rdb)}
}

func clearViberqEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "VIBERQ_") {
			t.Setenv(k, "")
		}
	}
}

// run calls realMain with args and returns the exit code, stdout and stderr.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code = realMain(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func (c *cli) run(args ...string) (int, string, string) {
	c.t.Helper()
	return run(c.t, args...)
}

// mustRun runs args and fails the test unless the exit code is 0.
func (c *cli) mustRun(args ...string) string {
	c.t.Helper()
	code, out, errOut := c.run(args...)
	if code != 0 {
		c.t.Fatalf("viberq %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (c *cli) record(id string) (tasks.Record, error) {
	c.t.Helper()
	return tasks.NewStore(c.rdb, tasks.StoreOptions{}).Get(context.Background(), id)
}

func (c *cli) mustRecord(id string) tasks.Record {
	c.t.Helper()
	rec, err := c.record(id)
	if err != nil {
		c.t.Fatalf("record %s: %v", id, err)
	}
	return rec
}

// sendTask returns the send task of message id in queue and its decoded arguments.
func (c *cli) sendTask(queue, id string) (*asynq.TaskInfo, tasks.SendArgs) {
	c.t.Helper()
	info, err := c.insp.GetTaskInfo(queue, id)
	if err != nil {
		c.t.Fatalf("task %s in queue %s: %v", id, queue, err)
	}
	if info.Type != tasks.TypeSend {
		c.t.Fatalf("task %s: type %q, want %q", id, info.Type, tasks.TypeSend)
	}
	var a tasks.SendArgs
	if err := json.Unmarshal(info.Payload, &a); err != nil {
		c.t.Fatalf("task %s payload: %v", id, err)
	}
	return info, a
}

func (c *cli) msgKeys() []string {
	c.t.Helper()
	keys, err := c.rdb.Keys(context.Background(), tasks.DefaultPrefix+"msg:*").Result()
	if err != nil {
		c.t.Fatal(err)
	}
	return keys
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSendPrintsIDAndEnqueues(t *testing.T) {
	c := newCLI(t)
	out := c.mustRun("send", "--from", "Shop", "--to", "380501234567", "--text", "Your code is 1234",
		"--sms-text", "Code 1234", "--id", "order-42")
	if out != "order-42\n" {
		t.Fatalf("stdout = %q, want the ID and a newline", out)
	}
	rec := c.mustRecord("order-42")
	if rec.State != tasks.StateQueued || rec.Queue != tasks.QueueCritical || !rec.HasSMS || rec.DestMasked != "380*****4567" {
		t.Fatalf("record = %+v, want queued on critical with SMS, destination masked", rec)
	}
	info, a := c.sendTask(tasks.QueueCritical, "order-42")
	if info.State != asynq.TaskStatePending {
		t.Errorf("task state = %v, want pending", info.State)
	}
	m := a.Message
	if a.ID != "order-42" || m.SourceAddr != "Shop" || m.DestinationAddr != "380501234567" || m.Text != "Your code is 1234" ||
		m.TextSMS != "Code 1234" || m.MessageType != provider.TypeText || m.SourceType != provider.SourceTransactional {
		t.Errorf("task payload = %+v", a)
	}
	if ttl := a.ExpiresAt.Sub(a.EnqueuedAt); ttl != 40*time.Second {
		t.Errorf("TTL with --sms-text = %v, want VIBERQ_SMS_TTL's default 40s", ttl)
	}

	// The same ID again is a duplicate: the same ID printed, no second task.
	if out := c.mustRun("send", "--from", "Shop", "--to", "380501234567", "--text", "Your code is 1234",
		"--sms-text", "Code 1234", "--id", "order-42", "--json"); !strings.Contains(out, `"duplicate":true`) {
		t.Errorf("second send --json = %s, want duplicate true", out)
	}
	if q, err := c.insp.GetQueueInfo(tasks.QueueCritical); err != nil || q.Size != 1 {
		t.Errorf("critical queue after a duplicate: %+v, %v; want size 1", q, err)
	}
	// Without --json it says so on stderr; stdout stays the bare ID.
	var dupOut string
	dupErr := captureStderr(t, func() {
		dupOut = c.mustRun("send", "--from", "Shop", "--to", "380501234567", "--text", "Your code is 1234",
			"--sms-text", "Code 1234", "--id", "order-42")
	})
	if strings.TrimSpace(dupOut) != "order-42" || !strings.Contains(dupErr, "order-42 is a duplicate") {
		t.Errorf("second send: stdout %q, stderr %q; want the ID, and the duplicate said on stderr", dupOut, dupErr)
	}

	// Same ID, another message: refused, exit 1.
	code, _, errOut := c.run("send", "--from", "Shop", "--to", "380501234567", "--text", "another text", "--id", "order-42")
	if code != 1 || !strings.Contains(errOut, "order-42") {
		t.Errorf("conflicting send: exit %d, stderr %q; want 1 naming the ID", code, errOut)
	}
}

func TestSendGeneratesIDAndHonoursFlags(t *testing.T) {
	c := newCLI(t)
	out := c.mustRun("send", "--from", "Shop", "--to", "380501234567", "--text", "Sale!", "--source", "1", "--ttl", "2h")
	id := strings.TrimSpace(out)
	u, err := uuid.Parse(id)
	if err != nil || u.Version() != 7 {
		t.Fatalf("generated ID %q: want a UUIDv7 (%v)", id, err)
	}
	_, a := c.sendTask(tasks.QueueDefault, id)
	if a.Message.SourceType != provider.SourcePromotional {
		t.Errorf("source_type = %v, want promotional", a.Message.SourceType)
	}
	if ttl := a.ExpiresAt.Sub(a.EnqueuedAt); ttl != 2*time.Hour {
		t.Errorf("TTL = %v, want --ttl 2h", ttl)
	}
	if rec := c.mustRecord(id); rec.Queue != tasks.QueueDefault {
		t.Errorf("record queue = %q, want default", rec.Queue)
	}

	var res enqueueResultJSON
	out = c.mustRun("send", "--from", "Shop", "--to", "380501234568", "--text", "hi", "--id", "j-1", "--json")
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("--json output %q: %v", out, err)
	}
	if res.ID != "j-1" || res.Duplicate || res.Queue != tasks.QueueCritical || res.State != string(tasks.StateQueued) || res.ExpiresAt.IsZero() {
		t.Errorf("--json result = %+v", res)
	}
}

func TestSendRefusesBadMessageNamingEveryField(t *testing.T) {
	c := newCLI(t)
	code, out, errOut := c.run("send", "--to", "+380", "--type", "1", "--id", "bad-1")
	if code != 2 {
		t.Fatalf("exit %d, want 2 (stderr %q)", code, errOut)
	}
	if out != "" {
		t.Errorf("stdout = %q, want nothing (no ID for a refused message)", out)
	}
	// One line, as README says of every error: "viberq send: message refused:" then
	// each bad field with its rule, joined by "; ".
	if strings.Count(errOut, "\n") != 1 || !strings.HasSuffix(errOut, "\n") {
		t.Errorf("stderr is not one line:\n%s", errOut)
	}
	if !strings.HasPrefix(errOut, "viberq send: message refused: source_addr: is required; ") {
		t.Errorf("stderr = %q, want the refusal and its first field on the line", errOut)
	}
	for _, fe := range []string{"source_addr: is required", "destination_addr: must contain digits only", "message_type: must be one of 106, 108, 206, 208, got 1", "text: is required"} {
		if !strings.Contains(errOut, fe) {
			t.Errorf("stderr does not name %q:\n%s", fe, errOut)
		}
	}
	if keys := c.msgKeys(); len(keys) != 0 {
		t.Errorf("records written for a refused message: %v", keys)
	}
	if _, err := c.insp.GetTaskInfo(tasks.QueueCritical, "bad-1"); err == nil {
		t.Error("a task was enqueued for a refused message")
	}
}

func TestSendUsageErrors(t *testing.T) {
	c := newCLI(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"send", "--type", "abc"}, "-type"},
		{[]string{"send", "--ttl", "soon"}, "-ttl"},
		{[]string{"send", "--nope"}, "-nope"},
		{[]string{"send", "--from", "Shop", "extra"}, `"extra"`},
	} {
		code, _, errOut := c.run(tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 mentioning %s", tc.args, code, errOut, tc.want)
		}
	}
	if keys := c.msgKeys(); len(keys) != 0 {
		t.Errorf("records written by bad invocations: %v", keys)
	}
}

// csvFixture has good rows, a duplicate, bad rows of several kinds and good rows
// after the bad ones. Line numbers are the file's (header = line 1).
const csvFixture = `id,from,to,text,sms_text,source,ttl
csv-1,Shop,380501234567,Hello one,,2,
csv-2,Shop,380501234568,Hello two,SMS two,2,90s
csv-1,Shop,380501234567,Hello one,,2,
csv-bad,,+380,,,,
csv-3,Shop,380501234569,Hello three,,1,120
csv-ttl,Shop,380501234560,Hi,,2,soon
csv-1,Shop,380501234567,Another text,,2,
csv-src,Shop,380501234561,Hi,,x,
`

func TestSendCSVSummaryLinesAndReasons(t *testing.T) {
	c := newCLI(t)
	path := writeFile(t, "batch.csv", csvFixture)
	code, out, errOut := c.run("send", "--csv", path)
	if code != 1 {
		t.Fatalf("exit %d, want 1 when rows are refused\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if !strings.Contains(out, "rows 8: enqueued 3, duplicates 1, refused 4\n") {
		t.Errorf("summary missing or wrong:\n%s", out)
	}
	if !strings.Contains(errOut, "4 of 8 rows refused") {
		t.Errorf("stderr = %q, want the refused count", errOut)
	}
	lines := map[int][]string{
		5: {"source_addr:", "destination_addr:", "text:"},
		7: {"ttl:", `"soon"`},
		8: {"id:"},
		9: {"source:", `"x"`},
	}
	for line, wants := range lines {
		m := regexp.MustCompile(`(?m)^  line ` + itoa(line) + `: (.*)$`).FindStringSubmatch(out)
		if m == nil {
			t.Errorf("no problem reported for line %d:\n%s", line, out)
			continue
		}
		for _, w := range wants {
			if !strings.Contains(m[1], w) {
				t.Errorf("line %d reason %q does not mention %s", line, m[1], w)
			}
		}
	}
	if n := len(regexp.MustCompile(`(?m)^  line `).FindAllString(out, -1)); n != 4 {
		t.Errorf("%d problem lines, want 4:\n%s", n, out)
	}

	// The rows around the bad ones are enqueued, the bad ones are not.
	for id, queue := range map[string]string{"csv-1": tasks.QueueCritical, "csv-2": tasks.QueueCritical, "csv-3": tasks.QueueDefault} {
		if rec := c.mustRecord(id); rec.State != tasks.StateQueued || rec.Queue != queue {
			t.Errorf("%s: record %+v, want queued on %s", id, rec, queue)
		}
		c.sendTask(queue, id)
	}
	_, a := c.sendTask(tasks.QueueCritical, "csv-2")
	if ttl := a.ExpiresAt.Sub(a.EnqueuedAt); ttl != 90*time.Second {
		t.Errorf("csv-2 TTL = %v, want 90s", ttl)
	}
	_, a = c.sendTask(tasks.QueueDefault, "csv-3")
	if ttl := a.ExpiresAt.Sub(a.EnqueuedAt); ttl != 120*time.Second {
		t.Errorf("csv-3 TTL = %v, want 120s (seconds)", ttl)
	}
	_, a = c.sendTask(tasks.QueueCritical, "csv-1")
	if a.Message.Text != "Hello one" {
		t.Errorf("csv-1 text = %q: the conflicting row must not replace it", a.Message.Text)
	}
	for _, id := range []string{"csv-bad", "csv-ttl", "csv-src"} {
		if _, err := c.record(id); err == nil {
			t.Errorf("%s: a refused row has a record", id)
		}
	}
	if q, err := c.insp.GetQueueInfo(tasks.QueueCritical); err != nil || q.Size != 2 {
		t.Errorf("critical queue: %+v, %v; want 2 tasks (no task for the duplicate)", q, err)
	}

	// Again, as JSON: everything is now a duplicate but the refused rows.
	code, out, _ = c.run("send", "--csv", path, "--json")
	if code != 1 {
		t.Fatalf("second run: exit %d, want 1", code)
	}
	var sum csvSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("--json summary %q: %v", out, err)
	}
	if sum.Rows != 8 || sum.Enqueued != 0 || sum.Duplicates != 4 || sum.Refused != 4 {
		t.Errorf("second run summary = %+v, want 8 rows, 0 enqueued, 4 duplicates, 4 refused", sum)
	}
	var got []int
	for _, p := range sum.Problems {
		got = append(got, p.Line)
	}
	if want := []int{5, 7, 8, 9}; !equalInts(got, want) {
		t.Errorf("problem lines = %v, want %v", got, want)
	}
}

func TestSendCSVAllGoodExitsZero(t *testing.T) {
	c := newCLI(t)
	// A spreadsheet export: byte order mark, vendor column names, CRLF, quoted text.
	path := writeFile(t, "ok.csv", "\ufeffid,source_addr,destination_addr,text,message_type,source_type\r\n"+
		"ok-1,Shop,380501234567,\"Hello, one\",106,2\r\nok-2,Shop,380501234568,Two,106,1\r\n")
	out := c.mustRun("send", "--csv", path)
	if !strings.Contains(out, "rows 2: enqueued 2, duplicates 0, refused 0") {
		t.Errorf("summary = %q", out)
	}
	if _, a := c.sendTask(tasks.QueueCritical, "ok-1"); a.Message.Text != "Hello, one" {
		t.Errorf("ok-1 text = %q", a.Message.Text)
	}
	c.sendTask(tasks.QueueDefault, "ok-2")
}

// A message flag beside --csv is refused (exit 2, naming it), not dropped: the rows'
// fields are columns; only the row defaults are taken as flags.
func TestSendCSVRefusesMessageFlags(t *testing.T) {
	c := newCLI(t)
	path := writeFile(t, "flags.csv", "id,from,to,text\nf-1,Shop,380501234567,Hi\n")
	code, _, errOut := c.run("send", "--csv", path, "--ttl", "90s", "--source", "1", "--batch", "spring")
	if code != 2 || !strings.Contains(errOut, "--source, --ttl: with --csv") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if keys := c.msgKeys(); len(keys) != 0 {
		t.Errorf("records written: %v", keys)
	}
	out := c.mustRun("send", "--csv", path, "--batch", "spring", "--webhook-events", "all")
	if !strings.Contains(out, "enqueued 1") {
		t.Errorf("row defaults refused: %q", out)
	}
}

// A CSV ttl is read as the API reads it: 0 and a number of seconds that would
// overflow are refused on their row, not turned into the default or wrapped around.
func TestSendCSVTTLReadAsTheAPIReadsIt(t *testing.T) {
	c := newCLI(t)
	path := writeFile(t, "ttl.csv", "id,from,to,text,ttl\n"+
		"t-0,Shop,380501234567,Hi,0\nt-huge,Shop,380501234567,Hi,36028797018967568\nt-ok,Shop,380501234567,Hi,90\n")
	code, out, _ := c.run("send", "--csv", path)
	if code != 1 || !strings.Contains(out, "rows 3: enqueued 1, duplicates 0, refused 2") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{"line 2: ttl: must be between 1s and 6h0m0s, got 0s", "line 3: ttl: is too large"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if _, a := c.sendTask(tasks.QueueCritical, "t-ok"); a.TTL() != 90*time.Second {
		t.Errorf("t-ok TTL = %s", a.TTL())
	}
}

func TestSendCSVMalformedRows(t *testing.T) {
	c := newCLI(t)
	// A bare quote on line 3 and, from line 5 to the end, an unterminated quoted first
	// field (the reader then returns no field at all: this used to panic).
	path := writeFile(t, "broken.csv", "id,from,to,text\n"+
		"m-1,Shop,380501234567,fine\n"+
		"m-2,Shop,380501234568,bad\"quote\n"+
		"m-3,Shop,380501234569,fine too\n"+
		"\"m-4,Shop,380501234560,never closed\n")
	code, out, errOut := c.run("send", "--csv", path)
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if !strings.Contains(out, "enqueued 2,") || !strings.Contains(out, "refused 2") {
		t.Errorf("summary = %q, want 2 enqueued, 2 refused", out)
	}
	if !strings.Contains(out, "line 3: ") || !strings.Contains(out, "line 5: ") {
		t.Errorf("the malformed lines are not reported:\n%s", out)
	}
	c.mustRecord("m-1")
	c.mustRecord("m-3")
}

func TestSendCSVBadFile(t *testing.T) {
	c := newCLI(t)
	code, _, errOut := c.run("send", "--csv", writeFile(t, "h.csv", "id,from,to,colour\n"))
	if code != 2 || !strings.Contains(errOut, `"colour"`) {
		t.Errorf("unknown column: exit %d, stderr %q; want 2 naming it", code, errOut)
	}
	code, _, errOut = c.run("send", "--csv", filepath.Join(t.TempDir(), "missing.csv"))
	if code != 1 || !strings.Contains(errOut, "missing.csv") {
		t.Errorf("missing file: exit %d, stderr %q; want 1 naming it", code, errOut)
	}
}

func TestStatus(t *testing.T) {
	c := newCLI(t)
	c.mustRun("send", "--from", "Shop", "--to", "380501234567", "--text", "hi", "--sms-text", "hi", "--id", "st-1")

	out := c.mustRun("status", "st-1")
	for _, re := range []string{`(?m)^id\s+st-1$`, `(?m)^state\s+queued$`, `(?m)^to\s+380\*{5}4567$`,
		`(?m)^queue\s+critical$`, `(?m)^polls\s+0$`, `(?m)^final_at\s+-$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status output does not match %s:\n%s", re, out)
		}
	}
	if strings.Contains(out, "380501234567") {
		t.Errorf("status shows the full phone number:\n%s", out)
	}

	// Walk the record to delivered (by SMS) as the worker would; status shows it.
	st := tasks.NewStore(c.rdb, tasks.StoreOptions{})
	ctx := context.Background()
	vs, sms, smsID := provider.ViberStatus(4), provider.SMSStatus(2), provider.MessageID(500000003)
	for _, step := range []struct {
		from, to tasks.State
		upd      tasks.Update
	}{
		{tasks.StateQueued, tasks.StateSending, tasks.Update{IncAttempts: true}},
		{tasks.StateSending, tasks.StateAccepted, tasks.Update{ProviderMessageID: 100017}},
		{tasks.StateAccepted, tasks.StateDelivered, tasks.Update{Channel: tasks.ChannelSMS, ViberStatus: &vs, SMSMessageID: &smsID, SMSStatus: &sms, Polled: 1}},
	} {
		if _, ok, err := st.Transition(ctx, "st-1", []tasks.State{step.from}, step.to, step.upd); err != nil || !ok {
			t.Fatalf("transition %s → %s: ok=%v err=%v", step.from, step.to, ok, err)
		}
	}
	out = c.mustRun("status", "st-1")
	for _, re := range []string{`(?m)^state\s+delivered$`, `(?m)^channel\s+sms$`, `(?m)^provider_message_id\s+100017$`,
		`(?m)^viber_status\s+4 \(undelivered\)$`, `(?m)^sms_status\s+2 \(delivered\)$`, `(?m)^sms_message_id\s+500000003$`,
		`(?m)^attempts\s+1$`, `(?m)^polls\s+1$`, `(?m)^final_at\s+\d{4}-\d\d-\d\dT`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status of the delivered record does not match %s:\n%s", re, out)
		}
	}

	for _, args := range [][]string{{"status", "st-1", "--json"}, {"status", "--json", "st-1"}} {
		out := c.mustRun(args...)
		var rec tasks.Record
		if err := json.Unmarshal([]byte(out), &rec); err != nil {
			t.Fatalf("%v: %q is not a record: %v", args, out, err)
		}
		if rec.ID != "st-1" || rec.State != tasks.StateDelivered || rec.Channel != tasks.ChannelSMS ||
			rec.ProviderMessageID != 100017 || rec.SMSStatus == nil || *rec.SMSStatus != 2 || rec.DestMasked != "380*****4567" {
			t.Errorf("%v: record = %+v", args, rec)
		}
		if strings.Contains(out, "380501234567") {
			t.Errorf("%v shows the full phone number", args)
		}
	}
}

func TestStatusUnknownAndUsage(t *testing.T) {
	c := newCLI(t)
	code, out, errOut := c.run("status", "no-such-id")
	if code != 1 || out != "" || !strings.Contains(errOut, `message "no-such-id" not found`) {
		t.Errorf("unknown ID: exit %d, stdout %q, stderr %q; want 1 and a not-found line", code, out, errOut)
	}
	for _, args := range [][]string{{"status"}, {"status", "--json"}, {"status", "a", "b"}, {"status", "--json", "a", "b"}} {
		if code, _, errOut := c.run(args...); code != 2 {
			t.Errorf("%v: exit %d (stderr %q), want 2", args, code, errOut)
		}
	}
}

func TestQueuesPausedAndResume(t *testing.T) {
	c := newCLI(t)

	// Before anything was enqueued every queue shows, empty.
	var rows []queueRow
	if err := json.Unmarshal([]byte(c.mustRun("queues", "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0].Queue != tasks.QueueCritical || rows[0].Size != 0 {
		t.Fatalf("queues on an empty Redis = %+v", rows)
	}
	// A 402 pauses both send queues, also one that never held a task; resume unpauses
	// it. (asynq's Inspector reports the pause of a queue once it has held a task:
	// worker.QueueStates.)
	if err := c.insp.PauseQueue(tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	if out := c.mustRun("resume", "--rerun-archived"); !strings.Contains(out, "queue default: running (was paused: true)") ||
		!strings.Contains(out, "queue critical: running (was paused: false)") || !strings.Contains(out, "queue default: 0 archived tasks re-run") {
		t.Errorf("resume of an unused paused queue:\n%s", out)
	}
	if info, err := c.insp.GetQueueInfo(tasks.QueueDefault); err == nil && info.Paused {
		t.Errorf("default still paused after resume: %+v", info)
	}
	// Paused with a task in it: queues shows it, and resume lifts it.
	if err := c.insp.PauseQueue(tasks.QueueDefault); err != nil {
		t.Fatal(err)
	}
	c.mustRun("send", "--from", "Shop", "--to", "380501234569", "--text", "promo", "--source", "1", "--id", "q-promo")
	if err := json.Unmarshal([]byte(c.mustRun("queues", "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	if rows[1].Queue != tasks.QueueDefault || !rows[1].Paused || rows[1].Pending != 1 || rows[0].Paused {
		t.Errorf("queues with the default queue paused = %+v", rows)
	}
	if out := c.mustRun("resume"); !strings.Contains(out, "queue default: running (was paused: true)") {
		t.Errorf("resume of the paused default queue:\n%s", out)
	}
	if err := json.Unmarshal([]byte(c.mustRun("queues", "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	if rows[1].Paused {
		t.Errorf("default still paused after resume: %+v", rows)
	}

	c.mustRun("send", "--from", "Shop", "--to", "380501234567", "--text", "hi", "--id", "q-1")
	c.mustRun("send", "--from", "Shop", "--to", "380501234568", "--text", "hi", "--id", "q-2")
	if err := c.insp.PauseQueue(tasks.QueueCritical); err != nil {
		t.Fatal(err)
	}
	queues := func() map[string]queueRow {
		t.Helper()
		var rows []queueRow
		out := c.mustRun("queues", "--json")
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("queues --json %q: %v", out, err)
		}
		m := map[string]queueRow{}
		for _, r := range rows {
			m[r.Queue] = r
		}
		return m
	}
	q := queues()
	if r := q[tasks.QueueCritical]; !r.Paused || r.Pending != 2 || r.Size != 2 {
		t.Errorf("critical = %+v, want paused with 2 pending", r)
	}
	if q[tasks.QueueDefault].Paused || q[tasks.QueueStatus].Paused {
		t.Errorf("only critical was paused: %+v", q)
	}
	text := c.mustRun("queues")
	if !regexp.MustCompile(`(?m)^\s*critical\s+true\s+2\s+2\s`).MatchString(text) {
		t.Errorf("queues table does not show critical paused with 2 tasks:\n%s", text)
	}
	if !regexp.MustCompile(`(?m)^\s*default\s+false\s`).MatchString(text) {
		t.Errorf("queues table does not show default running:\n%s", text)
	}

	out := c.mustRun("resume")
	if !strings.Contains(out, "queue critical: running (was paused: true)") {
		t.Errorf("resume output:\n%s", out)
	}
	if strings.Contains(out, "re-run") {
		t.Errorf("resume without --rerun-archived re-ran tasks:\n%s", out)
	}
	if queues()[tasks.QueueCritical].Paused {
		t.Error("critical still paused after resume")
	}

	// A dropped send (archived on a 402) is re-run by --rerun-archived only.
	if err := c.insp.ArchiveTask(tasks.QueueCritical, "q-1"); err != nil {
		t.Fatal(err)
	}
	if err := c.insp.PauseQueue(tasks.QueueCritical); err != nil {
		t.Fatal(err)
	}
	if r := queues()[tasks.QueueCritical]; r.Archived != 1 || r.Pending != 1 {
		t.Fatalf("after archiving q-1: %+v", r)
	}
	c.mustRun("resume")
	if r := queues()[tasks.QueueCritical]; r.Archived != 1 || r.Paused {
		t.Errorf("plain resume: %+v, want unpaused with the archived task left alone", r)
	}
	if err := c.insp.PauseQueue(tasks.QueueCritical); err != nil {
		t.Fatal(err)
	}
	out = c.mustRun("resume", "--rerun-archived")
	if !strings.Contains(out, "queue critical: running (was paused: true)") || !strings.Contains(out, "queue critical: 1 archived tasks re-run") {
		t.Errorf("resume --rerun-archived output:\n%s", out)
	}
	if r := queues()[tasks.QueueCritical]; r.Archived != 0 || r.Pending != 2 || r.Paused {
		t.Errorf("after --rerun-archived: %+v, want 2 pending, none archived, running", r)
	}
	if info, _ := c.sendTask(tasks.QueueCritical, "q-1"); info.State != asynq.TaskStatePending {
		t.Errorf("q-1 state = %v, want pending", info.State)
	}

	for _, args := range [][]string{{"queues", "extra"}, {"resume", "extra"}, {"resume", "--rerun"}} {
		if code, _, _ := c.run(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestBadSettingIsOneLineNamingTheVariable(t *testing.T) {
	c := newCLI(t)
	for _, cmd := range [][]string{
		{"send", "--from", "Shop", "--to", "380501234567", "--text", "hi"},
		{"send", "--csv", "-"},
		{"status", "x"},
		{"queues"},
		{"resume"},
		{"worker"},
		{"api"},
	} {
		t.Run(cmd[0], func(t *testing.T) {
			t.Setenv("VIBERQ_RATE_LIMIT", "abc")
			t.Setenv("VIBERQ_CONCURRENCY", "0")
			t.Setenv("VIBERQ_CALLBACK_TOKEN", "not a valid token!")
			code, out, errOut := run(t, cmd...)
			if code == 0 {
				t.Fatalf("exit 0 with bad settings (stdout %q)", out)
			}
			if strings.Count(errOut, "\n") != 1 || !strings.HasSuffix(errOut, "\n") {
				t.Errorf("stderr is not one line: %q", errOut)
			}
			for _, v := range []string{"VIBERQ_RATE_LIMIT", "VIBERQ_CONCURRENCY", "VIBERQ_CALLBACK_TOKEN"} {
				if !strings.Contains(errOut, v) {
					t.Errorf("stderr does not name %s: %q", v, errOut)
				}
			}
			if strings.Contains(errOut, "not a valid token") {
				t.Errorf("stderr echoes a secret setting: %q", errOut)
			}
		})
	}
	// The store is untouched.
	if keys := c.msgKeys(); len(keys) != 0 {
		t.Errorf("records written with bad settings: %v", keys)
	}
}

// The worker's flags are read by their settings' own parsers and bounds: a rate out
// of range (which would have turned into no limit at all), an infinite or NaN rate,
// a concurrency too high are refused naming the flag and the rule, and nothing runs.
func TestWorkerFlagsKeepTheSettingsBounds(t *testing.T) {
	c := newCLI(t)
	t.Setenv("VIBERQ_DT_API_KEY", "abcdefghijklmnopqrstuvwxyz0123")
	code, out, errOut := c.run("worker", "--rate", "1e-12", "--status-rate", "inf", "--concurrency", "200000", "--metrics-addr", "off")
	if code == 0 {
		t.Fatalf("exit 0 with out-of-range flags (stdout %q)", out)
	}
	for _, want := range []string{
		`--rate (VIBERQ_RATE_LIMIT): must be a number between 0.01 and 10000, got "1e-12"`,
		`--status-rate (VIBERQ_STATUS_RATE_LIMIT): must be a number between 0.01 and 10000, got "inf"`,
		`--concurrency (VIBERQ_CONCURRENCY): must be a whole number between 1 and 10000, got "200000"`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q: %q", want, errOut)
		}
	}
	if code, _, errOut := c.run("worker", "--rate", "NaN"); code == 0 || !strings.Contains(errOut, `--rate (VIBERQ_RATE_LIMIT)`) {
		t.Errorf("--rate NaN: exit %d, stderr %q", code, errOut)
	}
	if keys := c.mr.Keys(); len(keys) != 0 {
		t.Errorf("the worker ran with bad flags: keys %v", keys)
	}
}

func TestRedisUnreachableIsOneLine(t *testing.T) {
	clearViberqEnv(t)
	mr := miniredis.RunT(t)
	addr := mr.Addr()
	mr.Close() // nothing listens there any more
	t.Setenv("VIBERQ_REDIS_URL", "redis://:hunter2secret@"+addr+"/0")
	code, _, errOut := run(t, "queues")
	if code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "unreachable") {
		t.Errorf("exit %d, stderr %q; want 1 and one line saying Redis is unreachable", code, errOut)
	}
	if strings.Contains(errOut, "hunter2secret") {
		t.Errorf("stderr shows the Redis password: %q", errOut)
	}
}

func TestHelpForEveryCommand(t *testing.T) {
	t.Parallel()
	for name := range commands() {
		for _, flag := range []string{"--help", "-h"} {
			code, out, errOut := run(t, name, flag)
			if code != 0 {
				t.Errorf("viberq %s %s: exit %d (stderr %q), want 0", name, flag, code, errOut)
			}
			if !strings.HasPrefix(out, "usage: viberq "+name+" ") {
				t.Errorf("viberq %s %s: stdout %q, want the usage", name, flag, out)
			}
			if !strings.Contains(out, commands()[name].summary) {
				t.Errorf("viberq %s %s: usage lacks the summary", name, flag)
			}
		}
	}
	code, out, _ := run(t, "--help")
	if code != 0 {
		t.Errorf("viberq --help: exit %d, want 0", code)
	}
	for name := range commands() {
		if !regexp.MustCompile(`(?m)^  ` + name + ` `).MatchString(out) {
			t.Errorf("viberq --help does not list %s:\n%s", name, out)
		}
	}
	if code, _, _ := run(t); code != 2 {
		t.Errorf("viberq without a command: exit %d, want 2", code)
	}
	if code, _, errOut := run(t, "frobnicate"); code != 2 || !strings.Contains(errOut, `"frobnicate"`) {
		t.Errorf("unknown command: exit %d, stderr %q; want 2 naming it", code, errOut)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A misspelt setting is warned about by the commands that run and exit too, on
// stderr, naming the closest setting; the command still runs.
func TestClientCommandsWarnOfUnknownSettings(t *testing.T) {
	c := newCLI(t)
	t.Setenv("VIBERQ_DEFAULT_TLL", "6h")
	var code int
	var out string
	errOut := captureStderr(t, func() {
		code, out, _ = c.run("send", "--from", "Shop", "--to", "380501234567", "--text", "hi", "--id", "typo-1")
	})
	if code != 0 || strings.TrimSpace(out) != "typo-1" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	want := "viberq: warning: VIBERQ_DEFAULT_TLL is not a viberq setting (did you mean VIBERQ_DEFAULT_TTL?); it is ignored\n"
	if errOut != want {
		t.Errorf("stderr = %q, want %q", errOut, want)
	}
}

// captureStderr runs f with os.Stderr redirected and returns what f wrote there.
func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	defer func() { os.Stderr = old }()
	f()
	_ = w.Close()
	os.Stderr = old
	return <-done
}

// TestResumeClearsLimiterPauses: a 429 with a long hint paused the global buckets;
// `viberq resume` lifts those pauses too, not only the paused queues, and says how
// long each had left.
//
// The time left is measured on Redis's clock (the pause key holds the end of the
// pause, compared with Redis TIME), which the test sets through miniredis rather
// than letting real time pass between the two commands: 12.4 s pass, so 32.6 s are
// left, printed rounded to the second.
func TestResumeClearsLimiterPauses(t *testing.T) {
	c := newCLI(t)
	ctx := context.Background()
	paused := time.Now()
	c.mr.SetTime(paused)
	send := worker.NewLimiter(c.rdb, tasks.DefaultPrefix, worker.BucketSend, 10, 1, nil)
	if err := send.Pause(ctx, 45*time.Second); err != nil {
		t.Fatal(err)
	}
	c.mr.SetTime(paused.Add(12400 * time.Millisecond))
	out := c.mustRun("resume")
	if !strings.Contains(out, "limiter send: running (was paused by a 429 for 33s more)") || strings.Contains(out, "limiter status") {
		t.Errorf("resume output:\n%s", out)
	}
	if left, err := send.Paused(ctx); err != nil || left != 0 {
		t.Errorf("send bucket still paused for %s after resume (%v)", left, err)
	}
	if out := c.mustRun("resume"); strings.Contains(out, "limiter") {
		t.Errorf("resume with nothing paused mentions a limiter:\n%s", out)
	}
}

// TestMaxRetryAfterDefaultHasOneValue: the setting's default is the worker's.
func TestMaxRetryAfterDefaultHasOneValue(t *testing.T) {
	if config.DefaultMaxRetryAfter != worker.DefaultMaxRetryAfter || config.DefaultPollConcurrency != worker.DefaultPollConcurrency {
		t.Errorf("config defaults %s/%d differ from the worker's %s/%d", config.DefaultMaxRetryAfter, config.DefaultPollConcurrency,
			worker.DefaultMaxRetryAfter, worker.DefaultPollConcurrency)
	}
}

// A bad --rate of the demo is named as the flag (with the setting it feeds).
func TestDemoNamesItsRateFlag(t *testing.T) {
	clearViberqEnv(t)
	code, _, errOut := run(t, "demo", "--rate", "0")
	if code != 2 || !strings.Contains(errOut, `--rate (VIBERQ_RATE_LIMIT): must be a number between 0.01 and 10000, got "0"`) {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
