package provider

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testKey = "s3cr3t-Key-4711"

// recorded is one request as the test server saw it.
type recorded struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

// testServer is a scripted stand-in for the provider: each test sets the handler.
type testServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
	h    http.HandlerFunc
}

func newTestServer(t *testing.T, h http.HandlerFunc) *testServer {
	t.Helper()
	ts := &testServer{h: h}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts.mu.Lock()
		ts.reqs = append(ts.reqs, recorded{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
		ts.mu.Unlock()
		ts.h(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func (ts *testServer) requests() []recorded {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]recorded(nil), ts.reqs...)
}

func (ts *testServer) client(t *testing.T, opts ...Option) *Client {
	t.Helper()
	c, err := New(ts.URL+"/v1/api", testKey, opts...)
	require.NoError(t, err)
	return c
}

// respond answers with status, body and header pairs.
func respond(status int, body string, hdr ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// blockUntilGone blocks the handler until the client goes away (or 5 s pass).
func blockUntilGone(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(5 * time.Second):
	}
}

func sendOrStatus(c *Client, op string) error {
	if op == OpSend {
		_, err := c.Send(context.Background(), validText())
		return err
	}
	_, err := c.Status(context.Background(), 429)
	return err
}

func TestClientRequestShape(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/api/send-viber" {
			respond(200, `{"message_id":429}`)(w, r)
			return
		}
		respond(200, `{"message_id":429,"status":0}`)(w, r)
	})
	c := ts.client(t)
	m := validText()
	m.CallbackURL = "https://example.com/cb"
	res, err := c.Send(context.Background(), m)
	require.NoError(t, err)
	assert.Equal(t, MessageID(429), res.MessageID)
	st, err := c.Status(context.Background(), res.MessageID)
	require.NoError(t, err)
	assert.Equal(t, StatusResult{MessageID: 429, Status: ViberSent}, st)

	reqs := ts.requests()
	require.Len(t, reqs, 2)
	wire, err := m.WireJSON()
	require.NoError(t, err)
	assert.Equal(t, "POST", reqs[0].Method)
	assert.Equal(t, "/v1/api/send-viber", reqs[0].Path)
	assert.JSONEq(t, string(wire), string(reqs[0].Body))
	assert.Equal(t, "POST", reqs[1].Method)
	assert.Equal(t, "/v1/api/receive-viber", reqs[1].Path)
	assert.Equal(t, `{"message_id":429}`, string(reqs[1].Body))
	for _, r := range reqs {
		assert.Equal(t, "Basic "+base64.StdEncoding.EncodeToString([]byte(testKey)), r.Header.Get("Authorization"))
		assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
		assert.Equal(t, "application/json", r.Header.Get("Accept"))
		assert.Equal(t, "viberq", r.Header.Get("User-Agent"))
	}
}

func TestClientAuthHeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		key  string
		opts []Option
		want string
	}{
		// base64("KEY123") as all SDKs send it (vendor notes: auth), not base64("KEY123:") as libcurl would.
		{"SDKStyle", "KEY123", nil, "Basic S0VZMTIz"},
		{"EncodedKeyAsGiven", "S0VZMTIzOg==", []Option{WithEncodedKey()}, "Basic S0VZMTIzOg=="},
		{"EncodedKeyNotReencoded", "S0VZMTIz", []Option{WithEncodedKey()}, "Basic S0VZMTIz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := newTestServer(t, respond(200, `{"message_id":1}`))
			c, err := New(ts.URL, tt.key, append(tt.opts, WithUserAgent("viberq-test/1"))...)
			require.NoError(t, err)
			_, err = c.Send(context.Background(), validText())
			require.NoError(t, err)
			reqs := ts.requests()
			require.Len(t, reqs, 1)
			assert.Equal(t, tt.want, reqs[0].Header.Get("Authorization"))
			assert.Equal(t, "viberq-test/1", reqs[0].Header.Get("User-Agent"))
			assert.Equal(t, "/send-viber", reqs[0].Path)
		})
	}
}

