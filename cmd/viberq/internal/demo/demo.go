// Package demo is `viberq demo`: an embedded Redis (miniredis), the simulator and a
// worker built by app.NewWorker from the default settings, in one process, on a mixed
// batch of messages; it ends with the final states checked against the simulator's
// ledger.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/viberq/viberq/cmd/viberq/internal/app"
	"github.com/viberq/viberq/cmd/viberq/internal/cmdline"
	"github.com/viberq/viberq/config"
	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/tasks"
)

// demoMessage is one message of the demo batch, with what it is meant to show.
type demoMessage struct {
	kind string
	req  tasks.EnqueueRequest
}

// Options are the settings of a demo run (the flags of `viberq demo`).
type Options struct {
	// RedisURL, when set, is the Redis to use (an EMPTY database) instead of an
	// embedded one.
	RedisURL string
	// N is about how many messages to enqueue (at least 20).
	N int
	// Rate is the global send rate limit (sends per second).
	Rate float64
	// Profile is the simulator profile: instant, realistic or chaos.
	Profile string
	// Seed is the simulator seed (0: time-based).
	Seed int64
	// Timeout is when to give up on messages that are not final.
	Timeout time.Duration
	// LogPath is where the worker's log lines go.
	LogPath string
}

// Run runs the whole pipeline in one process: an embedded Redis (or RedisURL), the
// simulator with the given profile, a worker built by app.NewWorker from the default
// settings (as `viberq worker` builds it), a mixed batch of about N messages, live
// progress, and a summary checked against the simulator's ledger. It fails when a
// message is not final by Timeout or the ledger disagrees with the records.
func Run(ctx context.Context, opts Options, stdout io.Writer) error {
	if opts.N < 20 {
		return cmdline.Usagef("--n must be at least 20, got %d", opts.N)
	}
	if opts.Seed == 0 {
		opts.Seed = time.Now().UnixNano()
	}
	rdb, where, cleanup, err := demoRedis(ctx, opts.RedisURL)
	if err != nil {
		return err
	}
	defer cleanup()

	key := randomKey()
	simCfg, err := dtsim.ProfileConfig(dtsim.Profile(opts.Profile))
	if err != nil {
		return cmdline.Usagef("--profile: %v", err)
	}
	simCfg.Key, simCfg.Seed = key, opts.Seed
	sim := dtsim.New(simCfg)
	defer sim.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("simulator listener: %w", err)
	}
	simSrv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = simSrv.Serve(ln) }()
	defer simSrv.Close()
	simBase := "http://" + ln.Addr().String() + dtsim.BasePath

	logFile, err := os.Create(opts.LogPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	logger := zerolog.New(logFile).With().Timestamp().Logger()

	// The worker runs on the default settings, as `viberq worker` would with only the
	// provider pointed at the simulator and the send rate of --rate.
	env := map[string]string{
		config.EnvDTBaseURL:       simBase,
		config.EnvDTAPIKey:        key,
		config.EnvRateLimit:       strconv.FormatFloat(opts.Rate, 'f', -1, 64),
		config.EnvShutdownTimeout: "3s",
	}
	cfg, err := config.Load(func(k string) string { return env[k] })
	var ce *config.Error
	if errors.As(err, &ce) {
		ce.NameFlag(config.EnvRateLimit, "--rate") // the one setting the demo takes from a flag
	}
	if err != nil {
		return cmdline.Usagef("%v", err)
	}
	store := app.NewStore(rdb, cfg)
	client := asynq.NewClientFromRedisClient(rdb)
	defer client.Close()
	enq := tasks.NewEnqueuer(client, store, app.EnqueuerConfig(cfg))
	w, err := app.NewWorker(cfg, rdb, logger, nil)
	if err != nil {
		return err
	}
	wctx, stopWorker := context.WithCancel(ctx)
	werr := make(chan error, 1)
	go func() { werr <- w.Run(wctx) }()
	defer func() {
		stopWorker()
		<-werr
	}()

	fmt.Fprintf(stdout, "viberq demo: Redis %s, simulator %s (profile %s, seed %d), worker at %.0f sends/s; worker log: %s\n\n",
		where, simBase, opts.Profile, opts.Seed, opts.Rate, opts.LogPath)

	// Enqueue the batch; a refused message is shown with every bad field.
	batch := demoBatch(opts.N)
	var ids []string
	kindOf := map[string]string{}
	refused := 0
	for _, m := range batch {
		res, err := enq.Enqueue(ctx, m.req)
		var ve *provider.ValidationError
		switch {
		case errors.As(err, &ve):
			refused++
			fmt.Fprintf(stdout, "refused at enqueue (%s): %v\n", m.kind, ve)
			continue
		case err != nil:
			return fmt.Errorf("enqueue: %w", err)
		}
		ids = append(ids, res.ID)
		kindOf[res.ID] = m.kind
	}
	fmt.Fprintf(stdout, "\nenqueued %d messages, %d refused at enqueue\n\n", len(ids), refused)

	// Follow the records until every message is final.
	start := time.Now()
	deadline := start.Add(opts.Timeout)
	var recs []tasks.Record
	for {
		recs, err = demoRecords(ctx, store, ids)
		if err != nil {
			return err
		}
		counts, final := stateCounts(recs)
		fmt.Fprintf(stdout, "%5.1fs  %s\n", time.Since(start).Seconds(), counts)
		if final == len(recs) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d messages not final after %s", len(recs)-final, len(recs), opts.Timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	fmt.Fprintf(stdout, "\nall %d messages final after %.1fs\n\n", len(recs), time.Since(start).Seconds())
	summaryTable(stdout, recs, kindOf)
	return ledgerCheck(stdout, sim, recs)
}

// demoRedis returns the Redis of the demo: an embedded miniredis, or the given URL if
// its database is empty (the demo never touches data it did not write).
func demoRedis(ctx context.Context, url string) (redis.UniversalClient, string, func(), error) {
	if url == "" {
		mr := miniredis.NewMiniRedis()
		if err := mr.Start(); err != nil {
			return nil, "", nil, fmt.Errorf("embedded redis: %w", err)
		}
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		return rdb, "embedded (miniredis " + mr.Addr() + ")", func() { rdb.Close(); mr.Close() }, nil
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		// go-redis's error may quote the URL, password and all: not passed on.
		return nil, "", nil, cmdline.Usagef("--redis: must be a redis:// or rediss:// URL that go-redis can parse (a password holding / ? # or @ percent-encoded)")
	}
	rdb := redis.NewClient(opt)
	size, err := rdb.DBSize(ctx).Result()
	if err != nil {
		rdb.Close()
		return nil, "", nil, fmt.Errorf("--redis: %w", err)
	}
	if size != 0 {
		rdb.Close()
		return nil, "", nil, cmdline.Usagef("--redis: database %d holds %d keys; the demo needs an empty one", opt.DB, size)
	}
	return rdb, fmt.Sprintf("%s db %d", opt.Addr, opt.DB), func() { rdb.Close() }, nil
}

func randomKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "demo-" + hex.EncodeToString(b)
}

