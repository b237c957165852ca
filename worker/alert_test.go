package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/tasks/redistest"
)

// recAlerter records alerts (a hand-written fake of Alerter).
type recAlerter struct {
	mu     sync.Mutex
	alerts []Alert
	err    error
}

func (r *recAlerter) Alert(_ context.Context, a Alert) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.alerts = append(r.alerts, a)
	return nil
}

func (r *recAlerter) all() []Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Alert(nil), r.alerts...)
}

func (r *recAlerter) kinds() []string {
	var out []string
	for _, a := range r.all() {
		out = append(out, a.Kind)
	}
	return out
}

func TestDedupAlerterOnePerWindowAcrossPods(t *testing.T) {
	t.Parallel()
	mr, rdb := redistest.Mini(t)
	sink := &recAlerter{}
	m, err := NewMetrics(nil)
	require.NoError(t, err)
	// Two pods, each with its own DedupAlerter on the same Redis.
	podA := NewDedupAlerter(rdb, "viberq:", time.Minute, m.CountAlerts(sink))
	podB := NewDedupAlerter(rdb, "viberq:", time.Minute, m.CountAlerts(sink))

	var wg sync.WaitGroup
	for i := range 20 {
		pod := podA
		if i%2 == 1 {
			pod = podB
		}
		wg.Go(func() { // assert, not require: FailNow must run on the test's goroutine
			assert.NoError(t, pod.Alert(context.Background(), Alert{Kind: AlertBalance, Summary: "empty", At: time.Now()}))
		})
	}
	wg.Wait()
	require.Equal(t, []string{AlertBalance}, sink.kinds())
	require.Equal(t, 1.0, metricValue(t, m.alerts.WithLabelValues(AlertBalance)))

	// Another kind is not suppressed by the first.
	require.NoError(t, podB.Alert(context.Background(), Alert{Kind: AlertUnauthorized, At: time.Now()}))
	require.Equal(t, []string{AlertBalance, AlertUnauthorized}, sink.kinds())

	// After the window, the next alert of the kind goes out again.
	mr.FastForward(time.Minute + time.Second)
	require.NoError(t, podA.Alert(context.Background(), Alert{Kind: AlertBalance, At: time.Now()}))
	require.Len(t, sink.all(), 3)
	require.True(t, mr.Exists("viberq:alert:balance_empty"))
}

func TestDedupAlerterRetriesAfterFailedDelivery(t *testing.T) {
	t.Parallel()
	_, rdb := redistest.Mini(t)
	sink := &recAlerter{err: errors.New("webhook down")}
	d := NewDedupAlerter(rdb, "viberq:", time.Hour, sink)
	require.Error(t, d.Alert(context.Background(), Alert{Kind: AlertBalance}))
	sink.mu.Lock()
	sink.err = nil
	sink.mu.Unlock()
	require.NoError(t, d.Alert(context.Background(), Alert{Kind: AlertBalance}))
	require.Len(t, sink.all(), 1, "a failed delivery must not use up the window")
}

func TestWebhookAlerter(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		got  []map[string]any
		code = http.StatusOK
	)
	// The handler runs on the server's goroutine: assert, not require (FailNow must
	// run on the test's goroutine).
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, http.MethodPost, r.Method)
		assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
		var v map[string]any
		body, _ := io.ReadAll(r.Body)
		if !assert.NoError(t, json.Unmarshal(body, &v)) {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, v)
		c := code
		mu.Unlock()
		w.WriteHeader(c)
	}))
	t.Cleanup(srv.Close)

	secretURL := srv.URL + "/hooks/T000/SECRET-TOKEN"
	wa, err := NewWebhookAlerter(secretURL, time.Second, nil)
	require.NoError(t, err)
	require.NotContains(t, wa.String(), "SECRET")
	at := time.Date(2026, 11, 5, 10, 0, 0, 0, time.UTC)
	require.NoError(t, wa.Alert(context.Background(), Alert{Kind: AlertBalance, Summary: "balance empty", Fields: map[string]string{"msg_id": "m1", "dest": "380*****4567"}, At: at}))
	mu.Lock()
	require.Len(t, got, 1)
	require.Equal(t, "balance_empty", got[0]["kind"])
	require.Equal(t, "balance empty", got[0]["summary"])
	require.Equal(t, "viberq", got[0]["source"])
	require.Equal(t, "2026-11-05T10:00:00Z", got[0]["at"])
	require.Equal(t, map[string]any{"msg_id": "m1", "dest": "380*****4567"}, got[0]["fields"])
	code = http.StatusInternalServerError
	mu.Unlock()

	err = wa.Alert(context.Background(), Alert{Kind: AlertBalance})
	require.ErrorContains(t, err, "HTTP 500")
	require.NotContains(t, err.Error(), "SECRET")

	// A transport error never shows the URL (it may hold a token).
	dead, err := NewWebhookAlerter("http://127.0.0.1:1/hooks/SECRET-TOKEN", 200*time.Millisecond, nil)
	require.NoError(t, err)
	err = dead.Alert(context.Background(), Alert{Kind: AlertBalance})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "SECRET")

	for _, bad := range []string{"", "ftp://x/y", "not a url", "http://"} {
		_, err := NewWebhookAlerter(bad, 0, nil)
		require.Error(t, err, bad)
	}
}

func TestLogAlerter(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	la := LogAlerter{Logger: zerolog.New(&buf)}
	require.NoError(t, la.Alert(context.Background(), Alert{Kind: AlertUnauthorized, Summary: "bad key", Fields: map[string]string{"msg_id": "m1"}, At: time.Now()}))
	var v map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &v))
	require.Equal(t, "error", v["level"])
	require.Equal(t, "unauthorized", v["alert_kind"])
	require.True(t, strings.HasPrefix(v["message"].(string), "alert: bad key"))
	require.Equal(t, map[string]any{"msg_id": "m1"}, v["alert_fields"])
}
