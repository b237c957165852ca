package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/worker"
)

// HTTPDoer sends a request: *http.Client.
type HTTPDoer interface {
	Do(*http.Request) (*http.Response, error)
}

// UserAgent is the User-Agent of webhook POSTs.
const UserAgent = "viberq-webhook/1"

// maxAnswer is how much of a receiver's answer is read (and discarded) so that the
// connection can be reused.
const maxAnswer = 4 << 10

// StatusError is a non-2xx answer of a receiver.
type StatusError struct{ Code int }

func (e *StatusError) Error() string { return "webhook answered HTTP " + strconv.Itoa(e.Code) }

// Deliverer POSTs webhook tasks: the asynq handler of tasks.TypeWebhook.
type Deliverer struct {
	cfg     Config
	http    HTTPDoer
	log     zerolog.Logger
	metrics *Metrics
	now     func() time.Time
	hosts   *hostGate
}

// ProcessTask POSTs the task's body to its URL (or the default URL), signed. A 2xx
// answer returns nil; a refused address, a missing URL or a bad payload is archived
// at once (asynq.SkipRetry); a delivery whose host is held is not attempted and
// returns an error wrapping ErrHeld (rescheduled without using a retry), or is
// archived when its breaker is open and the webhook, attempted at least once, has
// waited longer than the retry window; any other failure is returned for a retry.
// A webhook is never archived unattempted: its last retry, and a first attempt past
// the window, go through whatever the host's state.
func (d *Deliverer) ProcessTask(ctx context.Context, t *asynq.Task) error {
	a, err := tasks.Decode[tasks.WebhookArgs](t)
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	target := a.URL
	if target == "" {
		target = d.cfg.DefaultURL
	}
	// The host as the breakers count it (name:port, never the userinfo, path or
	// query): the delivery's lines and its breaker's name it alike.
	host := hostKey(target)
	lg := d.log.With().Str("event_id", a.EventID).Str("msg_id", provider.MaskID(a.ID)).Str("host", host).Logger()
	if target == "" {
		lg.Warn().Msg("webhook has no URL (VIBERQ_WEBHOOK_URL was unset); archived")
		return fmt.Errorf("webhook %s: no URL: %w", a.EventID, asynq.SkipRetry)
	}
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, ok := asynq.GetMaxRetry(ctx)
	past := d.pastWindow(a)
	p, held := d.hosts.acquire(host, (ok && retried >= maxRetry) || (past && retried == 0))
	if held != nil {
		if held.open && !held.probing && past {
			lg.Debug().Dur("window", d.cfg.window()).Msg("webhook host still held at the end of the retry window; archived")
			return fmt.Errorf("webhook %s: host still failing after the retry window (%s): %v: %w", a.EventID, d.cfg.window(), held, asynq.SkipRetry)
		}
		d.metrics.countDelivery("held")
		lg.Debug().Bool("circuit_open", held.open).Int("retry", retried).Msg("webhook held: not attempted, no retry used")
		return fmt.Errorf("webhook %s: %w", a.EventID, held)
	}
	start := time.Now()
	o, cause := neutral, ""
	defer func() { p.done(o, time.Since(start), cause) }() // a panic in the POST still frees its slot
	o, err = d.post(ctx, target, a)
	if u := errors.Unwrap(err); o == hostFailed && u != nil {
		cause = u.Error() // the failure without the webhook's event ID
	}
	if err == nil {
		d.metrics.countDelivery("delivered")
		lg.Debug().Msg("webhook delivered")
		return nil
	}
	if errors.Is(err, ErrPrivateAddress) {
		lg.Warn().Err(err).Msg("webhook address refused; archived")
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	d.metrics.countDelivery("failed")
	lg.Info().Err(err).Int("retry", retried).Msg("webhook failed; will retry")
	return err
}

// pastWindow reports whether the webhook was queued longer ago than the retry
// window: since a.QueuedAt, or for a task queued before that field was written,
// since its event (dated by its stream ID, milliseconds); one that dates nothing is.
func (d *Deliverer) pastWindow(a tasks.WebhookArgs) bool {
	since := a.QueuedAt
	if since.IsZero() {
		ms, _, _ := strings.Cut(a.EventID, "-")
		n, err := strconv.ParseInt(ms, 10, 64)
		if err != nil {
			return true
		}
		since = time.UnixMilli(n)
	}
	return d.now().Sub(since) > d.cfg.window()
}

// post sends one attempt and tells what it taught about the host. Errors never
// contain the URL (it may carry a credential).
func (d *Deliverer) post(ctx context.Context, target string, a tasks.WebhookArgs) (outcome, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(a.Body))
	if err != nil {
		return neutral, fmt.Errorf("webhook %s: bad URL", a.EventID)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(EventIDHeader, a.EventID)
	req.Header.Set(SignatureHeader, SignatureValue(d.cfg.Secrets, d.now(), a.Body))
	start := time.Now()
	resp, err := d.http.Do(req)
	if err != nil {
		code, o := "transport", hostFailed
		if errors.Is(err, ErrPrivateAddress) {
			code, o = "refused", neutral
		} else if ctx.Err() != nil {
			o = neutral // shutdown or the task's deadline: nothing learnt about the host
		}
		d.metrics.observe(code, time.Since(start))
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the URL
		}
		return o, fmt.Errorf("webhook %s: %w", a.EventID, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	_ = resp.Body.Close()
	d.metrics.observe(strconv.Itoa(resp.StatusCode), time.Since(start))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		o := answered
		switch resp.StatusCode {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			o = hostFailed
		}
		return o, fmt.Errorf("webhook %s: %w", a.EventID, &StatusError{Code: resp.StatusCode})
	}
	return answered, nil
}

// retryDelay is the delivery server's RetryDelayFunc: exponential backoff from
// RetryInitial doubling up to RetryMax, ±50% jitter.
// A held delivery is due when its host may let it through, jittered, at most
// RetryMax.
func (d *Deliverer) retryDelay(n int, err error, _ *asynq.Task) time.Duration {
	var held *heldError
	if errors.As(err, &held) {
		return held.delay(d.now(), d.cfg.RetryMax)
	}
	return worker.Backoff(d.cfg.RetryInitial, d.cfg.RetryMax, n)
}

// handleError is the delivery server's ErrorHandler: it counts and logs the tasks
// asynq archives (retries used up, or SkipRetry).
func (d *Deliverer) handleError(ctx context.Context, t *asynq.Task, err error) {
	retried, ok1 := asynq.GetRetryCount(ctx)
	maxRetry, ok2 := asynq.GetMaxRetry(ctx)
	if !errors.Is(err, asynq.SkipRetry) && (!ok1 || !ok2 || retried < maxRetry) {
		return
	}
	d.metrics.countDelivery("dead")
	id, _ := asynq.GetTaskID(ctx)
	d.log.Error().Err(err).Str("task_id", id).Str("task_type", t.Type()).Int("retry", retried).
		Msg("webhook archived (dead letter): re-run it from the Asynq UI, queue webhooks")
}
