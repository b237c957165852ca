package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/viberq/viberq/tasks"
)

// EventType is Body.Type.
const EventType = "message.state_changed"

// Body is the JSON document POSTed for one state change.
type Body struct {
	// EventID is the events-stream entry ID; also the Viberq-Event-Id header.
	EventID string `json:"event_id"`
	// Type is EventType.
	Type string `json:"type"`
	// MessageID is the message's ID.
	MessageID string `json:"message_id"`
	// From is the state before ("" when the message was created), To the state after.
	From tasks.State `json:"from"`
	To   tasks.State `json:"to"`
	// Final reports whether To is final: the last POST for this message.
	Final bool `json:"final"`
	// At is when the state changed, RFC 3339 with milliseconds.
	At string `json:"at"`
	// Message is the record (the status JSON of GET /v1/messages/{id}) as it was when
	// the relay prepared this POST: with "all" events it may already be past To.
	Message json.RawMessage `json:"message"`
}

// Relay turns entries of the events stream into webhook tasks (see the package doc).
type Relay struct {
	cfg     Config
	rdb     redis.UniversalClient
	store   *tasks.Store
	client  *asynq.Client
	log     zerolog.Logger
	metrics *Metrics
	now     func() time.Time // dates each webhook's QueuedAt
}

// EnsureGroup creates the consumer group at the end of the events stream (creating
// the stream if needed) unless it exists.
func (r *Relay) EnsureGroup(ctx context.Context) error {
	err := r.rdb.XGroupCreateMkStream(ctx, r.store.EventsKey(), r.cfg.Group, "$").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("webhook: create consumer group %s: %w", r.cfg.Group, err)
	}
	return nil
}

// Run reads and relays events until ctx is done. It claims the entries of dead
// relays every ClaimIdle/2. Redis errors are logged and retried after a pause.
func (r *Relay) Run(ctx context.Context) error {
	nextClaim := time.Now()
	pause := func() error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
			return nil
		}
	}
	for ctx.Err() == nil {
		if !time.Now().Before(nextClaim) {
			if _, err := r.Claim(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn().Err(err).Msg("claim pending events")
			}
			nextClaim = time.Now().Add(r.cfg.ClaimIdle / 2)
		}
		if _, err := r.Step(ctx, r.cfg.Block); err != nil {
			if ctx.Err() != nil {
				break
			}
			r.log.Warn().Err(err).Msg("read events")
			if err := pause(); err != nil {
				break
			}
		}
	}
	return ctx.Err()
}

// Step reads up to Batch new events (waiting at most block) and relays them. It
// returns how many it acknowledged.
func (r *Relay) Step(ctx context.Context, block time.Duration) (int, error) {
	res, err := r.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: r.cfg.Group, Consumer: r.cfg.Consumer,
		Streams: []string{r.store.EventsKey(), ">"},
		Count:   r.cfg.Batch, Block: block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		if strings.HasPrefix(err.Error(), "NOGROUP") {
			// The stream or group was deleted (FLUSHDB, a reset): make it again.
			return 0, r.EnsureGroup(ctx)
		}
		return 0, fmt.Errorf("webhook: read events: %w", err)
	}
	var msgs []redis.XMessage
	for _, s := range res {
		msgs = append(msgs, s.Messages...)
	}
	return r.relayAll(ctx, msgs)
}

// Claim takes over the entries that other consumers read more than ClaimIdle ago
// and never acknowledged (a relay that died) and relays them.
func (r *Relay) Claim(ctx context.Context) (int, error) {
	start, n := "0-0", 0
	for {
		msgs, next, err := r.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: r.store.EventsKey(), Group: r.cfg.Group, Consumer: r.cfg.Consumer,
			MinIdle: r.cfg.ClaimIdle, Start: start, Count: r.cfg.Batch,
		}).Result()
		if err != nil {
			if strings.HasPrefix(err.Error(), "NOGROUP") {
				return n, nil
			}
			return n, fmt.Errorf("webhook: claim events: %w", err)
		}
		k, err := r.relayAll(ctx, msgs)
		n += k
		if err != nil {
			return n, err
		}
		if next == "0-0" || next == "" || len(msgs) == 0 {
			return n, nil
		}
		start = next
	}
}

// relayAll relays msgs and acknowledges those that are done (queued, duplicate or
// not wanted). An entry that failed stays pending and is claimed again later.
func (r *Relay) relayAll(ctx context.Context, msgs []redis.XMessage) (int, error) {
	done := make([]string, 0, len(msgs))
	var firstErr error
	for _, m := range msgs {
		result, err := r.relay(ctx, m)
		r.metrics.countEvent(result)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		done = append(done, m.ID)
	}
	if len(done) > 0 {
		if err := r.rdb.XAck(ctx, r.store.EventsKey(), r.cfg.Group, done...).Err(); err != nil {
			return 0, fmt.Errorf("webhook: ack events: %w", err)
		}
	}
	return len(done), firstErr
}

// relay handles one entry; the result is the metric label.
func (r *Relay) relay(ctx context.Context, m redis.XMessage) (string, error) {
	ev, err := tasks.ParseEvent(m)
	if err != nil || ev.ID == "" || !ev.To.Valid() {
		r.log.Warn().Str("event_id", m.ID).Msg("undecodable event skipped")
		return "skipped", nil
	}
	if !ev.To.Final() && r.cfg.Events != tasks.WebhookAll {
		// Most messages want their final state only: one HGET tells, not the record.
		own, err := r.store.WebhookEvents(ctx, ev.ID)
		if err != nil {
			return "error", err
		}
		if own != tasks.WebhookAll {
			return "skipped", nil
		}
	}
	rec, err := r.store.Get(ctx, ev.ID)
	if errors.Is(err, tasks.ErrNotFound) {
		return "skipped", nil // expired after the retention: nobody to tell about
	}
	if err != nil {
		return "error", err
	}
	url, events := rec.WebhookURL, rec.WebhookEvents
	if url == "" && r.cfg.DefaultURL == "" {
		return "skipped", nil
	}
	if events == "" {
		events = r.cfg.Events
	}
	if events != tasks.WebhookAll && !ev.To.Final() {
		return "skipped", nil
	}
	body, err := json.Marshal(Body{
		EventID: ev.StreamID, Type: EventType, MessageID: ev.ID, From: ev.From, To: ev.To,
		Final: ev.To.Final(), At: ev.At.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		Message: rec.JSON(),
	})
	if err != nil {
		return "error", fmt.Errorf("webhook: body of %s: %w", ev.StreamID, err)
	}
	task, err := tasks.NewWebhookTask(tasks.WebhookArgs{EventID: ev.StreamID, ID: ev.ID, URL: url, Body: body, QueuedAt: r.now()})
	if err != nil {
		return "error", err
	}
	_, err = r.client.EnqueueContext(ctx, task,
		asynq.MaxRetry(r.cfg.MaxRetry), asynq.Retention(r.cfg.TaskRetention),
		asynq.Timeout(r.cfg.Timeout+5*time.Second))
	switch {
	case errors.Is(err, asynq.ErrTaskIDConflict):
		return "duplicate", nil
	case err != nil:
		return "error", fmt.Errorf("webhook: enqueue %s: %w", ev.StreamID, err)
	}
	return "queued", nil
}
