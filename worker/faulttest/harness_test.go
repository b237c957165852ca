package faulttest

import (
	"context"
	"encoding/base64"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
)

// msgSpec is one message of a scenario. Destination and text are unique per message,
// so the simulator's ledger maps each accepted send back to its message.
type msgSpec struct {
	ID, Dest, Text, SMSText string
	Source                  provider.SourceType
	TTL                     time.Duration
}

func (m msgSpec) message() provider.Message {
	return provider.Message{
		SourceAddr: "FaultShop", DestinationAddr: m.Dest, MessageType: provider.TypeText,
		Text: m.Text, TextSMS: m.SMSText, SourceType: m.Source,
	}
}

// genSpecs returns n messages: two thirds transactional Viber + SMS, one third
// promotional Viber only. code (10..99) keeps the destinations of scenarios apart.
func genSpecs(scenario string, code, n int, ttl time.Duration) []msgSpec {
	out := make([]msgSpec, n)
	for i := range out {
		m := msgSpec{
			ID:     fmt.Sprintf("%s-%05d", scenario, i),
			Dest:   fmt.Sprintf("380%02d%07d", code, i),
			Text:   fmt.Sprintf("Fault test %s #%d: your code is %04d", scenario, i, (i*7919)%10000),
			Source: provider.SourceTransactional,
			TTL:    ttl,
		}
		if i%3 == 2 {
			m.Source = provider.SourcePromotional
		} else {
			m.SMSText = fmt.Sprintf("Code %04d (%s %d)", (i*7919)%10000, scenario, i)
		}
		out[i] = m
	}
	return out
}

// testKey is the provider access key of the fault runs; the leak scan looks for it.
const testKey = "fault-key-Zq8XwT3pL0vN6sRb"

// harness runs one scenario: a Redis (a reserved database of the test Redis, or a
// private redis-server), a simulator, worker processes, the Go Enqueuer, and the
// accounting at the end.
type harness struct {
	t        *testing.T
	name     string
	dir      string
	start    time.Time
	redisURL string
	rdb      *redis.Client
	store    *tasks.Store
	enq      *tasks.Enqueuer
	insp     *asynq.Inspector
	sim      simBackend
	webhook  *webhookSink
	env      []string // extra worker environment (last wins)
	specs    []msgSpec
	byText   map[string]int // hex SHA-256 of the text → index in specs
	secrets  []string       // more secrets for the leak scan (e.g. a Redis password)
	rate     int            // VIBERQ_RATE_LIMIT of the workers (0: the default)

	mu      sync.Mutex
	workers []*workerSlot
	procs   []*proc // every process started, for the leak scan
	scraped map[string][]byte
}

type workerSlot struct {
	idx, gen, metricsPort int
	p                     *proc
}

// newHarness prepares a scenario on a reserved database of the test Redis (redisURL
// "") or on the Redis at redisURL.
func newHarness(t *testing.T, name, redisURL string) *harness {
	t.Helper()
	var opt *redis.Options
	if redisURL != "" {
		var err error
		if opt, err = redis.ParseURL(redisURL); err != nil {
			t.Fatal(err)
		}
	}
	return newHarnessOpt(t, name, redisURL, opt)
}

// newHarnessOpt is newHarness with the go-redis options of the test's own client
// (e.g. a TLS configuration).
func newHarnessOpt(t *testing.T, name, redisURL string, opt *redis.Options) *harness {
	t.Helper()
	h := &harness{t: t, name: name, dir: logDir(t, name), start: time.Now(), scraped: map[string][]byte{}}
	if redisURL == "" {
		h.rdb = redistest.Client(t)
		h.redisURL = redistest.URL(t)
	} else {
		h.rdb = redis.NewClient(opt)
		t.Cleanup(func() { _ = h.rdb.Close() })
		h.redisURL = redisURL
	}
	h.store = tasks.NewStore(h.rdb, tasks.StoreOptions{EventsMaxLen: 10_000_000})
	client := asynq.NewClientFromRedisClient(h.rdb)
	h.enq = tasks.NewEnqueuer(client, h.store, tasks.EnqueuerConfig{})
	h.insp = asynq.NewInspectorFromRedisClient(h.rdb)
	return h
}

