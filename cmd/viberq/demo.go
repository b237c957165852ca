package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/viberq/viberq/cmd/viberq/internal/demo"
	"github.com/viberq/viberq/provider/dtsim"
)

// runDemo is `viberq demo`: everything in one process on a mixed batch (package demo).
func runDemo(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("demo", stdout, "[flags]")
	var opts demo.Options
	fs.StringVar(&opts.RedisURL, "redis", "", "use this Redis (an EMPTY database, e.g. redis://127.0.0.1:6379/15) instead of an embedded one")
	fs.IntVar(&opts.N, "n", 200, "about how many messages to enqueue")
	fs.Float64Var(&opts.Rate, "rate", 20, "global send rate limit (sends per second)")
	fs.StringVar(&opts.Profile, "profile", string(dtsim.ProfileRealistic), "simulator profile: instant, realistic or chaos")
	fs.Int64Var(&opts.Seed, "seed", 0, "simulator seed (0: time-based)")
	fs.DurationVar(&opts.Timeout, "timeout", 3*time.Minute, "give up when messages are not final by then")
	fs.StringVar(&opts.LogPath, "log", filepath.Join(os.TempDir(), "viberq-demo.log"), "where the worker's log lines go")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	redisLog.hideURL(opts.RedisURL)
	return demo.Run(ctx, opts, stdout)
}