// demoBatch builds about n messages: transactional codes with an SMS fallback (on the
// critical queue), promotions with image and button (default queue), a few invalid
// ones that enqueue refuses, and a few promotions whose TTL is too short to make it
// through the backlog (they end expired, never sent).
func demoBatch(n int) []demoMessage {
	const invalid, short = 6, 10
	valid := n - invalid - short
	var out []demoMessage
	phone := func(i int) string { return fmt.Sprintf("38050%07d", 1000000+i) }
	for i := range valid {
		if i%2 == 0 {
			out = append(out, demoMessage{"transactional + SMS", tasks.EnqueueRequest{
				ID: fmt.Sprintf("otp-%03d", i),
				Message: provider.Message{SourceAddr: "viberq", DestinationAddr: phone(i), MessageType: provider.TypeText,
					SourceType: provider.SourceTransactional, Text: fmt.Sprintf("Your code is %04d", i*37%10000),
					TextSMS: fmt.Sprintf("Code %04d", i*37%10000)},
			}})
			continue
		}
		out = append(out, demoMessage{"promotional", tasks.EnqueueRequest{
			ID: fmt.Sprintf("promo-%03d", i),
			Message: provider.Message{SourceAddr: "viberq", DestinationAddr: phone(i), MessageType: provider.TypeTextImageButton,
				SourceType: provider.SourcePromotional, Text: fmt.Sprintf("Offer %d: 20%% off this week", i),
				Image: "https://example.com/img/offer.png", ButtonCaption: "Open", ButtonAction: "https://example.com/offer"},
			TTL: time.Hour,
		}})
	}
	bad := []demoMessage{
		{"invalid: SMS text over one segment", tasks.EnqueueRequest{Message: provider.Message{SourceAddr: "viberq", DestinationAddr: phone(9001),
			MessageType: provider.TypeText, SourceType: provider.SourceTransactional, Text: "hi", TextSMS: strings.Repeat("x", 161)}}},
		{"invalid: SMS fallback on a promotion", tasks.EnqueueRequest{Message: provider.Message{SourceAddr: "viberq", DestinationAddr: phone(9002),
			MessageType: provider.TypeText, SourceType: provider.SourcePromotional, Text: "hi", TextSMS: "hi"}}},
		{"invalid: image is not jpg/png", tasks.EnqueueRequest{Message: provider.Message{SourceAddr: "viberq", DestinationAddr: phone(9003),
			MessageType: provider.TypeTextImageButton, SourceType: provider.SourcePromotional, Text: "hi", Image: "https://example.com/a.gif",
			ButtonCaption: "Open", ButtonAction: "https://example.com"}}},
		{"invalid: phone with '+' and no text", tasks.EnqueueRequest{Message: provider.Message{SourceAddr: "viberq", DestinationAddr: "+380501234567",
			MessageType: provider.TypeText, SourceType: provider.SourceTransactional}}},
		{"invalid: button caption too long", tasks.EnqueueRequest{Message: provider.Message{SourceAddr: "viberq", DestinationAddr: phone(9005),
			MessageType: provider.TypeTextImageButton, SourceType: provider.SourcePromotional, Text: "hi", Image: "https://example.com/a.png",
			ButtonCaption: strings.Repeat("b", 31), ButtonAction: "https://example.com"}}},
		{"invalid: bad idempotency key", tasks.EnqueueRequest{ID: "order 42/otp", Message: provider.Message{SourceAddr: "viberq", DestinationAddr: phone(9006),
			MessageType: provider.TypeText, SourceType: provider.SourceTransactional, Text: "hi"}}},
	}
	// Interleave the invalid ones; put the short-TTL promotions at the back of the
	// promotional queue, behind the backlog the rate limit builds.
	for i, b := range bad {
		at := min(len(out), (i+1)*len(out)/(len(bad)+1))
		out = append(out[:at], append([]demoMessage{b}, out[at:]...)...)
	}
	for i := range short {
		out = append(out, demoMessage{"promotional, 3 s TTL behind the backlog", tasks.EnqueueRequest{
			ID: fmt.Sprintf("flash-%03d", i),
			Message: provider.Message{SourceAddr: "viberq", DestinationAddr: phone(5000 + i), MessageType: provider.TypeText,
				SourceType: provider.SourcePromotional, Text: "Flash sale ends in 3 seconds!"},
			TTL: 3 * time.Second,
		}})
	}
	return out
}

