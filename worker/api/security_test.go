package api_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
	"github.com/viberq/viberq/worker/api"
)

// A browser page on another site must not change state through the UI's API (the
// attack of the issue: a text/plain POST pausing a queue with the browser's cached
// Basic credentials) nor through /v1. Same-origin and non-browser requests pass.
func TestCrossOriginStateChangesRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	basic := func(req *http.Request) { req.SetBasicAuth(monUser, monPassword) }
	bearer := func(req *http.Request) { req.Header.Set("Authorization", "Bearer "+apiToken) }

	for _, tc := range []struct {
		name, method, path, ct, body string
		auth                         func(*http.Request)
	}{
		{"pause queue", http.MethodPost, "/monitoring/api/queues/critical:pause", "text/plain", "", basic},
		{"batch delete", http.MethodPost, "/monitoring/api/queues/critical/pending_tasks:batch_delete", "text/plain", `{"task_ids":["x"]}`, basic},
		{"delete queue", http.MethodDelete, "/monitoring/api/queues/critical", "", "", basic},
		{"post message", http.MethodPost, "/v1/messages", "application/json", validBody, bearer},
	} {
		for _, hdr := range [][2]string{
			{"Origin", "http://evil.example"},
			{"Sec-Fetch-Site", "cross-site"},
			{"Sec-Fetch-Site", "same-site"},
		} {
			req, err := http.NewRequest(tc.method, b.srv.URL+tc.path, strings.NewReader(tc.body))
			require.NoError(t, err)
			if tc.ct != "" {
				req.Header.Set("Content-Type", tc.ct)
			}
			req.Header.Set(hdr[0], hdr[1])
			tc.auth(req)
			resp, err := b.srv.Client().Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusForbidden, resp.StatusCode, "%s with %s: %s", tc.name, hdr[0], hdr[1])
		}
	}
	// Nothing happened: the queue is not paused, no message was enqueued.
	info, err := asynq.NewInspectorFromRedisClient(b.rdb).GetQueueInfo(tasks.QueueCritical)
	if err == nil {
		require.False(t, info.Paused, "the critical queue was paused")
	}
	require.Empty(t, b.mr.DB(0).Keys(), "nothing written")

	// The same requests from the UI's own page (same origin) and from curl pass.
	r := b.post(t, validBody, "Idempotency-Key", "same-origin-1", "Sec-Fetch-Site", "same-origin", "Origin", b.srv.URL)
	require.Equal(t, http.StatusAccepted, r.status, r.body)
	r = b.post(t, validBody, "Idempotency-Key", "curl-1")
	require.Equal(t, http.StatusAccepted, r.status, r.body)
	req, _ := http.NewRequest(http.MethodPost, b.srv.URL+"/monitoring/api/queues/critical:pause", nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	basic(req)
	resp, err := b.srv.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	// Reads stay allowed cross-origin (they change nothing; CORS keeps the answer from
	// the page).
	r = b.do(t, http.MethodGet, "/healthz", "", "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusOK, r.status)
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, r := range []response{
		b.monitoring(t, "/monitoring/"),
		b.do(t, http.MethodGet, "/monitoring/", ""),
		b.post(t, validBody),
		b.do(t, http.MethodGet, "/healthz", ""),
	} {
		require.Equal(t, "DENY", r.header.Get("X-Frame-Options"))
		require.Equal(t, "frame-ancestors 'none'", r.header.Get("Content-Security-Policy"))
		require.Equal(t, "nosniff", r.header.Get("X-Content-Type-Options"))
	}
}

// newGuarded builds an api server on rdb with a small failure policy, as one pod.
func newGuarded(t *testing.T, rdb redis.UniversalClient, logs *syncBuffer, p api.AuthFailures) *httptest.Server {
	t.Helper()
	store := tasks.NewStore(rdb, tasks.StoreOptions{})
	srv, err := api.New(api.Options{
		Tokens:         []string{apiToken},
		MonitoringUser: monUser, MonitoringPassword: monPassword, MaxBodyBytes: maxBody,
		CallbackToken: cbToken,
		Redis:         rdb,
		Enqueuer:      tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), store, tasks.EnqueuerConfig{}),
		Records:       store,
		Gatherer:      prometheus.NewRegistry(),
		Logger:        zerolog.New(logs),
		AuthFailures:  p,
	})
	require.NoError(t, err)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs
}

