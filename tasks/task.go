package tasks

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/viberq/viberq/provider"
)

// Task type names. They are stored in Redis with every queued task: never rename one
// (see the package doc).
const (
	// TypeSend sends one message (payload SendArgs).
	TypeSend = "viber:send"
	// TypePoll queries the status of one accepted message (payload PollArgs).
	TypePoll = "viber:poll"
)

// Queue names. Weights are the worker's configuration.
const (
	// QueueCritical holds transactional sends (source_type 2).
	QueueCritical = "critical"
	// QueueDefault holds promotional sends (source_type 1).
	QueueDefault = "default"
	// QueueStatus holds status polls.
	QueueStatus = "status"
)

// PayloadVersion is the version ("v") written into every payload. Decode refuses any
// other version.
const PayloadVersion = 1

// ErrBadPayload is wrapped by every Decode error: the task can never succeed and
// should be archived at once (the worker wraps it with asynq.SkipRetry).
var ErrBadPayload = errors.New("bad task payload")

// Args is a task payload (SendArgs, PollArgs or WebhookArgs); Kind is its task type
// name. A constraint only: a pointer type is not one (Decode reads Kind from the zero
// value).
type Args interface {
	SendArgs | PollArgs | WebhookArgs
	Kind() string
	check() error
	version() int
}

// SendArgs is the payload of a TypeSend task.
type SendArgs struct {
	// V is the payload version, PayloadVersion.
	V int `json:"v"`
	// ID is the message ID (also the Asynq task ID and the record key).
	ID string `json:"id"`
	// Message is the vendor message. Its ValidityPeriod is ignored: the worker sends
	// what remains until ExpiresAt.
	Message provider.Message `json:"message"`
	// ExpiresAt is the end of the message's TTL: not sent after it, and the Viber leg
	// (and with it the SMS fallback) ends there.
	ExpiresAt time.Time `json:"expires_at"`
	// EnqueuedAt is when the producer enqueued the message.
	EnqueuedAt time.Time `json:"enqueued_at"`
	// SendAt is the producer's send_at: the task is scheduled for it and the TTL counts
	// from it. Absent: sent at once.
	SendAt time.Time `json:"send_at,omitzero"`
	// BatchID is the producer's batch (campaign) ID. Absent: none.
	BatchID string `json:"batch_id,omitempty"`
	// WebhookURL and WebhookEvents are the message's own status webhook
	// (EnqueueRequest); absent for the configured defaults.
	WebhookURL    string `json:"webhook_url,omitempty"`
	WebhookEvents string `json:"webhook_events,omitempty"`
}

// Kind returns TypeSend.
func (SendArgs) Kind() string { return TypeSend }

func (a SendArgs) version() int { return a.V }

func (a SendArgs) check() error {
	switch {
	case a.ID == "":
		return errors.New("id is empty")
	case a.ExpiresAt.IsZero():
		return errors.New("expires_at is missing")
	}
	return nil
}

