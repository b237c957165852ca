package tasks

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

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

// ErrIDHeld is returned, with nothing written, when the record of a message ID has
// expired but asynq still keeps the finished task (completed or archived) of the
// earlier message with that ID: a record beside it would wait for a task that never
// runs, and asynq refuses a second task of one ID. The ID is free again once asynq
// lets the task go (a completed one after VIBERQ_TASK_RETENTION, an archived one
// when it is deleted or trimmed from the archive). errors.Is holds for both ErrIDHeld
// and ErrIdempotencyConflict: it is a conflict of the ID, refused as one.
var ErrIDHeld = errors.New("message ID still held by the finished asynq task of an earlier message whose record has expired; use another ID")

// idHeldError is ErrIDHeld with the state of the task that holds the ID.
type idHeldError struct{ state string }

func (e idHeldError) Error() string { return ErrIDHeld.Error() + " (that task is " + e.state + ")" }

func (e idHeldError) Is(target error) bool {
	return target == ErrIDHeld || target == ErrIdempotencyConflict
}

// ConflictText is the reason to give a producer for an ErrIdempotencyConflict:
// ErrIDHeld's text when a finished task holds the ID, else ErrIdempotencyConflict's.
func ConflictText(err error) string {
	if errors.Is(err, ErrIDHeld) {
		return ErrIDHeld.Error()
	}
	return ErrIdempotencyConflict.Error()
}

