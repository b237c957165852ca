// Package redistest gives tests a Redis to work on: a real Redis database reserved
// for one test (Client, URL, Options), an in-process miniredis (Mini), or whichever
// of the two the environment asks for (New), and a hook that counts what a client
// sends (Counter).
//
// Every test that touches a real Redis must get it from this package, never from
// VIBERQ_TEST_REDIS_URL directly: several test binaries run at once (go test ./...
// runs packages in parallel) and they share one server. Client reserves one of the
// databases of VIBERQ_TEST_REDIS_DBS (default 1-15) for the calling test with a lock
// key inside that database (LockKey: SET NX with an expiry, released at Cleanup),
// flushes it before the test and again after it, keeping only its lock (FLUSHDB and
// the lock's SET in one MULTI). No other database is touched, so the tests, `viberq
// bench` and the e2e script, which take the same lock, can be confined to one
// database of a shared Redis: VIBERQ_TEST_REDIS_DBS=7 (the tests then run one at a
// time). Nothing here ever runs FLUSHALL.
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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// EnvURL names the environment variable with the real Redis URL, e.g.
// redis://127.0.0.1:6379 (a database number in it is ignored).
const EnvURL = "VIBERQ_TEST_REDIS_URL"

// EnvDBs names the environment variable with the databases the tests may use: one
// number ("7") or an inclusive range ("1-15", the default).
const EnvDBs = "VIBERQ_TEST_REDIS_DBS"

const (
	defaultFirst, defaultLast = 1, 15
	lockPrefix                = "viberq:redistest:db:"
	lockTTL                   = 15 * time.Minute // longer than go test's default timeout
	waitFor                   = 2 * time.Minute  // for a free database among the default ones
)

// LockKey is the key that reserves database db, held inside db itself by whoever
// uses it (a test, `viberq bench`, deployments/scripts/e2e.sh). A test that counts the
// keys of its database finds this one too.
func LockKey(db int) string { return lockPrefix + strconv.Itoa(db) }

// DBs returns the database range of VIBERQ_TEST_REDIS_DBS: "N" or "A-B" with
// 0 <= A <= B <= 15 (1..15 when unset).
func DBs() (first, last int, err error) {
	v := strings.TrimSpace(os.Getenv(EnvDBs))
	if v == "" {
		return defaultFirst, defaultLast, nil
	}
	a, b, isRange := strings.Cut(v, "-")
	first, err1 := strconv.Atoi(strings.TrimSpace(a))
	last, err2 := first, error(nil)
	if isRange {
		last, err2 = strconv.Atoi(strings.TrimSpace(b))
	}
	if err1 != nil || err2 != nil || first < 0 || last < first || last > 15 {
		return 0, 0, fmt.Errorf("%s=%q: want a database number like 7 or a range like 1-15 (0..15)", EnvDBs, v)
	}
	return first, last, nil
}

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
	first, last, err := DBs()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	l, err = acquire(t, base, first, last)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	mu.Lock()
	leases[t] = l
	mu.Unlock()
	return l
}

// acquire locks a free database of first..last, flushes it and registers its
// release. With fewer databases than the default, tests wait longer for one (up to
// the lock's expiry): confined to one database, they run one after the other.
func acquire(t testing.TB, base *redis.Options, first, last int) (*lease, error) {
	ctx := context.Background()
	token := newToken(t)
	wait := waitFor
	if last-first < defaultLast-defaultFirst {
		wait = lockTTL
	}
	deadline := time.Now().Add(wait)
	for {
		n := last - first + 1
		start := rand.IntN(n)
		for i := range n {
			db := first + (start+i)%n
			l, ok, err := open(ctx, base, db, token)
			if err != nil { // e.g. fewer databases configured: try another
				continue
			}
			if !ok {
				continue
			}
			t.Cleanup(func() {
				mu.Lock()
				delete(leases, t)
				mu.Unlock()
				cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := Flush(cctx, l.client, token); err != nil {
					t.Errorf("redistest: flush database %d: %v", db, err)
				}
				unlock(cctx, l.client, LockKey(db), token)
				_ = l.client.Close()
			})
			return l, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no free database among %d..%d after %s (locks %s*, %s)", first, last, wait, lockPrefix, EnvDBs)
		}
		time.Sleep(time.Duration(50+rand.IntN(150)) * time.Millisecond)
	}
}

// Flush empties the database of c, a database whose lock (LockKey) holds token,
// keeping that lock: FLUSHDB and the lock's SET run in one MULTI, so that nobody can
// take the database in between. It fails, flushing nothing, when the lock is not
// token's.
func Flush(ctx context.Context, c *redis.Client, token string) error {
	key := LockKey(c.Options().DB)
	if got, err := c.Get(ctx, key).Result(); err != nil || got != token {
		return fmt.Errorf("database %d: the lock %s is not ours (%v)", c.Options().DB, key, err)
	}
	_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.FlushDB(ctx)
		p.Set(ctx, key, token, lockTTL)
		return nil
	})
	return err
}

// open takes database db's lock with token and flushes it; ok=false when someone
// else holds the lock.
func open(ctx context.Context, base *redis.Options, db int, token string) (*lease, bool, error) {
	o := *base
	o.DB = db
	c := redis.NewClient(&o)
	got, err := c.SetNX(ctx, LockKey(db), token, lockTTL).Result()
	if err != nil || !got {
		_ = c.Close()
		return nil, false, err
	}
	if err := Flush(ctx, c, token); err != nil {
		unlock(ctx, c, LockKey(db), token)
		_ = c.Close()
		return nil, false, err
	}
	u := url.URL{Scheme: "redis", Host: o.Addr, Path: "/" + strconv.Itoa(db)}
	if o.TLSConfig != nil {
		u.Scheme = "rediss"
	}
	if o.Username != "" || o.Password != "" {
		u.User = url.UserPassword(o.Username, o.Password)
	}
	oc := o
	return &lease{db: db, opts: &oc, url: u.String(), client: c}, true, nil
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
