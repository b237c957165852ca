package worker

import (
	"context"
	"errors"
	"time"

	"github.com/viberq/viberq/provider"
)

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

// rateLimited handles a 429 on lim's endpoint: the bucket is paused for the hint
// capped by MaxRetryAfter, and a longer hint raises AlertRateLimitHint (once per
// alert window, all pods) and an error-level line naming the hint. It returns the
// retry delay (the capped hint) and a note for the attempt's log line when it capped.
func (w *Worker) rateLimited(ctx context.Context, lim *Limiter, d Decision, msgID, dest string) (delay time.Duration, note string) {
	delay = min(d.RetryAfter, w.cfg.MaxRetryAfter)
	pctx, cancel := detached(ctx)
	defer cancel()
	if err := lim.Pause(pctx, delay); err != nil {
		zlog(ctx).Warn().Err(err).Str("msg_id", provider.MaskID(msgID)).Msg("cannot pause the " + lim.Bucket() + " bucket")
	}
	if d.RetryAfter <= w.cfg.MaxRetryAfter {
		return delay, ""
	}
	note = "retry-after " + d.RetryAfter.String() + " capped to " + delay.String()
	if ok, _ := w.logLim.allow("retry-after-capped", w.now()); ok {
		zlog(ctx).Error().Str("msg_id", provider.MaskID(msgID)).Str("bucket", lim.Bucket()).Dur("retry_after_hint", d.RetryAfter).
			Dur("max_retry_after", w.cfg.MaxRetryAfter).Msg("provider asked for a pause of " + d.RetryAfter.String() +
			"; paused for " + delay.String() + " only (VIBERQ_MAX_RETRY_AFTER)")
	}
	if w.alerter != nil {
		fields := map[string]string{"msg_id": provider.MaskID(msgID), "bucket": lim.Bucket(), "retry_after_hint": d.RetryAfter.String(),
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
	return delay, note
}
