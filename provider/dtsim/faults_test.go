package dtsim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
)

func TestRateLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		retryAfter bool
		headers    bool
	}{
		{"WithRetryAfter", true, false},
		{"WithoutRetryAfter", false, false},
		{"YiiHeaders", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			cfg := instant(t)
			cfg.Now = clock.Now
			cfg.RatePerSec, cfg.Burst = 2, 2
			cfg.RetryAfter, cfg.RateLimitHeaders = tc.retryAfter, tc.headers
			a := start(t, cfg)
			a.sendOK(validMsg())
			a.sendOK(validMsg())
			r := a.send(validMsg())
			require.Equal(t, http.StatusTooManyRequests, r.status)
			require.Equal(t, vendorJSON("Too Many Requests", "Rate limit exceeded", 0, 429), r.body)
			if tc.retryAfter {
				require.Equal(t, "1", r.header.Get("Retry-After")) // 0.5 s rounded up
			} else {
				require.Empty(t, r.header.Values("Retry-After"))
			}
			if tc.headers {
				require.Equal(t, "2", r.header.Get("X-Rate-Limit-Limit"))
				require.Equal(t, "0", r.header.Get("X-Rate-Limit-Remaining"))
				require.Equal(t, "1", r.header.Get("X-Rate-Limit-Reset"))
			} else {
				require.Empty(t, r.header.Get("X-Rate-Limit-Reset"))
			}

			// The status endpoint has its own (here unlimited) bucket.
			require.Equal(t, http.StatusOK, a.status(100000).status)

			clock.Advance(499 * time.Millisecond)
			require.Equal(t, http.StatusTooManyRequests, a.send(validMsg()).status)
			clock.Advance(time.Millisecond)
			a.sendOK(validMsg())
			require.Equal(t, http.StatusTooManyRequests, a.send(validMsg()).status)

			s := a.sim.Stats()
			require.Equal(t, int64(3), s.Accepted)
			require.Equal(t, int64(3), s.TooManyRequests)
			require.Equal(t, int64(3), s.Rejected[ReasonRateLimited])
		})
	}
}

func TestStatusRateLimit(t *testing.T) {
	t.Parallel()
	clock := newClock()
	cfg := instant(t)
	cfg.Now = clock.Now
	cfg.StatusRatePerSec, cfg.StatusBurst = 1, 1
	cfg.RetryAfter = true
	a := start(t, cfg)
	id := a.sendOK(validMsg())
	a.sendOK(validMsg()) // sends are unlimited
	require.Equal(t, http.StatusOK, a.status(id).status)
	r := a.status(id)
	require.Equal(t, http.StatusTooManyRequests, r.status)
	require.Equal(t, "1", r.header.Get("Retry-After"))
	require.Equal(t, int64(1), a.sim.Stats().StatusErrors[ReasonRateLimited])
}

func TestThrottleBursts(t *testing.T) {
	t.Parallel()
	clock := newClock()
	cfg := instant(t)
	cfg.Now = clock.Now
	cfg.RetryAfter = true
	cfg.ThrottleEvery, cfg.ThrottleFor = 10*time.Second, 2*time.Second
	a := start(t, cfg)
	a.sendOK(validMsg())
	clock.Advance(7999 * time.Millisecond)
	a.sendOK(validMsg())
	clock.Advance(time.Millisecond) // 8 s: the last 2 s of the period are throttled
	r := a.send(validMsg())
	require.Equal(t, http.StatusTooManyRequests, r.status)
	require.Equal(t, "2", r.header.Get("Retry-After"))
	clock.Advance(500 * time.Millisecond)
	require.Equal(t, "2", a.send(validMsg()).header.Get("Retry-After"), "1.5 s rounds up")
	clock.Advance(1000 * time.Millisecond)
	require.Equal(t, "1", a.send(validMsg()).header.Get("Retry-After"))
	clock.Advance(500 * time.Millisecond) // 10 s: a new period
	a.sendOK(validMsg())
}

