package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Operation names used in errors (the Op field) and as error message prefixes.
const (
	OpSend   = "send viber"
	OpStatus = "receive viber"
)

// APIError is an error answer of the provider: either the vendor's error JSON
// ({"name","message","code","status"}, vendor notes: errors), which may arrive with HTTP 200 or
// with a matching 4xx/5xx (vendor notes: errors), or a bare non-2xx HTTP status without that JSON.
//
// The more specific types RateLimitError, InvalidParameterError, ServerError,
// BalanceError and UnauthorizedError embed it and unwrap to it, so
// errors.As(err, &apiErr) with apiErr *APIError matches all of them. A plain *APIError
// is an answer none of them describes (e.g. a 404, or an undocumented vendor code).
// Name, Message and Body never contain the access key: any occurrence of the key or
// of its Base64 form is replaced by "[REDACTED]".
type APIError struct {
	Op         string // OpSend or OpStatus
	URL        string // request URL without userinfo or query
	HTTPStatus int    // the HTTP status of the response
	Code       int    // vendor "code", -1 when the body was not the vendor error JSON
	Status     int    // vendor "status" field, 0 when the body was not the vendor error JSON
	Name       string // vendor "name", e.g. "Invalid Parameter: source_addr"; else the HTTP status text
	Message    string // vendor "message"
	Body       string // a short, redacted excerpt of a non-JSON error body, for diagnosis
}

// Error returns e.g. `send viber: provider error (HTTP 200, code 1, status 400):
// Invalid Parameter: source_addr: Empty parameter or parameter validation error`.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.Code >= 0 {
		fmt.Fprintf(&b, ": provider error (HTTP %d, code %d, status %d)", e.HTTPStatus, e.Code, e.Status)
	} else {
		fmt.Fprintf(&b, ": HTTP %d", e.HTTPStatus)
	}
	if e.Name != "" {
		b.WriteString(": ")
		b.WriteString(e.Name)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Body != "" {
		fmt.Fprintf(&b, " (body: %q)", e.Body)
	}
	return b.String()
}

// IsVendorError reports whether the error came from the vendor's error JSON rather
// than from a bare HTTP status.
func (e *APIError) IsVendorError() bool { return e.Code >= 0 }

// RateLimitError is the provider's "Too Many Requests" (HTTP 429 or code 0, vendor
// notes: errors). RetryAfter is the provider's hint, from Retry-After (seconds or an HTTP date)
// or else X-Rate-Limit-Reset (Yii2 sends seconds until the window resets; a value
// above 10^9 is read as a Unix time), 0 when there is no usable hint (README, Error policy).
type RateLimitError struct {
	APIError
	RetryAfter time.Duration
}

// Error appends the retry hint to the APIError text.
func (e *RateLimitError) Error() string {
	s := e.APIError.Error()
	if e.RetryAfter > 0 {
		s += " (retry after " + e.RetryAfter.String() + ")"
	}
	return s
}

// Unwrap returns the embedded *APIError.
func (e *RateLimitError) Unwrap() error { return &e.APIError }

// InvalidParameterError is "Invalid Parameter: <field>" (HTTP 400 or code 1,
// vendor notes: errors). Param is the field the provider named, "" when it named none.
// Never retried (vendor notes: retries).
type InvalidParameterError struct {
	APIError
	Param string
}

// Error returns the APIError text.
func (e *InvalidParameterError) Error() string { return e.APIError.Error() }

// Unwrap returns the embedded *APIError.
func (e *InvalidParameterError) Unwrap() error { return &e.APIError }

// ServerError is a provider-side failure: code 2 / HTTP 500, and 502, 503, 504 or any
// other 5xx. Whether the message was accepted before the failure is unknown to the
// provider API; the worker's policy decides (README, Error policy, vendor notes: retries).
type ServerError struct {
	APIError
}

// Error returns the APIError text.
func (e *ServerError) Error() string { return e.APIError.Error() }

// Unwrap returns the embedded *APIError.
func (e *ServerError) Unwrap() error { return &e.APIError }

// BalanceError is "Topup balance is required" (HTTP 402 or code 3, vendor notes: errors):
// the account balance is empty (vendor notes: errors). Never retried; alert.
type BalanceError struct {
	APIError
}

// Error returns the APIError text.
func (e *BalanceError) Error() string { return e.APIError.Error() }

// Unwrap returns the embedded *APIError.
func (e *BalanceError) Unwrap() error { return &e.APIError }

