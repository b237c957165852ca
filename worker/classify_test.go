package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

func apiErr(op string, http, code, status int) provider.APIError {
	return provider.APIError{Op: op, URL: "http://sim/v1/api/send-viber", HTTPStatus: http, Code: code, Status: status, Name: "n", Message: "m"}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	send, status := provider.OpSend, provider.OpStatus
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	tests := []struct {
		desc       string
		op         string
		err        error
		want       Action
		retryAfter time.Duration
		http       int
		code       int
		failure    bool
	}{
		{desc: "Success", op: send, err: nil, want: ActionSuccess, code: -1},
		{desc: "BadPayload", op: send, err: fmt.Errorf("decode: %w: x", tasks.ErrBadPayload), want: ActionSkip, code: -1, failure: true},
		{desc: "ValidationSend", op: send, err: &provider.ValidationError{Fields: []provider.FieldError{{Field: "text", Rule: "is required"}}}, want: ActionReject, code: -1, failure: true},
		{desc: "ValidationStatus", op: status, err: &provider.ValidationError{}, want: ActionPending, code: -1},
		{desc: "RateLimitHint", op: send, err: &provider.RateLimitError{APIError: apiErr(send, 429, 0, 429), RetryAfter: 3 * time.Second}, want: ActionRetryAfter, retryAfter: 3 * time.Second, http: 429, code: 0},
		{desc: "RateLimitNoHint", op: send, err: &provider.RateLimitError{APIError: apiErr(send, 200, 0, 429)}, want: ActionRetryAfter, retryAfter: DefaultRetryAfter, http: 200, code: 0},
		{desc: "RateLimitStatus", op: status, err: &provider.RateLimitError{APIError: apiErr(status, 429, 0, 429), RetryAfter: time.Second}, want: ActionRetryAfter, retryAfter: time.Second, http: 429, code: 0},
		{desc: "ServerError500", op: send, err: &provider.ServerError{APIError: apiErr(send, 500, 2, 500)}, want: ActionRetry, http: 500, code: 2, failure: true},
		{desc: "ServerError503Bare", op: send, err: &provider.ServerError{APIError: apiErr(send, 503, -1, 0)}, want: ActionRetry, http: 503, code: -1, failure: true},
		{desc: "ServerErrorStatus", op: status, err: &provider.ServerError{APIError: apiErr(status, 502, -1, 0)}, want: ActionRetry, http: 502, code: -1, failure: true},
		{desc: "InvalidParameter", op: send, err: &provider.InvalidParameterError{APIError: apiErr(send, 400, 1, 400), Param: "source_addr"}, want: ActionReject, http: 400, code: 1, failure: true},
		{desc: "InvalidParameterStatus", op: status, err: &provider.InvalidParameterError{APIError: apiErr(status, 400, 1, 400)}, want: ActionPending, http: 400, code: 1},
		{desc: "Balance", op: send, err: &provider.BalanceError{APIError: apiErr(send, 402, 3, 402)}, want: ActionDrop, http: 402, code: 3, failure: true},
		{desc: "BalanceIn200", op: send, err: &provider.BalanceError{APIError: apiErr(send, 200, 3, 402)}, want: ActionDrop, http: 200, code: 3, failure: true},
		{desc: "BalanceStatus", op: status, err: &provider.BalanceError{APIError: apiErr(status, 402, 3, 402)}, want: ActionPending, http: 402, code: 3},
		{desc: "Unauthorized401", op: send, err: &provider.UnauthorizedError{APIError: apiErr(send, 401, -1, 0)}, want: ActionAuth, http: 401, code: -1, failure: true},
		{desc: "Forbidden403", op: send, err: &provider.UnauthorizedError{APIError: apiErr(send, 403, -1, 0)}, want: ActionAuth, http: 403, code: -1, failure: true},
		{desc: "UnauthorizedStatus", op: status, err: &provider.UnauthorizedError{APIError: apiErr(status, 401, -1, 0)}, want: ActionAuth, http: 401, code: -1, failure: true},
		{desc: "TimeoutAfterWrite", op: send, err: &provider.TransportError{Op: send, MaybeSent: true, Err: fmt.Errorf("client timeout: %w", context.DeadlineExceeded)}, want: ActionAmbiguous, code: -1, failure: true},
		{desc: "CtxDeadlineAfterWrite", op: send, err: &provider.TransportError{Op: send, MaybeSent: true, Err: context.DeadlineExceeded}, want: ActionAmbiguous, code: -1, failure: true},
		{desc: "ResetAfterWrite", op: send, err: &provider.TransportError{Op: send, MaybeSent: true, Err: errors.New("connection reset by peer")}, want: ActionAmbiguous, code: -1, failure: true},
		{desc: "GarbageOn200", op: send, err: &provider.ResponseError{Op: send, HTTPStatus: 200, Err: errors.New("bad json")}, want: ActionAmbiguous, http: 200, code: -1, failure: true},
		{desc: "TimeoutAfterWriteStatus", op: status, err: &provider.TransportError{Op: status, MaybeSent: true, Err: context.DeadlineExceeded}, want: ActionRetry, code: -1, failure: true},
		{desc: "GarbageOn200Status", op: status, err: &provider.ResponseError{Op: status, HTTPStatus: 200, Err: errors.New("bad json")}, want: ActionRetry, code: -1, failure: true},
		{desc: "ConnectionRefused", op: send, err: &provider.TransportError{Op: send, MaybeSent: false, Err: dial}, want: ActionRetry, code: -1, failure: true},
		{desc: "DNSFailure", op: send, err: &provider.TransportError{Op: send, MaybeSent: false, Err: &net.DNSError{Err: "no such host", Name: "x"}}, want: ActionRetry, code: -1, failure: true},
		{desc: "CtxDoneBeforeWrite", op: send, err: &provider.TransportError{Op: send, MaybeSent: false, Err: context.Canceled}, want: ActionRetry, code: -1, failure: true},
		{desc: "GarbageOn502", op: send, err: &provider.ResponseError{Op: send, HTTPStatus: 502, Err: errors.New("html")}, want: ActionRetry, http: 502, code: -1, failure: true},
		{desc: "GarbageOn404", op: send, err: &provider.ResponseError{Op: send, HTTPStatus: 404, Err: errors.New("html")}, want: ActionSkip, http: 404, code: -1, failure: true},
		{desc: "GarbageOn404Status", op: status, err: &provider.ResponseError{Op: status, HTTPStatus: 404, Err: errors.New("html")}, want: ActionPending, http: 404, code: -1},
		{desc: "Other4xx", op: send, err: &provider.APIError{Op: send, HTTPStatus: 404, Code: -1}, want: ActionSkip, http: 404, code: -1, failure: true},
		{desc: "UndocumentedVendorCode", op: send, err: &provider.APIError{Op: send, HTTPStatus: 200, Code: 7, Status: 409}, want: ActionSkip, http: 200, code: 7, failure: true},
		{desc: "UndocumentedVendorCode5xx", op: send, err: &provider.APIError{Op: send, HTTPStatus: 200, Code: 9, Status: 503}, want: ActionRetry, http: 200, code: 9, failure: true},
		{desc: "Other4xxStatus", op: status, err: &provider.APIError{Op: status, HTTPStatus: 404, Code: -1}, want: ActionPending, http: 404, code: -1},
		{desc: "WrappedServerError", op: send, err: fmt.Errorf("send x: %w", &provider.ServerError{APIError: apiErr(send, 500, 2, 500)}), want: ActionRetry, http: 500, code: 2, failure: true},
		{desc: "ContextCanceled", op: send, err: fmt.Errorf("limiter send: %w", context.Canceled), want: ActionRetry, code: -1, failure: true},
		{desc: "LimiterDeadline", op: send, err: &LimitedError{Bucket: "send", Wait: time.Second}, want: ActionRetry, code: -1, failure: true},
		{desc: "RedisDown", op: send, err: errors.New("dial tcp 127.0.0.1:6379: connect: connection refused"), want: ActionRetry, code: -1, failure: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			d := Classify(tt.op, tt.err)
			require.Equal(t, tt.want, d.Action, "reason: %s", d.Reason)
			require.Equal(t, tt.retryAfter, d.RetryAfter)
			require.Equal(t, tt.http, d.HTTPStatus)
			require.Equal(t, tt.code, d.VendorCode)
			require.Equal(t, tt.failure, d.Action.IsFailure())
			require.NotEmpty(t, d.Reason)
			// Pure: the same input gives the same decision.
			require.Equal(t, d, Classify(tt.op, tt.err))
		})
	}
}

