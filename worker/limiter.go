package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Bucket names of the two global limiters (also the label of
// viberq_limiter_wait_seconds).
const (
	BucketSend   = "send"   // send-viber calls
	BucketStatus = "status" // receive-viber calls
)

// Limiter is a token bucket in Redis shared by every worker process (GCRA through
// github.com/go-redis/redis_rate), plus a pause key that a provider 429 sets for the
// hinted time so that every process stops calling, not only the one that was told.
//
// Keys: the bucket is "rate:{prefix}limiter:{bucket}" (redis_rate prepends "rate:") and
// the pause key "{prefix}limiter:{bucket}:pause" (the end of the pause in Unix ms, with
// a PX expiry).
//
// Why Wait blocks instead of returning an error: the bucket is the throttle, not a
// failure. A handler that waits keeps its worker slot (up to Concurrency slots can sit
// in Wait), but the task keeps its place, its retry counter and its latency: a token
// comes free every 1/rate seconds, so the wait is short in a healthy system, and
// returning a rate-limit error instead would push the task through the retry set with
// 1-second granularity, adding latency and Redis churn for every message over the
// rate. Wait honours ctx (task deadline, shutdown) and returns early when the required
// sleep would outlast the ctx deadline, so a slot is never held past the task's end.
// A process-local limiter would not do: more pods must never mean more requests.
type Limiter struct {
	rdb      redis.UniversalClient
	rl       *redis_rate.Limiter
	bucket   string
	key      string
	pauseKey string
	limit    redis_rate.Limit
	metrics  *Metrics
	now      func() time.Time
}

// NewLimiter returns the global limiter for bucket (BucketSend or BucketStatus) under
// the key prefix (e.g. "viberq:"), allowing rate calls per second with the given burst
// (burst < 1 means 1: exactly rate per second from the start, no burst on top). A
// fractional rate is kept exactly (0.5 is one call every 2 s). A rate of 0 or less
// disables the bucket (Wait only honours the pause key). m may be nil.
func NewLimiter(rdb redis.UniversalClient, prefix, bucket string, rate float64, burst int, m *Metrics) *Limiter {
	if burst < 1 {
		burst = 1
	}
	return &Limiter{
		rdb:      rdb,
		rl:       redis_rate.NewLimiter(rdb),
		bucket:   bucket,
		key:      prefix + "limiter:" + bucket,
		pauseKey: prefix + "limiter:" + bucket + ":pause",
		limit:    rateLimit(rate, burst),
		metrics:  m,
		now:      time.Now,
	}
}

// rateLimit expresses rate/s as redis_rate's integer Rate per Period: Rate per 1 s for
// whole rates, per 1000 s (milli-precision) otherwise. GCRA only uses Period/Rate (the
// emission interval) and Burst, so both forms behave the same.
func rateLimit(rate float64, burst int) redis_rate.Limit {
	switch {
	case rate <= 0:
		return redis_rate.Limit{Period: time.Second, Burst: burst}
	case rate == math.Trunc(rate) && rate < math.MaxInt32:
		return redis_rate.Limit{Rate: int(rate), Period: time.Second, Burst: burst}
	default:
		return redis_rate.Limit{Rate: max(1, int(math.Round(rate*1000))), Period: 1000 * time.Second, Burst: burst}
	}
}

// Bucket returns the bucket name.
func (l *Limiter) Bucket() string { return l.bucket }

// Limit returns the configured limit (Rate 0 means unlimited).
func (l *Limiter) Limit() redis_rate.Limit { return l.limit }

// maxSleep caps one sleep of Wait, so that a pause set (or lifted) by another process
// is seen promptly.
const maxSleep = time.Second

// Wait blocks until a token is taken from the bucket (and the bucket is not paused),
// or ctx is done. It returns how long it waited. The error wraps ctx.Err() when the ctx
// ends first (or would end before the next token), or a Redis error.
func (l *Limiter) Wait(ctx context.Context) (waited time.Duration, err error) {
	start := l.now()
	defer func() {
		waited = l.now().Sub(start)
		if err == nil {
			l.metrics.observeLimiterWait(l.bucket, waited)
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("limiter %s: %w", l.bucket, err)
		}
		pause, err := l.Paused(ctx)
		if err != nil {
			return 0, err
		}
		if pause > 0 {
			if err := l.sleep(ctx, pause); err != nil {
				return 0, err
			}
			continue
		}
		if l.limit.Rate <= 0 {
			return 0, nil
		}
		res, err := l.rl.Allow(ctx, l.key, l.limit)
		if err != nil {
			return 0, fmt.Errorf("limiter %s: %w", l.bucket, err)
		}
		if res.Allowed > 0 {
			return 0, nil
		}
		// Spread the waiters: all of them are told the same RetryAfter, only one wins
		// the next token.
		d := res.RetryAfter
		if iv := l.limit.Period / time.Duration(l.limit.Rate); iv > 0 {
			d += rand.N(iv)
		}
		if err := l.sleep(ctx, d); err != nil {
			return 0, err
		}
	}
}

// sleep waits d (capped at maxSleep) or until ctx is done. If ctx's deadline comes
// before d it returns at once with an error wrapping context.DeadlineExceeded.
func (l *Limiter) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		d = time.Millisecond
	}
	if dl, ok := ctx.Deadline(); ok && dl.Sub(l.now()) < d {
		return &LimitedError{Bucket: l.bucket, Wait: d}
	}
	d = min(d, maxSleep)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("limiter %s: %w", l.bucket, ctx.Err())
	case <-t.C:
		return nil
	}
}

