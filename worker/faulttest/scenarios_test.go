package faulttest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/tasks"
)

// The fault scenarios of RELIABILITY.md. Each runs real processes (several `viberq
// worker`, a simulator, a Redis) and ends with harness.verify (the accounting),
// a crash check and the leak scan. They run in parallel with each other.

var providerFinals = []tasks.State{tasks.StateDelivered, tasks.StateUndelivered}

func withUnknown(s ...tasks.State) []tasks.State { return append(s, tasks.StateUnknown) }

// (a) kill -9 of a worker in the middle of a run, three times, each restarted.
func TestFaultKill9(t *testing.T) {
	needRedis(t)
	t.Parallel()
	h := newHarness(t, "kill9", "")
	f := Figures{Title: "kill -9 of a worker mid-run (×3)"}
	defer h.finish(&f)

	sim := startSimProc(t, h.dir, testKey, "realistic")
	h.track(sim.p)
	h.sim = sim
	n, rate := pick(300, 3000), pick(40, 60)
	h.setRate(rate)
	h.setSpecs(genSpecs("kill9", 11, n, 30*time.Minute))
	h.startWorkers(3)
	h.enqueueCSV(h.specs)

	var lastFault time.Time
	for k, frac := range []float64{0.2, 0.45, 0.7} {
		h.waitAccepted(int64(frac*float64(n)), 5*time.Minute)
		// Make sure sends are in flight when the process dies: the next sends are
		// answered after 1 s, two of them accepted at once and answered after 15 s.
		sim.inject(t, dtsim.FaultSlow, 8)
		sim.inject(t, dtsim.FaultTimeoutAccepted, 2)
		time.Sleep(500 * time.Millisecond)
		h.workers[k].p.kill()
		lastFault = time.Now()
		t.Logf("kill -9 worker %d at %d%% accepted", k, int(frac*100))
		time.Sleep(300 * time.Millisecond)
		h.startWorker(k)
	}
	f.Fault = fmt.Sprintf("3 × kill -9 of one of 3 workers (at 20/45/70%% sent) with sends in flight (8 slow + 2 hanging answers injected before each kill), restarted; %d msg/s, enqueued with viberq send --csv", rate)
	// asynq re-runs the killed workers' tasks only after their 30 s lease expired and
	// the recoverer's next pass (it ignores leases expired less than 30 s ago and runs
	// every minute): up to ~2 minutes.
	h.waitFinal(pick(4*time.Minute, 10*time.Minute))
	f.RecoverSeconds = time.Since(lastFault).Seconds()
	f.Notes = "unknown = sends in flight at a kill (request written, answer lost with the process) and the injected hanging answers (the client gives up after 30 s)"
	// At most the killed worker's in-flight sends (its concurrency, 10) plus the two
	// hanging answers per kill.
	h.conclude(&f, verifyOpts{allowed: withUnknown(providerFinals...), maxUnknown: 3 * (10 + 2)}, nil)
}

// (b) Redis (with AOF, appendfsync always) killed and restarted mid-run.
func TestFaultRedisRestart(t *testing.T) {
	needRedis(t)
	needRedisServer(t)
	t.Parallel()
	logs := logDir(t, "redis-restart")
	rs := startRedisServer(t, logs, false, "--appendonly", "yes", "--appendfsync", "always")
	h := newHarness(t, "redis-restart", "redis://"+rs.addr()+"/0")
	h.dir = logs
	h.track(rs.p)
	f := Figures{Title: "Redis killed and restarted mid-run (AOF)"}
	defer h.finish(&f)

	sim := startSimProc(t, h.dir, testKey, "realistic")
	h.track(sim.p)
	h.sim = sim
	n, rate := pick(300, 3000), pick(40, 60)
	h.setRate(rate)
	h.setSpecs(genSpecs("redis", 12, n, 30*time.Minute))
	h.startWorkers(3)
	h.enqueue(h.specs)

	h.waitAccepted(int64(n*4/10), 5*time.Minute)
	rs.crash()
	down := time.Now()
	time.Sleep(3 * time.Second)
	rs.start(logs)
	h.track(rs.p)
	f.Fault = fmt.Sprintf("redis-server SIGKILL at 40%% sent, down %.0f s, restarted from its AOF; 3 workers, %d msg/s", time.Since(down).Seconds(), rate)
	lastFault := time.Now()
	if err := waitPing(h.rdb, 10*time.Second); err != nil {
		t.Fatalf("redis after restart: %v", err)
	}
	h.waitFinal(pick(3*time.Minute, 10*time.Minute))
	f.RecoverSeconds = time.Since(lastFault).Seconds()
	stuck := h.countLogLines("Will retry syncing")
	f.Notes = fmt.Sprintf("%d tasks ended while Redis was down; asynq could not write their result and left them to its recoverer (30 s lease + up to 60 s between passes), which bounds the time to recover", stuck)
	if stuck > 0 {
		t.Logf("%s", f.Notes)
	}
	h.conclude(&f, verifyOpts{allowed: withUnknown(providerFinals...), maxUnknown: 3 * 10}, nil)
}