func TestClientMessageIDForms(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`{"message_id":429}`, `{"message_id":"429"}`, ` {"message_id" : 429 , "extra": [1, {"x": null}]} `} {
		ts := newTestServer(t, respond(200, body))
		res, err := ts.client(t).Send(context.Background(), validText())
		require.NoError(t, err, body)
		assert.Equal(t, MessageID(429), res.MessageID, body)
	}
}

func TestClientStatusDecoding(t *testing.T) {
	t.Parallel()
	id := func(v MessageID) *MessageID { return &v }
	tests := []struct {
		name string
		body string
		want StatusResult
	}{
		{"ViberOnly", `{"message_id":429,"status":1}`, StatusResult{MessageID: 429, Status: ViberDelivered}},
		{"ViberPlusSMS", `{"message_id":429,"status":4,"sms_message_id":36478,"sms_message_status":2}`,
			StatusResult{MessageID: 429, Status: ViberUndelivered, SMSMessageID: id(36478), SMSStatus: smsp(SMSDelivered)}},
		{"StringForms", `{"message_id":"429","status":"20","sms_message_id":"36478","sms_message_status":"5"}`,
			StatusResult{MessageID: 429, Status: ViberUnknown, SMSMessageID: id(36478), SMSStatus: smsp(SMSUndeliverable)}},
		{"NullSMS", `{"message_id":429,"status":5,"sms_message_id":null,"sms_message_status":null}`,
			StatusResult{MessageID: 429, Status: ViberPending}},
		{"EmptySMS", `{"message_id":429,"status":5,"sms_message_id":"","sms_message_status":""}`,
			StatusResult{MessageID: 429, Status: ViberPending}},
		{"ZeroSMSID", `{"message_id":429,"status":2,"sms_message_id":0,"sms_message_status":0}`,
			StatusResult{MessageID: 429, Status: ViberError, SMSStatus: smsp(SMSUnknown)}},
		{"UnknownCodes", `{"message_id":429,"status":26,"sms_message_status":9}`,
			StatusResult{MessageID: 429, Status: 26, SMSStatus: smsp(9)}},
		{"MissingIDIsFilledIn", `{"status":1}`, StatusResult{MessageID: 429, Status: ViberDelivered}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := newTestServer(t, respond(200, tt.body))
			got, err := ts.client(t).Status(context.Background(), 429)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// errorRow is one row of the provider's error table (vendor notes: errors) or of README, Error policy.
type errorRow struct {
	name    string
	code    int
	status  int
	vname   string
	message string
	check   func(t *testing.T, err error)
}

func isType[T error](t *testing.T, err error) T {
	t.Helper()
	var target T
	require.ErrorAs(t, err, &target, "%T: %v", err, err)
	return target
}

var vendorRows = []errorRow{
	{name: "RateLimited", code: 0, status: 429, vname: "Too Many Requests", message: "Rate limit exceeded",
		check: func(t *testing.T, err error) { isType[*RateLimitError](t, err) }},
	{name: "InvalidParameter", code: 1, status: 400, vname: "Invalid Parameter: source_addr", message: "Empty parameter or parameter validation error",
		check: func(t *testing.T, err error) {
			e := isType[*InvalidParameterError](t, err)
			assert.Equal(t, "source_addr", e.Param)
		}},
	{name: "InvalidParameterBracketed", code: 1, status: 400, vname: "Invalid Parameter: [destination_addr]", message: "x",
		check: func(t *testing.T, err error) {
			assert.Equal(t, "destination_addr", isType[*InvalidParameterError](t, err).Param)
		}},
	{name: "InvalidParameterUnnamed", code: 1, status: 400, vname: "Bad Request", message: "Empty parameter or parameter validation error",
		check: func(t *testing.T, err error) { assert.Empty(t, isType[*InvalidParameterError](t, err).Param) }},
	{name: "ServerError", code: 2, status: 500, vname: "Internal server error", message: "The server encountered an unexpected condition which prevented it from fulfilling the request",
		check: func(t *testing.T, err error) { isType[*ServerError](t, err) }},
	{name: "Balance", code: 3, status: 402, vname: "Topup balance is required", message: "User balance is empty",
		check: func(t *testing.T, err error) { isType[*BalanceError](t, err) }},
	// Yii2 renders every HTTP exception with code 0: code 0 must not mean "rate limited" here.
	{name: "UnauthorizedYii2", code: 0, status: 401, vname: "Unauthorized", message: "Your request was made with invalid credentials.",
		check: func(t *testing.T, err error) { isType[*UnauthorizedError](t, err) }},
	{name: "ForbiddenYii2", code: 0, status: 403, vname: "Forbidden", message: "nope",
		check: func(t *testing.T, err error) { isType[*UnauthorizedError](t, err) }},
	{name: "BadGateway", code: 0, status: 502, vname: "Bad Gateway", message: "",
		check: func(t *testing.T, err error) { isType[*ServerError](t, err) }},
	{name: "NotFoundIsPlainAPIError", code: 0, status: 404, vname: "Not Found", message: "Page not found.",
		check: func(t *testing.T, err error) {
			e := isType[*APIError](t, err)
			assert.Equal(t, 404, e.Status)
			var rl *RateLimitError
			assert.False(t, errors.As(err, &rl))
		}},
}

// TestClientVendorErrors runs every error row in both styles (vendor notes: errors): the error JSON with
// HTTP 200, and with the matching HTTP status; for both endpoints.
func TestClientVendorErrors(t *testing.T) {
	t.Parallel()
	for _, row := range vendorRows {
		for _, style := range []string{"body200", "status"} {
			for _, op := range []string{OpSend, OpStatus} {
				t.Run(row.name+"/"+style+"/"+op, func(t *testing.T) {
					t.Parallel()
					body, _ := json.Marshal(map[string]any{"name": row.vname, "message": row.message, "code": row.code, "status": row.status})
					httpStatus := 200
					if style == "status" {
						httpStatus = row.status
					}
					ts := newTestServer(t, respond(httpStatus, string(body)))
					err := sendOrStatus(ts.client(t), op)
					require.Error(t, err)
					row.check(t, err)
					api := isType[*APIError](t, err)
					assert.Equal(t, op, api.Op)
					assert.Equal(t, httpStatus, api.HTTPStatus)
					assert.Equal(t, row.code, api.Code)
					assert.Equal(t, row.status, api.Status)
					assert.Equal(t, row.vname, api.Name)
					assert.Equal(t, row.message, api.Message)
					assert.True(t, api.IsVendorError())
					assert.False(t, MaybeSent(err), "a provider answer is not ambiguous")
					assert.True(t, strings.HasPrefix(err.Error(), op+": provider error (HTTP "), err.Error())
					assert.Contains(t, err.Error(), row.vname)
					assert.Equal(t, ts.URL+map[string]string{OpSend: "/v1/api/send-viber", OpStatus: "/v1/api/receive-viber"}[op], api.URL)
				})
			}
		}
	}
}

// TestClientBareStatusErrors: non-2xx without the vendor JSON falls back to the HTTP status.
func TestClientBareStatusErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status int
		body   string
		check  func(t *testing.T, err error)
	}{
		{429, "", func(t *testing.T, err error) { isType[*RateLimitError](t, err) }},
		{400, "bad", func(t *testing.T, err error) { assert.Empty(t, isType[*InvalidParameterError](t, err).Param) }},
		{402, "", func(t *testing.T, err error) { isType[*BalanceError](t, err) }},
		{401, "Unauthorized", func(t *testing.T, err error) { isType[*UnauthorizedError](t, err) }},
		{403, "<html>Forbidden</html>", func(t *testing.T, err error) { isType[*UnauthorizedError](t, err) }},
		{500, "", func(t *testing.T, err error) { isType[*ServerError](t, err) }},
		{502, "<html><body>502 Bad Gateway</body></html>", func(t *testing.T, err error) { isType[*ServerError](t, err) }},
		{503, `{"unexpected":"json"}`, func(t *testing.T, err error) { isType[*ServerError](t, err) }},
		{504, "", func(t *testing.T, err error) { isType[*ServerError](t, err) }},
		{599, "", func(t *testing.T, err error) { isType[*ServerError](t, err) }},
		{404, "not found", func(t *testing.T, err error) {
			e := isType[*APIError](t, err)
			var se *ServerError
			assert.False(t, errors.As(err, &se))
			assert.Equal(t, "not found", e.Body)
		}},
		{302, "", func(t *testing.T, err error) { assert.Equal(t, 302, isType[*APIError](t, err).HTTPStatus) }}, // redirects are not followed
		// A 401 wins over any body, even a vendor error JSON of another class.
		{401, `{"name":"Too Many Requests","message":"Rate limit exceeded","code":0,"status":429}`, func(t *testing.T, err error) {
			isType[*UnauthorizedError](t, err)
			var rl *RateLimitError
			assert.False(t, errors.As(err, &rl))
		}},
	}
	for _, tt := range tests {
		for _, op := range []string{OpSend, OpStatus} {
			t.Run(fmt.Sprintf("%d/%s/%s", tt.status, op, tt.body), func(t *testing.T) {
				t.Parallel()
				ts := newTestServer(t, respond(tt.status, tt.body, "Location", "http://elsewhere.invalid/"))
				err := sendOrStatus(ts.client(t), op)
				require.Error(t, err)
				tt.check(t, err)
				api := isType[*APIError](t, err)
				assert.Equal(t, tt.status, api.HTTPStatus)
				assert.False(t, MaybeSent(err))
				if !strings.HasPrefix(tt.body, "{") {
					assert.Equal(t, -1, api.Code)
					assert.False(t, api.IsVendorError())
					assert.Equal(t, http.StatusText(tt.status), api.Name)
				}
				assert.Len(t, ts.requests(), 1, "no hidden retries")
			})
		}
	}
}

func TestClientVendorErrorWithMismatchedHTTPStatus(t *testing.T) {
	t.Parallel()
	// The body's status decides over a 5xx transport status; code decides when the
	// body's status is not an HTTP error status.
	ts := newTestServer(t, respond(500, `{"name":"Invalid Parameter: text","message":"m","code":1,"status":400}`))
	assert.Equal(t, "text", isType[*InvalidParameterError](t, sendOrStatus(ts.client(t), OpSend)).Param)
	ts = newTestServer(t, respond(200, `{"name":"Topup balance is required","message":"m","code":3,"status":200}`))
	isType[*BalanceError](t, sendOrStatus(ts.client(t), OpSend))
	ts = newTestServer(t, respond(200, `{"name":"Too Many Requests","message":"m","code":0,"status":0}`))
	isType[*RateLimitError](t, sendOrStatus(ts.client(t), OpSend))
	ts = newTestServer(t, respond(200, `{"name":"Something","message":"m","code":77,"status":200}`))
	e := isType[*APIError](t, sendOrStatus(ts.client(t), OpSend))
	assert.Equal(t, 77, e.Code)
}

func TestClientRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		hdr  []string
		want time.Duration
	}{
		{"None", nil, 0},
		{"Seconds", []string{"Retry-After", "7"}, 7 * time.Second},
		{"Zero", []string{"Retry-After", "0"}, 0},
		{"HTTPDate", []string{"Retry-After", now.Add(30 * time.Second).Format(http.TimeFormat)}, 30 * time.Second},
		{"HTTPDateInPast", []string{"Retry-After", now.Add(-time.Minute).Format(http.TimeFormat)}, 0},
		{"Garbage", []string{"Retry-After", "soon"}, 0},
		{"NegativeSeconds", []string{"Retry-After", "-5"}, 0},
		{"Huge", []string{"Retry-After", "99999999999999999"}, 7 * 24 * time.Hour},
		{"RateLimitResetSeconds", []string{"X-Rate-Limit-Reset", "3"}, 3 * time.Second},
		{"RateLimitResetEpoch", []string{"X-Rate-Limit-Reset", fmt.Sprint(now.Add(12 * time.Second).Unix())}, 12 * time.Second},
		{"RetryAfterWins", []string{"Retry-After", "2", "X-Rate-Limit-Reset", "9"}, 2 * time.Second},
		{"BadRetryAfterFallsBackToReset", []string{"Retry-After", "later", "X-Rate-Limit-Reset", "9"}, 9 * time.Second},
	}
	for _, tt := range tests {
		for _, style := range []string{"body200", "status", "bare"} {
			t.Run(tt.name+"/"+style, func(t *testing.T) {
				t.Parallel()
				status, body := 429, `{"name":"Too Many Requests","message":"Rate limit exceeded","code":0,"status":429}`
				switch style {
				case "body200":
					status = 200
				case "bare":
					body = ""
				}
				ts := newTestServer(t, respond(status, body, tt.hdr...))
				c := ts.client(t)
				c.now = func() time.Time { return now }
				err := sendOrStatus(c, OpSend)
				e := isType[*RateLimitError](t, err)
				assert.Equal(t, tt.want, e.RetryAfter)
				if tt.want > 0 {
					assert.Contains(t, err.Error(), "retry after "+tt.want.String())
				}
			})
		}
	}
}

