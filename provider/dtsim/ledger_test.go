package dtsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
)

func TestLedgerDuplicates(t *testing.T) {
	t.Parallel()
	clock := newClock()
	cfg := instant(t)
	cfg.Now = clock.Now
	a := start(t, cfg)
	m := validMsg()
	other := validMsg()
	other.Text = "Your code is 9999"
	elsewhere := validMsg()
	elsewhere.DestinationAddr = "380509999999"

	a.sendOK(m)
	clock.Advance(time.Second)
	a.sendOK(m)
	a.sendOK(other)
	a.sendOK(elsewhere)
	a.sendOK(m)

	l := a.sim.Ledger()
	require.Len(t, l, 5)
	dups := []bool{false, true, false, false, true}
	for i, e := range l {
		require.Equal(t, provider.MessageID(100000+i), e.MessageID)
		require.Equal(t, dups[i], e.Duplicate, i)
	}
	require.Equal(t, HashText(m.Text), l[0].TextHash)
	require.Equal(t, "5a65b556c941f717503acca3f90ac795cdcb908d90fea211df1f26e84644eb83", l[1].TextHash) // sha256sum of the text
	require.NotEqual(t, l[0].TextHash, l[2].TextHash)
	require.Equal(t, "380509999999", l[3].Destination)
	require.True(t, clock.Now().Add(-time.Second).Equal(l[0].At), l[0].At)
	require.True(t, clock.Now().Equal(l[1].At))
	require.Equal(t, int64(2), a.sim.Stats().Duplicates)
	require.Len(t, HashText(""), 64)
}

func TestLedgerBounded(t *testing.T) {
	t.Parallel()
	cfg := instant(t)
	cfg.MaxMessages = 3
	a := start(t, cfg)
	m := validMsg()
	for i := range 5 {
		m.Text = fmt.Sprint("text ", i%2) // texts 0,1,0,1,0
		a.sendOK(m)
	}
	l := a.sim.Ledger()
	require.Len(t, l, 3)
	require.Equal(t, provider.MessageID(100002), l[0].MessageID)
	require.Equal(t, provider.MessageID(100004), l[2].MessageID)

	// Evicted ids are unknown; stored ones answer.
	require.Equal(t, http.StatusBadRequest, a.status(100001).status)
	require.Equal(t, http.StatusOK, a.status(100002).status)

	s := a.sim.Stats()
	require.Equal(t, 3, s.Messages)
	require.Equal(t, int64(2), s.Evicted)
	require.Equal(t, int64(3), s.Duplicates) // sends 3, 4, 5 repeat a stored send

	// After the window forgets a text, sending it again is no duplicate.
	for i := range 3 {
		m.Text = fmt.Sprint("fresh ", i)
		a.sendOK(m)
	}
	m.Text = "text 0"
	a.sendOK(m)
	require.Equal(t, int64(3), a.sim.Stats().Duplicates)
	require.Len(t, a.sim.st.seen, 3, "the duplicate index shrinks with the window")
}

