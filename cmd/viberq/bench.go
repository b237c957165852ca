package main

import (
	"context"
	"io"
	"strings"

	"github.com/viberq/viberq/cmd/viberq/internal/bench"
)

// runBench is `viberq bench`: the benchmarks of package bench (BENCHMARKS.md records a
// run). The bench re-executes this binary for its worker processes; a copy started
// with VIBERQ_BENCH_CHILD set is its bare-asynq baseline server instead.
func runBench(ctx context.Context, args []string, stdout io.Writer) error {
	if bench.IsChild() {
		return bench.RunChild(ctx)
	}
	fs := newFlagSet("bench", stdout, "[--redis URL] [--db N] [--only 1,3,5] [--quick] [--json]")
	var (
		redisURL = fs.String("redis", "redis://127.0.0.1:6379", "Redis URL (its database number is ignored: see --db)")
		db       = fs.Int("db", 13, "Redis database the bench flushes and fills, 1..15 (never 0)")
		only     = fs.String("only", "", "comma-separated rows to run ("+strings.Join(bench.RowIDs(), ",")+"), default all")
		quick    = fs.Bool("quick", false, "short CI-size run (under a minute): smaller counts, shorter windows")
		asJSON   = fs.Bool("json", false, "print the table as JSON")
		cpuProf  = fs.String("cpuprofile", "", "write a CPU profile of each row to PREFIX.rowN.pprof")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	redisLog.hideURL(*redisURL)
	opts := bench.Options{RedisURL: *redisURL, DB: *db, Quick: *quick, JSON: *asJSON, CPUProfile: *cpuProf,
		Command: bench.RedactedCommand(fs)}
	if *only != "" {
		for _, r := range strings.Split(*only, ",") {
			opts.Only = append(opts.Only, strings.TrimSpace(r))
		}
	}
	return bench.Run(ctx, opts, stdout)
}
