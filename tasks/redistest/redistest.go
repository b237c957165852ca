// Package redistest gives tests a Redis to work on: a real Redis database reserved
// for one test (Client, URL, Options), an in-process miniredis (Mini), or whichever
// of the two the environment asks for (New).
//
// Every test that touches a real Redis must get it from this package, never from
// VIBERQ_TEST_REDIS_URL directly: several test binaries run at once (go test ./...
// runs packages in parallel) and they share one server. Client reserves one of the
// databases 1..15 for the calling test with a lock key in database 0 (SET NX with an
// expiry, released at Cleanup; the lock keys are the only thing written to database 0),
// flushes it before the test and again after it. Nothing here ever runs FLUSHALL.
//
// Real-Redis tests are skipped when VIBERQ_TEST_REDIS_URL is unset, so go test ./...
// needs no Redis. Example: VIBERQ_TEST_REDIS_URL=redis://127.0.0.1:6379 go test ./...
package redistest

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// EnvURL names the environment variable with the real Redis URL, e.g.
// redis://127.0.0.1:6379 (a database number in it is ignored).
const EnvURL = "VIBERQ_TEST_REDIS_URL"

const (
	firstDB, lastDB = 1, 15
	lockPrefix      = "viberq:redistest:db:"
	lockTTL         = 15 * time.Minute // longer than go test's default timeout
	waitFor         = 2 * time.Minute  // for a free database
)

// Enabled reports whether VIBERQ_TEST_REDIS_URL is set.
func Enabled() bool { return os.Getenv(EnvURL) != "" }

// lease is one reserved database.
type lease struct {
	db     int
	opts   *redis.Options
	url    string
	client *redis.Client
}

var (
	mu     sync.Mutex
	leases = map[testing.TB]*lease{}
)

// Client returns a client on a real Redis database reserved for t, flushed before and
// after t, and closed at t's Cleanup. It skips t when VIBERQ_TEST_REDIS_URL is unset.
// Client, URL and Options called with the same t return the same database.
func Client(t testing.TB) *redis.Client {
	t.Helper()
	return reserve(t).client
}

// URL returns the redis:// URL (with the database number) of t's reserved database;
// see Client.
func URL(t testing.TB) string {
	t.Helper()
	return reserve(t).url
}

// Options returns a copy of the go-redis options of t's reserved database; see Client.
func Options(t testing.TB) *redis.Options {
	t.Helper()
	o := *reserve(t).opts
	return &o
}

// Mini starts a miniredis server for t and returns it with a client on it; both are
// closed at t's Cleanup.
func Mini(t testing.TB) (*miniredis.Miniredis, *redis.Client) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return mr, rdb
}

// New returns Client(t) when VIBERQ_TEST_REDIS_URL is set and a miniredis client
// otherwise: the same test then runs on both.
func New(t testing.TB) *redis.Client {
	t.Helper()
	if Enabled() {
		return Client(t)
	}
	_, rdb := Mini(t)
	return rdb
}

func reserve(t testing.TB) *lease {
	t.Helper()
	raw := os.Getenv(EnvURL)
	if raw == "" {
		t.Skipf("real Redis test: set %s (e.g. redis://127.0.0.1:6379)", EnvURL)
	}
	mu.Lock()
	l, ok := leases[t]
	mu.Unlock()
	if ok {
		return l
	}
	base, err := redis.ParseURL(raw)
	if err != nil {
		t.Fatalf("redistest: %s: %v", EnvURL, err)
	}
	l, err = acquire(t, base)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	mu.Lock()
	leases[t] = l
	mu.Unlock()
	return l
}

// acquire locks a free database, flushes it and registers its release.
func acquire(t testing.TB, base *redis.Options) (*lease, error) {
	ctx := context.Background()
	ctlOpts := *base
	ctlOpts.DB = 0
	ctl := redis.NewClient(&ctlOpts)
	token := newToken(t)
	deadline := time.Now().Add(waitFor)
	for {
		start := rand.IntN(lastDB - firstDB + 1)
		for i := range lastDB - firstDB + 1 {
			db := firstDB + (start+i)%(lastDB-firstDB+1)
			key := lockPrefix + strconv.Itoa(db)
			got, err := ctl.SetNX(ctx, key, token, lockTTL).Result()
			if err != nil {
				_ = ctl.Close()
				return nil, fmt.Errorf("lock database %d: %w", db, err)
			}
			if !got {
				continue
			}
			l, err := open(ctx, base, db)
			if err != nil { // e.g. fewer databases configured: leave this one
				unlock(ctx, ctl, key, token)
				continue
			}
			t.Cleanup(func() {
				mu.Lock()
				delete(leases, t)
				mu.Unlock()
				cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := l.client.FlushDB(cctx).Err(); err != nil {
					t.Errorf("redistest: flush database %d: %v", db, err)
				}
				_ = l.client.Close()
				unlock(cctx, ctl, key, token)
				_ = ctl.Close()
			})
			return l, nil
		}
		if time.Now().After(deadline) {
			_ = ctl.Close()
			return nil, fmt.Errorf("no free database among %d..%d after %s (locks %s*)", firstDB, lastDB, waitFor, lockPrefix)
		}
		time.Sleep(time.Duration(50+rand.IntN(150)) * time.Millisecond)
	}
}

func open(ctx context.Context, base *redis.Options, db int) (*lease, error) {
	o := *base
	o.DB = db
	c := redis.NewClient(&o)
	if err := c.FlushDB(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, err
	}
	u := url.URL{Scheme: "redis", Host: o.Addr, Path: "/" + strconv.Itoa(db)}
	if o.TLSConfig != nil {
		u.Scheme = "rediss"
	}
	if o.Username != "" || o.Password != "" {
		u.User = url.UserPassword(o.Username, o.Password)
	}
	oc := o
	return &lease{db: db, opts: &oc, url: u.String(), client: c}, nil
}

var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

func unlock(ctx context.Context, ctl *redis.Client, key, token string) {
	_ = unlockScript.Run(ctx, ctl, []string{key}, token).Err()
}

func newToken(t testing.TB) string {
	var b [8]byte
	_, _ = crand.Read(b[:]) // never fails on supported platforms
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d/%s/%s", host, os.Getpid(), t.Name(), hex.EncodeToString(b[:]))
}
