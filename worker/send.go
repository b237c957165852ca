package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

// writeTimeout bounds a finalisation write (record, alert, pause) made with a context
// detached from the task's: a cancelled task context must not lose a state change
// (as asynq's processor does for its own retry/archive writes).
const writeTimeout = 5 * time.Second

// detached returns a context that ignores ctx's cancellation, bounded by writeTimeout.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
}

// maxErrorLen caps the error text stored in a record.
const maxErrorLen = 300

func shortErr(s string) *string {
	if len(s) > maxErrorLen {
		s = s[:maxErrorLen]
		for len(s) > 0 && s[len(s)-1]&0xC0 == 0x80 { // keep valid UTF-8
			s = s[:len(s)-1]
		}
	}
	return &s
}

func skip(err error) error { return fmt.Errorf("%w (%w)", err, asynq.SkipRetry) }

// handleSend is the viber:send handler (DESIGN §2-§5). Order: record → already done?
// → TTL → global send limiter → CAS to sending → send-viber → classify → record
// written before returning → first poll.
func (w *Worker) handleSend(ctx context.Context, a tasks.SendArgs) error {
	at := attemptFrom(ctx)
	at.msgID, at.expiresAt = a.ID, a.ExpiresAt
	if d, err := w.beforeSendAt(a); err != nil {
		at.decide(d)
		return err
	}

	// Fast path, the common case (a fresh message, queued, within its TTL): take a
	// token, then move queued → sending in one script, without reading the record
	// first. Only when that compare-and-set fails (a re-delivered task, an operator
	// re-run, a raw producer's task without a record) is the record read and the
	// careful path below taken; the token already held is used there.
	var (
		rec       tasks.Record
		haveRec   bool // rec is the current record (a refused compare-and-set returns it)
		haveToken bool
	)
	if w.now().Before(a.ExpiresAt) {
		waitCtx, cancel := context.WithDeadline(ctx, a.ExpiresAt)
		_, werr := w.waitSend(waitCtx)
		cancel()
		if werr == nil && w.now().Before(a.ExpiresAt) {
			haveToken = true
			got, ok, err := w.store.Transition(ctx, a.ID, []tasks.State{tasks.StateQueued}, tasks.StateSending, tasks.Update{IncAttempts: true})
			switch {
			case err == nil && ok:
				at.state, at.dest = string(got.State), got.DestMasked
				return w.sendNow(ctx, a, got)
			case err == nil:
				rec, haveRec = got, true
			case !errors.Is(err, tasks.ErrNotFound):
				return fmt.Errorf("send %s: mark sending: %w", a.ID, err)
			}
		}
	}

	if !haveRec {
		var err error
		if rec, err = w.loadOrCreate(ctx, a); err != nil {
			return err
		}
	}
	at.state, at.providerMsgID, at.dest = string(rec.State), int64(rec.ProviderMessageID), rec.DestMasked

	resend := false
	switch {
	case rec.ProviderMessageID != 0:
		// A re-delivered task of an accepted message never sends twice: make sure
		// polling runs and stop.
		at.decide(Decision{Action: ActionSuccess, Reason: "already accepted by the provider; not sent again", VendorCode: -1})
		if rec.State.Final() || rec.Polls > 0 {
			return nil // settled, or polling already runs
		}
		if err := w.scheduleFirstPoll(ctx, pollArgsFor(a, rec)); err != nil {
			return fmt.Errorf("send %s: schedule first poll: %w", a.ID, err)
		}
		at.note = "first poll ensured"
		return nil
	case rec.State.Final() && rec.State != tasks.StateDropped:
		at.decide(Decision{Action: ActionSuccess, Reason: "record already final (" + string(rec.State) + "); nothing to do", VendorCode: -1})
		return nil
	case rec.State == tasks.StateSending:
		// A previous attempt reached sending and never recorded an outcome (a crash
		// between the request and the record): the provider may have the message.
		if !w.cfg.ResendUnknown || !w.now().Before(a.ExpiresAt) {
			return w.finishSend(ctx, a, rec, tasks.StateUnknown, "previous attempt was interrupted while sending; outcome unknown",
				Decision{Action: ActionAmbiguous, Reason: "found in state sending: a previous attempt may have sent it", VendorCode: -1}, nil)
		}
		resend = true
		at.note = "found in state sending; resending (ResendUnknown)"
	}

	if !w.now().Before(a.ExpiresAt) {
		return w.expireUnsent(ctx, a, rec, "ttl passed before sending")
	}

	// The global limiter, bounded by the TTL: a message that cannot get a token before
	// it expires is expired now rather than sent late.
	if !haveToken {
		waitCtx, cancel := context.WithDeadline(ctx, a.ExpiresAt)
		_, err := w.waitSend(waitCtx)
		cancel()
		if err != nil {
			return w.limiterFailed(ctx, err, a.ExpiresAt, func() error {
				return w.expireUnsent(ctx, a, rec, "ttl passed while waiting for the rate limiter")
			})
		}
	}
	if !w.now().Before(a.ExpiresAt) {
		return w.expireUnsent(ctx, a, rec, "ttl passed while waiting for the rate limiter")
	}

	from, rerun := []tasks.State{tasks.StateQueued}, false
	switch {
	case resend:
		from = []tasks.State{tasks.StateSending}
	case rec.State == tasks.StateDropped:
		// Only an operator re-run (asynq RunTask of the archived task) runs the task of
		// a dropped message again: send it now (DESIGN §4, 402 row).
		from, rerun = []tasks.State{tasks.StateDropped}, true
		at.note = joinNote(at.note, "re-run of a dropped message")
	}
	rec, ok, err := w.store.Transition(ctx, a.ID, from, tasks.StateSending, tasks.Update{IncAttempts: true, Rerun: rerun})
	if err != nil {
		return fmt.Errorf("send %s: mark sending: %w", a.ID, err)
	}
	at.state = string(rec.State)
	if !ok {
		at.decide(Decision{Action: ActionSuccess, Reason: "record changed concurrently (" + string(rec.State) + "); not sent", VendorCode: -1})
		return nil
	}
	return w.sendNow(ctx, a, rec)
}