func TestClientUndecodableResponses(t *testing.T) {
	t.Parallel()
	bodies := []string{
		``, `not json`, `null`, `[1,2]`, `"429"`, `429`, `{}`,
		`{"message_id":4.2}`, `{"message_id":-1}`, `{"message_id":"-1"}`, `{"message_id":"abc"}`, `{"message_id":0}`,
		`{"message_id":1e3}`, `{"message_id":true}`, `{"message_id":{"id":1}}`, `{"message_id":99999999999999999999}`,
		`{"message_id":429} {"message_id":430}`, `{"message_id":429`, `{"message_id":429}x`,
		// Looks like the vendor error JSON, but with wrong types: not an error object.
		`{"name":"Too Many Requests","message":"Rate limit exceeded","code":"0","status":429}`,
		`{"name":1,"message":2,"code":0,"status":429}`,
		`{"code":0,"status":429}`,
	}
	for _, body := range bodies {
		t.Run(body, func(t *testing.T) {
			t.Parallel()
			ts := newTestServer(t, respond(200, body))
			_, err := ts.client(t).Send(context.Background(), validText())
			e := isType[*ResponseError](t, err)
			assert.Equal(t, OpSend, e.Op)
			assert.Equal(t, 200, e.HTTPStatus)
			assert.True(t, e.MaybeSent())
			assert.True(t, MaybeSent(err), "a 2xx we cannot read may be an accepted send")
			var api *APIError
			assert.False(t, errors.As(err, &api))
		})
	}
	t.Run("Status", func(t *testing.T) {
		t.Parallel()
		for _, body := range []string{`{"message_id":429}`, `{"message_id":429,"status":1.5}`, `{"message_id":429,"status":-1}`,
			`{"message_id":429,"status":"x"}`, `{"message_id":430,"status":1}`, `{"message_id":429,"status":1,"sms_message_id":"x"}`,
			`{"message_id":429,"status":1,"sms_message_status":[2]}`} {
			ts := newTestServer(t, respond(200, body))
			_, err := ts.client(t).Status(context.Background(), 429)
			isType[*ResponseError](t, err)
		}
	})
}

