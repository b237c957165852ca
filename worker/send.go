package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

// handleSend is the viber:send handler. It reads top down (README, "The send path"):
//
//  1. load: the send gate (sendgate.go) moves a fresh message queued → sending with a
//     token of the global bucket in one script; any other record comes back as it is;
//  2. decide: planSend, a pure function of the record, the TTL and the settings;
//  3. wait: one Limiter.Wait, unless the gate already gave the token;
//  4. send: send-viber, classified (classify.go);
//  5. record: the outcome written before the task is acknowledged; on acceptance, the
//     message_id and the first poll's due time in one script (duepolls.go).
//
// It returns what the attempt's log line says; the middleware writes the line.
func (w *Worker) handleSend(ctx context.Context, a tasks.SendArgs) (attempt, error) {
	at := attempt{msgID: a.ID, expiresAt: a.ExpiresAt}
	err := w.send(ctx, &at, a)
	return at, err
}

func (w *Worker) send(ctx context.Context, at *attempt, a tasks.SendArgs) error {
	if d, err := w.beforeSendAt(a); err != nil {
		at.decide(d)
		return err
	}
	// This process still holds the provider's message_id of an earlier attempt (Redis
	// was unreachable when it came): the background write settles the record; the task
	// waits for it and never plans a send on a record that still says sending.
	if pid, ok := w.held.get(a.ID); ok {
		at.decide(noCall("accepted message_id held by this process, not written yet"))
		return errHeld(a.ID, pid, errors.New("still held"))
	}

	// 1. Load.
	rec, started, err := w.loadForSend(ctx, at, a)
	if err != nil {
		return err
	}
	at.seen(rec)

	// 2. Decide.
	p := sendPlan{step: stepSend, started: true}
	if !started {
		p = planSend(rec, !w.now().Before(a.ExpiresAt), w.cfg.ResendUnknown)
	}
	at.note = joinNote(at.note, p.note)
	switch p.step {
	case stepDone:
		at.decide(noCall(p.reason))
		return nil
	case stepEnsurePoll:
		at.decide(noCall(p.reason))
		if err := w.ensureDue(ctx, rec); err != nil {
			return fmt.Errorf("send %s: %w", provider.MaskID(a.ID), err)
		}
		return nil
	case stepUnknown:
		return w.finishSend(ctx, at, a, rec, tasks.StateUnknown, p.msg,
			Decision{Action: ActionAmbiguous, Reason: p.reason, VendorCode: -1}, nil)
	case stepExpire:
		return w.expireUnsent(ctx, at, a, rec, "ttl passed before sending")
	}

	// 3. Wait for a token (the gate's is taken already), bounded by the TTL: a message
	// that cannot get one before it expires is expired now rather than sent late.
	if !p.started {
		waitCtx, cancel := context.WithDeadline(ctx, a.ExpiresAt)
		_, err := w.waitSend(waitCtx)
		cancel()
		if err != nil {
			return w.limiterFailed(ctx, err, a.ExpiresAt, func() error {
				return w.expireUnsent(ctx, at, a, rec, "ttl passed while waiting for the rate limiter")
			})
		}
		if !w.now().Before(a.ExpiresAt) {
			return w.expireUnsent(ctx, at, a, rec, "ttl passed while waiting for the rate limiter")
		}
		var ok bool
		rec, ok, err = w.store.Transition(ctx, a.ID, []tasks.State{p.from}, tasks.StateSending, tasks.Update{IncAttempts: true, Rerun: p.rerun})
		if err != nil {
			return fmt.Errorf("send %s: mark sending: %w", provider.MaskID(a.ID), err)
		}
		at.state = string(rec.State)
		if !ok {
			at.decide(noCall("record changed concurrently (" + string(rec.State) + "); not sent"))
			return nil
		}
	}

	// 4. Send, and 5. record.
	return w.sendNow(ctx, at, a, rec)
}

// loadForSend is the first Redis step: the gate, and the record as it is when the
// gate did not start the send. started reports that rec is now sending with a token
// held. A bucket with no token free now also returns the record (the gate reads it).
func (w *Worker) loadForSend(ctx context.Context, at *attempt, a tasks.SendArgs) (rec tasks.Record, started bool, err error) {
	if !w.now().Before(a.ExpiresAt) {
		rec, err = w.loadOrCreate(ctx, at, a)
		return rec, false, err
	}
	rec, g, err := w.gate(ctx, a)
	switch {
	case err != nil:
		return rec, false, err
	case g == gateNoRecord:
		rec, err = w.loadOrCreate(ctx, at, a)
		return rec, false, err
	}
	return rec, g == gateStarted, nil
}