// (c) The simulator's chaos profile; viberq's rate limit below the simulator's.
func TestFaultChaos(t *testing.T) { runChaos(t, "chaos", false) }

// (c') The chaos profile with VIBERQ_SERVER_ERROR_UNKNOWN=true: a 5xx on a send is
// taken as ambiguous, so a "500 after accept" becomes an unknown record instead of a
// retry, and there is no duplicate at all.
func TestFaultChaosServerErrorUnknown(t *testing.T) { runChaos(t, "chaos-5xx-unknown", true) }

func runChaos(t *testing.T, name string, serverErrorUnknown bool) {
	needRedis(t)
	t.Parallel()
	h := newHarness(t, name, "")
	f := Figures{Title: "simulator chaos profile"}
	if serverErrorUnknown {
		f.Title = "chaos profile, VIBERQ_SERVER_ERROR_UNKNOWN=true"
		h.env = append(h.env, "VIBERQ_SERVER_ERROR_UNKNOWN=true")
	}
	defer h.finish(&f)

	cfg, err := dtsim.ProfileConfig(dtsim.ProfileChaos)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Key, cfg.Seed = testKey, 20261126
	sim := startInProcSim(t, cfg)
	h.sim = sim
	n, rate := pick(300, 3000), 30
	h.setRate(rate)
	h.setSpecs(genSpecs("chaos", 13, n, 30*time.Minute))
	h.startWorkers(3)
	h.enqueue(h.specs)
	h.waitFinal(pick(4*time.Minute, 12*time.Minute))

	st := sim.stats(t)
	snap := sim.cnt.snapshot()
	f.Fault = fmt.Sprintf("chaos: 2%% 500, 1%% 500 after accept, 5%% slow, 1%% 35 s hang, 1%%+1%% resets, 1%% garbage, 2%% random 429, 3 s of 429s every 30 s; sim limit %g/s burst %d, viberq %d/s, 3 workers",
		cfg.RatePerSec, cfg.Burst, rate)
	h.conclude(&f, verifyOpts{allowed: withUnknown(providerFinals...), maxUnknown: -1}, nil)

	// The rate limit (verify checked the requests per second against viberq's limit):
	// no 429 from the simulator's own bucket either: every 429 is an injected fault or
	// in a scheduled burst.
	injectedStatus := snap.Status429 - snap.Status429Throttled // the status endpoint has no bucket in this profile
	injectedSend := st.Faults[string(dtsim.FaultRateLimited)] - injectedStatus
	f.Bucket429 = (snap.Send429 - snap.Send429Throttled) - injectedSend
	if cfg.StatusRatePerSec == 0 && f.Bucket429 > 3 {
		t.Errorf("%d 429s from the simulator's own bucket (send 429s %d, in bursts %d, injected %d): viberq went over the simulator's limit",
			f.Bucket429, snap.Send429, snap.Send429Throttled, injectedSend)
	}
	f.Bucket429 = max(f.Bucket429, 0)
	f.Notes = fmt.Sprintf("max %d send requests/s at the simulator (limit %d/s); send 429s %d (%d in scheduled bursts, %d injected, %d from the simulator's bucket); 2xx garbage on send %d; faults %v",
		f.MaxSendRPS, rate, snap.Send429, snap.Send429Throttled, injectedSend, f.Bucket429, snap.SendGarbage, st.Faults)
	if serverErrorUnknown {
		if f.Duplicates != 0 {
			t.Errorf("%d duplicates at the provider with VIBERQ_SERVER_ERROR_UNKNOWN=true: nothing may be sent twice", f.Duplicates)
		}
		if fa := st.Faults[string(dtsim.FaultServerErrorAfterAccept)]; fa > 0 && int64(f.Unknown) < int64(fa) {
			t.Errorf("%d unknown records for %d 500-after-accept faults: each should be unknown", f.Unknown, fa)
		}
	}
	t.Log(f.Notes)
}