// sendNow calls send-viber for a record the caller has just moved to sending (holding
// a token of the global bucket), classifies the answer and writes the outcome.
func (w *Worker) sendNow(ctx context.Context, a tasks.SendArgs, rec tasks.Record) error {
	at := attemptFrom(ctx)
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
		sendErr = fmt.Errorf("send %s: %w", a.ID, sendErr)
	}

	switch d.Action {
	case ActionSuccess:
		return w.accepted(ctx, a, res.MessageID)
	case ActionRetryAfter:
		delay := w.rateLimited(ctx, w.sendLim, d, a.ID, rec.DestMasked)
		if err := w.requeue(ctx, a, "429 rate limited"); err != nil {
			return errors.Join(sendErr, err)
		}
		if !w.now().Add(delay).Before(a.ExpiresAt) {
			// The retry would come after the TTL: expired now, not when it runs.
			queued := rec
			queued.State = tasks.StateQueued
			return w.expireUnsent(ctx, a, queued, "rate limited (429, retry after "+delay.String()+"); the retry would pass the ttl")
		}
		return &RetryAfterError{Delay: delay, Err: sendErr}
	case ActionRetry:
		if err := w.requeue(ctx, a, errText(d, sendErr)); err != nil {
			return errors.Join(sendErr, err)
		}
		return sendErr
	case ActionReject:
		return w.finishSend(ctx, a, rec, tasks.StateRejected, errText(d, sendErr), d, skip(sendErr))
	case ActionDrop:
		err := w.finishSend(ctx, a, rec, tasks.StateDropped, errText(d, sendErr), d, skip(sendErr))
		w.raise(ctx, AlertBalance, "provider balance is empty (402): sends stopped until a top-up", a.ID, rec.DestMasked, d, w.cfg.PauseOnBalance)
		return err
	case ActionAuth:
		err := w.finishSend(ctx, a, rec, tasks.StateDropped, "unauthorized", d, skip(sendErr))
		w.raise(ctx, AlertUnauthorized, "provider refused the access key (401/403): check VIBERQ_DT_API_KEY", a.ID, rec.DestMasked, d, w.cfg.PauseOnAuth)
		return err
	case ActionAmbiguous:
		if w.cfg.ResendUnknown {
			at.note = joinNote(at.note, "ambiguous; resending (ResendUnknown)")
			if err := w.requeue(ctx, a, "ambiguous: "+errText(d, sendErr)); err != nil {
				return errors.Join(sendErr, err)
			}
			return sendErr
		}
		return w.finishSend(ctx, a, rec, tasks.StateUnknown, "ambiguous: "+errText(d, sendErr), d, nil)
	default: // ActionSkip, ActionPending
		return w.finishSend(ctx, a, rec, tasks.StateDropped, errText(d, sendErr), d, skip(sendErr))
	}
}