// sendStep is what planSend decided.
type sendStep int

const (
	stepSend       sendStep = iota // take a token, move to sending (from plan.from), send
	stepDone                       // nothing to do
	stepEnsurePoll                 // accepted by the provider before: make sure polling runs, never resend
	stepUnknown                    // a previous attempt may have sent it: unknown
	stepExpire                     // the TTL passed before sending: expired
)

// sendPlan is the decision of planSend.
type sendPlan struct {
	step    sendStep
	from    tasks.State // stepSend: the state the record moves to sending from
	rerun   bool        // stepSend from dropped: an operator's re-run
	started bool        // the gate moved the record to sending with a token already
	reason  string      // why, for the log line (steps other than stepSend)
	msg     string      // stepUnknown: the record's error
	note    string
}

// planSend decides what a send task does with the record it found (not moved by the
// gate), whether the TTL has passed, and the ResendUnknown setting. Pure; the rules
// are README's "Exactly once, as far as it can be":
//
//	record                          → plan
//	has a provider message_id       → never sent again: done if final or polled, else ensure the first poll
//	final (not dropped)             → done
//	sending (an attempt interrupted)→ unknown; resent from sending with ResendUnknown, within the TTL
//	TTL passed                      → expired
//	dropped                         → sent again (an operator's re-run of the archived task)
//	queued                          → sent
func planSend(rec tasks.Record, ttlPassed, resendUnknown bool) sendPlan {
	switch {
	case rec.ProviderMessageID != 0:
		if rec.State.Final() || rec.Polls > 0 {
			return sendPlan{step: stepDone, reason: "already accepted by the provider; not sent again"}
		}
		return sendPlan{step: stepEnsurePoll, reason: "already accepted by the provider; not sent again", note: "first poll ensured"}
	case rec.State.Final() && rec.State != tasks.StateDropped:
		return sendPlan{step: stepDone, reason: "record already final (" + string(rec.State) + "); nothing to do"}
	case rec.State == tasks.StateSending && !resendUnknown:
		return sendPlan{step: stepUnknown, reason: "found in state sending: a previous attempt may have sent it",
			msg: "previous attempt was interrupted while sending; outcome unknown"}
	case rec.State == tasks.StateSending && ttlPassed:
		return sendPlan{step: stepUnknown, reason: "ttl passed before sending after an interrupted attempt",
			msg: "ttl passed before sending after an interrupted attempt; outcome unknown"}
	case rec.State == tasks.StateSending:
		return sendPlan{step: stepSend, from: tasks.StateSending, note: "found in state sending; resending (ResendUnknown)"}
	case ttlPassed:
		return sendPlan{step: stepExpire, reason: "ttl passed before sending"}
	case rec.State == tasks.StateDropped:
		return sendPlan{step: stepSend, from: tasks.StateDropped, rerun: true, note: "re-run of a dropped message"}
	}
	return sendPlan{step: stepSend, from: tasks.StateQueued}
}

// noCall is the decision of an attempt that settled without a provider call.
func noCall(reason string) Decision {
	return Decision{Action: ActionSuccess, Reason: reason, VendorCode: -1}
}