// (d) The balance runs out mid-run: one alert, send queues paused, nothing lost;
// after a top-up, `viberq resume --rerun-archived` delivers everything.
func TestFaultBalance(t *testing.T) {
	needRedis(t)
	t.Parallel()
	h := newHarness(t, "balance", "")
	f := Figures{Title: "balance runs out mid-run, top-up, resume"}
	defer h.finish(&f)

	n := pick(200, 2000)
	balance := n / 2
	sim := startSimProc(t, h.dir, testKey, "realistic", "--balance", strconv.Itoa(balance))
	h.track(sim.p)
	h.sim = sim
	h.webhook = startWebhookSink(t)
	h.setRate(pick(40, 60))
	h.setSpecs(genSpecs("balance", 14, n, 30*time.Minute))
	h.startWorkers(3)
	h.enqueue(h.specs)

	// Wait until the 402 stopped everything: both send queues paused, no send
	// running, no record mid-send.
	deadline := time.Now().Add(pick(2*time.Minute, 5*time.Minute))
	for {
		if h.sendsStopped() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sends did not stop after the balance ran out: %v", h.queueSummary())
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // the alert POST races the pause
	counts, _, err := h.states()
	if err != nil {
		t.Fatal(err)
	}
	st := sim.stats(t)
	archived := h.archivedSends()
	t.Logf("balance out: states %v, simulator accepted %d, 402s %d, archived sends %d, alerts %d",
		counts, st.Accepted, st.PaymentRequired, archived, len(h.webhook.posts()))
	if st.Accepted != int64(balance) {
		t.Errorf("simulator accepted %d, balance was %d", st.Accepted, balance)
	}
	if counts["dropped"] == 0 || counts["dropped"] != archived {
		t.Errorf("dropped records %d, archived send tasks %d: want equal and > 0", counts["dropped"], archived)
	}
	accepted := counts["accepted"] + counts["delivered"] + counts["undelivered"]
	if accepted != balance || accepted+counts["dropped"]+counts["queued"] != n {
		t.Errorf("nothing may be lost: accepted %d + dropped %d + queued %d != %d (balance %d): %v",
			accepted, counts["dropped"], counts["queued"], n, balance, counts)
	}
	if posts := h.webhook.posts(); len(posts) != 1 {
		t.Errorf("want exactly one alert POST across 3 workers, got %d: %v", len(posts), posts)
	} else if !strings.Contains(posts[0], `"kind":"balance_empty"`) {
		t.Errorf("alert: %s", posts[0])
	}

	// While sends are parked, the UI shows the archived and pending payloads: check
	// that it masks them and that the API wants credentials (security, item 3).
	extra := h.apiLeakCheck()

	// Top up and resume.
	sim.setBalance(t, -1)
	env := baseEnv("VIBERQ_REDIS_URL="+h.redisURL, "VIBERQ_LOG_FORMAT=json")
	out, errOut, code := runCmd(t, env, nil, time.Minute, viberqBin(t), "resume", "--rerun-archived")
	extra["viberq resume output"] = []byte(out + errOut)
	if code != 0 || !strings.Contains(out, "archived tasks re-run") {
		t.Fatalf("viberq resume --rerun-archived: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("resume: %s", strings.TrimSpace(out))
	resumed := time.Now()
	h.waitFinal(pick(3*time.Minute, 8*time.Minute))
	f.RecoverSeconds = time.Since(resumed).Seconds()
	f.Fault = fmt.Sprintf("simulator balance %d for %d messages (402 / code 3), then a top-up and viberq resume --rerun-archived; 3 workers", balance, n)
	h.conclude(&f, verifyOpts{allowed: providerFinals, maxUnknown: 0}, extra)
	if f.Alerts != 1 {
		t.Errorf("alerts: %d, want 1", f.Alerts)
	}
	if f.SimAccepted != int64(n) {
		t.Errorf("simulator accepted %d, want %d (each message once)", f.SimAccepted, n)
	}
	f.Notes = fmt.Sprintf("at the stop: %d accepted, %d dropped (archived), %d still queued in the paused queues; 1 alert", accepted, counts["dropped"], counts["queued"])
}

// sendsStopped reports whether both send queues are paused with nothing running and
// no record is mid-send.
func (h *harness) sendsStopped() bool {
	for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault} {
		info, err := h.insp.GetQueueInfo(q)
		if err != nil || !info.Paused || info.Active > 0 {
			return false
		}
	}
	counts, _, err := h.states()
	return err == nil && counts["sending"] == 0
}

func (h *harness) queueSummary() string {
	var b strings.Builder
	for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault, tasks.QueueStatus} {
		info, err := h.insp.GetQueueInfo(q)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v; ", q, err)
			continue
		}
		fmt.Fprintf(&b, "%s paused=%v pending=%d active=%d scheduled=%d retry=%d archived=%d; ",
			q, info.Paused, info.Pending, info.Active, info.Scheduled, info.Retry, info.Archived)
	}
	return b.String()
}

