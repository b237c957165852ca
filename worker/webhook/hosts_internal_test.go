package webhook

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

func testGate(now *time.Time) *hostGate {
	cfg := Config{Secrets: []string{"whsec_0123456789abcdef"}, Concurrency: 8, HostFailures: 3,
		HostCoolOff: time.Minute, HostCoolOffMax: 4 * time.Minute}.withDefaults()
	return newHostGate(cfg, func() time.Time { return *now }, zerolog.Nop(), nil)
}

// The breaker of one host: closed, open after HostFailures consecutive host
// failures (answers in between reset the count), half-open after the cool-off with
// exactly one probe, open again for twice as long when the probe fails, closed when
// it succeeds. Other hosts are never affected.
func TestHostGateBreaker(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := testGate(&now)
	const h, other = "dead.example:443", "ok.example:443"
	fail := func(o outcome) {
		t.Helper()
		p, held := g.acquire(h, false)
		require.Nil(t, held)
		p.done(o, time.Millisecond, "HTTP 503")
	}

	fail(hostFailed)
	fail(hostFailed)
	fail(answered) // the host answered (a 500, a 404): the run starts again
	fail(hostFailed)
	fail(hostFailed)
	p, held := g.acquire(h, false)
	require.Nil(t, held, "two failures in a row do not open it")
	p.done(neutral, 0, "") // nothing learnt: the run goes on
	fail(hostFailed)

	_, held = g.acquire(h, false)
	require.NotNil(t, held, "three in a row open it")
	require.True(t, held.open)
	require.Equal(t, now.Add(time.Minute), held.until)
	require.ErrorIs(t, held, ErrHeld)
	require.Contains(t, held.Error(), "circuit open; last failure: HTTP 503", "the held task's error says what is wrong")
	require.Equal(t, 1, g.openHosts())
	p, held = g.acquire(other, false)
	require.Nil(t, held, "another host is not held")
	p.done(answered, time.Millisecond, "")

	// A last attempt is made all the same (asynq would archive it unattempted).
	p, held = g.acquire(h, true)
	require.Nil(t, held)
	require.False(t, p.probe)
	p.done(neutral, 0, "")

	now = now.Add(time.Minute) // half-open: one probe
	probe, held := g.acquire(h, false)
	require.Nil(t, held)
	require.True(t, probe.probe)
	_, held = g.acquire(h, false)
	require.NotNil(t, held, "one probe at a time")
	require.True(t, held.open)
	require.True(t, held.probing, "held behind the probe: never archived for it (Deliverer.ProcessTask)")
	probe.done(hostFailed, time.Millisecond, "")
	_, held = g.acquire(h, false)
	require.NotNil(t, held)
	require.Equal(t, now.Add(2*time.Minute), held.until, "a failed probe doubles the cool-off")

	now = now.Add(2 * time.Minute)
	probe, held = g.acquire(h, false)
	require.Nil(t, held)
	probe.done(hostFailed, time.Millisecond, "")
	now = now.Add(4 * time.Minute) // capped at HostCoolOffMax
	probe, held = g.acquire(h, false)
	require.Nil(t, held)
	require.True(t, probe.probe)
	probe.done(answered, time.Millisecond, "")
	require.Zero(t, g.openHosts(), "a probe that got an answer closes it")
	p, held = g.acquire(h, false)
	require.Nil(t, held)
	p.done(answered, time.Millisecond, "")
}

// A host that failed or answered slowly lately has at most HostConcurrency
// deliveries in flight (a quarter of Concurrency by default); a healthy host may
// take every slot; the limit lapses HostCoolOffMax after the last misbehaviour, and
// a healthy host is forgotten once it has nothing in flight.
func TestHostGateLimitsSuspectHosts(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := testGate(&now)
	require.Equal(t, 2, g.limit, "a quarter of 8")
	const h = "slow.example:443"

	var passes []*pass
	for range 8 {
		p, held := g.acquire(h, false)
		require.Nil(t, held, "a healthy host takes every slot")
		passes = append(passes, p)
	}
	for _, p := range passes {
		p.done(answered, time.Millisecond, "")
	}
	require.Empty(t, g.hosts, "a healthy host with nothing in flight is forgotten")

	for name, finish := range map[string]func(*pass){
		"slow answer":  func(p *pass) { p.done(answered, g.slow, "") },
		"host failure": func(p *pass) { p.done(hostFailed, time.Millisecond, "") },
	} {
		p, held := g.acquire(h, false)
		require.Nil(t, held)
		finish(p)
		a, held := g.acquire(h, false)
		require.Nil(t, held, name)
		b, held := g.acquire(h, false)
		require.Nil(t, held, name)
		_, held = g.acquire(h, false)
		require.NotNil(t, held, "%s: the third in flight is held", name)
		require.False(t, held.open, name)
		require.ErrorIs(t, held, ErrHeld)
		c, held := g.acquire(h, true)
		require.Nil(t, held, "%s: a last attempt goes all the same", name)
		a.done(answered, time.Millisecond, "")
		b.done(answered, time.Millisecond, "")
		c.done(answered, time.Millisecond, "")
		now = now.Add(g.coolOffMax)
		passes = passes[:0]
		for range 8 {
			p, held := g.acquire(h, false)
			require.Nil(t, held, "%s: the limit lapsed", name)
			passes = append(passes, p)
		}
		for _, p := range passes {
			p.done(answered, time.Millisecond, "")
		}
		require.Empty(t, g.hosts, name)
	}
}