// loadOrCreate returns the record of a, creating it (queued) for producers that
// enqueue without the Go Enqueuer (tasks package doc).
func (w *Worker) loadOrCreate(ctx context.Context, a tasks.SendArgs) (tasks.Record, error) {
	rec, err := w.store.Get(ctx, a.ID)
	if err == nil {
		return rec, nil
	}
	if !errors.Is(err, tasks.ErrNotFound) {
		return rec, fmt.Errorf("send %s: load record: %w", a.ID, err)
	}
	created, rec, err := w.store.Create(ctx, tasks.NewRecord(a, w.now()), tasks.Fingerprint(a))
	if err != nil {
		return rec, fmt.Errorf("send %s: create record: %w", a.ID, err)
	}
	if created {
		attemptFrom(ctx).note = "record created by the worker"
	}
	return rec, nil
}

// validityPeriod is what remains of the TTL in whole seconds (rounded up), clamped to
// the provider's 40..21600; a transactional message with text_sms always gets
// provider.SMSValidityPeriod (40), the only value the vendor allows it (package
// provider doc, "Vendor notes"; README, "Where the vendor documentation is silent").
func validityPeriod(m provider.Message, remaining time.Duration) int {
	if m.HasSMSFallback() {
		return provider.SMSValidityPeriod
	}
	s := int(math.Ceil(remaining.Seconds()))
	return min(max(s, provider.MinValidityPeriod), provider.MaxValidityPeriod)
}

// limiterFailed handles a failed Limiter.Wait bounded by deadline (a TTL): the TTL
// passing → expire(); a bucket whose next token lies beyond the task's own deadline →
// retry later without using the retry budget; else the error (ctx done, Redis).
func (w *Worker) limiterFailed(ctx context.Context, err error, deadline time.Time, expire func() error) error {
	if ctx.Err() != nil {
		return err
	}
	taskDL, hasTaskDL := ctx.Deadline()
	ttlBinds := !hasTaskDL || !taskDL.Before(deadline)
	var le *LimitedError
	switch {
	case errors.Is(err, context.DeadlineExceeded) && ttlBinds:
		return expire()
	case errors.As(err, &le) && !w.now().Add(le.Wait).Before(deadline):
		return expire() // the token comes after the TTL: expired now, not at the retry
	case errors.As(err, &le):
		return &RetryAfterError{Delay: le.Wait, Err: err}
	}
	return err
}

// waitSend takes a token of the send bucket: at full priority for the critical queue
// (transactional messages), behind it for the others (Limiter.WaitBulk).
func (w *Worker) waitSend(ctx context.Context) (time.Duration, error) {
	if q, _ := asynq.GetQueueName(ctx); q != tasks.QueueCritical && q != "" {
		return w.sendLim.WaitBulk(ctx)
	}
	return w.sendLim.Wait(ctx)
}

// rateLimited handles a 429 on lim's endpoint: the bucket is paused for the hint
// capped by MaxRetryAfter, and a longer hint raises AlertRateLimitHint (once per
// alert window, all pods) and an error-level line naming the hint. It returns the
// retry delay (the capped hint).
func (w *Worker) rateLimited(ctx context.Context, lim *Limiter, d Decision, msgID, dest string) time.Duration {
	delay := min(d.RetryAfter, w.cfg.MaxRetryAfter)
	pctx, cancel := detached(ctx)
	defer cancel()
	if err := lim.Pause(pctx, delay); err != nil {
		zlog(ctx).Warn().Err(err).Str("msg_id", msgID).Msg("cannot pause the " + lim.Bucket() + " bucket")
	}
	if d.RetryAfter <= w.cfg.MaxRetryAfter {
		return delay
	}
	attemptFrom(ctx).note = joinNote(attemptFrom(ctx).note, "retry-after "+d.RetryAfter.String()+" capped to "+delay.String())
	if ok, _ := w.logLim.allow("retry-after-capped", w.now()); ok {
		zlog(ctx).Error().Str("msg_id", msgID).Str("bucket", lim.Bucket()).Dur("retry_after_hint", d.RetryAfter).
			Dur("max_retry_after", w.cfg.MaxRetryAfter).Msg("provider asked for a pause of " + d.RetryAfter.String() +
			"; paused for " + delay.String() + " only (VIBERQ_MAX_RETRY_AFTER)")
	}
	if w.alerter != nil {
		fields := map[string]string{"msg_id": msgID, "bucket": lim.Bucket(), "retry_after_hint": d.RetryAfter.String(),
			"max_retry_after": delay.String(), "reason": d.Reason}
		if dest != "" {
			fields["dest"] = dest
		}
		if d.HTTPStatus != 0 {
			fields["http_status"] = itoa(d.HTTPStatus)
		}
		a := Alert{Kind: AlertRateLimitHint, Summary: "provider rate limit asks for a pause of " + d.RetryAfter.String() +
			"; paused for " + delay.String() + " only", Fields: fields, At: w.now().UTC()}
		if err := w.alerter.Alert(pctx, a); err != nil {
			zlog(ctx).Error().Err(err).Str("alert_kind", a.Kind).Msg("cannot deliver alert")
		}
	}
	return delay
}