// LimitedError is returned by Wait when the next token (or the end of a pause) comes
// after the ctx deadline: Wait returns at once instead of holding a worker slot for
// nothing. It wraps context.DeadlineExceeded.
type LimitedError struct {
	Bucket string
	Wait   time.Duration // how long it would have had to wait
}

// Error says which bucket and how long.
func (e *LimitedError) Error() string {
	return fmt.Sprintf("limiter %s: next token in %s, after the deadline: %s", e.Bucket, e.Wait.Round(time.Millisecond), context.DeadlineExceeded)
}

// Unwrap returns context.DeadlineExceeded.
func (e *LimitedError) Unwrap() error { return context.DeadlineExceeded }

// The pause key holds the Unix time in ms (Redis TIME) until which the bucket is
// paused, and expires with it. Reading the time left from the value rather than from
// the key's TTL keeps it exact on servers that do not expire keys in real time
// (miniredis, used by the demo and by tests).

// pauseScript pauses until now+ARGV[1] ms unless a longer pause is in place, so
// concurrent 429s never shorten a pause. It returns the ms left.
var pauseScript = redis.NewScript(`
redis.replicate_commands()
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local want = now + tonumber(ARGV[1])
local cur = tonumber(redis.call("GET", KEYS[1]) or "0") or 0
if cur < want then
  redis.call("SET", KEYS[1], tostring(want), "PX", ARGV[1])
  return tonumber(ARGV[1])
end
return cur - now
`)

// pauseLeftScript returns the ms left of the pause, 0 when there is none.
var pauseLeftScript = redis.NewScript(`
local v = redis.call("GET", KEYS[1])
if not v then return 0 end
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local left = (tonumber(v) or 0) - now
if left < 0 then return 0 end
return left
`)

// Pause stops every process from taking tokens for d (a provider 429 and its hint).
// A longer pause already in place is kept. d ≤ 0 does nothing.
func (l *Limiter) Pause(ctx context.Context, d time.Duration) error {
	ms := d.Milliseconds()
	if ms <= 0 {
		return nil
	}
	if err := pauseScript.Run(ctx, l.rdb, []string{l.pauseKey}, ms).Err(); err != nil {
		return fmt.Errorf("limiter %s: pause: %w", l.bucket, err)
	}
	return nil
}

// Paused returns how long the bucket stays paused (0 when it is not).
func (l *Limiter) Paused(ctx context.Context) (time.Duration, error) {
	ms, err := pauseLeftScript.Run(ctx, l.rdb, []string{l.pauseKey}).Int64()
	if err != nil {
		return 0, fmt.Errorf("limiter %s: pause key: %w", l.bucket, err)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// Reset clears the bucket and the pause key (tests, operators).
func (l *Limiter) Reset(ctx context.Context) error {
	return errors.Join(l.rl.Reset(ctx, l.key), l.rdb.Del(ctx, l.pauseKey).Err())
}
