package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/viberq/viberq/provider/dtsim"
)

// runSim is `viberq sim`: the DecisionTelecom simulator as a server, until ctx ends.
func runSim(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("sim", stdout, "[flags]  (serves /v1/api/send-viber, /v1/api/receive-viber and GET /_sim/stats)")
	var (
		addr        = fs.String("addr", "127.0.0.1:8090", "listen address")
		profile     = fs.String("profile", string(dtsim.ProfileRealistic), "preset: instant, realistic or chaos")
		key         = fs.String("key", "", "access key clients must present (default $VIBERQ_DT_API_KEY)")
		encodedKey  = fs.Bool("encoded-key", false, "the key is already Base64: clients send it verbatim")
		errorStyle  = fs.String("error-style", string(dtsim.ErrorStyleStatus), "errors as status (matching HTTP status) or body200 (HTTP 200)")
		idStyle     = fs.String("id-style", string(dtsim.IDNumber), "message_id as number or string")
		shape       = fs.String("shape", string(dtsim.ShapeSDK), "answers as the SDKs expect (sdk) or exactly as the vendor page lists them (doc)")
		rate        = fs.Float64("rate", 0, "send-viber requests per second, 0 = unlimited (default from the profile)")
		burst       = fs.Int("burst", 0, "token bucket burst for --rate (default from the profile)")
		statusRate  = fs.Float64("status-rate", 0, "receive-viber requests per second, 0 = unlimited")
		retryAfter  = fs.Bool("retry-after", false, "send Retry-After with 429 (default from the profile)")
		balance     = fs.Int64("balance", dtsim.Unlimited, "sends left before 402, -1 = unlimited")
		seed        = fs.Int64("seed", 0, "random seed (default: time-based)")
		replyURL    = fs.String("reply-url", "", "POST two-way replies for 206/208 messages here")
		maxMessages = fs.Int("max-messages", dtsim.DefaultMaxMessages, "messages kept for status queries and the ledger")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}

	cfg, err := dtsim.ProfileConfig(dtsim.Profile(*profile))
	if err != nil {
		return usagef("%s", err.Error())
	}
	cfg.Key = *key
	if cfg.Key == "" {
		cfg.Key = os.Getenv("VIBERQ_DT_API_KEY")
	}
	cfg.EncodedKey = *encodedKey
	cfg.ErrorStyle = dtsim.ErrorStyle(*errorStyle)
	cfg.IDStyle = dtsim.IDStyle(*idStyle)
	cfg.Shape = dtsim.Shape(*shape)
	cfg.Balance = *balance
	cfg.ReplyURL = *replyURL
	cfg.MaxMessages = *maxMessages
	cfg.Seed = time.Now().UnixNano()
	fs.Visit(func(f *flag.Flag) { // profile values unless the flag was given
		switch f.Name {
		case "rate":
			cfg.RatePerSec = *rate
			if *rate == 0 {
				cfg.Burst = 0
			}
		case "burst":
			cfg.Burst = *burst
		case "status-rate":
			cfg.StatusRatePerSec = *statusRate
		case "retry-after":
			cfg.RetryAfter = *retryAfter
		case "seed":
			cfg.Seed = *seed
		}
	})
	if cfg.Key == "" {
		return usagef("the access key is required: --key or VIBERQ_DT_API_KEY")
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%s", err.Error())
	}
	if *maxMessages <= 0 {
		return usagef("--max-messages must be positive")
	}

	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", *addr)
	if err != nil {
		return err
	}
	sim := dtsim.New(cfg)
	defer sim.Close()
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	base := "http://" + ln.Addr().String()
	_, _ = fmt.Fprintf(stdout, "dtsim: DecisionTelecom simulator on %s%s (profile %s, errors %s, ids %s, shape %s, seed %d)\n",
		base, dtsim.BasePath, cfg.Profile, cfg.ErrorStyle, cfg.IDStyle, cfg.Shape, cfg.Seed)
	_, _ = fmt.Fprintf(stdout, "dtsim: stats %s/_sim/stats\n", base)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sim.Close() // ends hanging (timeout-fault) answers so shutdown does not wait for them
	shCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shCtx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	_, _ = fmt.Fprintln(stdout, "dtsim: stopped")
	return nil
}