func get(t *testing.T, hs *httptest.Server, path string, set func(*http.Request)) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, hs.URL+path, nil)
	require.NoError(t, err)
	set(req)
	resp, err := hs.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp
}

// Failures are counted in Redis per client address, so two pods share one budget:
// after Limit failures spread over both, both refuse the address (429) — even with
// the right password, so that a lucky guess cannot be told apart — and the failures
// are logged at warn with the client address, never with the credential.
func TestAuthFailuresSharedAcrossPods(t *testing.T) {
	t.Parallel()
	mr, rdb := redistest.Mini(t)
	logs := &syncBuffer{}
	p := api.AuthFailures{Free: 2, Limit: 6, Window: time.Minute, MaxDelay: time.Millisecond}
	podA, podB := newGuarded(t, rdb, logs, p), newGuarded(t, rdb, logs, p)

	wrongBasic := func(req *http.Request) { req.SetBasicAuth(monUser, "guess-0123456789abc") }
	rightBasic := func(req *http.Request) { req.SetBasicAuth(monUser, monPassword) }
	wrongBearer := func(req *http.Request) { req.Header.Set("Authorization", "Bearer guess-0123456789abcdef") }
	rightBearer := func(req *http.Request) { req.Header.Set("Authorization", "Bearer "+apiToken) }

	require.Equal(t, http.StatusOK, get(t, podA, "/monitoring/", rightBasic).StatusCode)
	for i := range 3 {
		require.Equal(t, http.StatusUnauthorized, get(t, podA, "/monitoring/", wrongBasic).StatusCode, "A %d", i)
		require.Equal(t, http.StatusUnauthorized, get(t, podB, "/v1/messages/x", wrongBearer).StatusCode, "B %d", i)
	}
	// 6 failures from 127.0.0.1, 3 on each pod: both pods now refuse the address.
	for _, tc := range []struct {
		hs   *httptest.Server
		path string
		set  func(*http.Request)
	}{{podA, "/monitoring/", rightBasic}, {podB, "/monitoring/", rightBasic}, {podA, "/v1/messages/x", rightBearer}, {podB, "/v1/messages/x", wrongBearer}} {
		resp := get(t, tc.hs, tc.path, tc.set)
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, tc.path)
		require.NotEmpty(t, resp.Header.Get("Retry-After"))
	}
	// A wrong callback token counts too and is refused the same way.
	req, _ := http.NewRequest(http.MethodPost, podA.URL+"/callbacks/"+cbToken+"/status", strings.NewReader(`{}`))
	resp, err := podA.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)

	out := logs.String()
	require.Contains(t, out, `"level":"warn"`)
	require.Contains(t, out, `"client":"127.0.0.1"`)
	require.Contains(t, out, `"failures":6`)
	require.Contains(t, out, `"message":"authentication failed"`)
	require.NotContains(t, out, "guess-0123456789")

	// When the window ends, the address may try again.
	mr.FastForward(time.Minute + time.Second)
	require.Equal(t, http.StatusOK, get(t, podB, "/monitoring/", rightBasic).StatusCode)
}

// The request log names the path of every request, an unauthenticated or unmatched
// one too, with its phone-like runs masked: a producer's ID may hold a number.
func TestRequestLogMasksPhonesInPath(t *testing.T) {
	t.Parallel()
	_, rdb := redistest.Mini(t)
	logs := &syncBuffer{}
	hs := newGuarded(t, rdb, logs, api.AuthFailures{Free: 100, Limit: 200, Window: time.Minute, MaxDelay: time.Millisecond})
	noAuth := func(*http.Request) {}
	require.Equal(t, http.StatusUnauthorized, get(t, hs, "/v1/messages/otp-380501234567", noAuth).StatusCode)
	require.Equal(t, http.StatusNotFound, get(t, hs, "/nowhere/380501234567", noAuth).StatusCode)
	out := logs.String()
	require.Contains(t, out, `"path":"/v1/messages/otp-380*****4567"`)
	require.Contains(t, out, `"path":"/nowhere/380*****4567"`)
	require.NotContains(t, out, "0501234")
}