// TTL returns the message's time to live as the producer set it (ExpiresAt minus
// the later of EnqueuedAt and SendAt), or 0 when EnqueuedAt is missing.
func (a SendArgs) TTL() time.Duration {
	if a.EnqueuedAt.IsZero() {
		return 0
	}
	return a.ExpiresAt.Sub(later(a.EnqueuedAt, a.SendAt))
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// PollArgs is the payload of a TypePoll task.
type PollArgs struct {
	// V is the payload version, PayloadVersion.
	V int `json:"v"`
	// ID is the message ID.
	ID string `json:"id"`
	// ProviderMessageID is the provider's message_id returned by send-viber.
	ProviderMessageID provider.MessageID `json:"provider_message_id"`
	// Poll is the number of this poll, from 0 (the first poll after acceptance).
	Poll int `json:"poll"`
	// HasSMS reports whether the message has an SMS fallback leg.
	HasSMS bool `json:"has_sms"`
	// AcceptedAt is when the provider accepted the message.
	AcceptedAt time.Time `json:"accepted_at"`
	// ExpiresAt is the end of the message's TTL.
	ExpiresAt time.Time `json:"expires_at"`
	// Confirm marks the poll a status callback asked for (ConfirmTask): it settles
	// the record when the provider's answer is final and otherwise only records the
	// statuses, leaving the scheduled polls to go on. Optional (absent: false).
	Confirm bool `json:"confirm,omitempty"`
}

// Kind returns TypePoll.
func (PollArgs) Kind() string { return TypePoll }

func (a PollArgs) version() int { return a.V }

func (a PollArgs) check() error {
	switch {
	case a.ID == "":
		return errors.New("id is empty")
	case a.ProviderMessageID <= 0:
		return errors.New("provider_message_id is missing")
	case a.Poll < 0:
		return errors.New("poll is negative")
	case a.AcceptedAt.IsZero() || a.ExpiresAt.IsZero():
		return errors.New("accepted_at or expires_at is missing")
	}
	return nil
}

// QueueFor returns the send queue of m: QueueCritical for transactional messages,
// QueueDefault for everything else.
func QueueFor(m provider.Message) string {
	if m.SourceType == provider.SourceTransactional {
		return QueueCritical
	}
	return QueueDefault
}

// PollTaskID returns the Asynq task ID of poll number n of message id: "poll:{id}:{n}".
// A poll task ID is unique per poll, so a re-delivered poll handler cannot schedule
// the next poll twice.
func PollTaskID(id string, n int) string {
	return "poll:" + id + ":" + strconv.Itoa(n)
}

// NewSendTask returns the send task of a, with the task ID a.ID and the queue
// QueueFor(a.Message); opts come after these defaults, and the last one wins. A zero
// a.V is set to PayloadVersion.
func NewSendTask(a SendArgs, opts ...asynq.Option) (*asynq.Task, error) {
	if a.V == 0 {
		a.V = PayloadVersion
	}
	if err := a.check(); err != nil {
		return nil, fmt.Errorf("new send task: %w", err)
	}
	payload, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("new send task %s: %w", provider.MaskID(a.ID), err)
	}
	all := append([]asynq.Option{asynq.TaskID(a.ID), asynq.Queue(QueueFor(a.Message))}, opts...)
	return asynq.NewTask(TypeSend, payload, all...), nil
}

// NewPollTask returns the poll task of a, with the task ID PollTaskID(a.ID, a.Poll)
// and the queue QueueStatus; opts (such as asynq.ProcessAt) come after these defaults.
// A zero a.V is set to PayloadVersion.
func NewPollTask(a PollArgs, opts ...asynq.Option) (*asynq.Task, error) {
	if a.V == 0 {
		a.V = PayloadVersion
	}
	if err := a.check(); err != nil {
		return nil, fmt.Errorf("new poll task: %w", err)
	}
	payload, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("new poll task %s: %w", provider.MaskID(a.ID), err)
	}
	all := append([]asynq.Option{asynq.TaskID(PollTaskID(a.ID, a.Poll)), asynq.Queue(QueueStatus)}, opts...)
	return asynq.NewTask(TypePoll, payload, all...), nil
}

// Decode unmarshals the payload of t into T after checking t's type name, the payload
// version and the required fields. Every error wraps ErrBadPayload. Unknown JSON
// fields are ignored (optional fields may be added within a version).
func Decode[T Args](t *asynq.Task) (T, error) {
	var a T
	if t == nil {
		return a, fmt.Errorf("decode %s: %w: nil task", a.Kind(), ErrBadPayload)
	}
	if t.Type() != a.Kind() {
		return a, fmt.Errorf("decode %s: %w: task type is %q", a.Kind(), ErrBadPayload, t.Type())
	}
	// One parse on the hot path; the payload is parsed a second time only to tell a
	// wrong or missing version from bad JSON when the first parse fails.
	if err := json.Unmarshal(t.Payload(), &a); err != nil || a.version() != PayloadVersion {
		var head struct {
			V *int `json:"v"`
		}
		var zero T
		if herr := json.Unmarshal(t.Payload(), &head); herr == nil && (head.V == nil || *head.V != PayloadVersion) {
			v := "missing"
			if head.V != nil {
				v = strconv.Itoa(*head.V)
			}
			return zero, fmt.Errorf("decode %s: %w: unsupported version %s (want %d)", a.Kind(), ErrBadPayload, v, PayloadVersion)
		}
		if err == nil {
			err = fmt.Errorf("version is not %d", PayloadVersion)
		}
		return zero, fmt.Errorf("decode %s: %w: %v", a.Kind(), ErrBadPayload, err)
	}
	if err := a.check(); err != nil {
		var zero T
		return zero, fmt.Errorf("decode %s: %w: %v", a.Kind(), ErrBadPayload, err)
	}
	return a, nil
}
