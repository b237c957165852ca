package worker

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/redis/go-redis/v9"
)

// Bucket names of the two global limiters (also the label of
// viberq_limiter_wait_seconds).
const (
	BucketSend   = "send"   // send-viber calls
	BucketStatus = "status" // receive-viber calls
)

// Limiter is a token bucket in Redis shared by every worker process, plus a pause key
// that a provider 429 sets for the hinted time so that every process stops calling,
// not only the one that was told.
//
// The bucket is GCRA with reservations (the Redis counterpart of x/time/rate's
// Reserve): one Lua script reads the pause key and the bucket's theoretical arrival
// time (TAT) on Redis's clock, and hands the caller the next free slot, up to
// maxAhead in the future; the caller sleeps until its slot and sends. Every waiter
// gets its own slot, so waiters never poll Redis in a loop (with polling, 150 waiters
// made 13k–54k script calls per second for 290 sends/s and left tokens unused; see
// BENCHMARKS.md, row 4), and the slots of all processes together are spaced by the
// emission interval: never more than rate per second plus the burst. redis_rate's
// Allow has no reservation, hence the script.
//
// Keys: the TAT "{prefix}limiter:{bucket}:tat" (µs on Redis's clock, expiring when
// idle) and the pause key "{prefix}limiter:{bucket}:pause" (the end of the pause in
// Unix ms, with a PX expiry).
//
// What the limiter guarantees (and its tests check, on the Redis clock, not on the
// scheduler's timing): reserved slots are spaced by at least the emission interval
// (burst slots may share an instant), and Wait returns no earlier than its slot and no
// later than lateTolerance after it; a caller that wakes later gives the slot up and
// reserves again. Lateness is bounded from the moment the reservation request left,
// so a slow reply cannot hide it (redisClock keeps that bound tight). Hence any
// one-second window holds at most rate + burst returns of Wait (up to 100/s; above,
// minLateTolerance allows ⌈rate/100⌉ more), all processes together, also after an
// outage of the provider (the tasks that come back all reserve) or of Redis (a
// reservation is never more than maxAhead away, and each process sends the TAT its
// last reservation, or its send gate's last token, left as a floor, so its own
// outstanding slots survive a TAT lost with Redis's data). What it cannot see:
// network delay between Wait's return and the request's arrival at the provider, and
// a Redis that loses its data and is back within maxAhead while other processes still
// hold slots.
//
// Priority: Wait reserves up to maxAhead ahead; WaitBulk (promotional sends) only up
// to bulkAhead, and asks again when the next slot is further. A transactional send
// therefore finds at most bulkAhead of promotional reservations ahead of it, however
// long the promotional backlog.
//
// A pause is capped by MaxPause (the worker sets it from VIBERQ_MAX_RETRY_AFTER): one
// 429 with a hint of a day must not stop every pod for a day.
//
// Why Wait blocks instead of returning an error: the bucket is the throttle, not a
// failure. A handler that waits keeps its worker slot (up to Concurrency send slots
// can sit in Wait; polls have their own slots, see the package doc), but the task
// keeps its place, its retry counter and its latency; returning a rate-limit error
// instead would push the task through the retry set with 1-second granularity. Wait
// honours ctx (task deadline, shutdown) and returns at once when its slot would come
// after the ctx deadline, so a worker slot is never held for nothing. A
// process-local limiter would not do: more pods must never mean more requests.
type Limiter struct {
	rdb      redis.UniversalClient
	bucket   string
	tatKey   string
	pauseKey string
	rate     float64
	interval time.Duration // emission interval, 1/rate; 0: unlimited
	burst    int
	metrics  *Metrics
	now      func() time.Time
	maxPause time.Duration
	// lastTAT is the TAT this process's latest reservation (or send gate token) left
	// (µs, Redis clock), sent as a floor so that a TAT lost with Redis's data does not
	// hand out again the slots this process still holds.
	lastTAT atomic.Int64
	// clock bounds Redis's clock against this process's, for the lateness check.
	clock redisClock
	// onSlot, if set (tests), is called with each slot Wait returns on (µs, Redis
	// clock) and the upper bound of its lateness.
	onSlot func(slotUS int64, late time.Duration)
}

