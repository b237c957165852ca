package scheduler_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/scheduler"
)

func constRand(v float64) func() float64 { return func() float64 { return v } }

func TestPolicyNext(t *testing.T) {
	t.Parallel()
	acc := time.Date(2026, 11, 5, 10, 0, 0, 0, time.UTC)
	exp := acc.Add(40 * time.Second)
	def := scheduler.DefaultPolicy()
	deadline := def.Deadline(acc, exp)
	require.Equal(t, acc.Add(40*time.Second+10*time.Minute), deadline)

	tests := []struct {
		desc     string
		policy   scheduler.Policy
		poll     int
		now      time.Time
		deadline time.Time
		rnd      float64
		want     time.Duration
		ok       bool
	}{
		{desc: "FirstPoll", poll: 0, now: acc, rnd: 0.5, want: 5 * time.Second, ok: true},
		{desc: "FirstPollNoJitter", poll: 0, now: acc, rnd: 0, want: 5 * time.Second, ok: true},
		{desc: "FirstPollAnchoredAtAcceptance", poll: 0, now: acc.Add(2 * time.Second), rnd: 0.5, want: 3 * time.Second, ok: true},
		{desc: "FirstPollLateRunsNow", poll: 0, now: acc.Add(9 * time.Second), rnd: 0.5, want: 0, ok: true},
		{desc: "SecondPollDoubles", poll: 1, now: acc.Add(5 * time.Second), rnd: 0.5, want: 10 * time.Second, ok: true},
		{desc: "ThirdPoll", poll: 2, now: acc.Add(15 * time.Second), rnd: 0.5, want: 20 * time.Second, ok: true},
		{desc: "FourthPoll", poll: 3, now: acc.Add(35 * time.Second), rnd: 0.5, want: 40 * time.Second, ok: true},
		{desc: "CappedAtMaxInterval", poll: 4, now: acc.Add(75 * time.Second), rnd: 0.5, want: time.Minute, ok: true},
		{desc: "StaysCapped", poll: 9, now: acc.Add(5 * time.Minute), rnd: 0.5, want: time.Minute, ok: true},
		{desc: "HugePollNumber", poll: 1 << 30, now: acc.Add(5 * time.Minute), rnd: 0.5, want: time.Minute, ok: true},
		{desc: "JitterLow", poll: 1, now: acc, rnd: 0, want: 8 * time.Second, ok: true},
		{desc: "JitterHigh", poll: 1, now: acc, rnd: 1, want: 12 * time.Second, ok: true},
		{desc: "JitterOutOfRangeClamped", poll: 1, now: acc, rnd: 7, want: 12 * time.Second, ok: true},
		{desc: "JitterLowAtCap", poll: 6, now: acc, rnd: 0, want: 48 * time.Second, ok: true},
		{desc: "JitterHighAtCapStaysCapped", poll: 6, now: acc, rnd: 1, want: time.Minute, ok: true},
		{desc: "NoJitter", policy: scheduler.Policy{Jitter: -1}, poll: 1, now: acc, rnd: 0, want: 10 * time.Second, ok: true},
		{desc: "FactorOne", policy: scheduler.Policy{Factor: 1}, poll: 7, now: acc, rnd: 0.5, want: 5 * time.Second, ok: true},
		{desc: "FactorThree", policy: scheduler.Policy{Factor: 3}, poll: 2, now: acc, rnd: 0.5, want: 45 * time.Second, ok: true},
		{desc: "LastPollExactlyAtDeadline", poll: 12, now: deadline.Add(-7 * time.Second), rnd: 0.5, want: 7 * time.Second, ok: true},
		{desc: "FirstPollCutByDeadline", poll: 0, now: acc, deadline: acc.Add(3 * time.Second), rnd: 0.5, want: 3 * time.Second, ok: true},
		{desc: "AtDeadlineStops", poll: 12, now: deadline, rnd: 0.5, ok: false},
		{desc: "PastDeadlineStops", poll: 0, now: deadline.Add(time.Hour), rnd: 0.5, ok: false},
		{desc: "CallbacksFirst", policy: scheduler.Policy{Callbacks: true}, poll: 0, now: acc, rnd: 0.5, want: 2 * time.Minute, ok: true},
		{desc: "CallbacksNeverBelowFirst", policy: scheduler.Policy{Callbacks: true}, poll: 3, now: acc.Add(5 * time.Minute), rnd: 0.5, want: 2 * time.Minute, ok: true},
		{desc: "CallbacksJitterBelowFirst", policy: scheduler.Policy{Callbacks: true}, poll: 1, now: acc.Add(2 * time.Minute), rnd: 0, want: 96 * time.Second, ok: true},
		{desc: "CallbacksCutByDeadline", policy: scheduler.Policy{Callbacks: true}, poll: 0, now: acc, deadline: acc.Add(70 * time.Second), rnd: 0.5, want: 70 * time.Second, ok: true},
		{desc: "CustomFirst", policy: scheduler.Policy{First: 3 * time.Second, MaxInterval: 30 * time.Second}, poll: 4, now: acc, rnd: 0.5, want: 30 * time.Second, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			dl := tt.deadline
			if dl.IsZero() {
				dl = deadline
			}
			got, ok := tt.policy.Next(tt.poll, acc, dl, tt.now, constRand(tt.rnd))
			require.Equal(t, tt.ok, ok)
			if ok {
				require.Equal(t, tt.want, got.Round(time.Millisecond))
			}
		})
	}
}

