package redistest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/tasks/redistest"
)

// Not parallel: t.Setenv. Parallel tests start only after it returns.
func TestSkipsWithoutURL(t *testing.T) {
	t.Setenv(redistest.EnvURL, "")
	for name, f := range map[string]func(testing.TB){
		"Client":  func(t testing.TB) { redistest.Client(t) },
		"URL":     func(t testing.TB) { redistest.URL(t) },
		"Options": func(t testing.TB) { redistest.Options(t) },
	} {
		var skipped bool
		t.Run(name, func(t *testing.T) {
			defer func() { skipped = t.Skipped() }()
			f(t)
			t.Error("not skipped")
		})
		require.True(t, skipped, name)
	}
	require.False(t, redistest.Enabled())
}

func TestMini(t *testing.T) {
	t.Parallel()
	mr, rdb := redistest.Mini(t)
	require.NoError(t, rdb.Set(context.Background(), "k", "v", 0).Err())
	v, err := mr.Get("k")
	require.NoError(t, err)
	require.Equal(t, "v", v)
}

func TestNew(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	ctx := context.Background()
	require.NoError(t, rdb.Set(ctx, "k", "v", 0).Err())
	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	if redistest.Enabled() {
		// The database's lock lives in it (LockKey) and survives the flush.
		require.ElementsMatch(t, []string{"k", redistest.LockKey(rdb.Options().DB)}, keys, "starts empty but for its lock")
	} else {
		require.Equal(t, []string{"k"}, keys, "starts empty")
	}
}

func TestSameDatabaseForOneTest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Client(t)
	require.Same(t, rdb, redistest.Client(t))
	db := rdb.Options().DB
	first, last, err := redistest.DBs()
	require.NoError(t, err)
	require.GreaterOrEqual(t, db, first)
	require.LessOrEqual(t, db, last)
	require.Equal(t, db, redistest.Options(t).DB)

	opts, err := redis.ParseURL(redistest.URL(t))
	require.NoError(t, err)
	require.Equal(t, db, opts.DB)
	other := redis.NewClient(opts)
	t.Cleanup(func() { _ = other.Close() })
	require.NoError(t, rdb.Set(ctx, "probe", "1", 0).Err())
	require.Equal(t, "1", other.Get(ctx, "probe").Val())
}

func TestConcurrentTestsGetDistinctDatabases(t *testing.T) {
	t.Parallel()
	if !redistest.Enabled() {
		t.Skipf("set %s", redistest.EnvURL)
	}
	if first, last, err := redistest.DBs(); err != nil || last-first < 3 {
		t.Skipf("%s gives fewer than 4 databases", redistest.EnvDBs)
	}
	probe := fmt.Sprintf("redistest:probe:%d", time.Now().UnixNano())
	dbs := map[int]bool{}
	// Nested subtests: each still holds its database while the next one reserves.
	var nest func(t *testing.T, depth int)
	nest = func(t *testing.T, depth int) {
		rdb := redistest.Client(t)
		db := rdb.Options().DB
		require.False(t, dbs[db], "database %d reserved twice at once", db)
		dbs[db] = true
		require.NoError(t, rdb.Set(context.Background(), probe, "1", 0).Err())
		if depth > 1 {
			t.Run(fmt.Sprint(depth-1), func(t *testing.T) { nest(t, depth-1) })
		}
	}
	t.Run("4", func(t *testing.T) { nest(t, 4) })
	require.Len(t, dbs, 4)

	// Flushed after each test.
	for db := range dbs {
		opts := redistest.Options(t)
		opts.DB = db
		c := redis.NewClient(opts)
		n, err := c.Exists(context.Background(), probe).Result()
		_ = c.Close()
		require.NoError(t, err)
		require.Zero(t, n, "database %d not flushed", db)
	}
}

// Confined to one database (VIBERQ_TEST_REDIS_DBS=N), every test gets database N, and
// no other database of the server is written, not even 0.
func TestConfinedToOneDatabase(t *testing.T) {
	if !redistest.Enabled() {
		t.Skipf("set %s", redistest.EnvURL)
	}
	t.Setenv(redistest.EnvDBs, "9")
	ctx := context.Background()
	var seen []int
	for i := range 2 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			rdb := redistest.Client(t)
			seen = append(seen, rdb.Options().DB)
			require.NoError(t, rdb.Set(ctx, "probe", "1", 0).Err())
		})
	}
	require.Equal(t, []int{9, 9}, seen)
	for _, v := range []string{"x", "3-2", "0-16", "-1"} {
		t.Setenv(redistest.EnvDBs, v)
		_, _, err := redistest.DBs()
		require.Error(t, err, v)
	}
	t.Setenv(redistest.EnvDBs, "4-6")
	first, last, err := redistest.DBs()
	require.NoError(t, err)
	require.Equal(t, [2]int{4, 6}, [2]int{first, last})
	// Database 0 holds no lock: nothing was written there.
	opts := redistest.Options(t)
	opts.DB = 0
	c := redis.NewClient(opts)
	defer c.Close()
	n, err := c.Exists(ctx, redistest.LockKey(9)).Result()
	require.NoError(t, err)
	require.Zero(t, n)
}
