package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/viberq/viberq/provider"
)

// attempt collects what one task attempt did, for its single log line. The send
// handler returns its attempt and the adapter in server.go (reporting) hands it over;
// the poll handler still fills it through attemptFrom(ctx). The middleware writes the
// line.
type attempt struct {
	msgID         string
	providerMsgID int64
	state         string // record state after the attempt
	decision      Decision
	decided       bool
	expiresAt     time.Time
	dest          string // masked
	note          string // what the handler did when no provider call decided it
}

type attemptKey struct{}

func withAttempt(ctx context.Context, at *attempt) context.Context {
	return context.WithValue(ctx, attemptKey{}, at)
}

// attemptFrom returns the attempt of ctx, or a throwaway one (outside the middleware).
func attemptFrom(ctx context.Context) *attempt {
	if at, ok := ctx.Value(attemptKey{}).(*attempt); ok {
		return at
	}
	return &attempt{}
}

func (at *attempt) decide(d Decision) {
	at.decision, at.decided = d, true
}

// retryError is what the middleware returns for a task that asynq should retry: the
// delay is decided once (and logged as retry_in), and RetryDelayFunc and IsFailure
// read it back, so the log line and the schedule agree.
type retryError struct {
	delay   time.Duration
	failure bool
	err     error
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// RetryAfterError asks for a retry after Delay without using up the retry budget
// (IsFailure is false): the provider's 429, or a global bucket paused for longer than
// the task may wait. Like River's JobSnooze.
type RetryAfterError struct {
	Delay time.Duration
	Err   error
}

// Error returns the wrapped error's text.
func (e *RetryAfterError) Error() string {
	if e.Err == nil {
		return "retry after " + e.Delay.String()
	}
	return e.Err.Error()
}

// Unwrap returns the wrapped error.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// logLimiter rate-limits repeated warn/error lines per key (action + reason), like
// asynq's errLogLimiter: a 402 or a Redis outage hits every task at once. Within each
// period at most burst lines per key pass; the next line that passes carries the
// number suppressed meanwhile.
type logLimiter struct {
	mu     sync.Mutex
	period time.Duration
	burst  int
	keys   map[string]*logWindow
}

type logWindow struct {
	start      time.Time
	n          int
	suppressed int
}

func newLogLimiter(period time.Duration, burst int) *logLimiter {
	return &logLimiter{period: period, burst: burst, keys: map[string]*logWindow{}}
}

// allow reports whether a line for key may be written now, and how many lines of the
// key were suppressed since the last one written.
func (l *logLimiter) allow(key string, now time.Time) (bool, int) {
	if l == nil || l.burst <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.keys[key]
	if w == nil {
		if len(l.keys) > 1024 { // bounded memory: forget old keys
			for k, v := range l.keys {
				if now.Sub(v.start) > l.period {
					delete(l.keys, k)
				}
			}
		}
		w = &logWindow{start: now}
		l.keys[key] = w
	}
	if now.Sub(w.start) >= l.period {
		w.start, w.n = now, 0
	}
	if w.n >= l.burst {
		w.suppressed++
		return false, 0
	}
	w.n++
	s := w.suppressed
	w.suppressed = 0
	return true, s
}

// middleware wraps every task attempt: the task timeout, the per-task logger in ctx
// (zerolog.Ctx), the attempt record, the retry decision and ONE log line. It first
// grows the task goroutine's stack to what a send needs (growStack).
func (w *Worker) middleware(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		_ = growStack(len(t.Type()))
		start := w.now()
		taskID, _ := asynq.GetTaskID(ctx)
		queue, _ := asynq.GetQueueName(ctx)
		retried, _ := asynq.GetRetryCount(ctx)
		taskMax, hasMax := asynq.GetMaxRetry(ctx)
		maxRetry := w.retryBudget(ctx)

		lg := w.log.With().Str("task_id", provider.MaskID(taskID)).Str("task_type", t.Type()).Str("queue", queue).Logger()
		ctx = lg.WithContext(ctx)
		at := &attempt{}
		ctx = withAttempt(ctx, at)
		if w.cfg.TaskTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, w.cfg.TaskTimeout)
			defer cancel()
		}

		err := w.protect(ctx, next, t)
		if err != nil {
			w.awaitRedis(ctx)
		}

		op := opOf(t.Type())
		if !at.decided {
			at.decide(Classify(op, err))
		}
		var retryIn time.Duration
		outcome := "done"
		switch {
		case err == nil:
		case errors.Is(err, asynq.SkipRetry):
			outcome = "archived"
		case errors.Is(err, asynq.RevokeTask):
			outcome = "revoked"
		default:
			retryIn = w.retryDelay(retried, err, t)
			failure := w.isFailure(err)
			switch {
			case failure && retried >= maxRetry && (!hasMax || retried < taskMax):
				// The worker's budget (Config.MaxRetry) ends before the task's own:
				// record the final state here and have asynq archive the task.
				outcome = "archived"
				at.note = joinNote(at.note, "retries exhausted")
				w.exhausted(ctx, t, err, retried, maxRetry)
				err = skip(err)
			case hasMax && retried >= taskMax:
				outcome = "archived"
				at.note = joinNote(at.note, "retries exhausted")
				err = &retryError{delay: retryIn, failure: failure, err: err}
			default:
				outcome = "retry"
				err = &retryError{delay: retryIn, failure: failure, err: err}
			}
		}
		w.logAttempt(lg, at, err, outcome, retried, maxRetry, retryIn, w.now().Sub(start))
		return err
	})
}