func TestPolicyDeadline(t *testing.T) {
	t.Parallel()
	acc := time.Date(2026, 11, 5, 10, 0, 0, 0, time.UTC)
	p := scheduler.DefaultPolicy()
	tests := []struct {
		desc string
		exp  time.Time
		want time.Time
	}{
		{desc: "SMSGraceAfterTTL", exp: acc.Add(40 * time.Second), want: acc.Add(10*time.Minute + 40*time.Second)},
		{desc: "LongTTL", exp: acc.Add(6 * time.Hour), want: acc.Add(6*time.Hour + 10*time.Minute)},
		{desc: "ProviderWindowCaps", exp: acc.Add(5*24*time.Hour - time.Minute), want: acc.Add(5 * 24 * time.Hour)},
		{desc: "ProviderWindowCapsFarTTL", exp: acc.Add(30 * 24 * time.Hour), want: acc.Add(5 * 24 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, p.Deadline(acc, tt.exp))
		})
	}
	custom := scheduler.Policy{SMSGrace: time.Minute, ProviderWindow: time.Hour}
	require.Equal(t, acc.Add(41*time.Second+time.Minute), custom.Deadline(acc, acc.Add(41*time.Second)))
	require.Equal(t, acc.Add(time.Hour), custom.Deadline(acc, acc.Add(2*time.Hour)))
}

// TestPolicyBounds walks whole schedules with random jitter: every delay stays within
// ±Jitter of the un-jittered interval, at most MaxInterval, never past the deadline,
// and polling ends at the deadline.
func TestPolicyBounds(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	acc := time.Date(2026, 11, 5, 10, 0, 0, 0, time.UTC)
	for _, p := range []scheduler.Policy{scheduler.DefaultPolicy(), {Callbacks: true}, {First: time.Second, Factor: 1.5, Jitter: 0.5}} {
		p = p.WithDefaults()
		for _, ttl := range []time.Duration{40 * time.Second, time.Hour} {
			deadline := p.Deadline(acc, acc.Add(ttl))
			now := acc
			polls := 0
			for n := 0; ; n++ {
				d, ok := p.Next(n, acc, deadline, now, rng.Float64)
				if !ok {
					break
				}
				base, _ := p.Next(n, acc, deadline.Add(24*time.Hour), now, constRand(0.5))
				left := deadline.Sub(now)
				require.LessOrEqual(t, d, left, "poll %d past the deadline", n)
				if n > 0 && d < left {
					require.GreaterOrEqual(t, float64(d), float64(base)*(1-p.Jitter)-1, "poll %d", n)
					require.LessOrEqual(t, float64(d), float64(base)*(1+p.Jitter)+1, "poll %d", n)
					require.LessOrEqual(t, d, max(p.MaxInterval, p.FirstWithCallback))
				}
				now = now.Add(d)
				polls++
				require.Less(t, polls, 10_000)
			}
			require.Equal(t, deadline, now, "the last poll is at the deadline")
		}
	}
}

