package tasks

import (
	"context"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

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