// NewLimiter returns the global limiter for bucket (BucketSend or BucketStatus) under
// the key prefix (e.g. "viberq:"), allowing rate calls per second with the given burst
// (burst < 1 means 1: exactly rate per second from the start, no burst on top). A
// fractional rate is kept exactly (0.5 is one call every 2 s). A rate of 0 or less
// disables the bucket (Wait only honours the pause key). m may be nil.
func NewLimiter(rdb redis.UniversalClient, prefix, bucket string, rate float64, burst int, m *Metrics) *Limiter {
	l := &Limiter{
		rdb:      rdb,
		bucket:   bucket,
		tatKey:   prefix + "limiter:" + bucket + ":tat",
		pauseKey: prefix + "limiter:" + bucket + ":pause",
		rate:     max(rate, 0),
		burst:    max(burst, 1),
		metrics:  m,
		now:      time.Now,
		maxPause: DefaultMaxRetryAfter,
	}
	if rate > 0 {
		l.interval = max(time.Microsecond, time.Duration(float64(time.Second)/rate))
	}
	return l
}

// SetMaxPause sets the longest pause Pause applies (d ≤ 0: DefaultMaxRetryAfter) and
// returns l. Call it before the limiter is used.
func (l *Limiter) SetMaxPause(d time.Duration) *Limiter {
	if d <= 0 {
		d = DefaultMaxRetryAfter
	}
	l.maxPause = d
	return l
}

// MaxPause returns the longest pause Pause applies.
func (l *Limiter) MaxPause() time.Duration { return l.maxPause }

// Bucket returns the bucket name.
func (l *Limiter) Bucket() string { return l.bucket }

// Rate returns the configured calls per second (0: unlimited) and the burst.
func (l *Limiter) Rate() (perSecond float64, burst int) { return l.rate, l.burst }

// maxAhead is the furthest in the future a slot is reserved. A waiter further back
// sleeps and asks again, so a cancelled waiter wastes at most this much allowance
// and a pause set meanwhile is seen.
const maxAhead = time.Second

// bulkAhead is the furthest ahead WaitBulk reserves: what a transactional send may
// find reserved ahead of it by a promotional backlog.
const bulkAhead = maxAhead / 4

// minLateTolerance is the least lateness accepted however high the rate. Up to
// 100/s the tolerance is one emission interval and a one-second window holds at most
// rate + 1 calls; above, the interval is shorter than a loaded machine's timer and
// scheduling jitter (a 2-core machine at load 25 wakes sleepers 5-30 ms late), and
// refusing those slots cost 40% of the allowance at 300/s (BENCHMARKS.md, row 4), so
// 10 ms are accepted: at most rate + ⌈rate/100⌉ in a window, 1% over.
const minLateTolerance = 10 * time.Millisecond

// lateTolerance is how late after its slot Wait may still return.
func (l *Limiter) lateTolerance() time.Duration { return max(l.interval, minLateTolerance) }

// pauseRecheck: a caller that slept at least this long towards its slot checks the
// pause key again before sending (one more round trip, only when there was a wait).
const pauseRecheck = 10 * time.Millisecond

// maxSleep caps one sleep while paused, so that a pause lifted or extended by another
// process is seen promptly.
const maxSleep = time.Second

