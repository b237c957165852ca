package webhook

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// ErrHeld is wrapped by the error of a delivery that was not attempted because its
// host is held (see the package doc, "One receiver cannot hold up the others"): it
// is rescheduled without using one of the webhook's retries.
var ErrHeld = errors.New("webhook host held: not attempted, no retry used")

// heldError is the error of a held delivery: when it may go again.
type heldError struct {
	// open: the host's breaker is open, or (probing) half-open with its one probe in
	// flight; else the host is suspect and has its limit of deliveries in flight.
	open, probing bool
	// until is the earliest time the delivery can be let through; spread the jitter
	// added to it (so that the held deliveries do not all come back at once).
	until  time.Time
	spread time.Duration
	// cause is the host's last failure ("" when none is known), so that the task's
	// last error in the Asynq UI still says what is wrong with the receiver.
	cause string
}

func (e *heldError) Error() string {
	why := "host at its limit"
	switch {
	case e.probing:
		why = "circuit half-open, its probe in flight"
	case e.open:
		why = "circuit open"
	}
	if e.cause != "" {
		why += "; last failure: " + e.cause
	}
	return ErrHeld.Error() + " (" + why + ")"
}

func (e *heldError) Unwrap() error { return ErrHeld }

// delay is how long after now the held delivery is due again, at most max.
func (e *heldError) delay(now time.Time, max time.Duration) time.Duration {
	d := e.until.Sub(now)
	if e.spread > 0 {
		d += rand.N(e.spread)
	}
	return min(max, d)
}

// isFailure is the delivery server's IsFailure: a held delivery is no failure, so
// asynq reschedules it without counting a retry.
func isFailure(err error) bool { return !errors.Is(err, ErrHeld) }

// outcome is what one attempt taught about its host.
type outcome int

const (
	// answered: the host answered (any status but those of hostFailed).
	answered outcome = iota
	// hostFailed: a timeout, a connection error (refused, reset, DNS, TLS), or 429,
	// 502, 503, 504: the host is down or asks to be spared.
	hostFailed
	// neutral: nothing learnt (shutdown, a refused address, a bad URL).
	neutral
)

// hostGate keeps the deliveries of one process fair between receivers' hosts: a
// circuit breaker per host, and a limit of deliveries in flight to a suspect host.
// See the package doc, "One receiver cannot hold up the others".
type hostGate struct {
	limit      int           // deliveries in flight to a suspect host
	failures   int           // consecutive host failures that open the breaker
	coolOff    time.Duration // the first open period; it doubles per failed probe
	coolOffMax time.Duration // the longest open period; also how long a host stays suspect
	slow       time.Duration // an answer at least this slow makes the host suspect
	timeout    time.Duration // a POST's bound: the longest a probe or a busy slot takes
	now        func() time.Time
	log        zerolog.Logger

	mu        sync.Mutex
	hosts     map[string]*hostState
	nextSweep time.Time
}

// hostState is one host's: present while deliveries to it are in flight or it
// misbehaved lately.
type hostState struct {
	inflight     int
	failures     int           // consecutive host failures
	suspectUntil time.Time     // the limit applies until then
	openUntil    time.Time     // zero: closed; else open until then, half-open after
	coolOff      time.Duration // the current open period
	probing      bool          // the half-open probe is in flight
	seen         time.Time     // last admission, hold or completion
	waiting      int           // deliveries held at the limit since a slot last freed
	cause        string        // the last host failure, for the held deliveries' errors
}

func newHostGate(cfg Config, now func() time.Time, log zerolog.Logger, m *Metrics) *hostGate {
	g := &hostGate{
		limit: cfg.HostConcurrency, failures: cfg.HostFailures,
		coolOff: cfg.HostCoolOff, coolOffMax: cfg.HostCoolOffMax,
		slow: cfg.Timeout / 2, timeout: cfg.Timeout,
		now: now, log: log, hosts: map[string]*hostState{},
	}
	m.openHostsFrom(g.openHosts)
	return g
}

// openHosts counts the hosts whose breaker is open or half-open, leaving out those
// nothing has happened to for two coolOffMax (sweep forgets them), so that the gauge
// falls back when the traffic to a failed host stops.
func (g *hostGate) openHosts() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	now, n := g.now(), 0
	for _, st := range g.hosts {
		if !st.openUntil.IsZero() && !g.idle(st, now) {
			n++
		}
	}
	return n
}

// pass is one admitted delivery; done reports how it went.
type pass struct {
	g     *hostGate
	host  string
	probe bool
}

