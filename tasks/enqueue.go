package tasks

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/viberq/viberq/provider"
)

// Enqueuer defaults and limits.
const (
	// DefaultTTL is the TTL of a Viber-only message.
	DefaultTTL = time.Hour
	// DefaultSMSTTL is the TTL of a message with an SMS fallback: the wait before the
	// SMS is sent: the provider's only validity_period for Viber + SMS
	// (provider.SMSValidityPeriod).
	DefaultSMSTTL = 40 * time.Second
	// DefaultTaskRetention keeps a finished send task's ID reserved in Asynq.
	DefaultTaskRetention = time.Hour
	// DefaultMaxRetry is the send task's retry budget. 429s do not use it up, and 5xx
	// retries are bounded by the TTL, so it is a backstop rather than a policy.
	DefaultMaxRetry = 100
	// MinTTL and MaxTTL bound a message's TTL. The TTL is how long the message is worth
	// sending: viberq never sends it later. It may be shorter than the provider's
	// validity_period floor (40 s) — a one-time code worthless after 20 s — in which case
	// the worker sends validity_period 40, the provider's minimum. MaxTTL is the
	// provider's maximum validity_period (6 h).
	MinTTL = time.Second
	MaxTTL = time.Duration(provider.MaxValidityPeriod) * time.Second
	// MaxIDLen is the longest message ID (idempotency key).
	MaxIDLen = 128
)

// ErrIdempotencyConflict is returned when a message ID is enqueued again with another
// message or TTL.
var ErrIdempotencyConflict = errors.New("idempotency key reused with a different message")

// EnqueuerConfig configures an Enqueuer. Zero values mean the defaults.
type EnqueuerConfig struct {
	// DefaultTTL is the TTL of Viber-only messages without one. Defaults to DefaultTTL.
	DefaultTTL time.Duration
	// SMSTTL is the TTL of messages with text_sms without one. Defaults to
	// DefaultSMSTTL.
	SMSTTL time.Duration
	// TaskRetention keeps the ID of a finished send task reserved in Asynq. Defaults to
	// DefaultTaskRetention. (The record, kept for the Store's Retention, is what makes
	// a later enqueue of the same ID a no-op.)
	TaskRetention time.Duration
	// MaxRetry is the send task's retry budget. Defaults to DefaultMaxRetry.
	MaxRetry int
	// TwoWay allows the two-way message types 206 and 208 (they need activation on the
	// provider's side, reference Q19). Off by default.
	TwoWay bool
	// CallbackURL is set as callback_url on messages without one. Empty: none.
	CallbackURL string
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

// Enqueuer validates messages, writes their queued records and enqueues their send
// tasks. It is safe for concurrent use.
type Enqueuer struct {
	client *asynq.Client
	store  *Store
	cfg    EnqueuerConfig
}

// NewEnqueuer returns an Enqueuer that enqueues on client and writes records to store.
func NewEnqueuer(client *asynq.Client, store *Store, cfg EnqueuerConfig) *Enqueuer {
	cfg.DefaultTTL = cmp.Or(cfg.DefaultTTL, DefaultTTL)
	cfg.SMSTTL = cmp.Or(cfg.SMSTTL, DefaultSMSTTL)
	cfg.TaskRetention = cmp.Or(cfg.TaskRetention, DefaultTaskRetention)
	cfg.MaxRetry = cmp.Or(cfg.MaxRetry, DefaultMaxRetry)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Enqueuer{client: client, store: store, cfg: cfg}
}

// EnqueueRequest is one message to send.
type EnqueueRequest struct {
	// ID is the producer's idempotency key: 1..128 characters of [A-Za-z0-9._:-].
	// Empty: a UUIDv7 is generated.
	ID string
	// Message is the message. Its validity_period is not sent as given: when TTL is
	// zero it is used as the TTL, otherwise ignored; the worker sends what remains
	// of the TTL.
	Message provider.Message
	// TTL is how long the message may wait to be delivered by Viber: MinTTL..MaxTTL.
	// Zero: the message's validity_period, else SMSTTL for messages with text_sms, else
	// DefaultTTL. A message with text_sms always goes out with validity_period 40, the
	// only value the vendor allows it (provider.SMSValidityPeriod; a validity_period
	// other than 40 is refused): its SMS fallback follows about 40 s after the send,
	// and its TTL bounds only how long viberq may take to hand it to the provider.
	TTL time.Duration
}

// EnqueueResult is the outcome of Enqueue.
type EnqueueResult struct {
	// ID is the message ID.
	ID string
	// Duplicate reports that the ID was already known: no new message was created.
	Duplicate bool
	// Queue is the send queue.
	Queue string
	// ExpiresAt is the end of the TTL (of the first enqueue, for a duplicate).
	ExpiresAt time.Time
	// State is the record's state when Enqueue returned (queued, or further along
	// for a duplicate).
	State State
}

// Enqueue validates req, writes the queued record of the message and enqueues its
// send task, and returns the message ID.
//
// A bad request returns a *provider.ValidationError naming every bad field at once
// ("id", "ttl", "message_type" for a disabled two-way type, and the message's
// fields); nothing is written. Enqueue is idempotent by ID, even concurrently: an ID
// whose record exists returns Duplicate=true and never a second send task. The same
// ID with another message or TTL returns ErrIdempotencyConflict. If a previous
// Enqueue wrote the record but failed before the task, the task is enqueued now.
//
// Cost on the fast path: two Redis round trips (one Lua script for the record, one
// for the Asynq task), no reads.
func (e *Enqueuer) Enqueue(ctx context.Context, req EnqueueRequest) (EnqueueResult, error) {
	msg, ttl, hash, err := e.validate(req)
	if err != nil {
		return EnqueueResult{}, err
	}
	id := req.ID
	if id == "" {
		u, err := uuid.NewV7()
		if err != nil {
			return EnqueueResult{}, fmt.Errorf("enqueue: generate id: %w", err)
		}
		id = u.String()
	}
	if msg.CallbackURL == "" {
		msg.CallbackURL = e.cfg.CallbackURL
	}
	now := e.cfg.Now()
	args := SendArgs{V: PayloadVersion, ID: id, Message: msg, ExpiresAt: now.Add(ttl), EnqueuedAt: now}

	created, rec, err := e.store.Create(ctx, NewRecord(args, now), hash)
	if err != nil {
		return EnqueueResult{}, fmt.Errorf("enqueue %s: %w", id, err)
	}
	res := EnqueueResult{ID: id, Duplicate: !created, Queue: rec.Queue, ExpiresAt: rec.ExpiresAt, State: rec.State}
	if !created {
		if rec.PayloadHash != hash {
			return EnqueueResult{}, fmt.Errorf("enqueue %s: %w", id, ErrIdempotencyConflict)
		}
		if rec.State != StateQueued {
			return res, nil
		}
		// Queued: the task may be missing (an earlier Enqueue died between the record
		// and the task). Enqueue it with the original times; a conflict means it exists.
		args.EnqueuedAt, args.ExpiresAt = rec.CreatedAt, rec.ExpiresAt
	}
	task, err := NewSendTask(args)
	if err != nil {
		return EnqueueResult{}, fmt.Errorf("enqueue %s: %w", id, err)
	}
	_, err = e.client.EnqueueContext(ctx, task,
		asynq.MaxRetry(e.cfg.MaxRetry), asynq.Retention(e.cfg.TaskRetention))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) { // a conflict: the task exists
		return EnqueueResult{}, fmt.Errorf("enqueue %s: %w", id, err)
	}
	return res, nil
}