// EnqueuerConfig configures an Enqueuer. Zero values mean the defaults.
type EnqueuerConfig struct {
	// DefaultTTL is the TTL of Viber-only messages without one. Defaults to DefaultTTL.
	DefaultTTL time.Duration
	// SMSTTL is the TTL of messages with text_sms without one. Defaults to
	// DefaultSMSTTL.
	SMSTTL time.Duration
	// TaskRetention keeps the ID of a finished send task reserved in Asynq. Defaults to
	// DefaultTaskRetention. (The record, kept for the Store's Retention, is what makes
	// a later enqueue of the same ID a no-op.) Keep it within the Store's Retention: a
	// finished task that outlives its record makes a retry of its ID ErrIDHeld.
	TaskRetention time.Duration
	// MaxRetry is the send task's retry budget. Defaults to DefaultMaxRetry.
	MaxRetry int
	// TwoWay allows the two-way message types 206 and 208 (they need activation on the
	// provider's side: the vendor page marks them with an asterisk). Off by default.
	TwoWay bool
	// CallbackURL is set as callback_url on messages without one. Empty: none.
	CallbackURL string
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

// publishAgain is how long an Enqueuer trusts that a queue it added is still in
// asynq's set of queues.
const publishAgain = time.Minute

// MaxSendAhead bounds send_at: a message may be scheduled at most this far ahead. Its
// record and task wait in Redis all that time (a queued record has no expiry), so a
// campaign planned further ahead belongs in the producer's calendar, not in the queue.
const MaxSendAhead = 7 * 24 * time.Hour

// Enqueuer validates messages and writes, in one atomic step per message, the queued
// record, its event and the asynq send task (see Enqueue). It is safe for concurrent
// use.
type Enqueuer struct {
	store  *Store
	cfg    EnqueuerConfig
	commit groupCommit
	// published holds when this Enqueuer last added each queue to asynq's set of
	// queues (asynq's client keeps the same: RDB.queuesPublished). It adds it again
	// after publishAgain, so that a queue removed from the set (the Asynq UI's delete,
	// a Redis that lost its data) is back within that time.
	published sync.Map
}

// NewEnqueuer returns an Enqueuer that writes records to store and send tasks in
// asynq's layout on the same Redis connection, in one Lua script per message. client
// must be on store's Redis; it is not used for writing since the task is written
// with the record (the parameter stays so that callers need not change).
func NewEnqueuer(client *asynq.Client, store *Store, cfg EnqueuerConfig) *Enqueuer {
	_ = client
	cfg.DefaultTTL = cmp.Or(cfg.DefaultTTL, DefaultTTL)
	cfg.SMSTTL = cmp.Or(cfg.SMSTTL, DefaultSMSTTL)
	cfg.TaskRetention = cmp.Or(cfg.TaskRetention, DefaultTaskRetention)
	cfg.MaxRetry = cmp.Or(cfg.MaxRetry, DefaultMaxRetry)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Enqueuer{store: store, cfg: cfg}
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
	// TTL is how long the message may wait to be delivered by Viber, counted from
	// SendAt when that is later than now: MinTTL..MaxTTL. Zero: the message's
	// validity_period, else SMSTTL for messages with text_sms, else DefaultTTL. A
	// message with text_sms always goes out with validity_period 40, the only value
	// the vendor allows it (provider.SMSValidityPeriod; a validity_period other than
	// 40 is refused): its SMS fallback follows about 40 s after the send, and its TTL
	// bounds only how long viberq may take to hand it to the provider.
	TTL time.Duration
	// SendAt schedules the message: it is not sent before SendAt, and its TTL counts
	// from it. At most MaxSendAhead ahead. Zero, or not after now: sent at once.
	SendAt time.Time
	// BatchID puts the message in a batch (a campaign) that can be counted
	// (Store.BatchCounts) and cancelled (CancelBatch) as a whole: the same rule as
	// ID. Empty: none.
	BatchID string
	// WebhookURL, optional, receives this message's state changes (package
	// worker/webhook; README "Status webhooks"): an absolute http(s) URL
	// (WebhookURLRule). Empty: the configured default, if any. Not part of the
	// idempotency fingerprint: a repeated ID keeps the first webhook.
	WebhookURL string
	// WebhookEvents chooses which state changes are POSTed: WebhookFinal or WebhookAll.
	// Empty: the configured default.
	WebhookEvents string
}

// EnqueueResult is the outcome of Enqueue.
type EnqueueResult struct {
	// ID is the message ID.
	ID string
	// Duplicate reports that the ID was already known: no new message was created.
	// It is also true when this call's own write landed but its answer was lost and
	// the write was run again (go-redis retries a command after a read timeout or a
	// broken connection): the message was then created once, by this call.
	Duplicate bool
	// Queue is the send queue.
	Queue string
	// ExpiresAt is the end of the TTL (of the first enqueue, for a duplicate).
	ExpiresAt time.Time
	// SendAt is when the message is sent at the earliest; zero when at once.
	SendAt time.Time
	// State is the record's state when Enqueue returned (queued, or further along
	// for a duplicate).
	State State
}

// Enqueue validates req and, in one Redis round trip (shared with concurrent calls:
// see groupCommit), writes the queued record of the message, its "queued" event and
// its send task (scheduled at SendAt, if later than
// now), and returns the message ID. The record and the task are one atomic step: a
// crash cannot leave one without the other.
//
// A bad request returns a *provider.ValidationError naming every bad field at once
// ("id", "ttl", "send_at", "batch_id", "message_type" for a disabled two-way type,
// and the message's fields); nothing is written. Enqueue is idempotent by ID, even
// concurrently: an ID whose record exists returns Duplicate=true and never a second
// send task. The same ID with another message, TTL, send_at or batch returns
// ErrIdempotencyConflict. A duplicate of a queued message whose task is gone (deleted
// in the Asynq UI, or written by a producer that skipped the Enqueuer) gets its task
// back, with the first enqueue's times: one more round trip, only then.
func (e *Enqueuer) Enqueue(ctx context.Context, req EnqueueRequest) (EnqueueResult, error) {
	p, err := e.prepare(req)
	if err != nil {
		return EnqueueResult{}, err
	}
	res, err := e.commit.run(ctx, e.store.rdb, createScript, scriptCall{keys: p.call.keys, args: p.call.args})
	return e.finish(ctx, p, res, err)
}

// prepared is a validated request, ready to write.
type prepared struct {
	args    SendArgs
	hash    string
	call    createCall
	publish bool // the script adds the task's queue to asynq's set of queues
}

// prepare validates req and builds its record, task and script call.
func (e *Enqueuer) prepare(req EnqueueRequest) (prepared, error) {
	now := e.cfg.Now()
	msg, ttl, askedTTL, err := e.validate(req, now)
	if err != nil {
		return prepared{}, err
	}
	hashed := msg
	id := req.ID
	if id == "" {
		u, err := uuid.NewV7()
		if err != nil {
			return prepared{}, fmt.Errorf("enqueue: generate id: %w", err)
		}
		id = u.String()
	}
	if msg.CallbackURL == "" {
		msg.CallbackURL = e.cfg.CallbackURL
	}
	args := SendArgs{V: PayloadVersion, ID: id, Message: msg, EnqueuedAt: now, BatchID: req.BatchID,
		WebhookURL: req.WebhookURL, WebhookEvents: req.WebhookEvents}
	if req.SendAt.After(now) {
		args.SendAt = req.SendAt
	}
	args.ExpiresAt = later(now, args.SendAt).Add(ttl)
	tw, payload, err := e.taskWrite(args)
	if err != nil {
		return prepared{}, err
	}
	// The fingerprint covers what the producer asked for: the message as validated (its
	// validity_period cleared), the TTL as given (0 stays 0, so that a change of the
	// configured defaults does not turn a retry into a conflict; a validity_period and
	// an equal TTL hash the same) and send_at as given (a retry after it has passed is
	// still the same request). The payload holds the message's JSON already, unless a
	// default callback_url was added to it.
	var msgJSON []byte
	if args.Message == hashed {
		msgJSON = messageJSON(payload)
	}
	if msgJSON == nil {
		if msgJSON, err = json.Marshal(hashed); err != nil {
			return prepared{}, fmt.Errorf("enqueue %s: %w", provider.MaskID(id), err)
		}
	}
	hash := requestHashJSON(msgJSON, askedTTL, req.SendAt, req.BatchID)
	return prepared{args: args, hash: hash, call: e.store.createCall(NewRecord(args, now), hash, &tw), publish: !tw.published}, nil
}

// taskWrite returns the asynq send task of a as asynq.Client would write it with
// NewSendTask's options, MaxRetry and Retention, and its payload (a's JSON).
func (e *Enqueuer) taskWrite(a SendArgs) (taskWrite, []byte, error) {
	payload, err := json.Marshal(a)
	if err != nil {
		return taskWrite{}, nil, fmt.Errorf("enqueue %s: %w", provider.MaskID(a.ID), err)
	}
	q := QueueFor(a.Message)
	m := asynqMessage{Type: TypeSend, Payload: payload, ID: a.ID, Queue: q, Retry: e.cfg.MaxRetry,
		Timeout: asynqDefaultTimeout, Retention: e.cfg.TaskRetention}
	at, ok := e.published.Load(q)
	published := ok && e.cfg.Now().Sub(at.(time.Time)) < publishAgain
	return taskWrite{queue: q, msg: m.encode(), at: a.SendAt, published: published}, payload, nil
}

// messageJSON returns the "message" member of payload, a SendArgs JSON document: the
// bytes json.Marshal gives for the message alone (encoding/json writes a nested
// struct as it writes it alone). It lies between `"message":` and `,"expires_at":`:
// SendArgs's field order puts them so, and neither can occur inside the id or the
// message, whose quotes are escaped. nil if they are not found.
func messageJSON(payload []byte) []byte {
	_, rest, ok := bytes.Cut(payload, []byte(`,"message":`))
	if !ok {
		return nil
	}
	m, _, ok := bytes.Cut(rest, []byte(`,"expires_at":`))
	if !ok {
		return nil
	}
	return m
}

// finish turns the reply of p's script into the result: a new message, or a duplicate
// checked against p's fingerprint (and its lost task put back).
func (e *Enqueuer) finish(ctx context.Context, p prepared, reply any, err error) (EnqueueResult, error) {
	id := p.args.ID
	r, err := p.call.result(reply, err)
	if err != nil {
		return EnqueueResult{ID: id}, fmt.Errorf("enqueue %s: %w", provider.MaskID(id), err)
	}
	created, rec := r.created, r.rec
	if p.publish && created && !r.taskTaken {
		e.published.Store(QueueFor(p.args.Message), e.cfg.Now()) // the script added it
	}
	res := EnqueueResult{ID: id, Duplicate: !created, Queue: rec.Queue, ExpiresAt: rec.ExpiresAt, SendAt: rec.SendAt, State: rec.State}
	if created {
		return res, nil
	}
	if rec.PayloadHash != p.hash {
		return EnqueueResult{ID: id}, fmt.Errorf("enqueue %s: %w", provider.MaskID(id), ErrIdempotencyConflict)
	}
	if !r.taskGone {
		return res, nil
	}
	// Queued and its task gone (deleted in the Asynq UI, or never written by a raw
	// producer): put it back with the first enqueue's times, unless it is back or the
	// record moved on meanwhile.
	a := p.args
	a.EnqueuedAt, a.ExpiresAt, a.SendAt = rec.CreatedAt, rec.ExpiresAt, rec.SendAt
	if !a.SendAt.After(e.cfg.Now()) {
		a.SendAt = time.Time{}
	}
	tw, _, err := e.taskWrite(a)
	if err != nil {
		return EnqueueResult{ID: id}, err
	}
	if err := e.restoreTask(ctx, id, p.hash, tw); err != nil {
		return EnqueueResult{ID: id}, fmt.Errorf("enqueue %s: %w", provider.MaskID(id), err)
	}
	return res, nil
}

// restoreScript writes the send task of a queued record whose task is gone. KEYS and
// ARGV are createLua's (only KEYS[1], KEYS[5..7], ARGV[3] and ARGV[6..9] are read),
// with ARGV[10] the payload hash. Returns 0 when the record is not queued with that
// hash, else taskLua's answer: 2 when the task exists, 1 when written.
var restoreScript = redis.NewScript(`
local r = redis.call('HMGET', KEYS[1], 'state', 'payload_hash')
if r[1] ~= 'queued' or r[2] ~= ARGV[10] then return 0 end
` + taskLua)

func (e *Enqueuer) restoreTask(ctx context.Context, id, hash string, tw taskWrite) error {
	rk := e.store.Key(id)
	keys := []string{rk, rk, rk, rk, "", "", ""} // KEYS[2..4] are not read
	args := tw.appendTo(keys, []any{"", "", id, "", ""}, id, e.cfg.Now())
	args = append(args, hash)
	if err := restoreScript.Run(ctx, e.store.rdb, keys, args...).Err(); err != nil {
		return fmt.Errorf("restore task: %w", err)
	}
	return nil
}

// ttlRangeRule returns "" when ttl is 0 (none asked) or within MinTTL..MaxTTL, else the rule
// it breaks, which shows ttl with its phone-like runs masked ("1.380501234s").
func ttlRangeRule(ttl time.Duration) string {
	if ttl == 0 || (ttl >= MinTTL && ttl <= MaxTTL) {
		return ""
	}
	return fmt.Sprintf("must be between %s and %s, got %s", MinTTL, MaxTTL, provider.MaskPhones(ttl.String()))
}

// RequestFaults returns every rule req breaks that can be checked without an
// Enqueuer's settings: the id's, the batch ID's, the TTL's, the webhook's and the
// message's own (provider.Message.Validate; its validity_period is ignored when a TTL
// is given, as Enqueue ignores it). Enqueue refuses these and two more that need its
// settings (send_at's horizon from its clock, VIBERQ_TWO_WAY); the decoders list
// these beside a type error, and the HTTP API beside a fault of its header, so that
// one refusal names every bad field.
func RequestFaults(req EnqueueRequest) []provider.FieldError {
	var fields []provider.FieldError
	if req.ID != "" {
		if r := IDRule(req.ID); r != "" {
			fields = append(fields, provider.FieldError{Field: "id", Rule: r})
		}
	}
	if req.BatchID != "" {
		if r := IDRule(req.BatchID); r != "" {
			fields = append(fields, provider.FieldError{Field: "batch_id", Rule: r})
		}
	}
	msg := req.Message
	if req.TTL != 0 {
		msg.ValidityPeriod = 0 // ignored: the TTL rules
		if r := ttlRangeRule(req.TTL); r != "" {
			fields = append(fields, provider.FieldError{Field: "ttl", Rule: r})
		}
	}
	if req.WebhookURL != "" {
		if r := WebhookURLRule(req.WebhookURL); r != "" {
			fields = append(fields, provider.FieldError{Field: "webhook_url", Rule: r})
		}
	}
	if r := WebhookEventsRule(req.WebhookEvents); r != "" {
		fields = append(fields, provider.FieldError{Field: "webhook_events", Rule: r})
	}
	var ve *provider.ValidationError
	if errors.As(msg.Validate(), &ve) {
		fields = append(fields, ve.Fields...)
	}
	return fields
}

// validate checks req and returns the message to store (validity_period cleared),
// the effective TTL, and the TTL the producer asked for (the TTL, else the
// validity_period, else 0) that the fingerprint covers.
func (e *Enqueuer) validate(req EnqueueRequest, now time.Time) (msg provider.Message, ttl, asked time.Duration, err error) {
	fields := RequestFaults(req)
	if ahead := req.SendAt.Sub(now); ahead > MaxSendAhead {
		fields = append(fields, provider.FieldError{Field: "send_at",
			Rule: fmt.Sprintf("must be at most %s ahead, got %s", MaxSendAhead, ahead.Truncate(time.Second))})
	}
	if req.Message.MessageType.TwoWay() && !e.cfg.TwoWay {
		fields = append(fields, provider.FieldError{Field: "message_type",
			Rule: "two-way types 206/208 are disabled (VIBERQ_TWO_WAY)"})
	}
	if len(fields) > 0 {
		return provider.Message{}, 0, 0, &provider.ValidationError{Fields: fields}
	}
	msg, ttl = req.Message, req.TTL
	if ttl == 0 && msg.ValidityPeriod != 0 {
		// The producer's validity_period is the TTL; Validate checked its range.
		ttl = time.Duration(msg.ValidityPeriod) * time.Second
	}
	msg.ValidityPeriod = 0 // the TTL rules
	asked = ttl
	if ttl == 0 {
		ttl = e.cfg.DefaultTTL
		if msg.HasSMSFallback() {
			ttl = e.cfg.SMSTTL
		}
	}
	return msg, ttl, asked, nil
}

// ValidID reports whether id is a valid message ID: 1..MaxIDLen characters of
// [A-Za-z0-9._:-].
func ValidID(id string) bool { return IDRule(id) == "" }

// IDRule returns "" when id is a valid message or batch ID, else the rule it breaks.
func IDRule(id string) string {
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