func (h *harness) archivedSends() int {
	n := 0
	for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault} {
		info, err := h.insp.GetQueueInfo(q)
		if err == nil {
			n += info.Archived
		}
	}
	return n
}

// apiLeakCheck starts `viberq api` on the scenario's Redis, checks that it refuses
// requests without credentials, and returns what it shows with credentials (the
// Asynq UI's JSON with pending and archived payloads, a message's status JSON,
// /metrics) for the leak scan.
func (h *harness) apiLeakCheck() map[string][]byte {
	t := h.t
	const token, monPass = "api-token-0123456789abcdef", "monitor-pass-9876"
	port := freePort(t)
	base := "http://" + hostPort(port)
	p := h.startAPI(port, token, monPass, "api")
	out := map[string][]byte{}
	c := &http.Client{Timeout: 10 * time.Second}
	get := func(path string, auth func(*http.Request)) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if auth != nil {
			auth(req)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Errorf("GET %s: %v", path, err)
			return 0, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
		return resp.StatusCode, b
	}
	mon := func(r *http.Request) { r.SetBasicAuth("admin", monPass) }
	bearer := func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }

	// Without credentials (or with wrong ones) nothing gets in.
	for _, path := range []string{"/monitoring/", "/monitoring/api/queues", "/monitoring/api/queues/critical/archived_tasks",
		"/v1/messages/" + h.specs[0].ID} {
		if code, _ := get(path, nil); code != http.StatusUnauthorized {
			t.Errorf("GET %s without credentials: HTTP %d, want 401", path, code)
		}
		if code, _ := get(path, func(r *http.Request) { r.SetBasicAuth("admin", "wrong") }); code != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong password: HTTP %d, want 401", path, code)
		}
	}

	paths := []string{"/monitoring/api/queues", "/monitoring/api/servers", "/monitoring/api/queue_stats"}
	for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault, tasks.QueueStatus} {
		for _, kind := range []string{"pending", "active", "scheduled", "retry", "archived", "completed"} {
			paths = append(paths, fmt.Sprintf("/monitoring/api/queues/%s/%s_tasks?page=1&size=100", q, kind))
		}
	}
	sawPayload := false
	for _, path := range paths {
		code, b := get(path, mon)
		if code != http.StatusOK {
			t.Errorf("GET %s: HTTP %d: %.300s", path, code, b)
		}
		out["api "+path] = b
		if strings.Contains(path, "archived_tasks") && strings.Contains(string(b), "destination_addr") {
			sawPayload = true
		}
	}
	if !sawPayload {
		t.Errorf("the archived tasks in the UI show no payload: the leak check of the UI would prove nothing")
	}
	for _, s := range h.specs[:min(20, len(h.specs))] {
		code, b := get("/v1/messages/"+s.ID, bearer)
		if code != http.StatusOK {
			t.Errorf("GET /v1/messages/%s: HTTP %d", s.ID, code)
		}
		var rec map[string]any
		if json.Unmarshal(b, &rec) != nil || rec["id"] != s.ID {
			t.Errorf("GET /v1/messages/%s: %.200s", s.ID, b)
		}
		out["api /v1/messages/"+s.ID] = b
	}
	code, b := get("/metrics", nil)
	if code != http.StatusOK {
		t.Errorf("api /metrics: HTTP %d", code)
	}
	out["api /metrics"] = b
	if _, err := p.stop(20 * time.Second); err != nil {
		t.Errorf("viberq api: stop: %v", err)
	}
	return out
}