func TestStatsEndpoint(t *testing.T) {
	t.Parallel()
	clock := newClock()
	cfg := instant(t)
	cfg.Now = clock.Now
	cfg.Balance = 3
	a := start(t, cfg)
	id := a.sendOK(validMsg())
	a.sendOK(validMsg())
	clock.Advance(time.Second)
	a.sendOK(smsMsg())
	a.send(validMsg()) // 402
	bad := validMsg()
	bad.SourceType = 7
	a.send(bad)
	a.do(http.MethodPost, "/v1/api/send-viber", "Basic nope", "{}")
	a.status(id)
	a.status(id)
	a.status(1)

	r := a.do(http.MethodGet, "/_sim/stats", "", "")
	require.Equal(t, http.StatusOK, r.status)
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.body), &got))
	sec := clock.Now().Unix()
	want := map[string]any{
		"accepted":                     3.0,
		"duplicates":                   2.0, // smsMsg repeats validMsg's destination and text
		"too_many_requests":            0.0,
		"payment_required":             1.0,
		"balance":                      0.0,
		"status_calls":                 2.0,
		"max_status_calls_per_message": 2.0,
		"max_accepted_per_second":      2.0,
		"messages":                     3.0,
		"pending":                      0.0,
		"rejected":                     map[string]any{"balance": 1.0, "invalid_parameter": 1.0, "unauthorized": 1.0},
		"status_errors":                map[string]any{"invalid_parameter": 1.0},
		"requests":                     map[string]any{"send-viber": 6.0, "receive-viber": 3.0},
		"finals":                       map[string]any{"delivered_viber": 3.0},
		"accepted_per_second":          map[string]any{fmt.Sprint(sec - 1): 2.0, fmt.Sprint(sec): 1.0},
	}
	for k, v := range want {
		require.Equal(t, v, got[k], k)
	}
	require.InDelta(t, 2.0/3, got["status_calls_per_message"], 1e-9)
	require.NotContains(t, r.body, testKey)

	// Reset over HTTP: counters and messages go, ids keep growing.
	r = a.do(http.MethodPost, "/_sim/reset", "", "")
	require.Equal(t, http.StatusOK, r.status)
	s := a.sim.Stats()
	require.Zero(t, s.Accepted)
	require.Zero(t, s.Messages)
	require.Empty(t, s.Rejected)
	require.Equal(t, int64(3), s.Balance, "the configured balance comes back")
	require.Equal(t, http.StatusBadRequest, a.status(id).status)
	require.Equal(t, int64(100003), a.sendOK(validMsg()))
	require.Empty(t, a.sim.Ledger()[:0])
	require.Len(t, a.sim.Ledger(), 1)

	// Other admin routes.
	r = a.do(http.MethodPost, "/_sim/inject?kind=server_error&n=2&endpoint=send-viber", "", "")
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Equal(t, 500, a.send(validMsg()).status)
	require.Equal(t, 500, a.send(validMsg()).status)
	a.sendOK(validMsg())
	require.Equal(t, http.StatusBadRequest, a.do(http.MethodPost, "/_sim/inject?kind=meteor", "", "").status)
	require.Equal(t, http.StatusNotFound, a.do(http.MethodGet, "/_sim/nope", "", "").status)
	require.Equal(t, http.StatusNotFound, a.do(http.MethodPost, "/_sim/stats", "", "").status)
	r = a.do(http.MethodGet, "/_sim/config", "", "")
	require.Equal(t, http.StatusOK, r.status)
	require.NotContains(t, r.body, testKey)
	require.Contains(t, r.body, `"error_style": "status"`)
}

func TestKeyNeverPrinted(t *testing.T) {
	t.Parallel()
	cfg := instant(t)
	s := New(cfg)
	defer s.Close()
	for _, out := range []string{
		fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprint(s.Config()),
		fmt.Sprintf("%+v", s.Stats()),
	} {
		require.NotContains(t, out, testKey)
	}
	require.Contains(t, fmt.Sprint(cfg), "[REDACTED]")
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	require.NotContains(t, string(b), testKey)
}

func TestConcurrency(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	cfg := instant(t)
	cfg.DeliverMin, cfg.DeliverMax = 0, 20*time.Millisecond
	cfg.ViberFailShare = 0.3
	cfg.Faults.ServerErrorAfterAccept = 0.05
	cfg.MaxMessages = 700 // eviction under load too
	a := start(t, cfg)
	const workers, each = 16, 50
	var (
		mu     sync.Mutex
		ids    = map[int64]bool{}
		failed int
		wg     sync.WaitGroup
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				m := smsMsg()
				m.Text = fmt.Sprint("w", w, " i", i%10)
				if i%5 == 0 {
					m.CallbackURL = rc.srv.URL
				}
				r := a.send(m)
				if r.status != http.StatusOK {
					mu.Lock()
					failed++
					mu.Unlock()
					continue
				}
				id := messageID(t, r.body)
				mu.Lock()
				ids[id] = true
				mu.Unlock()
				a.status(id)
				if i%7 == 0 {
					_ = a.sim.Stats() // walks the store while others write it
				}
			}
		}()
	}
	wg.Wait()
	s := a.sim.Stats()
	require.Equal(t, int64(workers*each), s.Accepted, "500-after-accept is accepted too")
	require.Positive(t, failed)
	require.Equal(t, workers*each-failed, len(ids))
	require.Equal(t, int64(workers*each), s.Requests["send-viber"])
	require.Equal(t, 700, s.Messages)
	require.Equal(t, int64(workers*each-700), s.Evicted)
	require.Equal(t, int64(workers*(each-10)), s.Duplicates, "10 distinct texts per worker")
	require.Eventually(t, func() bool {
		c := a.sim.Stats().Callbacks
		return c.Pending == 0 && c.Sent == int64(workers*each/5)
	}, waitFor, tick)
	l := a.sim.Ledger()
	for i := 1; i < len(l); i++ {
		require.Equal(t, l[i-1].MessageID+1, l[i].MessageID)
	}
}