// gcraLua is the bucket's GCRA arithmetic, its only copy: reserveScript and the send
// gate's hook (sendgate.go) are both built on it, so a slot reserved by Wait and a
// token taken by the gate come from one rule, with one pause check and one floor.
// It defines three Lua local functions:
//
//   - gcra_now(): Redis's clock in µs (after redis.replicate_commands, so that the
//     script's writes, not the script, are replicated: TIME is not deterministic);
//   - gcra_check(tat_key, pause_key, now, iv, burst, floor): reads the bucket and
//     returns paused, wait, new_tat: paused is the ms left of a pause (0: not
//     paused; then nothing else is read); wait the µs from now until the next token
//     (≤ 0: free now), new_tat the TAT that taking it leaves. iv is the emission
//     interval in µs (≤ 0: no bucket, a token is always free), floor the TAT this
//     process's latest token left (the TAT never moves back below it, so a TAT lost
//     with Redis's data does not hand out again the tokens this process holds);
//   - gcra_take(tat_key, now, new_tat): takes that token (sets the TAT, expiring
//     when the bucket is idle again). Only with iv > 0.
//
// It reads and writes nothing else, so the gate can run it before its transition and
// take the token only after.
const gcraLua = `
local function gcra_now()
  redis.replicate_commands()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function gcra_check(tat_key, pause_key, now, iv, burst, floor)
  local pause = tonumber(redis.call('GET', pause_key) or '0') or 0
  if pause * 1000 > now then return math.ceil(pause - now / 1000), 0, 0 end
  if iv <= 0 then return 0, 0, now end
  local tat = tonumber(redis.call('GET', tat_key) or '0') or 0
  if tat < floor then tat = floor end
  if tat < now then tat = now end
  local new_tat = tat + iv
  return 0, new_tat - iv * burst - now, new_tat
end
local function gcra_take(tat_key, now, new_tat)
  redis.call('SET', tat_key, string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
end
`

// reserveScript takes the next slot of the bucket (gcraLua), up to a horizon.
//
// KEYS[1] TAT (µs), KEYS[2] pause key (Unix ms). ARGV[1] emission interval µs (> 0),
// ARGV[2] burst, ARGV[3] furthest slot accepted, µs from now, ARGV[4] the TAT the
// caller's latest reservation left (the floor). Returns {-1, ms}: paused for ms more
// (nothing reserved); {0, µs}: the next slot is µs away, beyond ARGV[3] (nothing
// reserved); {1, µs, slot, tat, now}: reserved, send in µs, at slot (µs, Redis
// clock); tat is the new TAT, now the script's time.
var reserveScript = redis.NewScript(gcraLua + `
local now = gcra_now()
local iv, burst, ahead = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local paused, wait, new_tat = gcra_check(KEYS[1], KEYS[2], now, iv, burst, tonumber(ARGV[4]) or 0)
if paused > 0 then return {-1, paused} end
if wait > ahead then return {0, wait} end
gcra_take(KEYS[1], now, new_tat)
if wait < 0 then wait = 0 end
return {1, wait, now + wait, new_tat, now}
`)

// Wait blocks until the caller holds a slot of the bucket (and the bucket is not
// paused), or ctx is done. It returns how long it waited. The error wraps ctx.Err()
// when the ctx ends first (or would end before the slot: *LimitedError), or a Redis
// error. A caller that wakes more than lateTolerance after its slot (an overloaded
// machine, a slow reply) does not use that slot, which could bunch sends; it reserves
// again.
func (l *Limiter) Wait(ctx context.Context) (time.Duration, error) {
	return l.wait(ctx, maxAhead)
}

// WaitBulk is Wait for low-priority calls (promotional sends): it reserves a slot only
// when it is at most bulkAhead away, so that a Wait caller arriving later finds
// little reserved ahead of it.
func (l *Limiter) WaitBulk(ctx context.Context) (time.Duration, error) {
	return l.wait(ctx, bulkAhead)
}

