package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

// handlePoll is the viber:poll handler: record final (settled elsewhere since the
// previous poll) → stop without calling the provider; deadline passed → expired;
// global status limiter → receive-viber → tasks.Store.ApplyStatus (the one rule for
// poll and callback answers: statuses, polls raised to the poll's number + 1, an event on a state change) → final,
// or the next poll. A confirming poll (PollArgs.Confirm, asked for by a status
// callback) settles like any poll but never schedules one: the scheduled polls go on.
func (w *Worker) handlePoll(ctx context.Context, a tasks.PollArgs) error {
	at := attemptFrom(ctx)
	at.msgID, at.providerMsgID, at.expiresAt = a.ID, int64(a.ProviderMessageID), a.ExpiresAt

	rec, err := w.store.Get(ctx, a.ID)
	switch {
	case errors.Is(err, tasks.ErrNotFound):
		at.decide(Decision{Action: ActionSuccess, Reason: "no record (retention passed?); polling stops", VendorCode: -1})
		return nil
	case err != nil:
		return fmt.Errorf("poll %s: load record: %w", provider.MaskID(a.ID), err)
	}
	at.state, at.dest = string(rec.State), rec.DestMasked
	if rec.State.Final() {
		// Settled since the previous poll (by a confirming poll, the reconciler, ...):
		// whoever settled it counted its final state.
		at.decide(Decision{Action: ActionSuccess, Reason: "record already final (" + string(rec.State) + "); polling stops without a provider call", VendorCode: -1})
		return nil
	}
	if rec.State != tasks.StateAccepted {
		at.decide(Decision{Action: ActionSuccess, Reason: "record not accepted (" + string(rec.State) + "); nothing to poll", VendorCode: -1})
		return nil
	}

	deadline := w.pollDeadline(a)
	if !w.now().Before(deadline.Add(lastPollGrace)) {
		return w.expirePoll(ctx, a, "no final status before the polling deadline", rec.SMSStatus)
	}

	// Polls of transactional messages ahead of promotional ones in the status bucket,
	// as for sends (Limiter.WaitBulk).
	// A poll may still ask until the deadline plus lastPollGrace, so that is the bound
	// of the wait and of the retry after a paused bucket.
	lastAsk := deadline.Add(lastPollGrace)
	waitCtx, cancel := context.WithDeadline(ctx, lastAsk)
	if rec.Queue == tasks.QueueCritical {
		_, err = w.statusLim.Wait(waitCtx)
	} else {
		_, err = w.statusLim.WaitBulk(waitCtx)
	}
	cancel()
	if err != nil {
		return w.limiterFailed(ctx, err, lastAsk, func() error {
			return w.expirePoll(ctx, a, "polling deadline passed while waiting for the rate limiter", rec.SMSStatus)
		})
	}

	start := w.now()
	res, stErr := w.prov.Status(ctx, a.ProviderMessageID)
	w.metrics.observeProvider("receive-viber", codeOf(stErr), w.now().Sub(start))
	d := Classify(provider.OpStatus, stErr)
	at.decide(d)
	if stErr != nil {
		stErr = fmt.Errorf("poll %s: %w", provider.MaskID(a.ID), stErr)
	}

	switch d.Action {
	case ActionSuccess:
	case ActionRetryAfter:
		delay, note := w.rateLimited(ctx, w.statusLim, d, a.ID, rec.DestMasked)
		at.note = joinNote(at.note, note)
		return &RetryAfterError{Delay: delay, Err: stErr}
	case ActionAuth:
		w.raise(ctx, AlertUnauthorized, "provider refused the access key (401/403) on a status call: check VIBERQ_DT_API_KEY", a.ID, rec.DestMasked, d, false)
		return w.nextPoll(ctx, a, tasks.Update{Polled: polled(a)})
	case ActionPending:
		return w.nextPoll(ctx, a, tasks.Update{Polled: polled(a)})
	default: // retry: 5xx, transport, undecodable (a read is safe to repeat)
		return stErr
	}

	if n := unlistedStatus(res.Status, res.SMSStatus); n != "" {
		at.note = joinNote(at.note, n)
		zlog(ctx).Warn().Str("msg_id", provider.MaskID(a.ID)).Int("viber_status", int(res.Status)).Msg(n)
	}
	src := tasks.SourcePoll
	if a.Confirm {
		src = tasks.SourceConfirm
	}
	wctx, cancel := detached(ctx)
	defer cancel()
	got, err := w.store.ApplyStatus(wctx, rec, res, src, polled(a))
	if err != nil {
		return fmt.Errorf("poll %s: %w", provider.MaskID(a.ID), err)
	}
	at.state = string(got.Record.State)
	switch {
	case got.Settled:
		w.metrics.countFinal(string(got.Record.State), got.Record.Channel, got.Record.Polls, true)
		return nil
	case got.Skip != "":
		at.note = joinNote(at.note, got.Skip+"; polling stops")
		return nil
	}
	return w.schedulePoll(ctx, a, got.Record.SMSStatus)
}

