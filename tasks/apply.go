package tasks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/viberq/viberq/provider"
)

// What settled a record: the values of Record.SettledBy ("settled_by" in the record
// hash and the status JSON). Stored with every move to a final state: never rename
// one.
const (
	// SettledBySend: the send path decided without a status answer (expired before
	// sending, rejected, dropped, unknown after an ambiguous send).
	SettledBySend = "send"
	// SettledByPoll: the provider's answer to a scheduled status poll.
	SettledByPoll = "poll"
	// SettledByCallback: the provider's answer to the status poll that a status
	// callback asked for at once (a confirming poll). A callback alone never settles.
	SettledByCallback = "callback"
	// SettledByDeadline: polling ended without a final answer (expired at the polling
	// deadline, or unknown when the status window closed or the polls gave up).
	SettledByDeadline = "deadline"
	// SettledByOperator: cancelled by a producer or an operator.
	SettledByOperator = "operator"
	// SettledByReconciler: a repair of a record left without a way to finality.
	SettledByReconciler = "reconciler"
)

// settledBy lists the SettledBy values; the record hash stores each as its first
// letter, which keeps a finished record under 512 bytes (TestFinishedRecordSize).
var settledBy = []string{SettledBySend, SettledByPoll, SettledByCallback, SettledByDeadline, SettledByOperator, SettledByReconciler}

// settledCode returns the hash form of a SettledBy value: its first letter.
func settledCode(by string) string {
	for _, v := range settledBy {
		if v == by {
			return v[:1]
		}
	}
	return by
}

// settledName returns the SettledBy value of a hash code; an unknown code as is.
func settledName(code string) string {
	for _, v := range settledBy {
		if v[:1] == code {
			return v
		}
	}
	return code
}

// DefaultSettledBy is what Transition records as settled_by when the Update names
// none: operator for cancelled, send when every from state is queued or sending,
// deadline when the record leaves accepted without a status answer.
func DefaultSettledBy(from []State, to State) string {
	if to == StateCancelled {
		return SettledByOperator
	}
	for _, f := range from {
		if f != StateQueued && f != StateSending {
			return SettledByDeadline
		}
	}
	return SettledBySend
}

// Source is where a status answer comes from.
type Source string

// Sources of status answers.
const (
	// SourcePoll: receive-viber, asked by a scheduled poll.
	SourcePoll Source = "poll"
	// SourceConfirm: receive-viber, asked by the poll that confirms a status callback.
	SourceConfirm Source = "confirm"
	// SourceCallback: a status callback. Anyone holding the callback token can send
	// one, and it carries no ordering token, so it is a hint, never an answer.
	SourceCallback Source = "callback"
)

// StatusChange is what one status answer does to a record (DecideStatus).
type StatusChange struct {
	// Outcome combines both legs (provider.Combine) with the record's has_sms.
	Outcome provider.Outcome
	// To is the target: accepted while pending (the statuses are recorded), or the
	// final state of Outcome.
	To State
	// Update holds the statuses, and for a final state the channel or the error and
	// settled_by.
	Update Update
	// Write reports that the record is written: the answer came from the provider.
	Write bool
	// Confirm reports a callback whose statuses a poll would call final: a
	// confirming poll must ask the provider (ConfirmTask).
	Confirm bool
	// Skip says why the answer does not apply to the record ("" when it does).
	Skip string
}

// Reasons for StatusChange.Skip.
const (
	SkipFinal       = "record already final"
	SkipNotAccepted = "record not accepted"
	SkipOtherID     = "provider message_id does not match the record"
)

// DecideStatus is the one rule for applying a provider status answer, from a poll
// or a callback, to a record (README "Message states"; pure, table-tested):
//
//   - Only an accepted record takes a status, and only one about its own provider
//     message_id. A final record never changes (Transition refuses it), so a final
//     answer is never overwritten by a later or weaker one.
//   - Both legs decide together (provider.Combine with the record's has_sms): a
//     Viber failure while an SMS leg may still come is pending, not undelivered.
//   - An answer from the provider (SourcePoll, SourceConfirm) is authoritative: a
//     final outcome settles the record (settled_by poll, or callback for the poll a
//     callback asked for); a pending one records the statuses, the latest answer
//     replacing the earlier one.
//   - A callback (SourceCallback) writes nothing: it has no ordering token (a late
//     "sent" could otherwise overwrite a newer answer) and may be forged by anyone
//     holding the token. When its statuses are what a poll would call final, it asks
//     for a confirming poll (Confirm); the provider's answer to that poll settles.
func DecideStatus(rec Record, st provider.StatusResult, src Source) StatusChange {
	c := StatusChange{Outcome: provider.Combine(st.Status, st.SMSStatus, rec.HasSMS), To: StateAccepted}
	switch {
	case rec.State.Final():
		c.Skip = SkipFinal
		return c
	case rec.State != StateAccepted:
		c.Skip = SkipNotAccepted
		return c
	case st.MessageID != 0 && rec.ProviderMessageID != 0 && st.MessageID != rec.ProviderMessageID:
		c.Skip = SkipOtherID
		return c
	}
	if src == SourceCallback {
		c.Confirm = c.Outcome.Final()
		return c
	}
	c.Write = true
	c.Update = Update{ViberStatus: &st.Status, SMSMessageID: st.SMSMessageID, SMSStatus: st.SMSStatus}
	switch c.Outcome {
	case provider.OutcomeDeliveredViber:
		c.To, c.Update.Channel = StateDelivered, ChannelViber
	case provider.OutcomeDeliveredSMS:
		c.To, c.Update.Channel = StateDelivered, ChannelSMS
	case provider.OutcomeUndelivered:
		msg := "undelivered: viber " + st.Status.String()
		if st.SMSStatus != nil {
			msg += ", sms " + st.SMSStatus.String()
		}
		c.To, c.Update.Error = StateUndelivered, &msg
	}
	if c.To.Final() {
		c.Update.SettledBy = SettledByPoll
		if src == SourceConfirm {
			c.Update.SettledBy = SettledByCallback
		}
	}
	return c
}