// accepted records the provider's message_id (before the task is acknowledged) and
// schedules the first poll. The write retries until Redis answers or the task's time
// runs out; then the ID is held by this process and retried in the background, and the
// task comes back after HeldRetryDelay (accepted.go). If scheduling the poll fails the
// error makes asynq retry the task, and the retry, seeing the message_id, only
// schedules the poll.
func (w *Worker) accepted(ctx context.Context, a tasks.SendArgs, id provider.MessageID) error {
	at := attemptFrom(ctx)
	at.providerMsgID = int64(id)
	rec, ok, err := w.writeAccepted(ctx, a.ID, id, acceptDeadline(ctx))
	if err != nil {
		if errors.Is(err, tasks.ErrNotFound) {
			return fmt.Errorf("send %s: accepted as %d but cannot record it: %w", a.ID, id, err)
		}
		w.holdAccepted(a, id)
		at.note = joinNote(at.note, "accepted message_id held: Redis unreachable")
		return errHeld(a.ID, id, err)
	}
	at.state = string(rec.State)
	if !ok {
		at.note = joinNote(at.note, "record changed concurrently ("+string(rec.State)+")")
		return nil
	}
	wctx, cancel := detached(ctx)
	defer cancel()
	if a.Message.MessageType.TwoWay() {
		// Replies name the message they answer by the provider's ID (tracking_id).
		if err := w.store.IndexProvider(wctx, id, a.ID); err != nil {
			zlog(ctx).Warn().Err(err).Str("msg_id", a.ID).Msg("cannot index the provider message ID; replies will lack the message ID")
		}
	}
	if err := w.scheduleFirstPoll(ctx, pollArgsFor(a, rec)); err != nil {
		return fmt.Errorf("send %s: schedule first poll: %w", a.ID, err)
	}
	return nil
}

// callbackURLFor is the callback_url of message id: the configured one with the
// message ID as the query parameter "id", so a status callback names our message
// without an index lookup (the provider's payload carries only its own message_id).
func callbackURLFor(base, id string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	q := u.Query()
	q.Set("id", id)
	u.RawQuery = q.Encode()
	return u.String()
}

// requeue puts a record back to queued (nothing reached the provider, or a resend
// was chosen) with the error.
func (w *Worker) requeue(ctx context.Context, a tasks.SendArgs, msg string) error {
	wctx, cancel := detached(ctx)
	defer cancel()
	rec, _, err := w.store.Transition(wctx, a.ID, []tasks.State{tasks.StateSending}, tasks.StateQueued, tasks.Update{Error: shortErr(msg)})
	if err != nil {
		return fmt.Errorf("send %s: requeue record: %w", a.ID, err)
	}
	attemptFrom(ctx).state = string(rec.State)
	return nil
}