// sendNow calls send-viber for a record the caller has just moved to sending (holding
// a token of the global bucket), classifies the answer and writes the outcome.
func (w *Worker) sendNow(ctx context.Context, at *attempt, a tasks.SendArgs, rec tasks.Record) error {
	m := a.Message
	m.ValidityPeriod = validityPeriod(m, a.ExpiresAt.Sub(w.now()))
	if m.CallbackURL == "" && w.cfg.CallbackURL != "" {
		m.CallbackURL = callbackURLFor(w.cfg.CallbackURL, a.ID)
	}
	start := w.now()
	res, sendErr := w.prov.Send(ctx, m)
	w.metrics.observeProvider("send-viber", codeOf(sendErr), w.now().Sub(start))
	d := Classify(provider.OpSend, sendErr)
	if d.Action == ActionRetry && w.cfg.ServerErrorUnknown && errors.As(sendErr, new(*provider.ServerError)) {
		d.Action = ActionAmbiguous
		d.Reason = "5xx after the request was written: the provider may have accepted it (ServerErrorUnknown)"
	}
	at.decide(d)
	w.metrics.countSend(d.Action.String())
	if sendErr != nil {
		sendErr = fmt.Errorf("send %s: %w", provider.MaskID(a.ID), sendErr)
	}

	switch d.Action {
	case ActionSuccess:
		return w.accepted(ctx, at, a, res.MessageID)
	case ActionRetryAfter:
		delay, note := w.rateLimited(ctx, w.sendLim, d, a.ID, rec.DestMasked)
		at.note = joinNote(at.note, note)
		if err := w.requeue(ctx, at, a, "429 rate limited"); err != nil {
			return errors.Join(sendErr, err)
		}
		if !w.now().Add(delay).Before(a.ExpiresAt) {
			// The retry would come after the TTL: expired now, not when it runs.
			queued := rec
			queued.State = tasks.StateQueued
			return w.expireUnsent(ctx, at, a, queued, "rate limited (429, retry after "+delay.String()+"); the retry would pass the ttl")
		}
		return &RetryAfterError{Delay: delay, Err: sendErr}
	case ActionRetry:
		if err := w.requeue(ctx, at, a, errText(d, sendErr)); err != nil {
			return errors.Join(sendErr, err)
		}
		return sendErr
	case ActionReject:
		return w.finishSend(ctx, at, a, rec, tasks.StateRejected, errText(d, sendErr), d, skip(sendErr))
	case ActionDrop:
		err := w.finishSend(ctx, at, a, rec, tasks.StateDropped, errText(d, sendErr), d, skip(sendErr))
		at.note = joinNote(at.note, w.raise(ctx, AlertBalance, "provider balance is empty (402): sends stopped until a top-up", a.ID, rec.DestMasked, d, w.cfg.PauseOnBalance))
		return err
	case ActionAuth:
		err := w.finishSend(ctx, at, a, rec, tasks.StateDropped, "unauthorized", d, skip(sendErr))
		at.note = joinNote(at.note, w.raise(ctx, AlertUnauthorized, "provider refused the access key (401/403): check VIBERQ_DT_API_KEY", a.ID, rec.DestMasked, d, w.cfg.PauseOnAuth))
		return err
	case ActionAmbiguous:
		if w.cfg.ResendUnknown {
			at.note = joinNote(at.note, "ambiguous; resending (ResendUnknown)")
			if err := w.requeue(ctx, at, a, "ambiguous: "+errText(d, sendErr)); err != nil {
				return errors.Join(sendErr, err)
			}
			return sendErr
		}
		return w.finishSend(ctx, at, a, rec, tasks.StateUnknown, "ambiguous: "+errText(d, sendErr), d, nil)
	default: // ActionSkip, ActionPending
		return w.finishSend(ctx, at, a, rec, tasks.StateDropped, errText(d, sendErr), d, skip(sendErr))
	}
}

// waitSend takes a token of the send bucket: at full priority for the critical queue
// (transactional messages), behind it for the others (Limiter.WaitBulk).
func (w *Worker) waitSend(ctx context.Context) (time.Duration, error) {
	if q, _ := asynq.GetQueueName(ctx); q != tasks.QueueCritical && q != "" {
		return w.sendLim.WaitBulk(ctx)
	}
	return w.sendLim.Wait(ctx)
}

// loadOrCreate returns the record of a, creating it (queued) for producers that
// enqueue without the Go Enqueuer (tasks package doc).
func (w *Worker) loadOrCreate(ctx context.Context, at *attempt, a tasks.SendArgs) (tasks.Record, error) {
	rec, err := w.store.Get(ctx, a.ID)
	if err == nil {
		return rec, nil
	}
	if !errors.Is(err, tasks.ErrNotFound) {
		return rec, fmt.Errorf("send %s: load record: %w", provider.MaskID(a.ID), err)
	}
	created, rec, err := w.store.Create(ctx, tasks.NewRecord(a, w.now()), tasks.Fingerprint(a))
	if err != nil {
		return rec, fmt.Errorf("send %s: create record: %w", provider.MaskID(a.ID), err)
	}
	if created {
		at.note = "record created by the worker"
	}
	return rec, nil
}