// setSpecs records the scenario's messages.
func (h *harness) setSpecs(specs []msgSpec) {
	h.specs = specs
	h.byText = make(map[string]int, len(specs))
	for i, s := range specs {
		h.byText[dtsim.HashText(s.Text)] = i
	}
}

// workerEnv is the environment of a worker process.
func (h *harness) workerEnv(metricsPort int) []string {
	env := baseEnv(
		"VIBERQ_REDIS_URL="+h.redisURL,
		"VIBERQ_DT_BASE_URL="+h.sim.apiBase(),
		"VIBERQ_DT_API_KEY="+testKey,
		"VIBERQ_LOG_FORMAT=json",
		"VIBERQ_LOG_LEVEL=info",
		"VIBERQ_METRICS_ADDR="+hostPort(metricsPort),
		"VIBERQ_CONCURRENCY=10",
		"VIBERQ_RATE_LIMIT=40",
		"VIBERQ_STATUS_RATE_LIMIT=300",
		"VIBERQ_POLL_FIRST=1s",
		"VIBERQ_POLL_MAX_INTERVAL=3s",
		"VIBERQ_POLL_SMS_GRACE=2m",
		"VIBERQ_EVENTS_MAXLEN=10000000",
		"VIBERQ_SHUTDOWN_TIMEOUT=20s",
	)
	if h.webhook != nil {
		env = append(env, "VIBERQ_ALERT_WEBHOOK_URL="+h.webhook.url)
	}
	return append(env, h.env...)
}

// setRate sets the workers' global send rate limit (VIBERQ_RATE_LIMIT).
func (h *harness) setRate(rate int) {
	h.rate = rate
	h.env = append(h.env, "VIBERQ_RATE_LIMIT="+strconv.Itoa(rate))
}

// startWorker starts (or restarts) worker idx and waits until it runs.
func (h *harness) startWorker(idx int) *workerSlot {
	h.t.Helper()
	h.mu.Lock()
	for len(h.workers) <= idx {
		h.workers = append(h.workers, &workerSlot{idx: len(h.workers)})
	}
	w := h.workers[idx]
	h.mu.Unlock()
	w.gen++
	w.metricsPort = freePort(h.t)
	p := startProc(h.t, h.dir, fmt.Sprintf("worker-%d-%d", idx, w.gen), h.workerEnv(w.metricsPort), viberqBin(h.t), "worker")
	h.mu.Lock()
	w.p = p
	h.procs = append(h.procs, p)
	h.mu.Unlock()
	if err := p.waitLog(`"worker started"`, 30*time.Second); err != nil {
		h.t.Fatal(err)
	}
	return w
}

func (h *harness) startWorkers(n int) {
	for i := range n {
		h.startWorker(i)
	}
}

// track adds a process started outside the harness to the leak scan.
func (h *harness) track(p *proc) {
	h.mu.Lock()
	h.procs = append(h.procs, p)
	h.mu.Unlock()
}

// enqueue enqueues the specs with the Go Enqueuer (8 at a time).
func (h *harness) enqueue(specs []msgSpec) {
	h.t.Helper()
	ctx := context.Background()
	var (
		wg   sync.WaitGroup
		errs = make(chan error, len(specs))
		next = make(chan msgSpec)
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range next {
				res, err := h.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: s.ID, Message: s.message(), TTL: s.TTL})
				switch {
				case err != nil:
					errs <- fmt.Errorf("enqueue %s: %w", s.ID, err)
				case res.Duplicate:
					errs <- fmt.Errorf("enqueue %s: unexpected duplicate", s.ID)
				}
			}
		}()
	}
	for _, s := range specs {
		next <- s
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		h.t.Fatal(err)
	}
}

