package tasks

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// DeadRedis returns a client of an address where nothing listens (Redis down: every
// command fails to connect), that does not retry; for the tests of both packages.
func DeadRedis(t *testing.T) *redis.Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// EvalshaUsec returns the usec of "cmdstat_evalsha" in INFO commandstats (go-redis's
// InfoMap parses the sections): Redis's own time in scripts, server-wide, for the
// benchmarks of both test packages. False where the server has no such section
// (miniredis).
func EvalshaUsec(rdb *redis.Client) (float64, bool) {
	info, err := rdb.InfoMap(context.Background(), "commandstats").Result()
	stats, ok := info["Commandstats"]
	if err != nil || !ok {
		return 0, false
	}
	for kv := range strings.SplitSeq(stats["cmdstat_evalsha"], ",") {
		if v, ok := strings.CutPrefix(kv, "usec="); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, true // no EVALSHA yet
}
