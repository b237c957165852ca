package dtsim

import (
	"math"
	"time"
)

// bucket is a token bucket on the simulator's clock. The zero rate is unlimited.
// It is not safe for concurrent use: the Sim's mutex guards it.
type bucket struct {
	rate   float64 // tokens per second; 0 = unlimited
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, burst int, now time.Time) bucket {
	if rate <= 0 {
		return bucket{}
	}
	b := float64(burst)
	if b < 1 {
		b = math.Max(1, math.Ceil(rate))
	}
	return bucket{rate: rate, burst: b, tokens: b, last: now}
}

// take takes one token. When none is left it reports how long until one is.
func (b *bucket) take(now time.Time) (ok bool, wait time.Duration, remaining int) {
	if b.rate <= 0 {
		return true, 0, 0
	}
	if now.After(b.last) {
		b.tokens = math.Min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0, int(b.tokens)
	}
	need := (1 - b.tokens) / b.rate
	return false, time.Duration(need * float64(time.Second)), 0
}

func (b *bucket) limit() int { return int(b.burst) }

// retryAfterSeconds rounds a wait up to whole seconds, at least 1 (Retry-After has
// one-second resolution; 0 would invite an immediate retry).
func retryAfterSeconds(wait time.Duration) int {
	s := int(math.Ceil(wait.Seconds()))
	if s < 1 {
		s = 1
	}
	return s
}
