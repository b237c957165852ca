package dtsim

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/viberq/viberq/provider"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testKey = "test-key-123"

var testAuth = "Basic " + base64.StdEncoding.EncodeToString([]byte(testKey))

// fakeClock is a Config.Now that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// instant is ProfileInstant with the test key and a fixed seed.
func instant(t *testing.T) Config {
	t.Helper()
	cfg, err := ProfileConfig(ProfileInstant)
	require.NoError(t, err)
	cfg.Key = testKey
	cfg.Seed = 7
	return cfg
}

// api is a small client of a running simulator.
type api struct {
	t      *testing.T
	sim    *Sim
	srv    *httptest.Server
	client *http.Client
}

// start serves a Sim for cfg as dtsimtest.NewServer does (that package imports this
// one, so these tests cannot use it): notes go to t.Logf until the test ends.
func start(t *testing.T, cfg Config) *api {
	t.Helper()
	var done atomic.Bool
	if cfg.Logf == nil {
		cfg.Logf = func(format string, args ...any) {
			if !done.Load() {
				t.Logf(format, args...)
			}
		}
	}
	t.Cleanup(func() { done.Store(true) })
	s := New(cfg)
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		s.Close() // first, so that hanging answers end
		srv.Close()
	})
	return &api{t: t, sim: s, srv: srv, client: srv.Client()}
}

type resp struct {
	status int
	header http.Header
	body   string
}

func (a *api) do(method, path, auth, body string) resp {
	a.t.Helper()
	req, err := http.NewRequest(method, a.srv.URL+path, strings.NewReader(body))
	require.NoError(a.t, err)
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := a.client.Do(req)
	require.NoError(a.t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(a.t, err)
	return resp{status: res.StatusCode, header: res.Header, body: string(b)}
}

func (a *api) post(path, body string) resp {
	a.t.Helper()
	return a.do(http.MethodPost, path, testAuth, body)
}

func (a *api) send(m provider.Message) resp {
	a.t.Helper()
	return a.post("/v1/api/send-viber", wire(a.t, m))
}

func (a *api) status(id int64) resp {
	a.t.Helper()
	b, _ := json.Marshal(map[string]int64{"message_id": id})
	return a.post("/v1/api/receive-viber", string(b))
}

// sendOK sends m, requires a 200 with a message_id and returns it.
func (a *api) sendOK(m provider.Message) int64 {
	a.t.Helper()
	r := a.send(m)
	require.Equal(a.t, http.StatusOK, r.status, r.body)
	return messageID(a.t, r.body)
}

// statusOf queries id and decodes the answer.
func (a *api) statusOf(id int64) map[string]any {
	a.t.Helper()
	r := a.status(id)
	require.Equal(a.t, http.StatusOK, r.status, r.body)
	return decodeObj(a.t, r.body)
}

func wire(t *testing.T, m provider.Message) string {
	t.Helper()
	b, err := m.WireJSON()
	require.NoError(t, err)
	return string(b)
}

func messageID(t *testing.T, body string) int64 {
	t.Helper()
	var v struct {
		MessageID *provider.MessageID `json:"message_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &v), body)
	require.NotNil(t, v.MessageID, body)
	return int64(*v.MessageID)
}

func decodeObj(t *testing.T, body string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	require.NoError(t, dec.Decode(&m), body)
	return m
}

func validMsg() provider.Message {
	return provider.Message{
		SourceAddr:      "Shop",
		DestinationAddr: "380501234567",
		MessageType:     provider.TypeText,
		Text:            "Your code is 1234",
		SourceType:      provider.SourceTransactional,
	}
}

func smsMsg() provider.Message {
	m := validMsg()
	m.TextSMS = "Code 1234"
	return m
}

// vendorJSON is the SDK-shaped error body (vendor notes: errors).
func vendorJSON(name, message string, code, status int) string {
	b, _ := json.Marshal(sdkError{Name: name, Message: message, Code: code, Status: status})
	return string(b)
}

// receiver is an httptest server that records POST bodies and answers with the
// statuses in fail first (then 200).
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies []string
	fail   []int
}

func newReceiver(t *testing.T, fail ...int) *receiver {
	t.Helper()
	rc := &receiver{fail: fail}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.bodies = append(rc.bodies, string(b))
		status := http.StatusOK
		if len(rc.fail) > 0 {
			status, rc.fail = rc.fail[0], rc.fail[1:]
		}
		rc.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) got() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.bodies...)
}