func (l *Limiter) wait(ctx context.Context, horizon time.Duration) (waited time.Duration, err error) {
	start := l.now()
	defer func() {
		waited = l.now().Sub(start)
		if err == nil {
			l.metrics.observeLimiterWait(l.bucket, waited)
		}
	}()
	var outage *backoff.ExponentialBackOff
	for {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("limiter %s: %w", l.bucket, err)
		}
		if l.interval == 0 {
			pause, err := l.Paused(ctx)
			if err != nil {
				if d, ok := l.rideOut(ctx, &outage); ok {
					if err := l.sleep(ctx, d, d); err != nil {
						return 0, err
					}
					continue
				}
				return 0, err
			}
			if pause == 0 {
				return 0, nil
			}
			if err := l.sleep(ctx, pause, maxSleep); err != nil {
				return 0, err
			}
			continue
		}
		ahead := horizon
		if dl, ok := ctx.Deadline(); ok {
			ahead = min(ahead, dl.Sub(l.now()))
		}
		asked := l.now() // the script ran after this: its clock read at least asked
		res, err := reserveScript.Run(ctx, l.rdb, []string{l.tatKey, l.pauseKey},
			l.interval.Microseconds(), l.burst, max(ahead.Microseconds(), 0), l.lastTAT.Load()).Int64Slice()
		if err != nil {
			if d, ok := l.rideOut(ctx, &outage); ok {
				if err := l.sleep(ctx, d, d); err != nil {
					return 0, err
				}
				continue
			}
			return 0, fmt.Errorf("limiter %s: %w", l.bucket, err)
		}
		outage = nil
		if len(res) < 2 || (res[0] == 1 && len(res) != 5) {
			return 0, fmt.Errorf("limiter %s: unexpected script reply %v", l.bucket, res)
		}
		switch res[0] {
		case -1: // paused by a 429
			if err := l.sleep(ctx, time.Duration(res[1])*time.Millisecond, maxSleep); err != nil {
				return 0, err
			}
		case 0: // the next slot is too far ahead: come back closer to it
			wait := time.Duration(res[1]) * time.Microsecond
			if err := l.sleep(ctx, wait, max(wait-horizon/2, time.Millisecond)); err != nil {
				return 0, err
			}
		default: // reserved
			l.raiseFloor(res[3])
			wait := time.Duration(res[1]) * time.Microsecond
			slot := l.clock.slot(asked, res[4], res[2])
			if err := l.sleep(ctx, wait, wait); err != nil {
				return 0, err
			}
			late := l.now().Sub(slot)
			if late > l.lateTolerance() {
				continue // woke too late: sending now could bunch with the next slots
			}
			if wait >= pauseRecheck {
				// A 429 may have paused the bucket while this caller slept towards
				// its slot: the slot is given up rather than sent into the pause.
				pause, err := l.Paused(ctx)
				if err == nil && pause > 0 {
					continue
				}
				if late = l.now().Sub(slot); late > l.lateTolerance() {
					continue
				}
			}
			if l.onSlot != nil {
				l.onSlot(res[2], late)
			}
			return 0, nil
		}
	}
}

// redisClock keeps, per window of redisClockWindow, the smallest difference seen
// between Redis's clock in the reservation script and this process's clock when the
// request left. Redis read its clock after the request left, so every difference is
// at least the true offset between the clocks, and the smallest is the closest: a
// slot's local time computed with it is never later than the true one, and a
// lateness measured from it never smaller. It is as tight as the fastest round trip
// of the window (a slow reply does not count against the caller, as long as one
// reply of the window was fast). The window bounds the effect of clock drift
// (NTP slews Redis's clock by at most 500 ppm: 2.5 ms per window, typically far less).
type redisClock struct {
	mu      sync.Mutex
	epoch   time.Time // local reference (monotonic)
	start   time.Time // start of the current window
	minDiff int64     // µs: Redis's clock - local µs since epoch, smallest this window
}

const redisClockWindow = 5 * time.Second

// slot returns the local time no later than the Redis-clock slot slotUS, given that
// the script read redisNowUS after the request left at asked.
func (c *redisClock) slot(asked time.Time, redisNowUS, slotUS int64) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch.IsZero() {
		c.epoch = asked
	}
	diff := redisNowUS - asked.Sub(c.epoch).Microseconds()
	if c.start.IsZero() || asked.Sub(c.start) >= redisClockWindow {
		c.start, c.minDiff = asked, diff
	} else if diff < c.minDiff {
		c.minDiff = diff
	}
	return c.epoch.Add(time.Duration(slotUS-c.minDiff) * time.Microsecond)
}

