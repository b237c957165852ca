package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

// Action is what the worker does with the outcome of one provider call (README, Error policy).
// Classify is the only place that maps an error to an Action.
type Action int

// Actions.
const (
	// ActionSuccess: the call succeeded.
	ActionSuccess Action = iota
	// ActionRetry: retry with exponential backoff and jitter, bounded by the TTL; uses
	// the retry budget (5xx, connection refused, DNS: nothing sent).
	ActionRetry
	// ActionRetryAfter: the provider throttled us (429 / code 0). Retry after its hint
	// (or DefaultRetryAfter) and pause the global bucket for that time; never uses the
	// retry budget.
	ActionRetryAfter
	// ActionReject: the provider refused the message (400 / code 1, or viberq's own
	// validation): final rejected with the provider's reason, archived, no retry.
	ActionReject
	// ActionDrop: the balance is empty (402 / code 3): final dropped, archived
	// (re-runnable after a top-up), one alert per window, send queues paused.
	ActionDrop
	// ActionAuth: the key is wrong (401/403): alert, pause, archive; the record is
	// dropped with error "unauthorized" so a re-run after fixing the key sends it.
	ActionAuth
	// ActionAmbiguous: the request was written but no usable answer came back (timeout
	// or reset after the write, undecodable 2xx): the message may have been sent
	// (README, Exactly once): record unknown, not resent unless Config.ResendUnknown.
	ActionAmbiguous
	// ActionSkip: archive at once without a retry: an undecodable task payload, or an
	// answer no other row describes (another 4xx such as 404, an undocumented vendor
	// code); the record, when there is one, is dropped with the reason (re-runnable).
	ActionSkip
	// ActionPending: status calls only: a 4xx answer to receive-viber says nothing
	// about delivery, so the message counts as still pending and polling goes on until
	// the deadline.
	ActionPending
)

var actionNames = [...]string{
	ActionSuccess:    "success",
	ActionRetry:      "retry",
	ActionRetryAfter: "retry_after",
	ActionReject:     "reject",
	ActionDrop:       "drop",
	ActionAuth:       "auth",
	ActionAmbiguous:  "ambiguous",
	ActionSkip:       "skip",
	ActionPending:    "pending",
}

