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
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

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
}

// ProcessTask POSTs the task's body to its URL (or the default URL), signed. A 2xx
// answer returns nil; a refused address, a missing URL or a bad payload is archived
// at once (asynq.SkipRetry); any other failure is returned for a retry.
func (d *Deliverer) ProcessTask(ctx context.Context, t *asynq.Task) error {
	a, err := tasks.Decode[tasks.WebhookArgs](t)
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	target := a.URL
	if target == "" {
		target = d.cfg.DefaultURL
	}
	lg := d.log.With().Str("event_id", a.EventID).Str("msg_id", a.ID).Str("host", hostOf(target)).Logger()
	if target == "" {
		lg.Warn().Msg("webhook has no URL (VIBERQ_WEBHOOK_URL was unset); archived")
		return fmt.Errorf("webhook %s: no URL: %w", a.EventID, asynq.SkipRetry)
	}
	err = d.post(ctx, target, a)
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
	retried, _ := asynq.GetRetryCount(ctx)
	lg.Info().Err(err).Int("retry", retried).Msg("webhook failed; will retry")
	return err
}

// post sends one attempt. Errors never contain the URL (it may carry a credential).
func (d *Deliverer) post(ctx context.Context, target string, a tasks.WebhookArgs) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(a.Body))
	if err != nil {
		return fmt.Errorf("webhook %s: bad URL", a.EventID)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(EventIDHeader, a.EventID)
	req.Header.Set(SignatureHeader, SignatureValue(d.cfg.Secrets, d.now(), a.Body))
	start := time.Now()
	resp, err := d.http.Do(req)
	if err != nil {
		code := "transport"
		if errors.Is(err, ErrPrivateAddress) {
			code = "refused"
		}
		d.metrics.observe(code, time.Since(start))
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the URL
		}
		return fmt.Errorf("webhook %s: %w", a.EventID, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	_ = resp.Body.Close()
	d.metrics.observe(strconv.Itoa(resp.StatusCode), time.Since(start))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook %s: %w", a.EventID, &StatusError{Code: resp.StatusCode})
	}
	return nil
}

// retryDelay is the delivery server's RetryDelayFunc: exponential backoff from
// RetryInitial doubling up to RetryMax, ±50% jitter.
func (d *Deliverer) retryDelay(n int, _ error, _ *asynq.Task) time.Duration {
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

// hostOf returns the host of a URL for logs (never the userinfo, path or query).
func hostOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return p.Host
}