// validate checks req and returns the message to store (validity_period cleared),
// the effective TTL and the payload hash.
func (e *Enqueuer) validate(req EnqueueRequest) (provider.Message, time.Duration, string, error) {
	var fields []provider.FieldError
	if req.ID != "" {
		if r := idRule(req.ID); r != "" {
			fields = append(fields, provider.FieldError{Field: "id", Rule: r})
		}
	}
	msg := req.Message
	ttl := req.TTL
	switch {
	case ttl == 0 && msg.ValidityPeriod != 0:
		// The producer's validity_period is the TTL; Validate checks its range.
		ttl = time.Duration(msg.ValidityPeriod) * time.Second
	case ttl != 0:
		msg.ValidityPeriod = 0 // ignored: the TTL rules
		if ttl < MinTTL || ttl > MaxTTL {
			fields = append(fields, provider.FieldError{Field: "ttl",
				Rule: fmt.Sprintf("must be between %s and %s, got %s", MinTTL, MaxTTL, ttl)})
		}
	}
	if msg.MessageType.TwoWay() && !e.cfg.TwoWay {
		fields = append(fields, provider.FieldError{Field: "message_type",
			Rule: "two-way types 206/208 are disabled (VIBERQ_TWO_WAY)"})
	}
	if err := msg.Validate(); err != nil {
		var ve *provider.ValidationError
		if !errors.As(err, &ve) {
			return provider.Message{}, 0, "", fmt.Errorf("enqueue: %w", err)
		}
		fields = append(fields, ve.Fields...)
	}
	if len(fields) > 0 {
		return provider.Message{}, 0, "", &provider.ValidationError{Fields: fields}
	}
	// The hash covers what the producer asked for (TTL 0 stays 0, so a change of the
	// configured defaults does not turn a retry into a conflict; validity_period and
	// an equal TTL hash the same).
	msg.ValidityPeriod = 0
	hash := PayloadHash(msg, ttl)
	if ttl == 0 {
		ttl = e.cfg.DefaultTTL
		if msg.HasSMSFallback() {
			ttl = e.cfg.SMSTTL
		}
	}
	return msg, ttl, hash, nil
}

// ValidID reports whether id is a valid message ID: 1..MaxIDLen characters of
// [A-Za-z0-9._:-].
func ValidID(id string) bool { return idRule(id) == "" }

func idRule(id string) string {
	if len(id) > MaxIDLen {
		return fmt.Sprintf("must be at most %d characters, got %d", MaxIDLen, len(id))
	}
	if id == "" {
		return "must not be empty"
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return "may contain only letters, digits and . _ : -"
		}
	}
	return ""
}