func TestBalance(t *testing.T) {
	t.Parallel()
	cfg := instant(t)
	cfg.Balance = 2
	a := start(t, cfg)
	a.sendOK(validMsg())
	require.Equal(t, int64(1), a.sim.Balance())
	a.sendOK(validMsg())
	r := a.send(validMsg())
	require.Equal(t, http.StatusPaymentRequired, r.status)
	require.Equal(t, vendorJSON("Topup balance is required", "User balance is empty", 3, 402), r.body)
	// Status queries still work with an empty balance.
	require.Equal(t, http.StatusOK, a.status(100000).status)

	a.sim.SetBalance(1)
	a.sendOK(validMsg())
	require.Equal(t, http.StatusPaymentRequired, a.send(validMsg()).status)

	// Top up over HTTP.
	r = a.do(http.MethodPost, "/_sim/balance?n=-1", "", "")
	require.Equal(t, http.StatusOK, r.status)
	require.JSONEq(t, `{"balance":-1}`, r.body)
	for range 3 {
		a.sendOK(validMsg())
	}
	require.Equal(t, Unlimited, a.sim.Balance())
	require.Equal(t, http.StatusBadRequest, a.do(http.MethodPost, "/_sim/balance?n=lots", "", "").status)

	s := a.sim.Stats()
	require.Equal(t, int64(6), s.Accepted)
	require.Equal(t, int64(2), s.PaymentRequired)
	require.Equal(t, int64(2), s.Rejected[ReasonBalance])
	require.Len(t, a.sim.Ledger(), 6)
}

// rawPost sends a send-viber request with its own client (timeout, no reuse) and
// returns the answer or the transport error.
func rawPost(t *testing.T, a *api, timeout time.Duration, body string) (*resp, error) {
	t.Helper()
	return rawDo(t, a, "/v1/api/send-viber", timeout, body)
}

func rawDo(t *testing.T, a *api, path string, timeout time.Duration, body string) (*resp, error) {
	t.Helper()
	c := noReuseClient(t, timeout)
	req, err := http.NewRequest(http.MethodPost, a.srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", testAuth)
	res, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	return &resp{status: res.StatusCode, header: res.Header, body: string(b)}, nil
}

func noReuseClient(t *testing.T, timeout time.Duration) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: timeout}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	serverErr := vendorJSON("Internal server error", "The server encountered an unexpected condition which prevented it from fulfilling the request", 2, 500)
	cases := []struct {
		kind     FaultKind
		accepted bool
		check    func(t *testing.T, r *resp, err error)
	}{
		{FaultRateLimited, false, func(t *testing.T, r *resp, err error) {
			require.NoError(t, err)
			require.Equal(t, 429, r.status)
		}},
		{FaultServerError, false, func(t *testing.T, r *resp, err error) {
			require.NoError(t, err)
			require.Equal(t, 500, r.status)
			require.Equal(t, serverErr, r.body)
		}},
		{FaultServerErrorAfterAccept, true, func(t *testing.T, r *resp, err error) {
			require.NoError(t, err)
			require.Equal(t, 500, r.status)
			require.Equal(t, serverErr, r.body)
		}},
		{FaultSlow, true, func(t *testing.T, r *resp, err error) {
			require.NoError(t, err)
			require.Equal(t, 200, r.status)
		}},
		{FaultTimeout, false, func(t *testing.T, r *resp, err error) {
			var ne net.Error
			require.ErrorAs(t, err, &ne)
			require.True(t, ne.Timeout())
		}},
		{FaultTimeoutAccepted, true, func(t *testing.T, r *resp, err error) {
			var ne net.Error
			require.ErrorAs(t, err, &ne)
			require.True(t, ne.Timeout())
		}},
		{FaultDropBefore, false, func(t *testing.T, r *resp, err error) {
			require.Error(t, err)
			require.Nil(t, r)
		}},
		{FaultDropAfter, true, func(t *testing.T, r *resp, err error) {
			require.Error(t, err)
			require.Nil(t, r)
		}},
		{FaultGarbageNonJSON, true, func(t *testing.T, r *resp, err error) {
			require.NoError(t, err)
			require.Equal(t, 200, r.status)
			require.False(t, json.Valid([]byte(r.body)))
			require.Contains(t, r.header.Get("Content-Type"), "text/html")
		}},
		{FaultGarbageTruncated, true, func(t *testing.T, r *resp, err error) {
			require.NoError(t, err)
			require.Equal(t, 200, r.status)
			require.False(t, json.Valid([]byte(r.body)))
			require.True(t, strings.HasPrefix(`{"message_id":100000}`, r.body), r.body)
		}},
		{FaultGarbageWrongTypes, true, func(t *testing.T, r *resp, err error) {
			require.NoError(t, err)
			require.Equal(t, `{"message_id":true}`, r.body)
		}},
		{FaultGarbageHuge, true, func(t *testing.T, r *resp, err error) {
			require.NoError(t, err)
			require.Len(t, r.body, 1<<20)
			require.True(t, json.Valid([]byte(r.body)))
			require.True(t, strings.HasPrefix(r.body, `{"message_id":100000,"padding":"xxx`))
		}},
	}
	for _, tc := range cases {
		t.Run(string(tc.kind), func(t *testing.T) {
			t.Parallel()
			cfg := instant(t)
			cfg.Faults.SlowMin, cfg.Faults.SlowMax = 20*time.Millisecond, 20*time.Millisecond
			cfg.Faults.TimeoutHang = 10 * time.Second
			cfg.Faults.HugeBodySize = 1 << 20
			cfg.Balance = 10
			a := start(t, cfg)
			require.NoError(t, a.sim.InjectFault(EndpointSend, tc.kind, 1))
			// The client timeout only has to be shorter than the 10 s hang; generous so
			// that a loaded machine does not turn other faults into timeouts.
			r, err := rawPost(t, a, 2*time.Second, wire(t, validMsg()))
			tc.check(t, r, err)

			if tc.accepted {
				require.Eventually(t, func() bool { return len(a.sim.Ledger()) == 1 }, waitFor, tick)
			}
			ledger := a.sim.Ledger()
			if tc.accepted {
				require.Equal(t, int64(9), a.sim.Balance())
				// The message exists even though the client never saw its id.
				require.Equal(t, http.StatusOK, a.status(int64(ledger[0].MessageID)).status)
			} else {
				require.Empty(t, ledger)
				require.Equal(t, int64(10), a.sim.Balance())
			}
			s := a.sim.Stats()
			require.Equal(t, map[string]int64{string(tc.kind): 1}, s.Faults)
			// The injection is used up: the next send is normal.
			a.sendOK(validMsg())
		})
	}
}