func TestActionString(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for a := ActionSuccess; a <= ActionPending; a++ {
		s := a.String()
		require.NotContains(t, s, "action(")
		require.False(t, seen[s], "duplicate name %s", s)
		seen[s] = true
	}
	require.Equal(t, "action(99)", Action(99).String())
}

func TestValidityPeriod(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		left time.Duration
		want int
	}{
		{-time.Second, 40}, {0, 40}, {10 * time.Second, 40}, {40 * time.Second, 40},
		{100*time.Second + time.Millisecond, 101}, {time.Hour, 3600}, {6 * time.Hour, 21600}, {7 * time.Hour, 21600},
	} {
		require.Equal(t, tt.want, validityPeriod(promotional(), tt.left), "left %s", tt.left)
		require.Equal(t, 40, validityPeriod(transactional(), tt.left), "text_sms, left %s", tt.left)
	}
}

func TestUnlistedStatus(t *testing.T) {
	t.Parallel()
	sms := func(n int) *provider.SMSStatus { s := provider.SMSStatus(n); return &s }
	require.Empty(t, unlistedStatus(provider.ViberDelivered, nil))
	require.Empty(t, unlistedStatus(provider.ViberUndelivered, sms(2)))
	require.Empty(t, unlistedStatus(provider.ViberSent, sms(6)))
	require.Equal(t, "unlisted provider code (sms status 8): counted as pending", unlistedStatus(provider.ViberUndelivered, sms(8)))
	require.Equal(t, "unlisted provider code (viber status 7, sms status 1): counted as pending", unlistedStatus(7, sms(1)))
}
