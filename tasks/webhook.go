package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/viberq/viberq/provider"
)

// The status webhook's task type and queue. Frozen like the others (see the package
// doc): queued webhook tasks outlive deploys.
const (
	// TypeWebhook POSTs one state change of one message to the producer's webhook
	// (payload WebhookArgs). Package worker/webhook delivers it.
	TypeWebhook = "webhook:deliver"
	// QueueWebhooks holds webhook tasks. A separate asynq server with its own
	// concurrency serves it, so a slow or failing receiver never holds a send slot.
	QueueWebhooks = "webhooks"
)

// Which state changes a webhook is told about (EnqueueRequest.WebhookEvents).
const (
	// WebhookFinal: only the move to a final state (one POST per message).
	WebhookFinal = "final"
	// WebhookAll: every state change, queued included.
	WebhookAll = "all"
)

// MaxWebhookURLLen is the longest webhook URL accepted.
const MaxWebhookURLLen = 2048

// WebhookURLRule returns "" when u is acceptable as a message's webhook URL, else the
// rule it breaks: an absolute http or https URL with a host, at most
// MaxWebhookURLLen characters, without a fragment. Credentials in the URL are allowed
// (they are never logged and are redacted in the Asynq UI). Whether the host may be a
// private address is decided at delivery (worker/webhook), where the address is known.
func WebhookURLRule(u string) string {
	if len(u) > MaxWebhookURLLen {
		return fmt.Sprintf("must be at most %d characters, got %d", MaxWebhookURLLen, len(u))
	}
	p, err := url.Parse(u)
	switch {
	case err != nil || !p.IsAbs():
		return "must be an absolute http(s) URL"
	case p.Scheme != "http" && p.Scheme != "https":
		return "must use http or https, got " + provider.MaskPhones(p.Scheme)
	case p.Hostname() == "":
		return "must name a host"
	case p.Fragment != "" || strings.Contains(u, "#"):
		return "must not have a fragment"
	}
	return ""
}

// WebhookEventsRule returns "" when ev is "", WebhookFinal or WebhookAll. Like every
// rule, it shows the producer's value with its phone-like runs masked.
func WebhookEventsRule(ev string) string {
	switch ev {
	case "", WebhookFinal, WebhookAll:
		return ""
	}
	return fmt.Sprintf("must be %q or %q, got %q", WebhookFinal, WebhookAll, provider.MaskPhones(ev))
}

// WebhookArgs is the payload of a TypeWebhook task.
type WebhookArgs struct {
	// V is the payload version, PayloadVersion.
	V int `json:"v"`
	// EventID is the events-stream entry ID of the state change: the task ID is
	// WebhookTaskID(EventID), so one event makes at most one task.
	EventID string `json:"event_id"`
	// ID is the message ID.
	ID string `json:"id"`
	// URL is the message's own webhook URL; "" means the configured default
	// (VIBERQ_WEBHOOK_URL) at the time of delivery. Redacted in the Asynq UI.
	URL string `json:"webhook_url,omitempty"`
	// Body is the JSON document POSTed, the same bytes on every attempt.
	Body json.RawMessage `json:"body"`
	// QueuedAt is when the relay queued the webhook: its retry window counts from it
	// (package worker/webhook). Zero in a task queued before it was written: the
	// window then counts from the event.
	QueuedAt time.Time `json:"queued_at,omitzero"`
}

// Kind returns TypeWebhook.
func (WebhookArgs) Kind() string { return TypeWebhook }

func (a WebhookArgs) version() int { return a.V }

func (a WebhookArgs) check() error {
	switch {
	case a.EventID == "":
		return errors.New("event_id is empty")
	case a.ID == "":
		return errors.New("id is empty")
	case len(a.Body) == 0:
		return errors.New("body is empty")
	}
	return nil
}

// WebhookTaskID returns the Asynq task ID of the webhook of events-stream entry
// eventID: "webhook:{eventID}".
func WebhookTaskID(eventID string) string { return "webhook:" + eventID }

// NewWebhookTask returns the webhook task of a, with the task ID
// WebhookTaskID(a.EventID) and the queue QueueWebhooks; opts come after these
// defaults. A zero a.V is set to PayloadVersion.
func NewWebhookTask(a WebhookArgs, opts ...asynq.Option) (*asynq.Task, error) {
	if a.V == 0 {
		a.V = PayloadVersion
	}
	if err := a.check(); err != nil {
		return nil, fmt.Errorf("new webhook task: %w", err)
	}
	payload, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("new webhook task %s: %w", provider.MaskID(a.ID), err)
	}
	all := append([]asynq.Option{asynq.TaskID(WebhookTaskID(a.EventID)), asynq.Queue(QueueWebhooks)}, opts...)
	return asynq.NewTask(TypeWebhook, payload, all...), nil
}

// WebhookEvents returns the message's own webhook_events ("" when it has none or
// there is no record): one HGET, for a reader that needs only this field to skip an
// event (worker/webhook skips non-final events of messages that want final only).
func (s *Store) WebhookEvents(ctx context.Context, id string) (string, error) {
	v, err := s.rdb.HGet(ctx, s.Key(id), fWebhookEvents).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read webhook_events of %s: %w", provider.MaskID(id), err)
	}
	return v, nil
}