// acquire admits a delivery to host or says until when it is held. A last attempt
// (the webhook's retries are used up: asynq archives it on any error) is always
// admitted: it is made rather than lost unattempted.
func (g *hostGate) acquire(host string, last bool) (*pass, *heldError) {
	if host == "" {
		return &pass{}, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	g.sweep(now)
	st := g.hosts[host]
	if st == nil {
		st = &hostState{}
		g.hosts[host] = st
	}
	st.seen = now
	probe := false
	switch {
	case last:
	case !st.openUntil.IsZero() && now.Before(st.openUntil):
		return nil, &heldError{open: true, until: st.openUntil, spread: st.coolOff, cause: st.cause}
	case !st.openUntil.IsZero() && st.probing:
		// The probe decides within a timeout.
		return nil, &heldError{open: true, probing: true, until: now.Add(g.timeout), spread: g.timeout, cause: st.cause}
	case !st.openUntil.IsZero():
		st.probing, probe = true, true
	case st.inflight >= g.limit && now.Before(st.suspectUntil):
		// A slot frees within a timeout; the more deliveries came back to find the
		// limit reached since one last freed, the wider they are spread, so that a
		// backlog waiting on a slow receiver does not come back every few seconds
		// each (limit deliveries in flight take a slot each per timeout at worst).
		st.waiting++
		spread := g.timeout * time.Duration(1+st.waiting/g.limit)
		return nil, &heldError{until: now.Add(g.timeout / 2), spread: spread, cause: st.cause}
	}
	st.inflight++
	return &pass{g: g, host: host, probe: probe}, nil
}

// done records the outcome of an admitted delivery that took elapsed; cause is the
// failure's text for a hostFailed outcome (never the URL).
func (p *pass) done(o outcome, elapsed time.Duration, cause string) {
	g := p.g
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	st := g.hosts[p.host]
	if st == nil { // swept while in flight: cannot be, inflight > 0 keeps it
		return
	}
	st.inflight--
	st.seen = now
	st.waiting = 0
	if p.probe {
		st.probing = false
	}
	wasOpen := !st.openUntil.IsZero()
	switch o {
	case answered:
		st.failures = 0
		if elapsed >= g.slow {
			st.suspectUntil = now.Add(g.coolOffMax)
		}
		if wasOpen {
			st.openUntil, st.coolOff, st.cause = time.Time{}, 0, ""
			g.log.Info().Str("host", p.host).Msg("webhook host answers again; its held deliveries resume")
		}
	case hostFailed:
		st.cause = cause
		st.failures++
		st.suspectUntil = now.Add(g.coolOffMax)
		switch {
		case wasOpen && p.probe:
			st.coolOff = min(2*st.coolOff, g.coolOffMax)
			st.openUntil = now.Add(st.coolOff)
			g.log.Info().Str("host", p.host).Dur("cool_off", st.coolOff).Msg("webhook host still failing; its deliveries stay held")
		case !wasOpen && st.failures >= g.failures:
			st.coolOff = g.coolOff
			st.openUntil = now.Add(st.coolOff)
			g.log.Warn().Str("host", p.host).Int("failures", st.failures).Dur("cool_off", st.coolOff).
				Msg("webhook host failing (timeouts, connection errors or 429/502/503/504); its deliveries are held, not attempted, until a probe succeeds")
		}
	}
	if st.inflight == 0 && st.openUntil.IsZero() && st.failures == 0 && !now.Before(st.suspectUntil) {
		delete(g.hosts, p.host) // healthy: nothing to remember
	}
}

// sweep forgets, at most once per coolOffMax, the idle hosts.
func (g *hostGate) sweep(now time.Time) {
	if now.Before(g.nextSweep) {
		return
	}
	g.nextSweep = now.Add(g.coolOffMax)
	for h, st := range g.hosts {
		if g.idle(st, now) {
			delete(g.hosts, h)
		}
	}
}

// idle reports whether nothing has happened to a host for two coolOffMax (longer
// than any hold lasts) and nothing is in flight to it: sweep forgets it, and the
// open-hosts gauge no longer counts it.
func (g *hostGate) idle(st *hostState, now time.Time) bool {
	return st.inflight == 0 && now.Sub(st.seen) > 2*g.coolOffMax
}

// hostKey is the host a URL's deliveries are counted under: the lower-case host
// name and the port ("" when u cannot be parsed).
func hostKey(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Hostname() == "" {
		return ""
	}
	port := p.Port()
	if port == "" {
		port = "80"
		if strings.EqualFold(p.Scheme, "https") {
			port = "443"
		}
	}
	return net.JoinHostPort(strings.ToLower(p.Hostname()), port)
}