// (e1) A backlog in paused queues whose TTLs run out: expired messages are never sent.
func TestFaultTTLPaused(t *testing.T) {
	needRedis(t)
	t.Parallel()
	h := newHarness(t, "ttl-paused", "")
	f := Figures{Title: "backlog expires in paused queues"}
	defer h.finish(&f)

	cfg, err := dtsim.ProfileConfig(dtsim.ProfileRealistic)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Key, cfg.Seed = testKey, 7
	h.sim = startInProcSim(t, cfg)
	nExp, nCtl := pick(200, 2000), pick(100, 1000)
	const expTTL = 5 * time.Second
	expiring := genSpecs("ttlp", 15, nExp, expTTL)
	control := genSpecs("ttlpc", 16, nCtl, 30*time.Minute)
	h.setSpecs(append(append([]msgSpec(nil), expiring...), control...))
	h.setRate(pick(40, 80))

	h.enqueue(expiring)
	expiresAt := time.Now().Add(expTTL)
	for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault} {
		if err := h.insp.PauseQueue(q); err != nil {
			t.Fatalf("pause %s: %v", q, err)
		}
	}
	h.startWorkers(2)
	time.Sleep(time.Until(expiresAt) + 1500*time.Millisecond)
	h.enqueue(control)
	for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault} {
		if err := h.insp.UnpauseQueue(q); err != nil {
			t.Fatalf("unpause %s: %v", q, err)
		}
	}
	unpaused := time.Now()
	h.waitFinal(pick(2*time.Minute, 6*time.Minute))
	f.RecoverSeconds = time.Since(unpaused).Seconds()
	f.Fault = fmt.Sprintf("%d messages with a %s TTL held in paused queues past their TTL, then %d fresh ones; queues unpaused", nExp, expTTL, nCtl)
	h.conclude(&f, verifyOpts{allowed: append([]tasks.State{tasks.StateExpired}, providerFinals...), maxUnknown: 0}, nil)
	h.checkExpired(expiring, nExp)
	for _, s := range control {
		if rec, err := h.store.Get(context.Background(), s.ID); err == nil && rec.State == tasks.StateExpired {
			t.Errorf("control message %s expired", s.ID)
		}
	}
	f.Notes = "expired messages absent from the simulator's ledger (checked message by message)"
}

// (e2) A backlog behind a very low rate limit: what cannot be sent within its TTL
// expires and is never sent; nothing is sent after its TTL.
func TestFaultTTLLowRate(t *testing.T) {
	needRedis(t)
	t.Parallel()
	h := newHarness(t, "ttl-lowrate", "")
	f := Figures{Title: "backlog behind a very low rate limit expires"}
	defer h.finish(&f)

	cfg, err := dtsim.ProfileConfig(dtsim.ProfileRealistic)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Key, cfg.Seed = testKey, 8
	sim := startInProcSim(t, cfg)
	h.sim = sim
	n, rate, ttl := pick(100, 1000), pick(2, 5), pick(20*time.Second, time.Minute)
	h.setRate(rate)
	h.setSpecs(genSpecs("ttll", 17, n, ttl))
	h.startWorkers(3)
	h.enqueue(h.specs)
	h.waitFinal(ttl + pick(90*time.Second, 3*time.Minute))
	f.Fault = fmt.Sprintf("%d messages, TTL %s, viberq limit %d/s (room for ~%d)", n, ttl, rate, int(ttl.Seconds())*rate)
	h.conclude(&f, verifyOpts{allowed: append([]tasks.State{tasks.StateExpired}, providerFinals...), maxUnknown: 0}, nil)

	expired := f.States[string(tasks.StateExpired)]
	if expired == 0 || expired == n {
		t.Errorf("expired %d of %d: the scenario should both send and expire some", expired, n)
	}
	h.checkExpired(h.specs, expired)
	// Nothing went out after its TTL (the ledger's accept time against the record's
	// expiry; 2 s for the request in flight on a loaded machine).
	led, _ := sim.ledger()
	late := 0
	for _, e := range led {
		i := h.byText[e.TextHash]
		rec, err := h.store.Get(context.Background(), h.specs[i].ID)
		if err == nil && e.At.After(rec.ExpiresAt.Add(2*time.Second)) {
			late++
			t.Errorf("message %s accepted at %s, after its TTL (%s)", rec.ID, e.At, rec.ExpiresAt)
		}
	}
	f.Notes = fmt.Sprintf("%d sent within their TTL, %d expired unsent, %d sent late", len(led), expired, late)
}