// finishSend moves a record from queued, sending or (re-run) dropped to a final state
// and returns ret (nil: task done; SkipRetry: archived). A failed write is returned
// instead, so the task is retried.
func (w *Worker) finishSend(ctx context.Context, a tasks.SendArgs, rec tasks.Record, to tasks.State, msg string, d Decision, ret error) error {
	at := attemptFrom(ctx)
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
			return fmt.Errorf("send %s: rerun record: %w", a.ID, err)
		}
		from = []tasks.State{tasks.StateQueued}
	}
	if !tasks.CanTransition(from[0], to, false) {
		return ret
	}
	got, ok, err := w.store.Transition(wctx, a.ID, from, to, upd)
	if err != nil {
		return fmt.Errorf("send %s: record %s: %w", a.ID, to, err)
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
func (w *Worker) expireUnsent(ctx context.Context, a tasks.SendArgs, rec tasks.Record, why string) error {
	if rec.State == tasks.StateSending {
		return w.finishSend(ctx, a, rec, tasks.StateUnknown, why+" after an interrupted attempt; outcome unknown",
			Decision{Action: ActionAmbiguous, Reason: why + " after an interrupted attempt", VendorCode: -1}, nil)
	}
	return w.finishSend(ctx, a, rec, tasks.StateExpired, why,
		Decision{Action: ActionSuccess, Reason: why + "; expired, not sent", VendorCode: -1}, nil)
}

// raise sends one alert (deduplicated across pods by the Alerter) and pauses the send
// queues when pause is set.
func (w *Worker) raise(ctx context.Context, kind, summary, msgID, dest string, d Decision, pause bool) {
	actx, cancel := detached(ctx)
	defer cancel()
	fields := map[string]string{"msg_id": msgID, "reason": d.Reason}
	if dest != "" {
		fields["dest"] = dest
	}
	if d.HTTPStatus != 0 {
		fields["http_status"] = itoa(d.HTTPStatus)
	}
	if d.VendorCode >= 0 {
		fields["vendor_code"] = itoa(d.VendorCode)
	}
	if pause {
		paused, err := w.pauseSendQueues()
		if err != nil {
			zlog(ctx).Error().Err(err).Msg("cannot pause the send queues")
		}
		if len(paused) > 0 {
			attemptFrom(ctx).note = joinNote(attemptFrom(ctx).note, "paused queues "+strings.Join(paused, ","))
		}
		fields["queues_paused"] = strings.Join(sendQueues, ",")
	}
	if w.alerter == nil {
		return
	}
	if err := w.alerter.Alert(actx, Alert{Kind: kind, Summary: summary, Fields: fields, At: w.now().UTC()}); err != nil {
		zlog(ctx).Error().Err(err).Str("alert_kind", kind).Msg("cannot deliver alert")
	}
}

// sendQueues are the queues paused on 402/401 (polls go on: they cost nothing).
var sendQueues = []string{tasks.QueueCritical, tasks.QueueDefault}

// pauseSendQueues pauses the send queues that are not paused yet and returns those it
// paused. Pausing is shared through Redis: every pod stops taking sends.
func (w *Worker) pauseSendQueues() ([]string, error) {
	var (
		paused []string
		errs   []error
	)
	for _, q := range sendQueues {
		info, err := w.insp.GetQueueInfo(q)
		if err == nil && info.Paused {
			continue
		}
		if err := w.insp.PauseQueue(q); err != nil {
			if info2, err2 := w.insp.GetQueueInfo(q); err2 == nil && info2.Paused {
				continue // paused meanwhile by another pod
			}
			errs = append(errs, fmt.Errorf("pause queue %s: %w", q, err))
			continue
		}
		paused = append(paused, q)
	}
	return paused, errors.Join(errs...)
}

// errText is the record's error for a decision: the provider's words when there are.
func errText(d Decision, err error) string {
	var api *provider.APIError
	if errors.As(err, &api) {
		s := strings.TrimSpace(api.Name)
		if api.Message != "" {
			s += ": " + api.Message
		}
		if s != "" {
			if d.HTTPStatus != 0 {
				return fmt.Sprintf("%d %s", d.HTTPStatus, s)
			}
			return s
		}
	}
	if err != nil {
		return err.Error()
	}
	return d.Reason
}

// codeOf is the "code" label of a provider call.
func codeOf(err error) string {
	if err == nil {
		return "200"
	}
	var (
		api *provider.APIError
		re  *provider.ResponseError
		te  *provider.TransportError
		ve  *provider.ValidationError
	)
	switch {
	case errors.As(err, &api):
		return itoa(api.HTTPStatus)
	case errors.As(err, &re):
		return itoa(re.HTTPStatus)
	case errors.As(err, &te):
		return "transport"
	case errors.As(err, &ve):
		return "invalid"
	}
	return "error"
}