// demoRecords reads the records of ids in one pipeline-friendly loop.
func demoRecords(ctx context.Context, store *tasks.Store, ids []string) ([]tasks.Record, error) {
	out := make([]tasks.Record, 0, len(ids))
	for _, id := range ids {
		r, err := store.Get(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("record %s: %w", id, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// stateCounts renders "state n" for the states present, and counts final records.
func stateCounts(recs []tasks.Record) (string, int) {
	c := map[tasks.State]int{}
	final := 0
	for _, r := range recs {
		c[r.State]++
		if r.State.Final() {
			final++
		}
	}
	var parts []string
	for _, s := range tasks.States {
		if c[s] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", s, c[s]))
		}
	}
	return strings.Join(parts, " · "), final
}

// summaryTable prints final states by channel and by kind of message.
func summaryTable(w io.Writer, recs []tasks.Record, kindOf map[string]string) {
	type key struct{ kind, state, channel string }
	c := map[key]int{}
	for _, r := range recs {
		c[key{kindOf[r.ID], string(r.State), r.Channel}]++
	}
	keys := make([]key, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].kind != keys[j].kind {
			return keys[i].kind < keys[j].kind
		}
		if keys[i].state != keys[j].state {
			return keys[i].state < keys[j].state
		}
		return keys[i].channel < keys[j].channel
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "message kind\tfinal state\tchannel\tcount")
	total := 0
	for _, k := range keys {
		ch := k.channel
		if ch == "" {
			ch = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", k.kind, k.state, ch, c[k])
		total += c[k]
	}
	fmt.Fprintf(tw, "total\t\t\t%d\n", total)
	tw.Flush()
}

// ledgerCheck compares the records with the simulator's ledger: every record with a
// provider message ID is exactly one accepted send, nothing else was sent, there are
// no duplicates, and each final record agrees with the simulator's own final status.
func ledgerCheck(w io.Writer, sim *dtsim.Sim, recs []tasks.Record) error {
	ledger := sim.Ledger()
	byID := make(map[provider.MessageID]dtsim.LedgerEntry, len(ledger))
	dups := 0
	for _, e := range ledger {
		byID[e.MessageID] = e
		if e.Duplicate {
			dups++
		}
	}
	var problems []string
	sent, agree := 0, 0
	for _, r := range recs {
		if r.ProviderMessageID == 0 {
			continue
		}
		sent++
		if _, ok := byID[r.ProviderMessageID]; !ok {
			problems = append(problems, fmt.Sprintf("%s: provider message %d is not in the ledger", r.ID, r.ProviderMessageID))
			continue
		}
		st, final, ok := sim.MessageStatus(r.ProviderMessageID)
		if !ok || !final {
			problems = append(problems, fmt.Sprintf("%s: the simulator has no final status for %d", r.ID, r.ProviderMessageID))
			continue
		}
		want := outcomeState(st.Outcome(r.HasSMS))
		got := string(r.State)
		if r.State == tasks.StateDelivered {
			got += "/" + r.Channel
		}
		if got != want {
			problems = append(problems, fmt.Sprintf("%s: record says %s, the simulator %s", r.ID, got, want))
			continue
		}
		agree++
	}
	// A send whose outcome was ambiguous (unknown) may be in the ledger without a
	// provider message ID in its record; nothing else may.
	unknown := 0
	for _, r := range recs {
		if r.State == tasks.StateUnknown && r.ProviderMessageID == 0 {
			unknown++
		}
	}
	if extra := len(ledger) - sent; extra < 0 || extra > unknown {
		problems = append(problems, fmt.Sprintf("the simulator accepted %d sends, the records hold %d provider message IDs and %d unknown outcomes", len(ledger), sent, unknown))
	}
	if dups != 0 {
		problems = append(problems, fmt.Sprintf("%d duplicate sends at the simulator", dups))
	}
	fmt.Fprintf(w, "\nledger check: %d sends accepted by the simulator, %d records with a provider message ID, %d duplicates, %d/%d final states agree with the simulator\n",
		len(ledger), sent, dups, agree, sent)
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(w, "  MISMATCH:", p)
		}
		return fmt.Errorf("the records disagree with the simulator's ledger (%d problems)", len(problems))
	}
	fmt.Fprintln(w, "OK: nothing lost, nothing sent twice, every message in exactly one final state")
	return nil
}

func outcomeState(o provider.Outcome) string {
	switch o {
	case provider.OutcomeDeliveredViber:
		return "delivered/" + tasks.ChannelViber
	case provider.OutcomeDeliveredSMS:
		return "delivered/" + tasks.ChannelSMS
	case provider.OutcomeUndelivered:
		return string(tasks.StateUndelivered)
	default:
		return "pending"
	}
}