// checkExpired checks that want of specs are expired, never attempted and absent
// from the ledger.
func (h *harness) checkExpired(specs []msgSpec, want int) {
	t := h.t
	sent := map[string]bool{}
	if led, ok := h.sim.ledger(); ok {
		for _, e := range led {
			sent[h.specs[h.byText[e.TextHash]].ID] = true
		}
	}
	got := 0
	for _, s := range specs {
		rec, err := h.store.Get(context.Background(), s.ID)
		if err != nil || rec.State != tasks.StateExpired {
			continue
		}
		got++
		if sent[s.ID] || rec.ProviderMessageID != 0 {
			t.Errorf("expired message %s was sent", s.ID)
		}
		if !rec.SentAt.IsZero() || rec.Attempts != 0 {
			t.Errorf("expired message %s was attempted (%d attempts, sent_at %s)", s.ID, rec.Attempts, rec.SentAt)
		}
	}
	if got != want {
		t.Errorf("expired %d, want %d", got, want)
	}
}

// (f) The simulator answers garbage: non-JSON, truncated JSON, wrong types, huge
// bodies with HTTP 200 on both endpoints, and 5xx with HTML or empty bodies.
func TestFaultGarbage(t *testing.T) {
	needRedis(t)
	t.Parallel()
	h := newHarness(t, "garbage", "")
	f := Figures{Title: "simulator answers garbage"}
	defer h.finish(&f)

	cfg, err := dtsim.ProfileConfig(dtsim.ProfileRealistic)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Key, cfg.Seed = testKey, 9
	cfg.Faults.Garbage = 0.15 // every kind, on sends and on status queries
	sim := startInProcSim(t, cfg)
	h.sim = sim
	var scripted []dtsim.Scripted
	html := http.Header{"Content-Type": {"text/html"}}
	for range 5 {
		scripted = append(scripted,
			dtsim.Scripted{Endpoint: dtsim.EndpointSend, Status: http.StatusBadGateway, Header: html, Body: []byte("<html><body><h1>502 Bad Gateway</h1></body></html>")},
			dtsim.Scripted{Endpoint: dtsim.EndpointSend, Status: http.StatusServiceUnavailable},
			dtsim.Scripted{Endpoint: dtsim.EndpointSend, Status: http.StatusInternalServerError, Body: []byte(`{"name":"Internal server err`)},
			dtsim.Scripted{Endpoint: dtsim.EndpointStatus, Status: http.StatusOK, Header: html, Body: []byte("<html>maintenance</html>")},
			dtsim.Scripted{Endpoint: dtsim.EndpointStatus, Status: http.StatusOK, Body: []byte(`{"message_id":"12x","status":[1]}`)},
		)
	}
	sim.sim.Script(scripted...)
	n := pick(200, 2000)
	h.setRate(pick(40, 60))
	h.setSpecs(genSpecs("garbage", 18, n, 30*time.Minute))
	h.startWorkers(3)
	h.enqueue(h.specs)
	h.waitFinal(pick(3*time.Minute, 8*time.Minute))
	snap := sim.cnt.snapshot()
	f.Fault = fmt.Sprintf("15%% of answers on both endpoints are HTTP 200 garbage (HTML, truncated JSON, wrong types, 4 MiB), plus %d scripted 5xx and garbage answers", len(scripted))
	h.conclude(&f, verifyOpts{allowed: withUnknown(providerFinals...), maxUnknown: -1}, nil)

	// Each 2xx garbage answer to a send is ambiguous (the provider accepted it: the
	// simulator mangles the answer, not the work): exactly one unknown record each,
	// never resent. 5xx answers are retried; garbage status answers are re-polled.
	if int64(f.Unknown) != snap.SendGarbage {
		t.Errorf("unknown records %d, 2xx garbage answers to sends %d: want equal", f.Unknown, snap.SendGarbage)
	}
	if f.UnknownAccepted != f.Unknown {
		t.Errorf("unknown records accepted by the provider %d of %d", f.UnknownAccepted, f.Unknown)
	}
	if snap.Send5xx < 15 || snap.StatusGarbage == 0 || snap.SendGarbage == 0 {
		t.Errorf("the faults did not happen: %+v", snap)
	}
	if f.Duplicates != 0 {
		t.Errorf("duplicates %d", f.Duplicates)
	}
	f.Notes = fmt.Sprintf("2xx garbage answers: %d to sends (→ unknown), %d to status queries (re-polled); 5xx answers to sends %d (retried)",
		snap.SendGarbage, snap.StatusGarbage, snap.Send5xx)
}