// enqueueCSV enqueues the specs with `viberq send --csv`.
func (h *harness) enqueueCSV(specs []msgSpec) {
	h.t.Helper()
	path := filepath.Join(h.dir, "messages.csv")
	f, err := os.Create(path)
	if err != nil {
		h.t.Fatal(err)
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"id", "from", "to", "text", "type", "source", "sms_text", "ttl"})
	for _, s := range specs {
		_ = w.Write([]string{s.ID, "FaultShop", s.Dest, s.Text, "106", strconv.Itoa(int(s.Source)), s.SMSText,
			strconv.Itoa(int(s.TTL / time.Second))})
	}
	w.Flush()
	if err := errors.Join(w.Error(), f.Close()); err != nil {
		h.t.Fatal(err)
	}
	env := baseEnv("VIBERQ_REDIS_URL="+h.redisURL, "VIBERQ_LOG_FORMAT=json", "VIBERQ_EVENTS_MAXLEN=10000000")
	stdout, stderr, code := runCmd(h.t, env, nil, 5*time.Minute, viberqBin(h.t), "send", "--csv", path, "--json")
	if err := os.WriteFile(filepath.Join(h.dir, "send-csv.log"), []byte(stdout+stderr), 0o600); err != nil {
		h.t.Fatal(err)
	}
	if code != 0 {
		h.t.Fatalf("viberq send --csv: exit %d\n%s\n%s", code, stdout, tail(stderr, 2000))
	}
	if want := fmt.Sprintf(`"enqueued":%d`, len(specs)); !strings.Contains(stdout, want) {
		h.t.Fatalf("viberq send --csv: want %s in %s", want, stdout)
	}
}

// states returns the state of every spec (pipelined HGET).
func (h *harness) states() (map[string]int, int, error) {
	ctx := context.Background()
	counts := map[string]int{}
	notFinal := 0
	for i := 0; i < len(h.specs); i += 1000 {
		part := h.specs[i:min(i+1000, len(h.specs))]
		pipe := h.rdb.Pipeline()
		cmds := make([]*redis.StringCmd, len(part))
		for j, s := range part {
			cmds[j] = pipe.HGet(ctx, h.store.Key(s.ID), "state")
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, 0, err
		}
		for _, c := range cmds {
			st, err := c.Result()
			if errors.Is(err, redis.Nil) {
				st = "missing"
			}
			counts[st]++
			if !tasks.State(st).Final() {
				notFinal++
			}
		}
	}
	return counts, notFinal, nil
}

