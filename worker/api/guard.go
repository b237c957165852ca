package api

import (
	"context"
	"math/bits"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// AuthFailures is the policy against password and token guessing, applied to the
// bearer token of /v1, the basic auth of /monitoring and the callback credentials.
// Failures are counted per client address in Redis (one counter per address and
// window, shared by every api pod), so that adding pods does not add guesses:
//
//   - the first Free failures of a window are answered at once;
//   - each further failure is answered after a delay that doubles from 100ms up to
//     MaxDelay, so one connection cannot guess quickly;
//   - from Limit failures on, the address gets 429 with Retry-After until the window
//     ends, without its credentials being checked (so a correct guess cannot be told
//     from a wrong one);
//   - failures are logged at warn with the client address (the 1st, 2nd, 4th, 8th ...
//     of a window, and the one that reaches Limit), never with the credential.
//
// The client address is the TCP peer (X-Forwarded-For is not trusted: a client sets
// it). Behind a load balancer that does not preserve it, every client shares the
// balancer's address and the limit becomes global: guessing stays as slow, and a
// flood of failures locks out everybody until the window ends. When Redis cannot be
// reached the counter is skipped (credentials are still checked).
type AuthFailures struct {
	Free     int           // failures per window answered without delay (DefaultAuthFree)
	Limit    int           // failures per window after which the address is refused (DefaultAuthLimit)
	Window   time.Duration // the counting window (DefaultAuthWindow)
	MaxDelay time.Duration // the longest delay of a failure (DefaultAuthMaxDelay)
}

// Defaults of AuthFailures: at most 30 guesses per address per minute, all pods
// together (without a limit, one connection tried ~2,180 passwords a second).
const (
	DefaultAuthFree     = 5
	DefaultAuthLimit    = 30
	DefaultAuthWindow   = time.Minute
	DefaultAuthMaxDelay = 2 * time.Second
	authFirstDelay      = 100 * time.Millisecond
)

func (a AuthFailures) withDefaults() AuthFailures {
	if a.Free <= 0 {
		a.Free = DefaultAuthFree
	}
	if a.Limit <= 0 {
		a.Limit = DefaultAuthLimit
	}
	if a.Window <= 0 {
		a.Window = DefaultAuthWindow
	}
	if a.MaxDelay <= 0 {
		a.MaxDelay = DefaultAuthMaxDelay
	}
	return a
}

// delay is how long the n-th failure of a window waits before its answer.
func (a AuthFailures) delay(n int64) time.Duration {
	over := n - int64(a.Free)
	if over <= 0 {
		return 0
	}
	if over > 30 {
		return a.MaxDelay
	}
	return min(authFirstDelay<<(over-1), a.MaxDelay)
}

// authGuard applies AuthFailures with counters in Redis.
type authGuard struct {
	rdb    redis.UniversalClient
	key    string // key prefix, then the client address
	policy AuthFailures
	log    zerolog.Logger
}

func newAuthGuard(rdb redis.UniversalClient, prefix string, p AuthFailures, log zerolog.Logger) *authGuard {
	return &authGuard{rdb: rdb, key: prefix + "authfail:", policy: p.withDefaults(), log: log}
}

// clientAddr is the TCP peer's address without the port.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// refuse answers 429 and returns true when the client's address has reached Limit
// failures in the current window.
func (g *authGuard) refuse(w http.ResponseWriter, r *http.Request) bool {
	ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
	defer cancel()
	key := g.key + clientAddr(r)
	pipe := g.rdb.Pipeline()
	get := pipe.Get(ctx, key)
	ttl := pipe.PTTL(ctx, key)
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return false
	}
	n, err := get.Int64()
	if err != nil || n < int64(g.policy.Limit) {
		return false
	}
	retry := g.policy.Window
	if d := ttl.Val(); d > 0 {
		retry = d
	}
	w.Header().Set("Retry-After", strconv.Itoa(int((retry+time.Second-1)/time.Second)))
	writeError(w, http.StatusTooManyRequests, "too many failed authentications from this address; try again later")
	return true
}

// incrScript counts one failure: INCR, and the window's expiry on the first one.
var incrScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`)

// failed counts a failed authentication of r, logs it (see AuthFailures) and waits
// the failure's delay (or until the request is cancelled).
func (g *authGuard) failed(r *http.Request, kind string) {
	addr := clientAddr(r)
	ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
	n, err := incrScript.Run(ctx, g.rdb, []string{g.key + addr}, g.policy.Window.Milliseconds()).Int64()
	cancel()
	if err != nil {
		g.log.Warn().Str("client", addr).Str("auth", kind).Str("route", routeOf(r)).
			Str("error", "failure counter unavailable").Msg("authentication failed")
		return
	}
	if bits.OnesCount64(uint64(n)) == 1 || n == int64(g.policy.Limit) {
		ev := g.log.Warn().Str("client", addr).Str("auth", kind).Str("route", routeOf(r)).
			Int64("failures", n).Int64("window_ms", g.policy.Window.Milliseconds())
		if n >= int64(g.policy.Limit) {
			ev = ev.Bool("refused_until_window_ends", true)
		}
		ev.Msg("authentication failed")
	}
	if d := g.policy.delay(n); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
	}
}
