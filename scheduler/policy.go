// Package scheduler owns the poll policy (a pure function of the poll number and the
// clock) and the scheduling of poll tasks ("viber:poll", queue "status").
//
// After the provider accepts a message, the worker schedules poll 0; each poll that
// does not find a final status schedules the next one, until the deadline: the TTL
// plus an SMS grace period, never beyond the provider's 5-day status window. A status
// already made final by a callback ends polling at the next poll without a call.
//
// The package does not log. It imports tasks, asynq and backoff only.
package scheduler

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Policy defaults.
const (
	// DefaultFirst is the delay of the first poll after acceptance, and the default of
	// VIBERQ_POLL_FIRST (this is the one place that says why). The simulator's
	// realistic profile delivers Viber messages 1-6 s after the send; a first poll at
	// 5 s (fired at the next whole second, so 5-6 s after acceptance) finds most of
	// them delivered. Measured by `viberq bench --only 7` (BENCHMARKS.md, row 7a: 600
	// messages, realistic profile): 2.19 provider calls per delivered message at 5 s,
	// 2.36 at 3 s: 12 % fewer status calls (VIBERQ_STATUS_RATE_LIMIT bounds how many
	// messages per second polling can settle) for an answer at most 2 s later. The model agrees (TestPolicyCallsPerDelivered: about
	// 2.1 at 5 s, 2.5 at 3 s). Waiting longer saves little more and delays the answer;
	// with status callbacks the first poll is DefaultFirstWithCallback instead.
	DefaultFirst = 5 * time.Second
	// DefaultFirstWithCallback is the first delay when status callbacks are on: the
	// callback is expected to settle the message, the poll is a safety net.
	DefaultFirstWithCallback = 2 * time.Minute
	// DefaultMaxInterval caps the interval between polls.
	DefaultMaxInterval = time.Minute
	// DefaultSMSGrace is how long polling continues after the TTL, for the SMS leg.
	DefaultSMSGrace = 10 * time.Minute
	// DefaultFactor is the growth of the interval from one poll to the next.
	DefaultFactor = 2.0
	// DefaultJitter spreads every interval after the first by ±20%.
	DefaultJitter = 0.2
	// DefaultProviderWindow is how long the provider answers status queries (reference
	// §5: messages of the last 5 days).
	DefaultProviderWindow = 5 * 24 * time.Hour
)

// Policy is the poll schedule. Zero fields mean the defaults (see WithDefaults).
//
// Poll 0 runs First after acceptance (FirstWithCallback when Callbacks is set); poll
// n ≥ 1 runs First·Factor^n after poll n-1, spread by ±Jitter and capped at
// MaxInterval (intervals never drop below the first delay). Intervals from acceptance
// with the defaults: 5 s, 10 s, 20 s, 40 s, then 60 s, so polls land near 5, 15, 35,
// 75, 135 s... The last poll runs exactly at the deadline (Deadline).
type Policy struct {
	// First is the delay of poll 0 after acceptance. Defaults to DefaultFirst.
	First time.Duration
	// MaxInterval caps the interval between polls. Defaults to DefaultMaxInterval.
	MaxInterval time.Duration
	// SMSGrace extends the deadline past the TTL. Defaults to DefaultSMSGrace.
	SMSGrace time.Duration
	// FirstWithCallback replaces First when Callbacks is set. Defaults to
	// DefaultFirstWithCallback.
	FirstWithCallback time.Duration
	// Factor is the interval growth, at least 1. Defaults to DefaultFactor.
	Factor float64
	// Jitter spreads intervals after the first by ±Jitter (0..1). Defaults to
	// DefaultJitter; a negative value disables jitter.
	Jitter float64
	// ProviderWindow bounds the deadline from acceptance. Defaults to
	// DefaultProviderWindow.
	ProviderWindow time.Duration
	// Callbacks reports that the provider's status callbacks reach viberq.
	Callbacks bool
}

// DefaultPolicy returns the default policy, without callbacks.
func DefaultPolicy() Policy { return Policy{}.WithDefaults() }