func TestClientOversizedBody(t *testing.T) {
	t.Parallel()
	big := `{"message_id":429,"pad":"` + strings.Repeat("x", MaxResponseBytes) + `"}`
	ts := newTestServer(t, respond(200, big))
	_, err := ts.client(t).Send(context.Background(), validText())
	e := isType[*ResponseError](t, err)
	assert.Contains(t, e.Error(), "larger than")
	assert.True(t, MaybeSent(err))
	assert.LessOrEqual(t, len(e.Error()), 600, "the snippet is short")

	// Exactly at the cap is fine.
	pad := MaxResponseBytes - len(`{"message_id":429,"pad":""}`)
	ts = newTestServer(t, respond(200, `{"message_id":429,"pad":"`+strings.Repeat("x", pad)+`"}`))
	res, err := ts.client(t).Send(context.Background(), validText())
	require.NoError(t, err)
	assert.Equal(t, MessageID(429), res.MessageID)

	// A huge error page is still classified by its status.
	ts = newTestServer(t, respond(503, strings.Repeat("<p>busy</p>", 10000)))
	err = sendOrStatus(ts.client(t), OpSend)
	isType[*ServerError](t, err)
	assert.False(t, MaybeSent(err))
}

func TestClientTimeoutAfterWrite(t *testing.T) {
	t.Parallel()
	t.Run("NoAnswer", func(t *testing.T) {
		t.Parallel()
		ts := newTestServer(t, blockUntilGone)
		_, err := ts.client(t, WithTimeout(500*time.Millisecond)).Send(context.Background(), validText())
		e := isType[*TransportError](t, err)
		assert.True(t, e.MaybeSent)
		assert.True(t, MaybeSent(err))
		assert.True(t, e.Timeout())
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), "may have been sent")
	})
	t.Run("HeadersThenStall", func(t *testing.T) {
		t.Parallel()
		ts := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(200)
			_, _ = io.WriteString(w, `{"message_id":`)
			w.(http.Flusher).Flush()
			blockUntilGone(w, r)
		})
		_, err := ts.client(t, WithTimeout(500*time.Millisecond)).Send(context.Background(), validText())
		e := isType[*TransportError](t, err)
		assert.True(t, e.MaybeSent)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("HTTPClientTimeout", func(t *testing.T) {
		t.Parallel()
		ts := newTestServer(t, blockUntilGone)
		_, err := ts.client(t, WithTimeout(0), WithHTTPClient(&http.Client{Timeout: 500 * time.Millisecond})).Send(context.Background(), validText())
		e := isType[*TransportError](t, err)
		assert.True(t, e.MaybeSent)
		assert.True(t, e.Timeout())
	})
}

