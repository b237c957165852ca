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
	n, err := rdb.DBSize(ctx).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "starts empty")
}

func TestSameDatabaseForOneTest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Client(t)
	require.Same(t, rdb, redistest.Client(t))
	db := rdb.Options().DB
	require.GreaterOrEqual(t, db, 1)
	require.LessOrEqual(t, db, 15)
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