func TestPolicyDefaultsAndValidate(t *testing.T) {
	t.Parallel()
	def := scheduler.DefaultPolicy()
	require.Equal(t, scheduler.Policy{
		First: 5 * time.Second, MaxInterval: time.Minute, SMSGrace: 10 * time.Minute,
		FirstWithCallback: 2 * time.Minute, Factor: 2, Jitter: 0.2, ProviderWindow: 5 * 24 * time.Hour,
	}, def)
	require.NoError(t, def.Validate())
	require.NoError(t, scheduler.Policy{}.Validate())
	require.Error(t, scheduler.Policy{Factor: 0.5}.Validate())
	require.Error(t, scheduler.Policy{Jitter: 1}.Validate())
	require.Error(t, scheduler.Policy{First: -time.Second}.Validate())
}

// callsPerMessage models one message: accepted 0.2 s after the send (at a random
// sub-second phase), known final at final (from the send); polls fire at the next
// whole second after their time (Schedule). It returns the provider calls including
// the send.
func callsPerMessage(p scheduler.Policy, final, ttl time.Duration, rng *rand.Rand) int {
	send := time.Date(2026, 11, 5, 10, 0, 0, 0, time.UTC).Add(time.Duration(rng.Float64() * float64(time.Second)))
	acc := send.Add(200 * time.Millisecond)
	deadline := p.Deadline(acc, send.Add(ttl))
	now := acc
	calls := 1
	for n := 0; ; n++ {
		d, ok := p.Next(n, acc, deadline, now, rng.Float64)
		if !ok {
			return calls
		}
		at := now.Add(max(d, time.Second))
		if t := at.Truncate(time.Second); !t.Equal(at) {
			at = t.Add(time.Second)
		}
		now = at
		calls++
		if !now.Before(send.Add(final)) {
			return calls
		}
	}
}

// TestPolicyCallsPerDelivered checks the design goal: under the realistic profile
// (Viber delivery 1-6 s after the send; SMS fallback after the 40 s TTL), a delivered
// message costs at most 3 provider calls on average, including the send.
func TestPolicyCallsPerDelivered(t *testing.T) {
	t.Parallel()
	avg := func(p scheduler.Policy, smsShare float64) float64 {
		rng := rand.New(rand.NewPCG(3, 4))
		const n = 20_000
		total := 0
		for range n {
			final := time.Second + time.Duration(rng.Float64()*float64(5*time.Second))
			ttl := time.Hour
			if rng.Float64() < smsShare {
				// Viber undelivered by the TTL, SMS delivered 2-10 s after it.
				ttl = 40 * time.Second
				final = ttl + 2*time.Second + time.Duration(rng.Float64()*float64(8*time.Second))
			}
			total += callsPerMessage(p, final, ttl, rng)
		}
		return float64(total) / n
	}
	def := scheduler.DefaultPolicy()
	viber := avg(def, 0)
	t.Logf("default policy: %.2f calls per Viber-delivered message, %.2f with 10%% SMS fallbacks, %.2f for SMS fallbacks alone",
		viber, avg(def, 0.1), avg(def, 1))
	require.LessOrEqual(t, viber, 2.5)
	require.LessOrEqual(t, avg(def, 0.1), 3.0)
	// A 3 s first poll would cost more calls.
	three := avg(scheduler.Policy{First: 3 * time.Second}, 0)
	t.Logf("first poll at 3 s: %.2f calls per Viber-delivered message", three)
	require.Greater(t, three, viber)
}