func TestProfiles(t *testing.T) {
	t.Parallel()
	for _, p := range []Profile{ProfileInstant, ProfileRealistic, ProfileChaos} {
		cfg, err := ProfileConfig(p)
		require.NoError(t, err)
		require.Equal(t, p, cfg.Profile)
		require.Equal(t, Unlimited, cfg.Balance)
		require.Error(t, cfg.Validate(), "no key yet")
		cfg.Key = testKey
		require.NoError(t, cfg.Validate(), p)
	}
	_, err := ProfileConfig("fast")
	require.Error(t, err)

	inst, _ := ProfileConfig(ProfileInstant)
	require.Zero(t, inst.RatePerSec)
	require.Zero(t, inst.DeliverMax)
	require.Equal(t, Faults{}, inst.Faults)
	real, _ := ProfileConfig(ProfileRealistic)
	require.Equal(t, time.Second, real.DeliverMin)
	require.Equal(t, 6*time.Second, real.DeliverMax)
	require.Equal(t, 0.10, real.ViberFailShare)
	require.Equal(t, Faults{}, real.Faults)
	chaos, _ := ProfileConfig(ProfileChaos)
	require.Equal(t, real.DeliverMax, chaos.DeliverMax)
	for name, share := range map[string]float64{
		"server_error": chaos.Faults.ServerError, "after_accept": chaos.Faults.ServerErrorAfterAccept,
		"slow": chaos.Faults.Slow, "timeout": chaos.Faults.Timeout, "drop_before": chaos.Faults.DropBefore,
		"drop_after": chaos.Faults.DropAfter, "garbage": chaos.Faults.Garbage, "rate_limited": chaos.Faults.RateLimited,
	} {
		require.True(t, share > 0 && share <= 0.05, name)
	}
	require.Positive(t, chaos.ThrottleEvery)
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := instant(t)
	require.NoError(t, ok.Validate())
	for name, mod := range map[string]func(*Config){
		"NoKey":         func(c *Config) { c.Key = "" },
		"ErrorStyle":    func(c *Config) { c.ErrorStyle = "xml" },
		"IDStyle":       func(c *Config) { c.IDStyle = "hex" },
		"NegativeRate":  func(c *Config) { c.RatePerSec = -1 },
		"InvertedRange": func(c *Config) { c.DeliverMin, c.DeliverMax = 2, 1 },
		"ShareAbove1":   func(c *Config) { c.Faults.Slow = 1.5 },
		"NegativeShare": func(c *Config) { c.ViberFailShare = -0.1 },
		"GarbageKind":   func(c *Config) { c.Faults.GarbageKinds = []GarbageKind{"binary"} },
	} {
		c := instant(t)
		mod(&c)
		require.Error(t, c.Validate(), name)
	}

	// New corrects what Validate refuses.
	c := instant(t)
	c.ErrorStyle, c.IDStyle, c.DeliverMin, c.DeliverMax = "xml", "hex", 0, -1
	s := New(c)
	defer s.Close()
	require.Equal(t, ErrorStyleStatus, s.Config().ErrorStyle)
	require.Equal(t, IDNumber, s.Config().IDStyle)
	rec := httptestDo(s, `{"source_addr":"Shop","destination_addr":"380501234567","message_type":106,"text":"x","source_type":2}`)
	require.True(t, strings.HasPrefix(rec, `{"message_id":100000}`), rec)
}

func httptestDo(s *Sim, body string) string {
	req, _ := http.NewRequest(http.MethodPost, "/send-viber", strings.NewReader(body))
	req.Header.Set("Authorization", testAuth)
	w := &bodyRecorder{h: http.Header{}}
	s.ServeHTTP(w, req)
	return w.b.String()
}

type bodyRecorder struct {
	h http.Header
	b strings.Builder
}

func (r *bodyRecorder) Header() http.Header         { return r.h }
func (r *bodyRecorder) Write(p []byte) (int, error) { return r.b.Write(p) }
func (r *bodyRecorder) WriteHeader(int)             {}
