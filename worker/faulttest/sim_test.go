package faulttest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/provider/dtsim"
)

// simBackend is the simulator a scenario runs against: a `viberq sim` process, or the
// same simulator in the test process (served on a real port) when the scenario needs
// its ledger or per-request counts, which /_sim/stats does not expose.
type simBackend interface {
	// apiBase is the base URL workers use (VIBERQ_DT_BASE_URL).
	apiBase() string
	stats(t *testing.T) dtsim.Stats
	// ledger returns every accepted send; ok=false when the backend cannot tell.
	ledger() (entries []dtsim.LedgerEntry, ok bool)
	setBalance(t *testing.T, n int64)
	// outcome is the simulator's final outcome of an accepted message (in-process
	// only; ok=false otherwise or for an unknown id).
	outcome(id provider.MessageID, hasSMS bool) (o provider.Outcome, ok bool)
	counts() *answerCounts // nil for a process
}

// admin is the /_sim/ API of a simulator at base.
type admin struct{ base string }

func (a admin) stats(t *testing.T) dtsim.Stats {
	t.Helper()
	var st dtsim.Stats
	resp, err := http.Get(a.base + "/_sim/stats")
	if err != nil {
		t.Fatalf("sim stats: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sim stats: HTTP %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("sim stats: %v", err)
	}
	return st
}

func (a admin) setBalance(t *testing.T, n int64) {
	t.Helper()
	resp, err := http.Post(a.base+"/_sim/balance?n="+strconv.FormatInt(n, 10), "text/plain", nil)
	if err != nil {
		t.Fatalf("sim balance: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sim balance: HTTP %d", resp.StatusCode)
	}
}

// inject makes the next n send-viber requests get fault kind (POST /_sim/inject).
func (a admin) inject(t *testing.T, kind dtsim.FaultKind, n int) {
	t.Helper()
	resp, err := http.Post(fmt.Sprintf("%s/_sim/inject?kind=%s&n=%d&endpoint=%s", a.base, kind, n, dtsim.EndpointSend), "text/plain", nil)
	if err != nil {
		t.Fatalf("sim inject: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sim inject %s: HTTP %d", kind, resp.StatusCode)
	}
}

// simProc is `viberq sim` as a child process.
type simProc struct {
	admin
	p *proc
}

// startSimProc runs `viberq sim` with the key, the profile and extra flags.
func startSimProc(t *testing.T, dir, key, profile string, extra ...string) *simProc {
	t.Helper()
	port := freePort(t)
	args := append([]string{"sim", "--addr", hostPort(port), "--key", key, "--profile", profile, "--seed", "1"}, extra...)
	p := startProc(t, dir, "sim", baseEnv(), viberqBin(t), args...)
	if err := p.waitLog("dtsim: DecisionTelecom simulator on", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	return &simProc{admin: admin{base: "http://" + hostPort(port)}, p: p}
}

func (s *simProc) apiBase() string                                           { return s.base + dtsim.BasePath }
func (s *simProc) ledger() ([]dtsim.LedgerEntry, bool)                       { return nil, false }
func (s *simProc) outcome(provider.MessageID, bool) (provider.Outcome, bool) { return 0, false }
func (s *simProc) counts() *answerCounts                                     { return nil }

// inProcSim is a dtsim.Sim in the test process behind a real HTTP server on
// 127.0.0.1, wrapped to count the requests per second and classify the answers.
type inProcSim struct {
	admin
	sim *dtsim.Sim
	cnt *answerCounts
}

// startInProcSim serves dtsim.New(cfg) on a free port until the test ends.
func startInProcSim(t *testing.T, cfg dtsim.Config) *inProcSim {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cnt := &answerCounts{sendPerSec: map[int64]int64{}, throttleEvery: cfg.ThrottleEvery, throttleFor: cfg.ThrottleFor}
	cnt.t0 = time.Now()
	sim := dtsim.New(cfg)
	cnt.t1 = time.Now()
	cnt.next = sim
	srv := &http.Server{Handler: cnt, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		sim.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
	})
	return &inProcSim{admin: admin{base: "http://" + ln.Addr().String()}, sim: sim, cnt: cnt}
}

func (s *inProcSim) apiBase() string                     { return s.base + dtsim.BasePath }
func (s *inProcSim) stats(*testing.T) dtsim.Stats        { return s.sim.Stats() }
func (s *inProcSim) ledger() ([]dtsim.LedgerEntry, bool) { return s.sim.Ledger(), true }
func (s *inProcSim) setBalance(_ *testing.T, n int64)    { s.sim.SetBalance(n) }
func (s *inProcSim) counts() *answerCounts               { return s.cnt }
func (s *inProcSim) outcome(id provider.MessageID, hasSMS bool) (provider.Outcome, bool) {
	res, final, ok := s.sim.MessageStatus(id)
	if !ok || !final {
		return provider.OutcomePending, ok
	}
	return res.Outcome(hasSMS), true
}

// answerCounts wraps the simulator's handler: send-viber requests per second of
// arrival, 429 answers, and 2xx answers that are not a well-formed answer (garbage).
type answerCounts struct {
	next          http.Handler
	t0, t1        time.Time // before and after dtsim.New: the simulator's throttle clock starts in between
	throttleEvery time.Duration
	throttleFor   time.Duration

	// down, while set, answers every API request 503 with the vendor's error body,
	// before the simulator sees it: a provider outage.
	down atomic.Bool

	mu                sync.Mutex
	sendTimes         []time.Time // arrival of every send-viber request
	sendPerSec        map[int64]int64
	sendRequests      int64
	send429           int64
	send429Throttled  int64
	status429         int64
	status429Throttle int64
	sendGarbage       int64
	statusGarbage     int64
	send5xx           int64
}

func (c *answerCounts) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var send bool
	switch {
	case strings.HasSuffix(r.URL.Path, "/send-viber"):
		send = true
	case strings.HasSuffix(r.URL.Path, "/receive-viber"):
	default:
		c.next.ServeHTTP(w, r)
		return
	}
	at := time.Now()
	if send {
		c.mu.Lock()
		c.sendPerSec[at.Unix()]++
		c.sendTimes = append(c.sendTimes, at)
		c.sendRequests++
		c.mu.Unlock()
	}
	if c.down.Load() {
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"name":"Service Unavailable","message":"provider outage (fault test)","code":2,"status":503}`))
		c.mu.Lock()
		if send {
			c.send5xx++
		}
		c.mu.Unlock()
		return
	}
	rw := &recWriter{ResponseWriter: w}
	c.next.ServeHTTP(rw, r)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case rw.hijacked:
	case rw.status == http.StatusTooManyRequests:
		throttled := c.inThrottle(at)
		if send {
			c.send429++
			if throttled {
				c.send429Throttled++
			}
		} else {
			c.status429++
			if throttled {
				c.status429Throttle++
			}
		}
	case rw.status >= 500 && send:
		c.send5xx++
	case rw.status == http.StatusOK || rw.status == 0:
		if !wellFormed(send, rw.head, rw.n) {
			if send {
				c.sendGarbage++
			} else {
				c.statusGarbage++
			}
		}
	}
}

// inThrottle reports whether at falls in (or near) one of the simulator's scheduled
// 429 bursts. The margin covers the time between our timestamp and the simulator's
// own (a busy test process, the race detector).
func (c *answerCounts) inThrottle(at time.Time) bool {
	if c.throttleEvery <= 0 || c.throttleFor <= 0 {
		return false
	}
	margin := c.t1.Sub(c.t0) + 300*time.Millisecond
	phase := at.Sub(c.t0) % c.throttleEvery
	return phase >= c.throttleEvery-c.throttleFor-margin || phase < margin
}

// maxSendInWindow is the most send-viber requests that arrived within any window of
// length w (sliding) starting at or after from.
func (c *answerCounts) maxSendInWindow(w time.Duration, from time.Time) int {
	c.mu.Lock()
	ts := append([]time.Time(nil), c.sendTimes...)
	c.mu.Unlock()
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	best, j := 0, 0
	for i := range ts {
		if ts[i].Before(from) {
			j = i + 1
			continue
		}
		for ts[i].Sub(ts[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// maxSendPerSec is the most send-viber requests that arrived within one second.
func (c *answerCounts) maxSendPerSec() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var m int64
	for _, n := range c.sendPerSec {
		m = max(m, n)
	}
	return m
}

type answerSnapshot struct {
	SendRequests, Send429, Send429Throttled, Status429, Status429Throttled int64
	SendGarbage, StatusGarbage, Send5xx                                    int64
}

func (c *answerCounts) snapshot() answerSnapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return answerSnapshot{c.sendRequests, c.send429, c.send429Throttled, c.status429, c.status429Throttle,
		c.sendGarbage, c.statusGarbage, c.send5xx}
}

// wellFormed reports whether a 2xx body is a proper answer: {"message_id":N} for a
// send, {"message_id":N,"status":S,...} for a status query, of a sane size.
func wellFormed(send bool, head []byte, n int64) bool {
	if n > int64(len(head)) || n > 4096 {
		return false
	}
	var v struct {
		MessageID *provider.MessageID `json:"message_id"`
		Status    *int                `json:"status"`
		Name      *string             `json:"name"`
	}
	if err := json.Unmarshal(head, &v); err != nil || v.MessageID == nil || v.Name != nil {
		return false
	}
	return send || v.Status != nil
}

// recWriter records the status, the size and the first bytes of an answer, and
// passes hijacking through (the simulator drops connections by hijacking them).
type recWriter struct {
	http.ResponseWriter
	status   int
	n        int64
	head     []byte
	hijacked bool
}

const headCap = 8192

func (w *recWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if room := headCap - len(w.head); room > 0 {
		w.head = append(w.head, b[:min(room, len(b))]...)
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *recWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *recWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hijack not supported")
	}
	w.hijacked = true
	return hj.Hijack()
}

// webhookSink is an alert webhook receiver: it counts and keeps the POSTed alerts.
type webhookSink struct {
	srv *http.Server
	url string

	mu     sync.Mutex
	bodies []string
}

func startWebhookSink(t *testing.T) *webhookSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &webhookSink{url: fmt.Sprintf("http://%s/alert/hook-token-abc123", ln.Addr())}
	s.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		sc := bufio.NewScanner(http.MaxBytesReader(w, r.Body, 1<<20))
		for sc.Scan() {
			b.WriteString(sc.Text())
		}
		s.mu.Lock()
		s.bodies = append(s.bodies, r.Method+" "+b.String())
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = s.srv.Serve(ln) }()
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

func (s *webhookSink) posts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...)
}
