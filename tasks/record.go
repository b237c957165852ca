package tasks

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/viberq/viberq/provider"
)

// Record is the delivery record of one message, stored as the Redis hash
// "{prefix}msg:{id}". Its JSON (MarshalJSON, JSON) is the status JSON of README, Read a message's state,
// with RFC 3339 times in UTC with milliseconds and null for what is not known yet.
type Record struct {
	ID    string `json:"id"`
	State State  `json:"state"`
	// Channel is ChannelViber or ChannelSMS once delivered, "" before.
	Channel           string                `json:"channel"`
	ProviderMessageID provider.MessageID    `json:"provider_message_id"` // 0 until accepted
	ViberStatus       *provider.ViberStatus `json:"viber_status"`
	SMSMessageID      *provider.MessageID   `json:"sms_message_id"`
	SMSStatus         *provider.SMSStatus   `json:"sms_status"`
	// Attempts counts send attempts. Polls counts the scheduled status polls that
	// asked the provider by their numbers: the highest that asked, plus one, so a poll
	// counts once however often it ran (and a poll the reconciler started under a
	// later number counts the numbers it skipped); a confirming poll, asked for by a
	// callback, is not counted.
	Attempts int `json:"attempts"`
	Polls    int `json:"polls"`
	// Error is the last error, short (e.g. "402 balance empty").
	Error string `json:"error"`
	// SettledBy says what made the record final (SettledByPoll, SettledByCallback,
	// ...; see SettledBy), "" while it is not final.
	SettledBy   string               `json:"settled_by"`
	Queue       string               `json:"queue"`
	MessageType provider.MessageType `json:"message_type"`
	SourceType  provider.SourceType  `json:"source_type"`
	HasSMS      bool                 `json:"has_sms"`
	// DestMasked is the destination with all but its first 3 and last 4 digits
	// masked: the full number is never stored in the record.
	DestMasked string `json:"dest"`
	// PayloadHash identifies the producer's payload (PayloadHash): the same ID with
	// another payload is an idempotency conflict.
	PayloadHash string    `json:"payload_hash"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	SentAt      time.Time `json:"sent_at"`     // last Transition to sending
	AcceptedAt  time.Time `json:"accepted_at"` // move to accepted
	FinalAt     time.Time `json:"final_at"`    // move to a final state
	ExpiresAt   time.Time `json:"expires_at"`  // end of the TTL
	// BatchID is the producer's batch (campaign) ID, "" for none.
	BatchID string `json:"batch_id"`
	// SendAt is the producer's send_at: not sent before it. Zero: send at once.
	SendAt time.Time `json:"send_at"`
	// WebhookURL and WebhookEvents are the message's own status webhook
	// (EnqueueRequest), "" for the configured defaults. They are not in the status
	// JSON: a webhook URL may carry a credential.
	WebhookURL    string `json:"-"`
	WebhookEvents string `json:"-"`
}

// NewRecord returns the queued record of a send task's arguments.
func NewRecord(a SendArgs, now time.Time) Record {
	return Record{
		ID:          a.ID,
		State:       StateQueued,
		Queue:       QueueFor(a.Message),
		MessageType: a.Message.MessageType,
		SourceType:  a.Message.SourceType,
		HasSMS:      a.Message.HasSMSFallback(),
		DestMasked:  provider.MaskPhone(a.Message.DestinationAddr),
		CreatedAt:   now,
		UpdatedAt:   now,
		ExpiresAt:   a.ExpiresAt,
		BatchID:     a.BatchID,
		SendAt:      a.SendAt,

		WebhookURL:    a.WebhookURL,
		WebhookEvents: a.WebhookEvents,
	}
}

// PayloadHash returns the idempotency fingerprint of a producer's message and TTL:
// the first 96 bits of SHA-256 over the message JSON and the TTL, base64url
// (16 characters; it only tells apart payloads sent under the same ID, so 96 bits
// are plenty). The same ID enqueued with another fingerprint is a conflict.
func PayloadHash(m provider.Message, ttl time.Duration) string {
	return requestHash(m, ttl, time.Time{}, "")
}

// Fingerprint returns the idempotency fingerprint of the request a send task
// describes: what the Enqueuer stores for an EnqueueRequest with a's message (its
// validity_period ignored), a.TTL() as the TTL, a.SendAt and a.BatchID. The worker
// gives it to the record it creates for a task written without the Enqueuer, so that
// enqueueing the same request later under that ID is a duplicate, not a conflict.
func Fingerprint(a SendArgs) string {
	m := a.Message
	m.ValidityPeriod = 0
	return requestHash(m, a.TTL(), a.SendAt, a.BatchID)
}

// requestHash is PayloadHash covering send_at and the batch ID too; without them it
// equals PayloadHash, so fingerprints of records written before they existed hold.
func requestHash(m provider.Message, ttl time.Duration, sendAt time.Time, batchID string) string {
	b, err := json.Marshal(m)
	if err != nil { // cannot happen: Message has only strings and integers
		b = fmt.Appendf(nil, "%#v", m)
	}
	return requestHashJSON(b, ttl, sendAt, batchID)
}

// requestHashJSON is requestHash of the message whose JSON is msgJSON.
func requestHashJSON(msgJSON []byte, ttl time.Duration, sendAt time.Time, batchID string) string {
	b := make([]byte, 0, len(msgJSON)+64)
	b = append(b, msgJSON...)
	b = append(b, '\n')
	b = strconv.AppendInt(b, ttl.Milliseconds(), 10)
	if !sendAt.IsZero() {
		b = append(b, "\nsend_at="...)
		b = strconv.AppendInt(b, sendAt.UnixMilli(), 10)
	}
	if batchID != "" {
		b = append(b, "\nbatch="...)
		b = append(b, batchID...)
	}
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// Redis hash field names. Frozen (see the package doc). The record's id (in the key)
// and queue (from source_type) are not stored: a finished record stays under 512
// bytes of Redis memory (TestFinishedRecordSize).
const (
	fState       = "state"
	fChannel     = "channel"
	fProviderID  = "provider_message_id"
	fViberStatus = "viber_status"
	fSMSID       = "sms_message_id"
	fSMSStatus   = "sms_status"
	fAttempts    = "attempts"
	fPolls       = "polls"
	fError       = "error"
	fMessageType = "message_type"
	fSourceType  = "source_type"
	fHasSMS      = "has_sms"
	fDest        = "dest"
	fPayloadHash = "payload_hash"
	fCreatedAt   = "created_at"
	fUpdatedAt   = "updated_at"
	fSentAt      = "sent_at"
	fAcceptedAt  = "accepted_at"
	fFinalAt     = "final_at"
	fExpiresAt   = "expires_at"
	fSettledBy   = "settled_by"
	fBatch       = "batch"
	fSendAt      = "send_at"

	fWebhookURL    = "webhook_url"
	fWebhookEvents = "webhook_events"
)

// appendHashFields appends r as HSET field/value pairs to f, leaving out empty
// values, in a fixed order, state first.
func (r Record) appendHashFields(f []any) []any {
	add := func(k, v string) {
		if v != "" {
			f = append(f, k, v)
		}
	}
	add(fState, string(r.State))
	add(fChannel, r.Channel)
	add(fProviderID, msgIDString(r.ProviderMessageID))
	if r.ViberStatus != nil {
		add(fViberStatus, strconv.Itoa(int(*r.ViberStatus)))
	}
	if r.SMSMessageID != nil {
		add(fSMSID, strconv.FormatInt(int64(*r.SMSMessageID), 10))
	}
	if r.SMSStatus != nil {
		add(fSMSStatus, strconv.Itoa(int(*r.SMSStatus)))
	}
	add(fAttempts, intString(r.Attempts))
	add(fPolls, intString(r.Polls))
	add(fError, r.Error)
	add(fSettledBy, settledCode(r.SettledBy))
	add(fMessageType, intString(int(r.MessageType)))
	add(fSourceType, intString(int(r.SourceType)))
	if r.HasSMS {
		add(fHasSMS, "1")
	}
	add(fDest, r.DestMasked)
	add(fPayloadHash, r.PayloadHash)
	add(fCreatedAt, msString(r.CreatedAt))
	add(fUpdatedAt, msString(r.UpdatedAt))
	add(fSentAt, msString(r.SentAt))
	add(fAcceptedAt, msString(r.AcceptedAt))
	add(fFinalAt, msString(r.FinalAt))
	add(fExpiresAt, msString(r.ExpiresAt))
	add(fBatch, r.BatchID)
	add(fSendAt, msString(r.SendAt))
	add(fWebhookURL, r.WebhookURL)
	add(fWebhookEvents, r.WebhookEvents)
	return f
}

func msgIDString(id provider.MessageID) string {
	if id == 0 {
		return ""
	}
	return strconv.FormatInt(int64(id), 10)
}

func intString(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func msString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

// recordFromHash decodes an HGETALL result of the record of id.
func recordFromHash(id string, h map[string]string) (Record, error) {
	var (
		r    Record
		errs []string
	)
	num := func(k string) int64 {
		v, ok := h[k]
		if !ok || v == "" {
			return 0
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			errs = append(errs, k)
		}
		return n
	}
	ms := func(k string) time.Time {
		if n := num(k); n != 0 {
			return time.UnixMilli(n).UTC()
		}
		return time.Time{}
	}
	r.ID = id
	r.State = State(h[fState])
	r.Channel = h[fChannel]
	r.ProviderMessageID = provider.MessageID(num(fProviderID))
	if _, ok := h[fViberStatus]; ok {
		s := provider.ViberStatus(num(fViberStatus))
		r.ViberStatus = &s
	}
	if _, ok := h[fSMSID]; ok {
		id := provider.MessageID(num(fSMSID))
		r.SMSMessageID = &id
	}
	if _, ok := h[fSMSStatus]; ok {
		s := provider.SMSStatus(num(fSMSStatus))
		r.SMSStatus = &s
	}
	r.Attempts = int(num(fAttempts))
	r.Polls = int(num(fPolls))
	r.Error = h[fError]
	r.SettledBy = settledName(h[fSettledBy])
	r.MessageType = provider.MessageType(num(fMessageType))
	r.SourceType = provider.SourceType(num(fSourceType))
	r.Queue = QueueFor(provider.Message{SourceType: r.SourceType})
	r.HasSMS = h[fHasSMS] == "1"
	r.DestMasked = h[fDest]
	r.PayloadHash = h[fPayloadHash]
	r.CreatedAt = ms(fCreatedAt)
	r.UpdatedAt = ms(fUpdatedAt)
	r.SentAt = ms(fSentAt)
	r.AcceptedAt = ms(fAcceptedAt)
	r.FinalAt = ms(fFinalAt)
	r.ExpiresAt = ms(fExpiresAt)
	r.BatchID = h[fBatch]
	r.SendAt = ms(fSendAt)
	r.WebhookURL = h[fWebhookURL]
	r.WebhookEvents = h[fWebhookEvents]
	if len(errs) > 0 {
		return r, fmt.Errorf("record %s: bad numeric fields %v", provider.MaskID(r.ID), errs)
	}
	if !r.State.Valid() {
		return r, fmt.Errorf("record %s: bad state %q", provider.MaskID(r.ID), r.State)
	}
	return r, nil
}

// asWritten returns r as reading back its hash fields (appendHashFields) returns it:
// times at millisecond precision in UTC (Unix millisecond 0 reads as no time, as
// recordFromHash reads it), the queue derived from the source type, and the fields
// the hash does not hold (none but the ID) as they were.
func (r Record) asWritten() Record {
	ms := func(t time.Time) time.Time {
		if t.IsZero() || t.UnixMilli() == 0 {
			return time.Time{}
		}
		return time.UnixMilli(t.UnixMilli()).UTC()
	}
	r.CreatedAt, r.UpdatedAt, r.SentAt = ms(r.CreatedAt), ms(r.UpdatedAt), ms(r.SentAt)
	r.AcceptedAt, r.FinalAt, r.ExpiresAt, r.SendAt = ms(r.AcceptedAt), ms(r.FinalAt), ms(r.ExpiresAt), ms(r.SendAt)
	r.Queue = QueueFor(provider.Message{SourceType: r.SourceType})
	return r
}

// timeLayout is RFC 3339 with milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

type recordJSON struct {
	ID                string  `json:"id"`
	State             State   `json:"state"`
	Channel           string  `json:"channel"`
	ProviderMessageID *int64  `json:"provider_message_id"`
	ViberStatus       *int    `json:"viber_status"`
	SMSMessageID      *int64  `json:"sms_message_id"`
	SMSStatus         *int    `json:"sms_status"`
	Attempts          int     `json:"attempts"`
	Polls             int     `json:"polls"`
	Error             string  `json:"error"`
	SettledBy         *string `json:"settled_by"`
	Queue             string  `json:"queue"`
	MessageType       int     `json:"message_type"`
	SourceType        int     `json:"source_type"`
	HasSMS            bool    `json:"has_sms"`
	Dest              string  `json:"dest"`
	PayloadHash       string  `json:"payload_hash"`
	CreatedAt         *string `json:"created_at"`
	UpdatedAt         *string `json:"updated_at"`
	SentAt            *string `json:"sent_at"`
	AcceptedAt        *string `json:"accepted_at"`
	FinalAt           *string `json:"final_at"`
	ExpiresAt         *string `json:"expires_at"`
	BatchID           *string `json:"batch_id"`
	SendAt            *string `json:"send_at"`
}

// MarshalJSON writes the status JSON of README, Read a message's state: every field is always present,
// unknown values are null, times are RFC 3339 in UTC with milliseconds.
func (r Record) MarshalJSON() ([]byte, error) {
	ts := func(t time.Time) *string {
		if t.IsZero() {
			return nil
		}
		s := t.UTC().Format(timeLayout)
		return &s
	}
	v := recordJSON{
		ID: r.ID, State: r.State, Channel: r.Channel,
		Attempts: r.Attempts, Polls: r.Polls, Error: r.Error, Queue: r.Queue,
		MessageType: int(r.MessageType), SourceType: int(r.SourceType), HasSMS: r.HasSMS,
		Dest: r.DestMasked, PayloadHash: r.PayloadHash,
		CreatedAt: ts(r.CreatedAt), UpdatedAt: ts(r.UpdatedAt), SentAt: ts(r.SentAt),
		AcceptedAt: ts(r.AcceptedAt), FinalAt: ts(r.FinalAt), ExpiresAt: ts(r.ExpiresAt),
		SendAt: ts(r.SendAt),
	}
	if r.BatchID != "" {
		v.BatchID = &r.BatchID
	}
	if r.SettledBy != "" {
		v.SettledBy = &r.SettledBy
	}
	if r.ProviderMessageID != 0 {
		id := int64(r.ProviderMessageID)
		v.ProviderMessageID = &id
	}
	if r.ViberStatus != nil {
		s := int(*r.ViberStatus)
		v.ViberStatus = &s
	}
	if r.SMSMessageID != nil {
		id := int64(*r.SMSMessageID)
		v.SMSMessageID = &id
	}
	if r.SMSStatus != nil {
		s := int(*r.SMSStatus)
		v.SMSStatus = &s
	}
	return json.Marshal(v)
}

// JSON returns the status JSON of r (see MarshalJSON).
func (r Record) JSON() []byte {
	b, _ := r.MarshalJSON() // cannot fail: only strings, numbers, booleans and nulls
	return b
}