func TestTimeoutAnswersAfterHang(t *testing.T) {
	t.Parallel()
	cfg := instant(t)
	cfg.Faults.TimeoutHang = 20 * time.Millisecond
	a := start(t, cfg)

	require.NoError(t, a.sim.InjectFault(EndpointSend, FaultTimeout, 1))
	r := a.send(validMsg())
	require.Equal(t, http.StatusGatewayTimeout, r.status)
	require.Contains(t, r.body, "504 Gateway Time-out")
	require.Empty(t, a.sim.Ledger())

	require.NoError(t, a.sim.InjectFault(EndpointSend, FaultTimeoutAccepted, 1))
	r = a.send(validMsg())
	require.Equal(t, http.StatusOK, r.status)
	require.Len(t, a.sim.Ledger(), 1)
	require.Equal(t, int64(a.sim.Ledger()[0].MessageID), messageID(t, r.body))
}

func TestSlowIsSlow(t *testing.T) {
	t.Parallel()
	cfg := instant(t)
	cfg.Faults.Slow = 1
	cfg.Faults.SlowMin, cfg.Faults.SlowMax = 60*time.Millisecond, 60*time.Millisecond
	a := start(t, cfg)
	began := time.Now()
	a.sendOK(validMsg())
	require.GreaterOrEqual(t, time.Since(began), 60*time.Millisecond) // a lower bound, not a performance assertion
}

func TestStatusFaults(t *testing.T) {
	t.Parallel()
	cfg := instant(t)
	cfg.Faults.HugeBodySize = 4096
	a := start(t, cfg)
	id := a.sendOK(validMsg())

	require.NoError(t, a.sim.InjectFault(EndpointStatus, FaultServerErrorAfterAccept, 1))
	require.Equal(t, 500, a.status(id).status)
	require.NoError(t, a.sim.InjectFault(EndpointStatus, FaultGarbageWrongTypes, 1))
	require.Equal(t, `{"message_id":"x","status":"delivered"}`, a.status(id).body)
	require.NoError(t, a.sim.InjectFault(EndpointStatus, FaultGarbageHuge, 1))
	huge := a.status(id).body
	require.Len(t, huge, 4096)
	require.True(t, json.Valid([]byte(huge)))
	require.NoError(t, a.sim.InjectFault(EndpointStatus, FaultDropBefore, 1))
	r, err := rawDo(t, a, "/v1/api/receive-viber", 5*time.Second, `{"message_id":100000}`)
	require.Error(t, err)
	require.Nil(t, r)

	// Injections for one endpoint do not fire on the other.
	require.NoError(t, a.sim.InjectFault(EndpointStatus, FaultServerError, 1))
	a.sendOK(validMsg())
	require.Equal(t, 500, a.status(id).status)

	s := a.sim.Stats()
	require.Equal(t, int64(2), s.StatusErrors[ReasonServerError])
	require.Equal(t, int64(1), s.StatusErrors[ReasonDropped])
}