// UnauthorizedError is HTTP 401 or 403 (with any body, JSON or not), or a vendor
// error JSON whose status is 401 or 403: the access key or its encoding is wrong
// (vendor notes: auth). A configuration error: never hammer the provider.
type UnauthorizedError struct {
	APIError
}

// Error returns the APIError text.
func (e *UnauthorizedError) Error() string { return e.APIError.Error() }

// Unwrap returns the embedded *APIError.
func (e *UnauthorizedError) Unwrap() error { return &e.APIError }

// TransportError is a failure to exchange the request and its response: dial, DNS,
// TLS, timeout, reset, EOF, or the context ending (then Err wraps ctx.Err(), so
// errors.Is(err, context.DeadlineExceeded) works).
//
// MaybeSent is false when the request never left this process completely (no
// connection, DNS failure, refused, context done before the write): resending cannot
// duplicate. It is true when the request was written and then the exchange failed:
// the provider may have accepted the message (vendor notes: retries, README, Exactly once).
type TransportError struct {
	Op        string
	URL       string // request URL without userinfo or query
	MaybeSent bool
	Err       error
}

// Error returns e.g. "send viber: POST https://host/v1/api/send-viber: request may have been sent: i/o timeout".
func (e *TransportError) Error() string {
	state := "request not sent"
	if e.MaybeSent {
		state = "request may have been sent"
	}
	return e.Op + ": POST " + e.URL + ": " + state + ": " + errString(e.Err)
}

// Unwrap returns the underlying error.
func (e *TransportError) Unwrap() error { return e.Err }

// Timeout reports whether the failure was a timeout (a net timeout or a deadline).
func (e *TransportError) Timeout() bool {
	var ne net.Error
	return errors.Is(e.Err, context.DeadlineExceeded) || (errors.As(e.Err, &ne) && ne.Timeout())
}

// ResponseError is a response that could not be understood: a body that is not JSON,
// is truncated, has a missing or mistyped field (e.g. a float or negative
// message_id), or is larger than the client's limit. Snippet is a short, redacted
// excerpt of the body.
//
// On a 2xx answer to a send this is ambiguous: the provider may have accepted the
// message, so MaybeSent reports true.
type ResponseError struct {
	Op         string
	URL        string // request URL without userinfo or query
	HTTPStatus int
	Err        error
	Snippet    string
}

// Error returns e.g. `send viber: HTTP 200: undecodable response: message_id: ... (body: "...")`.
func (e *ResponseError) Error() string {
	s := e.Op + ": HTTP " + strconv.Itoa(e.HTTPStatus) + ": undecodable response: " + errString(e.Err)
	if e.Snippet != "" {
		s += fmt.Sprintf(" (body: %q)", e.Snippet)
	}
	return s
}

// Unwrap returns the underlying decoding error.
func (e *ResponseError) Unwrap() error { return e.Err }

// MaybeSent reports whether the request may have taken effect: true for a 2xx answer.
func (e *ResponseError) MaybeSent() bool { return e.HTTPStatus >= 200 && e.HTTPStatus <= 299 }

// MaybeSent reports whether err leaves it open that the provider acted on the request
// (vendor notes: retries, README, Exactly once): a *TransportError with MaybeSent, or a *ResponseError on a 2xx
// answer. It is false for nil, for validation errors, for errors before the write and
// for every typed provider answer (those say what happened; the 5xx policy is the
// worker's, README, Error policy).
func MaybeSent(err error) bool {
	var te *TransportError
	if errors.As(err, &te) {
		return te.MaybeSent
	}
	var re *ResponseError
	if errors.As(err, &re) {
		return re.MaybeSent()
	}
	return false
}

// errClientTimeout is the cause of the client's own timeout (WithTimeout), to tell
// it from the caller's deadline.
var errClientTimeout = fmt.Errorf("client timeout: %w", context.DeadlineExceeded)

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// classOf maps an HTTP-like status to an error class (vendor notes: errors, README, Error policy).
type errClass int

const (
	classNone errClass = iota
	classRateLimit
	classInvalid
	classServer
	classBalance
	classUnauthorized
)

func classOfStatus(status int) errClass {
	switch {
	case status == http.StatusTooManyRequests:
		return classRateLimit
	case status == http.StatusBadRequest:
		return classInvalid
	case status == http.StatusPaymentRequired:
		return classBalance
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return classUnauthorized
	case status >= 500 && status <= 599:
		return classServer
	}
	return classNone
}