func TestClientConnectionReset(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"CloseWithoutAnswer", func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}},
		{"Reset", func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				if tcp, ok := conn.(*net.TCPConn); ok {
					_ = tcp.SetLinger(0) // RST instead of FIN
				}
				_ = conn.Close()
			}
		}},
		{"TruncatedBody", func(w http.ResponseWriter, _ *http.Request) {
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{\"message_id\":4")
				_ = buf.Flush()
				_ = conn.Close()
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := newTestServer(t, tc.handler)
			_, err := ts.client(t).Send(context.Background(), validText())
			require.Error(t, err)
			assert.True(t, MaybeSent(err), "%T %v", err, err)
			var api *APIError
			assert.False(t, errors.As(err, &api))
		})
	}
}

func TestClientNothingSent(t *testing.T) {
	t.Parallel()
	t.Run("ConnectionRefused", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		c, err := New("http://"+addr+"/v1/api", testKey)
		require.NoError(t, err)
		for _, op := range []string{OpSend, OpStatus} {
			err = sendOrStatus(c, op)
			e := isType[*TransportError](t, err)
			assert.False(t, e.MaybeSent)
			assert.False(t, MaybeSent(err))
			assert.Contains(t, err.Error(), "request not sent")
			assert.Equal(t, op, e.Op)
		}
	})
	t.Run("TLSHandshakeFails", func(t *testing.T) {
		t.Parallel()
		// The connection is made, the handshake fails (untrusted certificate): the
		// request itself is never written.
		srv := httptest.NewUnstartedServer(respond(200, `{"message_id":1}`))
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the expected handshake error
		srv.StartTLS()
		t.Cleanup(srv.Close)
		c, err := New(srv.URL, testKey)
		require.NoError(t, err)
		err = sendOrStatus(c, OpSend)
		e := isType[*TransportError](t, err)
		assert.False(t, e.MaybeSent, "%v", err)
		assert.False(t, isDialError(e.Err), "exercises the trace, not the dial check: %v", e.Err)
	})
	t.Run("DNS", func(t *testing.T) {
		t.Parallel()
		tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: "web.example", IsNotFound: true}}
		}}
		c, err := New("https://web.example/v1/api", testKey, WithHTTPClient(&http.Client{Transport: tr}))
		require.NoError(t, err)
		err = sendOrStatus(c, OpSend)
		e := isType[*TransportError](t, err)
		assert.False(t, e.MaybeSent)
		var dnsErr *net.DNSError
		assert.ErrorAs(t, err, &dnsErr)
	})
	t.Run("CustomTransportDNSErrorWithoutTrace", func(t *testing.T) {
		t.Parallel()
		rt := roundTripFunc(func(*http.Request) (*http.Response, error) {
			return nil, &net.DNSError{Err: "no such host", Name: "web.example"}
		})
		c, err := New("https://web.example/v1/api", testKey, WithHTTPClient(&http.Client{Transport: rt}))
		require.NoError(t, err)
		assert.False(t, MaybeSent(sendOrStatus(c, OpSend)))
	})
	t.Run("CustomTransportUnknownFailureIsAmbiguous", func(t *testing.T) {
		t.Parallel()
		// A transport that reports no progress: nothing proves the request was not sent.
		rt := roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, io.ErrUnexpectedEOF })
		c, err := New("https://web.example/v1/api", testKey, WithHTTPClient(&http.Client{Transport: rt}))
		require.NoError(t, err)
		assert.True(t, MaybeSent(sendOrStatus(c, OpSend)))
	})
	t.Run("ValidationFailsBeforeNetwork", func(t *testing.T) {
		t.Parallel()
		ts := newTestServer(t, respond(200, `{"message_id":1}`))
		m := validText()
		m.DestinationAddr = "+1"
		_, err := ts.client(t).Send(context.Background(), m)
		isType[*ValidationError](t, err)
		assert.False(t, MaybeSent(err))
		_, err = ts.client(t).Status(context.Background(), 0)
		require.Error(t, err)
		assert.Empty(t, ts.requests())
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestClientContext(t *testing.T) {
	t.Parallel()
	t.Run("CancelledWhileWaiting", func(t *testing.T) {
		t.Parallel()
		arrived := make(chan struct{})
		var once sync.Once
		ts := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
			once.Do(func() { close(arrived) })
			blockUntilGone(w, r)
		})
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-arrived; cancel() }()
		_, err := ts.client(t).Send(ctx, validText())
		e := isType[*TransportError](t, err)
		assert.ErrorIs(t, err, context.Canceled)
		assert.True(t, e.MaybeSent)
		assert.False(t, e.Timeout())
	})
	t.Run("DeadlineWhileWaiting", func(t *testing.T) {
		t.Parallel()
		ts := newTestServer(t, blockUntilGone)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := ts.client(t).Status(ctx, 7)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		isType[*TransportError](t, err)
	})
	t.Run("AlreadyCancelled", func(t *testing.T) {
		t.Parallel()
		ts := newTestServer(t, respond(200, `{"message_id":1}`))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := ts.client(t).Send(ctx, validText())
		e := isType[*TransportError](t, err)
		assert.ErrorIs(t, err, context.Canceled)
		assert.False(t, e.MaybeSent)
		assert.Empty(t, ts.requests())
	})
	t.Run("NilContext", func(t *testing.T) {
		t.Parallel()
		ts := newTestServer(t, respond(200, `{"message_id":1}`))
		//nolint:staticcheck // a nil context must not panic
		_, err := ts.client(t).Send(nilCtx(), validText())
		require.Error(t, err)
		assert.False(t, MaybeSent(err))
	})
}