func TestFaultsSkipFailingRequests(t *testing.T) {
	t.Parallel()
	a := start(t, instant(t))
	require.NoError(t, a.sim.InjectFault(EndpointAny, FaultServerError, 1))
	bad := validMsg()
	bad.Text = ""
	require.Equal(t, http.StatusBadRequest, a.send(bad).status)
	require.Equal(t, http.StatusBadRequest, a.status(1).status) // unknown id
	require.Equal(t, http.StatusInternalServerError, a.send(validMsg()).status)
	a.sendOK(validMsg())
	require.Error(t, a.sim.InjectFault(EndpointAny, "meteor", 1))
	require.Error(t, a.sim.InjectFault("send-sms", FaultSlow, 1))
}

func TestFaultShares(t *testing.T) {
	t.Parallel()
	cfg := instant(t)
	cfg.Faults.ServerError = 0.2
	cfg.Faults.ServerErrorAfterAccept = 0.1
	cfg.Faults.Garbage = 0.1
	cfg.Faults.GarbageKinds = []GarbageKind{GarbageWrongTypes}
	s := New(cfg)
	defer s.Close()
	const n = 2000
	codes := map[int]int{}
	for range n {
		req, _ := http.NewRequest(http.MethodPost, "/v1/api/send-viber", strings.NewReader(wire(t, validMsg())))
		req.Header.Set("Authorization", testAuth)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		codes[rec.Code]++
	}
	st := s.Stats()
	require.InDelta(t, 0.2*n, float64(st.Faults[string(FaultServerError)]), 0.05*n)
	require.InDelta(t, 0.1*n, float64(st.Faults[string(FaultServerErrorAfterAccept)]), 0.04*n)
	require.InDelta(t, 0.1*n, float64(st.Faults[string(FaultGarbageWrongTypes)]), 0.04*n)
	require.Equal(t, int64(n)-st.Faults[string(FaultServerError)], st.Accepted)
	require.Equal(t, codes[500], int(st.Faults[string(FaultServerError)]+st.Faults[string(FaultServerErrorAfterAccept)]))
}

func TestShareOneAlwaysFaults(t *testing.T) {
	t.Parallel()
	cfg := instant(t)
	cfg.Faults.DropBefore = 1
	a := start(t, cfg)
	for range 3 {
		_, err := rawPost(t, a, 5*time.Second, wire(t, validMsg()))
		require.Error(t, err)
		require.False(t, errors.Is(err, context.DeadlineExceeded))
	}
	require.Empty(t, a.sim.Ledger())
	require.Equal(t, int64(3), a.sim.Stats().Rejected[ReasonDropped])
}

func TestScripted(t *testing.T) {
	t.Parallel()
	a := start(t, instant(t))
	a.sim.Script(
		Scripted{Endpoint: EndpointStatus, Status: 401, Body: []byte("Unauthorized")},
		Scripted{Endpoint: EndpointSend, Status: 503, Header: http.Header{"Retry-After": {"7"}}, Body: []byte("<html>busy</html>")},
	)
	r := a.send(validMsg())
	require.Equal(t, 503, r.status)
	require.Equal(t, "7", r.header.Get("Retry-After"))
	require.Equal(t, "<html>busy</html>", r.body)
	id := a.sendOK(validMsg())
	r = a.status(id)
	require.Equal(t, 401, r.status)
	require.Equal(t, "Unauthorized", r.body)
	require.Equal(t, 200, a.status(id).status)
}

func TestClientSeesFaults(t *testing.T) {
	t.Parallel()
	cfg := instant(t)
	cfg.Faults.TimeoutHang = 5 * time.Second
	a := start(t, cfg)
	c, err := provider.New(a.srv.URL+BasePath, testKey, provider.WithTimeout(2*time.Second),
		provider.WithHTTPClient(noReuseClient(t, 0)))
	require.NoError(t, err)
	for _, kind := range []FaultKind{FaultTimeoutAccepted, FaultDropAfter, FaultGarbageTruncated} {
		require.NoError(t, a.sim.InjectFault(EndpointSend, kind, 1))
		_, err := c.Send(t.Context(), validMsg())
		require.Error(t, err, kind)
		require.True(t, provider.MaybeSent(err), "%s: %v", kind, err)
	}
	require.Eventually(t, func() bool { return len(a.sim.Ledger()) == 3 }, waitFor, tick)
}