// waitFinal waits until every spec's record is final (true), or timeout (false).
func (h *harness) waitFinal(timeout time.Duration) bool {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	lastLog := time.Now()
	for {
		counts, notFinal, err := h.states()
		if err == nil && notFinal == 0 {
			return true
		}
		if time.Now().After(deadline) {
			h.t.Errorf("%s: not every message final after %s: %v (err %v)", h.name, timeout, counts, err)
			return false
		}
		if time.Since(lastLog) > 15*time.Second {
			h.t.Logf("%s: waiting, %d not final: %v", h.name, notFinal, counts)
			lastLog = time.Now()
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitAccepted waits until the simulator accepted at least n sends.
func (h *harness) waitAccepted(n int64, timeout time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := h.sim.stats(h.t)
		if st.Accepted >= n {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: simulator accepted %d of %d within %s", h.name, st.Accepted, n, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scrapeMetrics fetches /metrics of every running worker (for the leak scan).
func (h *harness) scrapeMetrics() {
	h.mu.Lock()
	ws := append([]*workerSlot(nil), h.workers...)
	h.mu.Unlock()
	for _, w := range ws {
		if w.p == nil || !w.p.running() {
			continue
		}
		b, err := httpGet("http://" + hostPort(w.metricsPort) + "/metrics")
		if err != nil {
			h.t.Errorf("worker %d metrics: %v", w.idx, err)
			continue
		}
		if !strings.Contains(string(b), "viberq_") {
			h.t.Errorf("worker %d metrics: no viberq_ metric in %d bytes", w.idx, len(b))
		}
		h.scraped[fmt.Sprintf("metrics worker-%d-%d", w.idx, w.gen)] = b
	}
}

func httpGet(url string) ([]byte, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	return b, nil
}

// stopWorkers sends SIGTERM to every running worker and checks a clean exit.
func (h *harness) stopWorkers() {
	h.mu.Lock()
	ws := append([]*workerSlot(nil), h.workers...)
	h.mu.Unlock()
	for _, w := range ws {
		if w.p == nil || !w.p.running() {
			continue
		}
		if _, err := w.p.stop(40 * time.Second); err != nil {
			h.t.Errorf("worker %d: stop: %v", w.idx, err)
		}
	}
}

// checkNoCrash reports every process that exited though the test did not stop it,
// and every log that shows a panic.
func (h *harness) checkNoCrash() {
	h.mu.Lock()
	procs := append([]*proc(nil), h.procs...)
	h.mu.Unlock()
	for _, p := range procs {
		if !p.running() && !p.stoppedOnPurpose() {
			h.t.Errorf("%s exited by itself (%v):\n%s", p.name, p.exitErr(), tail(p.log(), 3000))
		}
		lg := p.log()
		for _, bad := range []string{"panic:", "fatal error:", "goroutine 1 [", "DATA RACE"} {
			if strings.Contains(lg, bad) {
				h.t.Errorf("%s printed %q:\n%s", p.name, bad, tail(lg, 3000))
			}
		}
	}
}

// secrets the leak scan looks for: the key as given and as sent (Base64 of key and
// of key+":"), and the alert webhook's secret path.
func leakSecrets() []string {
	return []string{
		testKey,
		base64.StdEncoding.EncodeToString([]byte(testKey)),
		base64.StdEncoding.EncodeToString([]byte(testKey + ":")),
		"hook-token-abc123",
	}
}

var digitRun = regexp.MustCompile(`[0-9]{10,}`)

// scanLeaks searches every process log of the scenario, the scraped metrics and the
// extra sources for the secrets and for the full destination numbers.
func (h *harness) scanLeaks(extra map[string][]byte) {
	h.t.Helper()
	phones := make(map[string]bool, len(h.specs))
	for _, s := range h.specs {
		phones[s.Dest] = true
	}
	sources := map[string][]byte{}
	h.mu.Lock()
	for _, p := range h.procs {
		b, _ := os.ReadFile(p.logPath)
		sources["log "+p.name] = b
	}
	for k, v := range h.scraped {
		sources[k] = v
	}
	h.mu.Unlock()
	if b, err := os.ReadFile(filepath.Join(h.dir, "send-csv.log")); err == nil {
		sources["log viberq send --csv"] = b
	}
	for k, v := range extra {
		sources[k] = v
	}
	n := scanSources(h.t, sources, append(leakSecrets(), h.secrets...), phones)
	h.t.Logf("%s: leak scan of %d sources (%d bytes): clean unless reported", h.name, len(sources), n)
}

// scanSources reports (t.Errorf) every source that holds a secret or a phone number
// of phones; it returns the bytes scanned.
func scanSources(t *testing.T, sources map[string][]byte, secrets []string, phones map[string]bool) int {
	t.Helper()
	findings, n := leakFindings(sources, secrets, phones)
	for _, f := range findings {
		t.Error(f)
	}
	return n
}

// leakFindings lists every source that holds one of the secrets or a full phone
// number of phones (any run of 10+ digits equal to one), and the bytes scanned.
func leakFindings(sources map[string][]byte, secrets []string, phones map[string]bool) ([]string, int) {
	var out []string
	total := 0
	names := make([]string, 0, len(sources))
	for k := range sources {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		b := sources[name]
		total += len(b)
		s := string(b)
		for _, sec := range secrets {
			if sec == "" {
				continue
			}
			if i := strings.Index(s, sec); i >= 0 {
				out = append(out, fmt.Sprintf("LEAK: %s holds a secret (%d chars) at byte %d: …%s…", name, len(sec), i, around(s, i, len(sec))))
			}
		}
		leaked := 0
		for _, m := range digitRun.FindAllStringIndex(s, -1) {
			if phones[s[m[0]:m[1]]] {
				if leaked < 3 {
					out = append(out, fmt.Sprintf("LEAK: %s holds the full phone number %s: …%s…", name, provider.MaskPhone(s[m[0]:m[1]]), around(s, m[0], m[1]-m[0])))
				}
				leaked++
			}
		}
		if leaked > 3 {
			out = append(out, fmt.Sprintf("LEAK: %s holds %d full phone numbers in all", name, leaked))
		}
	}
	return out, total
}

// around shows the context of a match with the match itself masked.
func around(s string, i, n int) string {
	lo, hi := max(0, i-60), min(len(s), i+n+60)
	return strings.ReplaceAll(s[lo:i]+"<MATCH>"+s[i+n:hi], "\n", " ")
}

// finish is deferred by each scenario: it writes the figures with the test's result.
func (h *harness) finish(f *Figures) {
	f.Scenario = h.name
	f.DurationSeconds = time.Since(h.start).Seconds()
	f.Pass = !h.t.Failed()
	writeFigures(h.t, *f)
}

// verifyOpts tunes verify to a scenario.
type verifyOpts struct {
	// allowed lists the final states a message may end in (nil: any).
	allowed []tasks.State
	// maxUnknown bounds the unknown records (-1: any).
	maxUnknown int
}

// verify counts the outcome and checks the accounting: every message has a record in
// exactly one final state, reached once (the events stream); the simulator's ledger
// and counters agree with the records (a message is at the provider iff its record
// says so, except for unknown records); duplicates at the provider only where a "500
// after accept" fault explains them; provider ids unique; outcomes equal to the
// simulator's.
func (h *harness) verify(f *Figures, o verifyOpts) {
	h.t.Helper()
	t := h.t
	ctx := context.Background()
	f.Messages = len(h.specs)
	f.States = map[string]int{}
	f.Channels = map[string]int{}
	f.UnknownAccepted = -1
	f.Bucket429 = -1

	recs := make([]tasks.Record, len(h.specs))
	pids := map[provider.MessageID]string{}
	withPID, unknownNoPID := 0, 0
	allowed := map[tasks.State]bool{}
	for _, s := range o.allowed {
		allowed[s] = true
	}
	for i, s := range h.specs {
		rec, err := h.store.Get(ctx, s.ID)
		if err != nil {
			t.Errorf("record %s: %v", s.ID, err)
			f.NotFinal++
			continue
		}
		recs[i] = rec
		f.States[string(rec.State)]++
		if !rec.State.Final() {
			f.NotFinal++
			t.Errorf("record %s not final: %s (error %q)", s.ID, rec.State, rec.Error)
		} else if len(allowed) > 0 && !allowed[rec.State] {
			t.Errorf("record %s: state %s not expected here (error %q)", s.ID, rec.State, rec.Error)
		}
		if rec.State == tasks.StateDelivered {
			f.Channels[rec.Channel]++
			if rec.Channel != tasks.ChannelViber && rec.Channel != tasks.ChannelSMS {
				t.Errorf("record %s delivered without a channel (%q)", s.ID, rec.Channel)
			}
		}
		if rec.ProviderMessageID != 0 {
			withPID++
			if other, dup := pids[rec.ProviderMessageID]; dup {
				t.Errorf("records %s and %s share provider id %d", other, s.ID, rec.ProviderMessageID)
			}
			pids[rec.ProviderMessageID] = s.ID
		} else {
			switch rec.State {
			case tasks.StateDelivered, tasks.StateUndelivered:
				t.Errorf("record %s %s without a provider message id", s.ID, rec.State)
			case tasks.StateUnknown:
				unknownNoPID++
			}
		}
	}
	f.Unknown = f.States[string(tasks.StateUnknown)]
	if o.maxUnknown >= 0 && f.Unknown > o.maxUnknown {
		t.Errorf("%d unknown records, at most %d expected here", f.Unknown, o.maxUnknown)
	}

	// No record besides the scenario's.
	if n := h.countKeys(h.store.Key("*")); n != len(h.specs) {
		t.Errorf("%d message records in Redis, want %d", n, len(h.specs))
	}

	// Exactly one final state per message, as the events stream tells it.
	h.checkEvents(recs)

	// The simulator's side.
	st := h.sim.stats(t)
	f.SimAccepted = st.Accepted
	f.Duplicates = st.Duplicates
	f.Faults500AfterAccept = st.Faults[string(dtsim.FaultServerErrorAfterAccept)]
	if led, ok := h.sim.ledger(); ok {
		h.checkLedger(f, recs, led)
	} else {
		unique := st.Accepted - st.Duplicates
		if unique < int64(withPID) || unique > int64(withPID+unknownNoPID) {
			t.Errorf("simulator accepted %d distinct messages; records: %d with a provider id, %d unknown without one",
				unique, withPID, unknownNoPID)
		}
		f.DupAfter500 = min(st.Duplicates, f.Faults500AfterAccept)
		f.DupAmbiguous = st.Duplicates - f.DupAfter500
		if f.Unknown == 0 && st.Duplicates == 0 {
			// Every accepted message is accounted for: the outcomes must match.
			want := map[string]int{
				"delivered_viber": f.Channels[tasks.ChannelViber],
				"delivered_sms":   f.Channels[tasks.ChannelSMS],
				"undelivered":     f.States[string(tasks.StateUndelivered)],
			}
			for k, n := range want {
				if int64(n) != st.Finals[k] {
					t.Errorf("simulator finals %s = %d, records say %d", k, st.Finals[k], n)
				}
			}
		}
	}
	if f.Duplicates > f.Faults500AfterAccept {
		t.Errorf("%d duplicates at the provider, but only %d sends were answered 500 after being accepted (the one case the design resends)",
			f.Duplicates, f.Faults500AfterAccept)
	}
	if f.Duplicates != f.DupAfter500+f.DupAmbiguous {
		t.Errorf("duplicates %d != %d + %d", f.Duplicates, f.DupAfter500, f.DupAmbiguous)
	}
	if h.webhook != nil {
		f.Alerts = len(h.webhook.posts())
	}
	if c := h.sim.counts(); c != nil {
		// The global limit holds across workers: send requests per second of arrival
		// at the simulator (a small slack: a request granted at the end of a second
		// may arrive in the next one).
		f.MaxSendRPS = c.maxSendPerSec()
		if h.rate > 0 {
			f.RateLimit = float64(h.rate)
			if f.MaxSendRPS > int64(h.rate+max(3, h.rate/5)) {
				t.Errorf("rate limit exceeded: %d send requests in one second at the simulator, limit %d/s", f.MaxSendRPS, h.rate)
			}
		}
	}
}

// checkLedger maps every accepted send to its message by the text hash.
func (h *harness) checkLedger(f *Figures, recs []tasks.Record, led []dtsim.LedgerEntry) {
	t := h.t
	f.UnknownAccepted = 0
	count := make([]int, len(h.specs))
	ids := make([][]provider.MessageID, len(h.specs))
	for _, e := range led {
		i, ok := h.byText[e.TextHash]
		if !ok {
			t.Errorf("the simulator accepted a message of no spec (provider id %d)", e.MessageID)
			continue
		}
		if e.Destination != h.specs[i].Dest {
			t.Errorf("message %s reached the provider with another destination", h.specs[i].ID)
		}
		count[i]++
		ids[i] = append(ids[i], e.MessageID)
	}
	var dups int64
	for i, s := range h.specs {
		rec := recs[i]
		n := count[i]
		if n > 1 {
			dups += int64(n - 1)
			if rec.State == tasks.StateUnknown {
				f.DupAmbiguous += int64(n - 1)
			} else {
				f.DupAfter500 += int64(n - 1)
			}
		}
		switch {
		case rec.ID == "":
			continue
		case rec.State == tasks.StateUnknown:
			if n > 0 {
				f.UnknownAccepted++
			}
		case rec.ProviderMessageID != 0:
			if n == 0 {
				t.Errorf("record %s holds provider id %d but the provider never accepted it", s.ID, rec.ProviderMessageID)
				continue
			}
			found := false
			for _, id := range ids[i] {
				found = found || id == rec.ProviderMessageID
			}
			if !found {
				t.Errorf("record %s holds provider id %d, the provider accepted it as %v", s.ID, rec.ProviderMessageID, ids[i])
			}
			if rec.State == tasks.StateDelivered || rec.State == tasks.StateUndelivered {
				got, _ := h.sim.outcome(rec.ProviderMessageID, s.SMSText != "")
				want := provider.OutcomeUndelivered
				switch {
				case rec.State == tasks.StateDelivered && rec.Channel == tasks.ChannelViber:
					want = provider.OutcomeDeliveredViber
				case rec.State == tasks.StateDelivered:
					want = provider.OutcomeDeliveredSMS
				}
				if got != want {
					t.Errorf("record %s: %s/%s, the simulator says %s", s.ID, rec.State, rec.Channel, got)
				}
			}
		case n > 0:
			t.Errorf("record %s is %s (error %q) but the provider accepted it %d time(s): sent though the record says not",
				s.ID, rec.State, rec.Error, n)
		}
	}
	if dups != f.Duplicates {
		t.Errorf("ledger duplicates %d, simulator counter %d", dups, f.Duplicates)
	}
}

// checkEvents reads the events stream: per message the final states reached must be
// zero or more "dropped" (re-run after a top-up) then exactly one, the record's.
func (h *harness) checkEvents(recs []tasks.Record) {
	t := h.t
	ctx := context.Background()
	finals := map[string][]tasks.State{}
	start := "-"
	for range 100_000 {
		evs, err := h.store.Events(ctx, start, 5000)
		if err != nil {
			t.Errorf("events: %v", err)
			return
		}
		for _, e := range evs {
			if e.To.Final() {
				finals[e.ID] = append(finals[e.ID], e.To)
			}
		}
		if len(evs) < 5000 {
			break
		}
		start = "(" + evs[len(evs)-1].StreamID
	}
	for i, s := range h.specs {
		fs := finals[s.ID]
		if len(fs) == 0 {
			if recs[i].State.Final() {
				t.Errorf("message %s: record %s but no final event", s.ID, recs[i].State)
			}
			continue
		}
		for _, x := range fs[:len(fs)-1] {
			if x != tasks.StateDropped {
				t.Errorf("message %s reached final states %v: only dropped may be left (operator re-run)", s.ID, fs)
				break
			}
		}
		if last := fs[len(fs)-1]; recs[i].ID != "" && last != recs[i].State {
			t.Errorf("message %s: last final event %s, record %s", s.ID, last, recs[i].State)
		}
	}
}

// countLogLines counts the lines of every process log that contain substr.
func (h *harness) countLogLines(substr string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, p := range h.procs {
		for _, line := range strings.Split(p.log(), "\n") {
			if strings.Contains(line, substr) {
				n++
			}
		}
	}
	return n
}

// countKeys counts the keys matching pattern (SCAN).
func (h *harness) countKeys(pattern string) int {
	ctx := context.Background()
	n := 0
	iter := h.rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		n++
	}
	if err := iter.Err(); err != nil {
		h.t.Errorf("scan %s: %v", pattern, err)
	}
	return n
}

// summary is a one-line description of the figures for the log.
func summary(f Figures) string {
	return fmt.Sprintf("%d messages %v not final %d; accepted %d, duplicates %d (500-after-accept faults %d), unknown %d (accepted %d), alerts %d, recover %.1fs",
		f.Messages, f.States, f.NotFinal, f.SimAccepted, f.Duplicates, f.Faults500AfterAccept, f.Unknown, f.UnknownAccepted, f.Alerts, f.RecoverSeconds)
}