// nilCtx hides the nil from vet/staticcheck.
func nilCtx() context.Context { return nil }

func TestNewValidation(t *testing.T) {
	t.Parallel()
	bad := []struct {
		base, key string
		opts      []Option
	}{
		{"ftp://example.com", testKey, nil},
		{"/v1/api", testKey, nil},
		{"https://", testKey, nil},
		{"::", testKey, nil},
		{"https://example.com", "", nil},
		{"https://example.com", " " + testKey, nil},
		{"https://example.com", testKey + "\n", nil},
		{"https://example.com", "a\x00b", nil},
		{"https://example.com", "a b", []Option{WithEncodedKey()}},
		{"https://example.com", testKey, []Option{WithTimeout(-time.Second)}},
		{"https://example.com", testKey, []Option{WithHTTPClient(nil)}},
		{"https://example.com", testKey, []Option{WithUserAgent("")}},
		{"https://example.com", testKey, []Option{WithUserAgent("a\r\nX-Evil: 1")}},
	}
	for _, b := range bad {
		c, err := New(b.base, b.key, b.opts...)
		assert.Nil(t, c)
		require.Error(t, err, "%q", b.base)
		if len(b.key) > 3 {
			assert.NotContains(t, err.Error(), strings.TrimSpace(b.key))
		}
	}
	c, err := New("", testKey, nil)
	require.NoError(t, err)
	assert.Equal(t, DefaultBaseURL, c.BaseURL())
	c, err = New("https://example.com/v1/api/", testKey)
	require.NoError(t, err)
	assert.Equal(t, "https://example.com/v1/api", c.BaseURL())
}