// Deliveries that come back to find a suspect host at its limit are spread the
// wider the more of them came back since a slot last freed, so that a backlog
// waiting on a slow receiver does not return every few seconds each; a freed slot
// starts the count again.
func TestHostGateSpreadsHoldsAtTheLimit(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := testGate(&now)
	const h = "slow.example:443"
	p, held := g.acquire(h, false)
	require.Nil(t, held)
	p.done(answered, g.slow, "") // slow: suspect, limit 2
	a, _ := g.acquire(h, false)
	b, _ := g.acquire(h, false)
	var spreads []time.Duration
	for range 6 {
		_, held := g.acquire(h, false)
		require.NotNil(t, held)
		spreads = append(spreads, held.spread)
	}
	// limit 2: the 1st comes back within a timeout, the 2nd and 3rd within two, ...
	require.Equal(t, []time.Duration{g.timeout, 2 * g.timeout, 2 * g.timeout, 3 * g.timeout, 3 * g.timeout, 4 * g.timeout}, spreads)
	a.done(answered, time.Millisecond, "")
	a, held = g.acquire(h, false)
	require.Nil(t, held, "the freed slot is taken")
	_, held = g.acquire(h, false)
	require.Equal(t, g.timeout, held.spread, "a freed slot starts the count again")
	a.done(answered, time.Millisecond, "")
	b.done(answered, time.Millisecond, "")
}

// The open-hosts gauge counts a host whose breaker is open while anything happens
// to it, and lets it go two HostCoolOffMax after the last delivery or hold, though
// no delivery comes to sweep it.
func TestHostGateOpenHostsFallsBackWhenTrafficStops(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := testGate(&now)
	for range 3 {
		p, held := g.acquire("dead.example:443", false)
		require.Nil(t, held)
		p.done(hostFailed, time.Millisecond, "timeout")
	}
	require.Equal(t, 1, g.openHosts())
	now = now.Add(2 * g.coolOffMax)
	require.Equal(t, 1, g.openHosts(), "still within two HostCoolOffMax of the last failure")
	now = now.Add(time.Second)
	require.Zero(t, g.openHosts(), "nothing happened to it for two HostCoolOffMax")
}

// A held delivery is due when its host may let it through, plus jitter, at most
// RetryMax; the retry window covers the backoff schedule.
func TestHeldDelayAndWindow(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := &heldError{open: true, until: now.Add(time.Minute), spread: time.Minute}
	for range 100 {
		d := h.delay(now, time.Hour)
		require.GreaterOrEqual(t, d, time.Minute)
		require.Less(t, d, 2*time.Minute)
	}
	require.Equal(t, 30*time.Second, h.delay(now, 30*time.Second), "at most RetryMax")

	cfg := Config{}.withDefaults()
	// 5s, 10s, ... 2560s, then 5 × 1h: 23,115 s, README's "about 6 hours".
	require.Equal(t, 23115*time.Second, cfg.window())
	require.Equal(t, 2*DefaultHostCoolOffMax, Config{MaxRetry: 1}.withDefaults().window())
	require.True(t, isFailure(errors.New("connection refused")))
	require.False(t, isFailure(fmt.Errorf("webhook 1-1: %w", h)))
}

// hostKey counts a host under its lower-case name and port, the default port
// spelled out; the path, query and credentials play no part.
func TestHostKey(t *testing.T) {
	t.Parallel()
	for u, want := range map[string]string{
		"https://Hooks.Example.com/a?b=c":            "hooks.example.com:443",
		"https://user:secret@hooks.example.com:443/": "hooks.example.com:443",
		"http://hooks.example.com/x":                 "hooks.example.com:80",
		"http://hooks.example.com:8080/x":            "hooks.example.com:8080",
		"https://[2001:db8::1]/x":                    "[2001:db8::1]:443",
		"::not a url":                                "",
	} {
		require.Equal(t, want, hostKey(u), u)
	}
}