// String returns the snake_case name used in logs and metrics.
func (a Action) String() string {
	if a >= 0 && int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// IsFailure reports whether the action uses up the task's retry budget: false for
// success, rate limiting and a pending status.
func (a Action) IsFailure() bool {
	switch a {
	case ActionSuccess, ActionRetryAfter, ActionPending:
		return false
	}
	return true
}

// DefaultRetryAfter is the delay after a 429 that carries no usable hint.
const DefaultRetryAfter = time.Second

// Decision is the outcome of Classify: the Action, a human reason for the log line
// (stripe-go's shouldRetry style), and what the provider said.
type Decision struct {
	Action Action
	// Reason says why, e.g. "rate limited (HTTP 429); retry after provider hint 2s".
	Reason string
	// RetryAfter is the delay of ActionRetryAfter: the provider's hint, or
	// DefaultRetryAfter when there is none. Zero for other actions.
	RetryAfter time.Duration
	// HTTPStatus is the HTTP status of the answer, 0 when there was none.
	HTTPStatus int
	// VendorCode is the vendor's error code, -1 when the answer had none.
	VendorCode int
}

// Classify maps the result of one provider call to a Decision. op is provider.OpSend
// (send-viber) or provider.OpStatus (receive-viber): a status call is a read, so
// anything ambiguous about it is simply retried, and a 4xx means "still pending".
// Classify is pure: same input, same Decision.
//
// Rows (README, Error policy; vendor notes: errors, retries):
//
//	nil                                   success
//	tasks.ErrBadPayload                   skip (archive at once)
//	*provider.ValidationError             reject (send) / pending (status)
//	*provider.RateLimitError  429, code 0 retry_after (hint or DefaultRetryAfter)
//	*provider.ServerError     5xx, code 2 retry
//	*provider.InvalidParameterError 400   reject (send) / pending (status)
//	*provider.BalanceError    402, code 3 drop (send) / pending (status)
//	*provider.UnauthorizedError 401/403   auth
//	provider.MaybeSent(err)               ambiguous (send) / retry (status)
//	*provider.TransportError, not sent    retry
//	*provider.ResponseError, not 2xx      retry if 5xx, else skip (send) / pending (status)
//	other *provider.APIError              retry if 5xx, else skip (send) / pending (status)
//	context.Canceled / DeadlineExceeded   retry (shutdown or task deadline before the request)
//	anything else                         retry (e.g. Redis unavailable)
func Classify(op string, err error) Decision {
	status := op == provider.OpStatus
	d := Decision{VendorCode: -1}
	if err == nil {
		d.Action, d.Reason = ActionSuccess, "ok"
		return d
	}
	var api *provider.APIError
	if errors.As(err, &api) {
		d.HTTPStatus = api.HTTPStatus
		if api.Code >= 0 {
			d.VendorCode = api.Code
		}
	}
	var (
		rl   *provider.RateLimitError
		srv  *provider.ServerError
		inv  *provider.InvalidParameterError
		bal  *provider.BalanceError
		auth *provider.UnauthorizedError
		val  *provider.ValidationError
		te   *provider.TransportError
		re   *provider.ResponseError
	)
	switch {
	case errors.Is(err, tasks.ErrBadPayload):
		d.Action, d.Reason = ActionSkip, "undecodable task payload; archived, never retried"
	case errors.As(err, &val):
		d.Action, d.Reason = ActionReject, "message fails validation; not sent"
		if status {
			d.Action, d.Reason = ActionPending, "status request fails validation; treated as pending"
		}
	case errors.As(err, &rl):
		d.Action, d.RetryAfter = ActionRetryAfter, rl.RetryAfter
		if d.RetryAfter > 0 {
			d.Reason = fmt.Sprintf("rate limited%s; retry after provider hint %s, bucket paused", httpSuffix(d), d.RetryAfter)
		} else {
			d.RetryAfter = DefaultRetryAfter
			d.Reason = fmt.Sprintf("rate limited%s without a hint; retry after %s, bucket paused", httpSuffix(d), d.RetryAfter)
		}
	case errors.As(err, &srv):
		d.Action, d.Reason = ActionRetry, "provider server error"+httpSuffix(d)+"; retry with backoff"
	case errors.As(err, &inv):
		if status {
			d.Action, d.Reason = ActionPending, "status request refused"+httpSuffix(d)+"; treated as pending"
			break
		}
		d.Action = ActionReject
		d.Reason = "provider refused the message" + httpSuffix(d)
		if inv.Param != "" {
			d.Reason += ": invalid parameter " + inv.Param
		}
		d.Reason += "; rejected, not retried"
	case errors.As(err, &bal):
		if status {
			d.Action, d.Reason = ActionPending, "balance empty on a status request"+httpSuffix(d)+"; treated as pending"
			break
		}
		d.Action, d.Reason = ActionDrop, "provider balance empty"+httpSuffix(d)+"; dropped, archived, alert, send queues paused"
	case errors.As(err, &auth):
		d.Action, d.Reason = ActionAuth, "provider refused the access key"+httpSuffix(d)+"; alert, pause, archive"
		if status {
			d.Reason = "provider refused the access key" + httpSuffix(d) + "; alert, polling goes on"
		}
	case provider.MaybeSent(err):
		if status {
			d.Action, d.Reason = ActionRetry, "status call failed after the request was written; retry (a read is safe to repeat)"
			break
		}
		d.Action, d.Reason = ActionAmbiguous, "request written but no usable answer; the message may have been sent"
		if errors.As(err, &re) {
			d.HTTPStatus = re.HTTPStatus
		}
	case errors.As(err, &te):
		d.Action, d.Reason = ActionRetry, "request not sent (connection failed before the write); retry with backoff"
	case errors.As(err, &re):
		d.HTTPStatus = re.HTTPStatus
		d.Action, d.Reason = fourXX(status, re.HTTPStatus, "undecodable answer")
	case api != nil:
		code := api.HTTPStatus
		if api.Status >= 400 {
			code = api.Status // a vendor error JSON under HTTP 200 carries the real status
		}
		d.Action, d.Reason = fourXX(status, code, "unexpected provider answer"+httpSuffix(d))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		d.Action, d.Reason = ActionRetry, "context done before the provider was called; retry"
	default:
		d.Action, d.Reason = ActionRetry, "internal error; retry with backoff"
	}
	return d
}

// fourXX decides an answer that no typed error describes: 5xx is retried, anything
// else is skipped (send) or treated as pending (status).
func fourXX(status bool, code int, what string) (Action, string) {
	switch {
	case code >= 500:
		return ActionRetry, what + "; server side, retry with backoff"
	case status:
		return ActionPending, what + "; treated as pending"
	default:
		return ActionSkip, what + "; archived, not retried"
	}
}

func httpSuffix(d Decision) string {
	switch {
	case d.HTTPStatus != 0 && d.VendorCode >= 0:
		return fmt.Sprintf(" (HTTP %d, code %d)", d.HTTPStatus, d.VendorCode)
	case d.HTTPStatus != 0:
		return fmt.Sprintf(" (HTTP %d)", d.HTTPStatus)
	}
	return ""
}

// unlistedStatus returns a log note when a status answer carries a code the vendor
// lists nowhere (provider.ViberStatus.Listed, provider.SMSStatus.Listed), "" otherwise.
// Such a code counts as pending, never as final: an unlisted SMS code may even mean
// "delivered" (the vendor's page lists none), so a message whose polling deadline
// passes on one ends unknown, not expired (expirePoll).
func unlistedStatus(viber provider.ViberStatus, sms *provider.SMSStatus) string {
	var parts []string
	if !viber.Listed() {
		parts = append(parts, "viber status "+strconv.Itoa(int(viber)))
	}
	if sms != nil && !sms.Listed() {
		parts = append(parts, "sms status "+strconv.Itoa(int(*sms)))
	}
	if len(parts) == 0 {
		return ""
	}
	return "unlisted provider code (" + strings.Join(parts, ", ") + "): counted as pending"
}
