package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// Alert kinds raised by the worker.
const (
	AlertBalance      = "balance_empty" // provider 402 / code 3: top up, then resume the queues
	AlertUnauthorized = "unauthorized"  // provider 401/403: fix VIBERQ_DT_API_KEY
	// AlertRateLimitHint: a 429 asked for a pause longer than Config.MaxRetryAfter;
	// viberq paused for MaxRetryAfter only and tries again. Ask the provider why (a
	// quota? a block?); `viberq resume` lifts the pause at once.
	AlertRateLimitHint = "rate_limit_hint_capped"
)

// Alert is one operator notification. Fields carry only safe values (message IDs,
// masked destinations, HTTP status, vendor code, the provider's reason): never a
// secret, a message text or a full phone number.
type Alert struct {
	Kind    string            `json:"kind"`
	Summary string            `json:"summary"`
	Fields  map[string]string `json:"fields,omitempty"`
	At      time.Time         `json:"at"`
}

// Alerter delivers alerts. Implementations must be safe for concurrent use.
type Alerter interface {
	Alert(ctx context.Context, a Alert) error
}

// AlerterFunc adapts a function to Alerter.
type AlerterFunc func(ctx context.Context, a Alert) error

// Alert calls f.
func (f AlerterFunc) Alert(ctx context.Context, a Alert) error { return f(ctx, a) }

// LogAlerter writes each alert as one error-level zerolog line (message "alert").
type LogAlerter struct{ Logger zerolog.Logger }

// Alert logs a.
func (l LogAlerter) Alert(_ context.Context, a Alert) error {
	ev := l.Logger.Error().Str("alert_kind", a.Kind).Time("alert_at", a.At)
	d := zerolog.Dict()
	for k, v := range a.Fields {
		d = d.Str(k, v)
	}
	ev.Dict("alert_fields", d).Msg("alert: " + a.Summary)
	return nil
}

// DefaultWebhookTimeout bounds one webhook POST.
const DefaultWebhookTimeout = 5 * time.Second

// WebhookAlerter POSTs each alert as JSON ({"kind","summary","fields","at","source"})
// to a URL (VIBERQ_ALERT_WEBHOOK_URL). A non-2xx answer is an error. The URL may hold
// a token, so it never appears in an error string.
type WebhookAlerter struct {
	url    string
	client *http.Client
}

// NewWebhookAlerter validates rawURL (http or https) and returns the alerter. client
// may be nil (a new client with the timeout); timeout ≤ 0 means DefaultWebhookTimeout.
func NewWebhookAlerter(rawURL string, timeout time.Duration, client *http.Client) (*WebhookAlerter, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("alert webhook: the URL must be an absolute http or https URL")
	}
	if timeout <= 0 {
		timeout = DefaultWebhookTimeout
	}
	if client == nil {
		client = &http.Client{Timeout: timeout}
	}
	return &WebhookAlerter{url: rawURL, client: client}, nil
}

// String never shows the URL (it may hold a token).
func (w *WebhookAlerter) String() string { return "WebhookAlerter{url:[REDACTED]}" }

type webhookBody struct {
	Alert
	Source string `json:"source"`
}

// Alert POSTs a.
func (w *WebhookAlerter) Alert(ctx context.Context, a Alert) error {
	body, err := json.Marshal(webhookBody{Alert: a, Source: "viberq"})
	if err != nil {
		return fmt.Errorf("alert webhook: %w", err)
	}
	if w.client.Timeout <= 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultWebhookTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return errors.New("alert webhook: cannot build request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "viberq")
	resp, err := w.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the URL
		}
		return fmt.Errorf("alert webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("alert webhook: HTTP %d", resp.StatusCode)
	}
	return nil
}

// DedupAlerter passes at most ONE alert per kind per window to the next Alerter,
// across every process sharing the Redis: the first caller wins a SET NX PX on
// "{prefix}alert:{kind}". If the next Alerter fails, the key is removed so that a later
// occurrence tries again.
type DedupAlerter struct {
	rdb    redis.UniversalClient
	prefix string
	window time.Duration
	next   Alerter
}

// DefaultAlertWindow is the dedup window when none is given.
const DefaultAlertWindow = 10 * time.Minute

// NewDedupAlerter wraps next. window ≤ 0 means DefaultAlertWindow.
func NewDedupAlerter(rdb redis.UniversalClient, prefix string, window time.Duration, next Alerter) *DedupAlerter {
	if window <= 0 {
		window = DefaultAlertWindow
	}
	return &DedupAlerter{rdb: rdb, prefix: prefix, window: window, next: next}
}

// Alert forwards a unless an alert of the same kind went out within the window.
func (d *DedupAlerter) Alert(ctx context.Context, a Alert) error {
	key := d.prefix + "alert:" + a.Kind
	ok, err := d.rdb.SetNX(ctx, key, a.At.UTC().Format(time.RFC3339Nano), d.window).Result()
	if err != nil {
		return fmt.Errorf("alert dedup: %w", err)
	}
	if !ok {
		return nil
	}
	if err := d.next.Alert(ctx, a); err != nil {
		_ = d.rdb.Del(context.WithoutCancel(ctx), key).Err()
		return err
	}
	return nil
}