// protect runs the handler, turning a panic into an error (retried) so that the
// attempt still gets its log line.
func (w *Worker) protect(ctx context.Context, next asynq.Handler, t *asynq.Task) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in %s handler: %v", t.Type(), r)
			attemptFrom(ctx).decide(Decision{Action: ActionRetry, Reason: "handler panicked; retry", VendorCode: -1})
		}
	}()
	return next.ProcessTask(ctx, t)
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// logAttempt writes the one line of an attempt. Never the key, the Authorization
// header, message text or a full phone number: only the fields below.
func (w *Worker) logAttempt(lg zerolog.Logger, at *attempt, err error, outcome string, retried, maxRetry int, retryIn, dur time.Duration) {
	d := at.decision
	var level zerolog.Level
	switch {
	case d.Action == ActionDrop || d.Action == ActionAuth:
		level = zerolog.ErrorLevel
	case err == nil && (d.Action == ActionSuccess || d.Action == ActionPending):
		level = zerolog.InfoLevel
	case err == nil:
		level = zerolog.WarnLevel // settled, but not by a success: e.g. unknown
	case outcome == "archived" && d.Action != ActionReject && d.Action != ActionSkip:
		level = zerolog.ErrorLevel // retries exhausted
	default:
		level = zerolog.WarnLevel
	}
	suppressed := 0
	if level >= zerolog.WarnLevel {
		ok, n := w.logLim.allow(d.Action.String()+"|"+d.Reason, w.now())
		if !ok {
			return
		}
		suppressed = n
	}
	ev := lg.WithLevel(level).
		Int("retry", retried).
		Int("max_retry", maxRetry).
		Str("msg_id", provider.MaskID(at.msgID)).
		Str("action", d.Action.String()).
		Str("reason", d.Reason).
		Str("outcome", outcome).
		Int64("duration_ms", dur.Milliseconds())
	if at.providerMsgID != 0 {
		ev = ev.Int64("provider_msg_id", at.providerMsgID)
	}
	if at.state != "" {
		ev = ev.Str("status", at.state)
	}
	if d.HTTPStatus != 0 {
		ev = ev.Int("http_status", d.HTTPStatus)
	}
	if d.VendorCode >= 0 {
		ev = ev.Int("vendor_code", d.VendorCode)
	}
	if retryIn > 0 || outcome == "retry" {
		ev = ev.Str("retry_in", retryIn.Round(time.Millisecond).String())
	}
	if !at.expiresAt.IsZero() {
		ev = ev.Time("expires_at", at.expiresAt)
	}
	if at.dest != "" {
		ev = ev.Str("dest", at.dest)
	}
	if at.note != "" {
		ev = ev.Str("note", at.note)
	}
	if suppressed > 0 {
		ev = ev.Int("suppressed", suppressed)
	}
	if err != nil {
		ev = ev.Err(err)
	}
	ev.Msg("task " + outcome)
}

// itoa is strconv.Itoa (kept short for log keys).
func itoa(n int) string { return strconv.Itoa(n) }

// redisAwaitMax bounds awaitRedis: asynq abandons a task whose lease (30 s, extended
// every 5 s while Redis answers) ran out, so the wait must end well before that.
const redisAwaitMax = 20 * time.Second

// awaitRedis waits, after a failed attempt, until Redis answers PING (at most
// redisAwaitMax). asynq v0.26 hands a failed task back with one Redis write; if that
// write fails (Redis restarting), its syncer retries it with a context it has already
// cancelled, so the task stays active until the recoverer takes it back 60–120 s
// later (RELIABILITY.md, finding 1). Returning only once Redis answers lets that write
// succeed. One PING per failed attempt; nothing on success.
func (w *Worker) awaitRedis(ctx context.Context) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), redisAwaitMax)
	defer cancel()
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(50*time.Millisecond),
		backoff.WithMaxInterval(time.Second),
		backoff.WithMaxElapsedTime(redisAwaitMax),
	)
	_ = backoff.Retry(func() error {
		pctx, pcancel := context.WithTimeout(actx, time.Second)
		defer pcancel()
		return w.rdb.Ping(pctx).Err()
	}, backoff.WithContext(b, actx))
}