// (g) SIGTERM to a worker in the middle of a batch, three times: no message lost,
// none sent twice.
func TestFaultSIGTERM(t *testing.T) {
	needRedis(t)
	t.Parallel()
	h := newHarness(t, "sigterm", "")
	f := Figures{Title: "SIGTERM to a worker mid-batch (×3)"}
	defer h.finish(&f)

	sim := startSimProc(t, h.dir, testKey, "realistic")
	h.track(sim.p)
	h.sim = sim
	n, rate := pick(300, 3000), pick(40, 60)
	h.setRate(rate)
	h.setSpecs(genSpecs("sigterm", 19, n, 30*time.Minute))
	h.startWorkers(3)
	h.enqueue(h.specs)

	var lastFault time.Time
	var took []string
	for k, frac := range []float64{0.25, 0.5, 0.75} {
		h.waitAccepted(int64(frac*float64(n)), 5*time.Minute)
		// Sends in flight at the SIGTERM: the next ones are answered after 1 s.
		sim.inject(t, dtsim.FaultSlow, 10)
		time.Sleep(300 * time.Millisecond)
		old := h.workers[k].p
		d, err := old.stop(40 * time.Second)
		if err != nil {
			t.Errorf("worker %d after SIGTERM: %v\n%s", k, err, tail(old.log(), 2000))
		}
		if !strings.Contains(old.log(), "worker stopped") {
			t.Errorf("worker %d did not log a clean stop", k)
		}
		took = append(took, d.Round(10*time.Millisecond).String())
		lastFault = time.Now()
		h.startWorker(k)
	}
	h.waitFinal(pick(2*time.Minute, 8*time.Minute))
	f.RecoverSeconds = time.Since(lastFault).Seconds()
	f.Fault = fmt.Sprintf("3 × SIGTERM to one of 3 workers (at 25/50/75%% sent) with sends in flight (10 answers slowed to 1 s before each), restarted; %d msg/s", rate)
	f.Notes = "shutdowns took " + strings.Join(took, ", ")
	h.conclude(&f, verifyOpts{allowed: providerFinals, maxUnknown: 0}, nil)
	if f.Duplicates != 0 {
		t.Errorf("duplicates %d after SIGTERMs", f.Duplicates)
	}
}

// conclude ends a scenario: metrics scraped, the accounting verified, no process
// crashed, the workers stopped cleanly, and the leak scan of everything printed.
func (h *harness) conclude(f *Figures, o verifyOpts, extra map[string][]byte) {
	h.t.Helper()
	h.scrapeMetrics()
	h.verify(f, o)
	h.checkNoCrash()
	h.stopWorkers()
	h.scanLeaks(extra)
	h.t.Log(summary(*f))
}