func TestClientURLRedaction(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, respond(500, ""))
	base := strings.Replace(ts.URL, "http://", "http://user:pw-secret@", 1) + "/v1/api?token=q-secret"
	c, err := New(base, testKey)
	require.NoError(t, err)
	err = sendOrStatus(c, OpSend)
	e := isType[*ServerError](t, err)
	assert.Equal(t, ts.URL+"/v1/api/send-viber", e.URL)
	reqs := ts.requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, "/v1/api/send-viber", reqs[0].Path)
	assert.Equal(t, "Basic "+base64.StdEncoding.EncodeToString([]byte(testKey)), reqs[0].Header.Get("Authorization"), "userinfo never replaces the key")
	for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err), c.String()} {
		assert.NotContains(t, s, "pw-secret")
		assert.NotContains(t, s, "q-secret")
	}
}

func TestClientBrokenAnswer(t *testing.T) {
	t.Parallel()
	// Framing says 50 bytes, the connection closes after 15: a transport failure after
	// the write on a 2xx; a bare status error otherwise.
	truncated := func(status string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_, _ = buf.WriteString("HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{\"message_id\":4")
				_ = buf.Flush()
				_ = conn.Close()
			}
		}
	}
	ts := newTestServer(t, truncated("200 OK"))
	err := sendOrStatus(ts.client(t), OpSend)
	e := isType[*TransportError](t, err)
	assert.True(t, e.MaybeSent)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)

	ts = newTestServer(t, truncated("503 Service Unavailable"))
	err = sendOrStatus(ts.client(t), OpSend)
	isType[*ServerError](t, err)
}