// raiseFloor keeps the largest TAT seen.
func (l *Limiter) raiseFloor(tat int64) {
	for {
		cur := l.lastTAT.Load()
		if tat <= cur || l.lastTAT.CompareAndSwap(cur, tat) {
			return
		}
	}
}

// maxOutage is how long Wait, inside a task, retries Redis errors before failing.
const maxOutage = 30 * time.Second

// rideOut returns how long to wait before retrying a failed Redis call, and false
// when Wait should fail instead: outside a task (ctx without a deadline), or after
// maxOutage of failures. Inside a task a short Redis outage (a restart, a failover)
// is waited out: a task that fails while Redis is down cannot be put back by asynq
// v0.26.0 (its retry write uses a context it has already cancelled) and waits for the
// recoverer, 1–2 minutes (RELIABILITY.md, finding 1).
func (l *Limiter) rideOut(ctx context.Context, bo **backoff.ExponentialBackOff) (time.Duration, bool) {
	if _, ok := ctx.Deadline(); !ok {
		return 0, false
	}
	if *bo == nil {
		*bo = backoff.NewExponentialBackOff(
			backoff.WithInitialInterval(50*time.Millisecond),
			backoff.WithMaxInterval(maxSleep),
			backoff.WithMaxElapsedTime(maxOutage),
		)
	}
	d := (*bo).NextBackOff()
	return d, d != backoff.Stop
}

// sleep waits min(d, limit) or until ctx is done. If ctx's deadline comes before d it
// returns at once with a *LimitedError.
func (l *Limiter) sleep(ctx context.Context, d, limit time.Duration) error {
	if dl, ok := ctx.Deadline(); ok && dl.Sub(l.now()) < d {
		return &LimitedError{Bucket: l.bucket, Wait: d}
	}
	d = min(d, limit)
	if d <= 0 {
		return nil
	}
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

// Pause stops every process from taking tokens for min(d, MaxPause()) (a provider 429
// and its hint). A longer pause already in place is kept. d ≤ 0 does nothing.
func (l *Limiter) Pause(ctx context.Context, d time.Duration) error {
	ms := min(d, l.maxPause).Milliseconds()
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

// ClearPause lifts a pause (an operator's resume) and returns how long it had left.
func (l *Limiter) ClearPause(ctx context.Context) (time.Duration, error) {
	left, err := l.Paused(ctx)
	if err != nil {
		return 0, err
	}
	if err := l.rdb.Del(ctx, l.pauseKey).Err(); err != nil {
		return 0, fmt.Errorf("limiter %s: clear pause: %w", l.bucket, err)
	}
	return left, nil
}

// ClearLimiterPauses lifts the pauses of both global buckets under prefix (what
// `viberq resume` and the other operator paths call) and returns, per bucket that was
// paused, how long it had left. Waiting tasks see it within a second.
func ClearLimiterPauses(ctx context.Context, rdb redis.UniversalClient, prefix string) (map[string]time.Duration, error) {
	cleared := map[string]time.Duration{}
	for _, b := range []string{BucketSend, BucketStatus} {
		left, err := NewLimiter(rdb, prefix, b, 0, 1, nil).ClearPause(ctx)
		if err != nil {
			return cleared, err
		}
		if left > 0 {
			cleared[b] = left
		}
	}
	return cleared, nil
}

// Reset clears the bucket and the pause key (tests, operators).
func (l *Limiter) Reset(ctx context.Context) error {
	if err := l.rdb.Del(ctx, l.tatKey, l.pauseKey).Err(); err != nil {
		return fmt.Errorf("limiter %s: reset: %w", l.bucket, err)
	}
	return nil
}