// WithDefaults returns p with its zero fields set to the defaults.
func (p Policy) WithDefaults() Policy {
	p.First = cmp.Or(p.First, DefaultFirst)
	p.MaxInterval = cmp.Or(p.MaxInterval, DefaultMaxInterval)
	p.SMSGrace = cmp.Or(p.SMSGrace, DefaultSMSGrace)
	p.FirstWithCallback = cmp.Or(p.FirstWithCallback, DefaultFirstWithCallback)
	p.Factor = cmp.Or(p.Factor, DefaultFactor)
	p.Jitter = cmp.Or(p.Jitter, DefaultJitter)
	p.ProviderWindow = cmp.Or(p.ProviderWindow, DefaultProviderWindow)
	return p
}

// Validate reports the first field of p (after WithDefaults) out of range.
func (p Policy) Validate() error {
	p = p.WithDefaults()
	var errs []error
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"First", p.First}, {"MaxInterval", p.MaxInterval}, {"SMSGrace", p.SMSGrace},
		{"FirstWithCallback", p.FirstWithCallback}, {"ProviderWindow", p.ProviderWindow}} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("poll policy: %s must not be negative, got %s", f.name, f.d))
		}
	}
	if p.Factor < 1 {
		errs = append(errs, fmt.Errorf("poll policy: Factor must be at least 1, got %g", p.Factor))
	}
	if p.Jitter >= 1 {
		errs = append(errs, fmt.Errorf("poll policy: Jitter must be below 1, got %g", p.Jitter))
	}
	return errors.Join(errs...)
}

// Deadline returns when polling stops for a message accepted at acceptedAt with a TTL
// ending at expiresAt: min(expiresAt + SMSGrace, acceptedAt + ProviderWindow).
func (p Policy) Deadline(acceptedAt, expiresAt time.Time) time.Time {
	p = p.WithDefaults()
	d := expiresAt.Add(p.SMSGrace)
	if w := acceptedAt.Add(p.ProviderWindow); w.Before(d) {
		d = w
	}
	return d
}

// Next returns the delay from now of poll number poll (0 for the first) of a message
// accepted at acceptedAt whose polling stops at deadline (see Deadline). ok is false
// when now is at or past the deadline: no more polls. The delay never reaches past
// the deadline: the last poll runs exactly at it. rnd returns values in [0, 1) for the
// jitter; nil means math/rand/v2.
//
// Poll 0 is anchored at acceptedAt (a late call gets a shorter delay, never below 0);
// later polls are relative to now.
func (p Policy) Next(poll int, acceptedAt, deadline, now time.Time, rnd func() float64) (delay time.Duration, ok bool) {
	if !now.Before(deadline) {
		return 0, false
	}
	p = p.WithDefaults()
	first := p.First
	if p.Callbacks {
		first = p.FirstWithCallback
	}
	if poll <= 0 {
		delay = max(acceptedAt.Add(first).Sub(now), 0)
	} else {
		delay = p.jitter(p.interval(poll, first), max(p.MaxInterval, first), rnd)
	}
	if left := deadline.Sub(now); delay > left {
		delay = left
	}
	return delay, true
}

// interval returns first·Factor^poll capped at max(MaxInterval, first), without
// jitter.
//
// The exponential and its cap come from backoff.ExponentialBackOff (the same type
// the worker uses for 5xx retries), iterated with RandomizationFactor 0 until poll or
// the cap. Its own jitter is not used because it draws from the global math/rand
// and Next must take an injected rnd to stay a pure, testable function; jitter
// applies the same formula with rnd.
func (p Policy) interval(poll int, first time.Duration) time.Duration {
	ceiling := max(p.MaxInterval, first)
	if p.Factor <= 1 || first <= 0 {
		return min(first, ceiling)
	}
	b := &backoff.ExponentialBackOff{
		InitialInterval:     first,
		RandomizationFactor: 0,
		Multiplier:          p.Factor,
		MaxInterval:         ceiling,
		MaxElapsedTime:      0,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	iv := b.NextBackOff() // poll 0's interval: first
	for i := 0; i < poll && iv < ceiling; i++ {
		iv = b.NextBackOff()
	}
	return iv
}

// jitter spreads d uniformly over d·(1 ± Jitter) with rnd and caps it at ceiling.
func (p Policy) jitter(d, ceiling time.Duration, rnd func() float64) time.Duration {
	if p.Jitter > 0 {
		if rnd == nil {
			rnd = rand.Float64
		}
		r := min(max(rnd(), 0), 1)
		delta := p.Jitter * float64(d)
		d = time.Duration(float64(d) - delta + r*2*delta)
	}
	return min(d, ceiling)
}