// Applied is the result of ApplyStatus.
type Applied struct {
	StatusChange
	// Record is the record after the write, or as given when nothing was written.
	Record Record
	// Settled reports that this call moved the record to a final state.
	Settled bool
}

// ApplyStatus applies a status answer from src to rec, the record as the caller
// last read it, by DecideStatus: the function both the poll handler and the
// callback endpoint call. polled, when above 0, is the number of the scheduled
// poll that asked plus one (Update.Polled); 0 for a callback or a confirming poll. A
// written answer is a compare-and-set from accepted: when the record moved on
// meanwhile, nothing is written, Skip says so and Record is the record found.
func (s *Store) ApplyStatus(ctx context.Context, rec Record, st provider.StatusResult, src Source, polled int) (Applied, error) {
	c := DecideStatus(rec, st, src)
	a := Applied{StatusChange: c, Record: rec}
	if !c.Write {
		return a, nil
	}
	upd := c.Update
	upd.Polled = polled
	got, ok, err := s.Transition(ctx, rec.ID, []State{StateAccepted}, c.To, upd)
	if err != nil {
		return a, fmt.Errorf("apply %s status to %s: %w", src, provider.MaskID(rec.ID), err)
	}
	a.Record = got
	if !ok {
		a.Write = false
		a.Skip = "record changed concurrently (" + string(got.State) + ")"
		return a, nil
	}
	a.Settled = c.To.Final()
	return a, nil
}

// Confirming polls.
const (
	// ConfirmSpacing keeps a confirming poll's task ID reserved after it ran: at most
	// one confirming poll per message per ConfirmSpacing, however many callbacks
	// arrive (a flood of forged callbacks costs one status call per message per
	// ConfirmSpacing, under the global status bucket). Short, because a true callback
	// that arrives within it after a confirming poll found the message pending asks
	// for nothing: the scheduled polls settle that message instead.
	ConfirmSpacing = 5 * time.Second
	// confirmMaxRetry bounds the retries of a confirming poll; the scheduled polls
	// remain the safety net.
	confirmMaxRetry = 3
)

// ConfirmTaskID returns the Asynq task ID of the confirming poll of message id:
// "poll:{id}:confirm".
func ConfirmTaskID(id string) string { return "poll:" + id + ":confirm" }

// ConfirmTask returns the confirming poll of an accepted record: a poll task
// (PollArgs.Confirm set) on the status queue, to run at once, with the task ID
// ConfirmTaskID(rec.ID) kept for ConfirmSpacing.
func ConfirmTask(rec Record) (*asynq.Task, error) {
	a := PollArgs{
		ID: rec.ID, ProviderMessageID: rec.ProviderMessageID, Poll: rec.Polls, HasSMS: rec.HasSMS,
		AcceptedAt: rec.AcceptedAt, ExpiresAt: rec.ExpiresAt, Confirm: true,
	}
	return NewPollTask(a, asynq.TaskID(ConfirmTaskID(rec.ID)), asynq.Retention(ConfirmSpacing), asynq.MaxRetry(confirmMaxRetry))
}

// CallbackApplier applies status callbacks: ApplyStatus with SourceCallback (which
// writes nothing), then, for statuses a poll would call final, the confirming poll.
type CallbackApplier struct {
	Store  *Store
	Client *asynq.Client
}

// ApplyCallback applies the status callback st to rec (the record as read). When a
// confirming poll is due and one is already queued or ran within ConfirmSpacing,
// Confirm stays true and nothing more is enqueued.
func (a CallbackApplier) ApplyCallback(ctx context.Context, rec Record, st provider.StatusResult) (Applied, error) {
	got, err := a.Store.ApplyStatus(ctx, rec, st, SourceCallback, 0)
	if err != nil || !got.Confirm {
		return got, err
	}
	task, err := ConfirmTask(rec)
	if err != nil {
		return got, fmt.Errorf("confirm callback of %s: %w", provider.MaskID(rec.ID), err)
	}
	if _, err := a.Client.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return got, fmt.Errorf("confirm callback of %s: %w", provider.MaskID(rec.ID), err)
	}
	return got, nil
}