// polled is the record's polls after poll a (tasks.Update.Polled): polls counts the
// scheduled polls only, so that their poll numbers follow it (the reconciler looks
// for the live one near it), and a confirming poll is not one.
func polled(a tasks.PollArgs) int {
	if a.Confirm {
		return 0
	}
	return a.Poll + 1
}

// nextPoll records a pending answer without statuses (polls raised to the poll's number + 1) and schedules the
// next poll (schedulePoll).
func (w *Worker) nextPoll(ctx context.Context, a tasks.PollArgs, upd tasks.Update) error {
	at := attemptFrom(ctx)
	wctx, cancel := detached(ctx)
	defer cancel()
	got, ok, err := w.store.Transition(wctx, a.ID, []tasks.State{tasks.StateAccepted}, tasks.StateAccepted, upd)
	if err != nil {
		return fmt.Errorf("poll %s: record status: %w", provider.MaskID(a.ID), err)
	}
	at.state = string(got.State)
	if !ok {
		at.note = "record changed concurrently (" + string(got.State) + "); polling stops"
		return nil
	}
	return w.schedulePoll(ctx, a, got.SMSStatus)
}

// schedulePoll schedules the poll after a, or expires the message when the policy
// has no poll left before the deadline (sms: the record's last SMS status, see
// expirePoll). A confirming poll schedules nothing: the scheduled polls it ran beside
// go on.
func (w *Worker) schedulePoll(ctx context.Context, a tasks.PollArgs, sms *provider.SMSStatus) error {
	at := attemptFrom(ctx)
	if a.Confirm {
		at.note = joinNote(at.note, "pending; the scheduled polls go on")
		return nil
	}
	next := a
	next.Poll = a.Poll + 1
	when, more, err := w.sched.ScheduleNext(ctx, next)
	if err != nil {
		return fmt.Errorf("poll %s: schedule poll %d: %w", provider.MaskID(a.ID), next.Poll, err)
	}
	if !more {
		return w.expirePoll(ctx, a, "no final status before the polling deadline", sms)
	}
	at.note = joinNote(at.note, fmt.Sprintf("pending; poll %d at %s", next.Poll, when.UTC().Format(time.RFC3339)))
	return nil
}

// expirePoll records expired for an accepted message that got no final status before
// the polling deadline (Viber never confirmed it), or unknown when the SMS leg's last
// status is a code the vendor lists nowhere (sms, see unlistedStatus), or when the
// provider's status window, not the TTL, set the deadline: it may have been (or may
// still be) delivered, so "expired" would not be true.
func (w *Worker) expirePoll(ctx context.Context, a tasks.PollArgs, why string, sms *provider.SMSStatus) error {
	to := tasks.StateExpired
	switch p := w.sched.Policy().WithDefaults(); {
	case sms != nil && !sms.Listed():
		to = tasks.StateUnknown
		why += fmt.Sprintf("; last sms status %d is not a code the vendor lists", int(*sms))
	case !a.AcceptedAt.Add(p.ProviderWindow).After(a.ExpiresAt.Add(p.SMSGrace)):
		// The provider's status window, not the TTL and its SMS grace, ended polling:
		// the message may still be delivered, and nobody can ask any more.
		to = tasks.StateUnknown
		why += "; the provider's status window (" + p.ProviderWindow.String() + " from acceptance) closed before the TTL and its SMS grace ended"
	}
	at := attemptFrom(ctx)
	if !at.decided {
		at.decide(Decision{Action: ActionSuccess, Reason: why + "; " + string(to), VendorCode: -1})
	} else {
		at.note = joinNote(at.note, why+"; "+string(to))
	}
	wctx, cancel := detached(ctx)
	defer cancel()
	got, ok, err := w.store.Transition(wctx, a.ID, []tasks.State{tasks.StateAccepted}, to, tasks.Update{Error: shortErr(why), SettledBy: tasks.SettledByDeadline})
	if err != nil {
		return fmt.Errorf("poll %s: record %s: %w", provider.MaskID(a.ID), to, err)
	}
	at.state = string(got.State)
	if ok {
		w.metrics.countFinal(string(got.State), got.Channel, got.Polls, true)
	}
	return nil
}