// accepted records the provider's message_id before the task is acknowledged, with
// the first poll made due in the same script (duepolls.go). The write retries until
// Redis answers or the task's time runs out; then the ID is held by this process and
// retried in the background, and the task comes back after HeldRetryDelay
// (accepted.go).
func (w *Worker) accepted(ctx context.Context, at *attempt, a tasks.SendArgs, id provider.MessageID) error {
	at.providerMsgID = int64(id)
	rec, ok, err := w.writeAccepted(ctx, a, id, acceptDeadline(ctx))
	if err != nil {
		if errors.Is(err, tasks.ErrNotFound) {
			return fmt.Errorf("send %s: accepted as %d but cannot record it: %w", provider.MaskID(a.ID), id, err)
		}
		w.holdAccepted(a, id)
		at.note = joinNote(at.note, "accepted message_id held: Redis unreachable")
		return errHeld(a.ID, id, err)
	}
	at.state = string(rec.State)
	if !ok {
		at.note = joinNote(at.note, "record changed concurrently ("+string(rec.State)+")")
	}
	return nil
}

// requeue puts a record back to queued (nothing reached the provider, or a resend
// was chosen) with the error.
func (w *Worker) requeue(ctx context.Context, at *attempt, a tasks.SendArgs, msg string) error {
	wctx, cancel := detached(ctx)
	defer cancel()
	rec, _, err := w.store.Transition(wctx, a.ID, []tasks.State{tasks.StateSending}, tasks.StateQueued, tasks.Update{Error: shortErr(msg)})
	if err != nil {
		return fmt.Errorf("send %s: requeue record: %w", provider.MaskID(a.ID), err)
	}
	at.state = string(rec.State)
	return nil
}

// finishSend moves a record from queued, sending or (re-run) dropped to a final state
// and returns ret (nil: task done; SkipRetry: archived). A failed write is returned
// instead, so the task is retried.
func (w *Worker) finishSend(ctx context.Context, at *attempt, a tasks.SendArgs, rec tasks.Record, to tasks.State, msg string, d Decision, ret error) error {
	at.decide(d)
	wctx, cancel := detached(ctx)
	defer cancel()
	from := []tasks.State{rec.State}
	upd := tasks.Update{Error: shortErr(msg)}
	if rec.State == tasks.StateDropped {
		if to == tasks.StateDropped {
			return ret
		}
		// A re-run of a dropped message: back through queued (the only legal way out
		// of a final state), then to the new final state.
		if _, _, err := w.store.Transition(wctx, a.ID, from, tasks.StateQueued, tasks.Update{Rerun: true}); err != nil {
			return fmt.Errorf("send %s: rerun record: %w", provider.MaskID(a.ID), err)
		}
		from = []tasks.State{tasks.StateQueued}
	}
	if !tasks.CanTransition(from[0], to, false) {
		return ret
	}
	got, ok, err := w.store.Transition(wctx, a.ID, from, to, upd)
	if err != nil {
		return fmt.Errorf("send %s: record %s: %w", provider.MaskID(a.ID), to, err)
	}
	at.state = string(got.State)
	if ok {
		w.metrics.countFinal(string(got.State), got.Channel, got.Polls, false)
		if to == tasks.StateUnknown {
			w.metrics.countUnknown()
		}
	}
	return ret
}

// expireUnsent records expired for a message whose TTL passed before it was sent (or
// unknown when a previous attempt may have sent it).
func (w *Worker) expireUnsent(ctx context.Context, at *attempt, a tasks.SendArgs, rec tasks.Record, why string) error {
	if rec.State == tasks.StateSending {
		return w.finishSend(ctx, at, a, rec, tasks.StateUnknown, why+" after an interrupted attempt; outcome unknown",
			Decision{Action: ActionAmbiguous, Reason: why + " after an interrupted attempt", VendorCode: -1}, nil)
	}
	return w.finishSend(ctx, at, a, rec, tasks.StateExpired, why,
		Decision{Action: ActionSuccess, Reason: why + "; expired, not sent", VendorCode: -1}, nil)
}

// seen notes the record's state, provider message_id and masked destination.
func (at *attempt) seen(rec tasks.Record) {
	at.state, at.providerMsgID, at.dest = string(rec.State), int64(rec.ProviderMessageID), rec.DestMasked
}
