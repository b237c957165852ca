package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/viberq/viberq/cmd/viberq/internal/app"
	"github.com/viberq/viberq/config"
	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/scheduler"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/worker"
	"github.com/viberq/viberq/worker/api"
)

// benchConcurrency is the worker concurrency of rows 1 and 2 (viberq's default).
const benchConcurrency = worker.DefaultConcurrency

// enqueueGoroutines is how many producers fill the queues before a measurement.
const enqueueGoroutines = 32

// limitsOutOfTheWay sets both global limiters to veryHighRate with a burst of 1000.
func limitsOutOfTheWay(cfg *config.Config) {
	cfg.Limits.SendRate, cfg.Limits.SendBurst = veryHighRate, 1000
	cfg.Limits.StatusRate, cfg.Limits.StatusBurst = veryHighRate, 1000
}

// veryHighRate puts the global limiter out of the way (row 1, 2 and 6): the bucket
// still costs its Redis round trips, but never makes a task wait.
const veryHighRate = 1e6

func (b *bench) simConfig(p dtsim.Profile) dtsim.Config {
	cfg, _ := dtsim.ProfileConfig(p)
	cfg.Key = b.key
	cfg.Seed = 1
	cfg.RecordRequests = -1
	return cfg
}

// producer returns an Enqueuer with the default settings on the bench database.
func (b *bench) producer(simBase string) (*tasks.Enqueuer, *tasks.Store, config.Config, error) {
	cfg, err := benchConfig(simBase, b.key)
	if err != nil {
		return nil, nil, cfg, err
	}
	store := app.NewStore(b.redis.rdb, cfg)
	return tasks.NewEnqueuer(asynq.NewClientFromRedisClient(b.redis.rdb), store, app.EnqueuerConfig(cfg)), store, cfg, nil
}

// enqueueMessages enqueues messages 0..n-1 through the Enqueuer and returns their IDs.
func enqueueMessages(ctx context.Context, enq *tasks.Enqueuer, n int, msg func(i int) (provider.Message, string)) ([]string, time.Duration, error) {
	ids := make([]string, n)
	d, err := parallel(ctx, n, enqueueGoroutines, func(ctx context.Context, i int) error {
		m, id := msg(i)
		res, err := enq.Enqueue(ctx, tasks.EnqueueRequest{ID: id, Message: m})
		if err != nil {
			return err
		}
		ids[i] = res.ID
		return nil
	})
	return ids, d, err
}

func plainMessage(i int) (provider.Message, string) { return benchMessage(i), "" }

// ---- row 1: send throughput ----

func benchSendThroughput(ctx context.Context, b *bench) ([]benchResult, error) {
	n, pairs := b.pick(4000, 2000), b.pick(5, 2)
	sim, err := startSim(b.simConfig(dtsim.ProfileInstant))
	if err != nil {
		return nil, err
	}
	defer sim.close()
	var bare, vq, ratios []float64
	var bareConns, vqConns int64
	for p := range pairs {
		var r, v float64
		var rc, vc int64
		// Alternate which side runs first, so a drift in the machine's load hits both.
		for k := range 2 {
			if (p+k)%2 == 0 {
				r, rc, err = b.bareSendRun(ctx, sim, n, benchConcurrency)
				if err != nil {
					return nil, fmt.Errorf("bare asynq: %w", err)
				}
			} else {
				v, vc, err = b.viberqSendRun(ctx, sim, n, benchConcurrency)
				if err != nil {
					return nil, fmt.Errorf("viberq: %w", err)
				}
			}
		}
		bare, vq, ratios = append(bare, r), append(vq, v), append(ratios, v/r)
		bareConns, vqConns = bareConns+rc, vqConns+vc
		b.logf("row 1: pair %d: bare %.0f/s, viberq %.0f/s (%.2f); new connections to the simulator: bare %d, viberq %d", p+1, r, v, v/r, rc, vc)
	}
	bm, vm := median(bare), median(vq)
	b.bareSendRate = bm
	rt := median(ratios)
	return []benchResult{{
		Row: "1", What: "send throughput (tasks/s)",
		Baseline: fmtRate(bm, "/s"), Viberq: fmtRate(vm, "/s"), Value: fmtRatio(rt), Target: "≥ 0.70",
		Result: passFail(rt >= 0.70), BaselineNum: bm, ViberqNum: vm, ValueNum: rt,
		How: fmt.Sprintf("%d pairs of runs (order alternating), each on %d tasks pre-enqueued on queue critical, concurrency %d, same Redis; "+
			"rate = arrivals at the instant simulator between the 10th and 90th percentile arrival (steady state); value = median of the per-pair ratios. "+
			"Baseline: bare asynq server (same queue weights), handler = decode payload + one POST (keep-alive transport, MaxIdleConnsPerHost %d). "+
			"viberq: the worker in process, built by app.NewWorker as `viberq worker` builds it, default "+
			"settings except send rate %g/s burst 1000 and a 10-minute first poll (each send still takes a limiter token with the move to "+
			"sending and makes its first poll due with the acceptance; the dispatcher schedules polls a second before they are due, outside "+
			"the window, and polls do not run in it); logger at info to io.Discard. New TCP connections to the simulator "+
			"per %d sends: bare %d, viberq %d. Pair ratios: %s.",
			pairs, n, benchConcurrency, max(benchConcurrency, 100), veryHighRate, n*pairs, bareConns, vqConns, fmtRatios(ratios)),
	}}, nil
}

// bareClient is a keep-alive HTTP client sized to the concurrency.
func bareClient(conc int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = max(conc, 100)
	tr.MaxIdleConnsPerHost = max(conc, 100)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// bareHandler is the baseline handler: decode the send payload, POST the message to
// send-viber once, read the answer.
func bareHandler(hc *http.Client, base, key string) asynq.Handler {
	auth := basicAuth(key)
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		var a tasks.SendArgs
		if err := json.Unmarshal(t.Payload(), &a); err != nil {
			return fmt.Errorf("%v: %w", err, asynq.SkipRetry)
		}
		body, err := a.Message.WireJSON()
		if err != nil {
			return fmt.Errorf("%v: %w", err, asynq.SkipRetry)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/send-viber", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("send-viber: HTTP %d", resp.StatusCode)
		}
		return nil
	})
}

// bareServerConfig is the baseline asynq server: asynq's defaults with the
// concurrency and viberq's queue weights, logging only errors.
func bareServerConfig(conc int) asynq.Config {
	return asynq.Config{
		Concurrency: conc,
		Queues:      worker.DefaultQueues(),
		Logger:      worker.NewAsynqLogger(zerolog.Nop()),
		LogLevel:    asynq.ErrorLevel,
	}
}

// enqueueBare enqueues n bare tasks with the send payload of message i.
func enqueueBare(ctx context.Context, client *asynq.Client, n, g int, opts ...asynq.Option) (time.Duration, error) {
	opts = append([]asynq.Option{asynq.Queue(tasks.QueueCritical)}, opts...)
	return parallel(ctx, n, g, func(ctx context.Context, i int) error {
		_, err := client.EnqueueContext(ctx, asynq.NewTask(tasks.TypeSend, sendPayload(i, time.Now())), opts...)
		return err
	})
}

func (b *bench) bareSendRun(ctx context.Context, sim *simServer, n, conc int) (float64, int64, error) {
	if err := b.redis.flush(ctx); err != nil {
		return 0, 0, err
	}
	rdb := b.redis.newClient()
	defer rdb.Close()
	if _, err := enqueueBare(ctx, asynq.NewClientFromRedisClient(rdb), n, enqueueGoroutines); err != nil {
		return 0, 0, err
	}
	sim.sim.Reset()
	sim.tap.reset()
	sim.tap.record(n)
	hc := bareClient(conc)
	defer hc.CloseIdleConnections()
	srv := asynq.NewServerFromRedisClient(rdb, bareServerConfig(conc))
	if err := srv.Start(bareHandler(hc, sim.base, b.key)); err != nil {
		return 0, 0, err
	}
	err := sim.tap.waitSends(ctx, int64(n), 2*time.Minute)
	srv.Shutdown()
	if err != nil {
		return 0, 0, err
	}
	if acc := sim.sim.Stats().Accepted; acc != int64(n) {
		return 0, 0, fmt.Errorf("simulator accepted %d sends, want %d", acc, n)
	}
	return sim.tap.steadyRate(), sim.tap.conns.Load(), nil
}

func (b *bench) viberqSendRun(ctx context.Context, sim *simServer, n, conc int) (float64, int64, error) {
	if err := b.redis.flush(ctx); err != nil {
		return 0, 0, err
	}
	enq, _, cfg, err := b.producer(sim.base)
	if err != nil {
		return 0, 0, err
	}
	if _, _, err := enqueueMessages(ctx, enq, n, plainMessage); err != nil {
		return 0, 0, err
	}
	sim.sim.Reset()
	sim.tap.reset()
	sim.tap.record(n)
	cfg.Worker.Concurrency = conc
	cfg.Limits.SendRate, cfg.Limits.SendBurst = veryHighRate, 1000
	cfg.Poll.First, cfg.Poll.MaxInterval = 10*time.Minute, 10*time.Minute
	w, err := b.startWorker(ctx, cfg)
	if err != nil {
		return 0, 0, err
	}
	err = sim.tap.waitSends(ctx, int64(n), 2*time.Minute)
	if serr := w.stop(); err == nil {
		err = serr
	}
	if err != nil {
		return 0, 0, err
	}
	if acc := sim.sim.Stats().Accepted; acc != int64(n) {
		return 0, 0, fmt.Errorf("simulator accepted %d sends, want %d", acc, n)
	}
	return sim.tap.steadyRate(), sim.tap.conns.Load(), nil
}

// ---- row 2: end to end ----

func benchEndToEnd(ctx context.Context, b *bench) ([]benchResult, error) {
	n := b.pick(10000, 2000)
	sim, err := startSim(b.simConfig(dtsim.ProfileInstant))
	if err != nil {
		return nil, err
	}
	defer sim.close()
	enq, _, cfg, err := b.producer(sim.base)
	if err != nil {
		return nil, err
	}
	limitsOutOfTheWay(&cfg)
	cfg.Poll.First = time.Second
	w, err := b.startWorker(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.stop() }()
	if err := b.waitServers(ctx, 1, nil, 10*time.Second); err != nil {
		return nil, err
	}
	start := time.Now()
	ids, _, err := enqueueMessages(ctx, enq, n, plainMessage)
	if err != nil {
		return nil, err
	}
	if err := w.waitFinals(ctx, n, 3*time.Minute); err != nil {
		return nil, err
	}
	sum, err := recordStates(ctx, b.redis.rdb, ids)
	if err != nil {
		return nil, err
	}
	if sum.states[tasks.StateDelivered] != n {
		return nil, fmt.Errorf("states after the run: %v, want %d delivered", sum.states, n)
	}
	st := sim.sim.Stats()
	calls := st.Requests[string(dtsim.EndpointSend)] + st.Requests[string(dtsim.EndpointStatus)]
	perMsg := float64(calls) / float64(n)
	wall := rate(n, sum.lastFinal().Sub(start))
	steady := steadyRateOf(sum.finals)
	res := []benchResult{{
		Row: "2a", What: "end to end, steady state (msg/s)", Viberq: fmtRate(steady, "msg/s"), Value: fmtRate(steady, "msg/s"), Result: "info",
		ViberqNum: steady, ValueNum: steady,
		How: fmt.Sprintf("%d messages enqueued by %d producers while one in-process worker (concurrency %d, limits out of the way, first poll 1 s) "+
			"runs; instant simulator; rate of final_at between the 10th and 90th percentile message. Over the whole run (first enqueue to last "+
			"final): %s; enqueue → final p50 %s, p99 %s (all N are enqueued at once, so this is mostly time in the backlog; it includes the first "+
			"poll, ≥ 1 s: asynq schedules in whole seconds and forwards every second).", n, enqueueGoroutines, cfg.Worker.Concurrency, fmtRate(wall, "msg/s"), fmtMS(percentile(sum.latency, 50)), fmtMS(percentile(sum.latency, 99))),
	}, {
		Row: "2b", What: "provider API calls per message", Viberq: fmt.Sprintf("%d calls", calls), Value: fmt.Sprintf("%.2f", perMsg),
		Target: "2 (send + 1 poll)", Result: passFail(perMsg <= 2.0001), ViberqNum: float64(calls), ValueNum: perMsg,
		How: "simulator request counters (send-viber + receive-viber) / N; instant profile: the first poll finds every message delivered.",
	}}
	if b.bareSendRate > 0 {
		base := b.bareSendRate / 2
		res[0].Baseline, res[0].BaselineNum = fmtRate(base, "msg/s"), base
		res[0].Value, res[0].ValueNum = fmtRatio(ratio(steady, base)), ratio(steady, base)
		res[0].How += " Baseline: row 1's bare-asynq tasks/s ÷ 2 (a message is two tasks, send and poll); no target."
	}
	return res, nil
}

// recordSummary is what recordStates reads from the records.
type recordSummary struct {
	states  map[tasks.State]int
	finals  []time.Time     // final_at of the final records
	latency []time.Duration // final_at - created_at of the final records
}

func (r recordSummary) lastFinal() time.Time {
	var last time.Time
	for _, t := range r.finals {
		if t.After(last) {
			last = t
		}
	}
	return last
}

// recordStates reads the state, created_at and final_at of every record (pipelined).
func recordStates(ctx context.Context, rdb redis.UniversalClient, ids []string) (recordSummary, error) {
	out := recordSummary{states: map[tasks.State]int{}}
	ms := func(v any) (time.Time, bool) {
		s, ok := v.(string)
		if !ok {
			return time.Time{}, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		return time.UnixMilli(n), err == nil
	}
	const batch = 1000
	for lo := 0; lo < len(ids); lo += batch {
		hi := min(lo+batch, len(ids))
		pipe := rdb.Pipeline()
		cmds := make([]*redis.SliceCmd, 0, hi-lo)
		for _, id := range ids[lo:hi] {
			cmds = append(cmds, pipe.HMGet(ctx, tasks.DefaultPrefix+"msg:"+id, "state", "created_at", "final_at"))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return out, fmt.Errorf("read records: %w", err)
		}
		for _, c := range cmds {
			v := c.Val()
			if len(v) != 3 {
				continue
			}
			s, _ := v[0].(string)
			out.states[tasks.State(s)]++
			created, okC := ms(v[1])
			if final, ok := ms(v[2]); ok && tasks.State(s).Final() {
				out.finals = append(out.finals, final)
				if okC {
					out.latency = append(out.latency, final.Sub(created))
				}
			}
		}
	}
	return out, nil
}

// finalCount is how many of states are final.
func finalCount(states map[tasks.State]int) int {
	n := 0
	for s, c := range states {
		if s.Final() {
			n += c
		}
	}
	return n
}

// waitRecordsFinal polls the records until all are final.
func waitRecordsFinal(ctx context.Context, rdb redis.UniversalClient, ids []string, timeout time.Duration, check func() error) (map[tasks.State]int, error) {
	deadline := time.Now().Add(timeout)
	for {
		sum, err := recordStates(ctx, rdb, ids)
		if err != nil {
			return nil, err
		}
		states := sum.states
		if finalCount(states) == len(ids) {
			return states, nil
		}
		if time.Now().After(deadline) {
			return states, fmt.Errorf("not all %d messages final within %s: %v", len(ids), timeout, states)
		}
		if check != nil {
			if err := check(); err != nil {
				return states, err
			}
		}
		select {
		case <-ctx.Done():
			return states, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ---- row 3: enqueue ----

func benchEnqueue(ctx context.Context, b *bench) ([]benchResult, error) {
	enq, _, _, err := b.producer("http://127.0.0.1:1/v1/api") // the provider is never called
	if err != nil {
		return nil, err
	}
	client := asynq.NewClientFromRedisClient(b.redis.rdb)
	bareRun := func(n, g int) (float64, error) {
		if err := b.redis.flush(ctx); err != nil {
			return 0, err
		}
		d, err := enqueueBare(ctx, client, n, g)
		if err != nil {
			return 0, fmt.Errorf("bare enqueue: %w", err)
		}
		return rate(n, d), nil
	}
	vqRun := func(n, g int) (float64, error) {
		if err := b.redis.flush(ctx); err != nil {
			return 0, err
		}
		d, err := parallel(ctx, n, g, func(ctx context.Context, i int) error {
			_, err := enq.Enqueue(ctx, tasks.EnqueueRequest{Message: benchMessage(i)})
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("enqueuer: %w", err)
		}
		return rate(n, d), nil
	}
	var out []benchResult
	for _, g := range []int{1, 32} {
		n, pairs := enqueueRunSize(b, g)
		var bare, vq, ratios []float64
		for p := range pairs {
			var r, v float64
			for k := range 2 {
				if (p+k)%2 == 0 {
					r, err = bareRun(n, g)
				} else {
					v, err = vqRun(n, g)
				}
				if err != nil {
					return nil, err
				}
			}
			bare, vq, ratios = append(bare, r), append(vq, v), append(ratios, v/r)
		}
		bm, vm, rt := median(bare), median(vq), median(ratios)
		b.logf("row 3: %d goroutine(s): bare %.0f/s, Enqueuer %.0f/s, pair ratios %s", g, bm, vm, fmtRatios(ratios))
		id := map[int]string{1: "3a", 32: "3b"}[g]
		out = append(out, benchResult{
			Row: id, What: fmt.Sprintf("enqueue, %d goroutine%s (msg/s)", g, map[bool]string{true: "s", false: ""}[g > 1]),
			Baseline: fmtRate(bm, "/s"), Viberq: fmtRate(vm, "/s"), Value: fmtRatio(rt), Target: "≥ 0.80",
			Result: passFail(rt >= 0.80), BaselineNum: bm, ViberqNum: vm, ValueNum: rt,
			How: fmt.Sprintf("%d pairs of runs (order alternating) of %d enqueues from %d goroutine(s); value = median of the per-pair ratios (%s). "+
				"Baseline: asynq.Client.Enqueue of a task with the same %d-byte payload (marshalled per call, queue critical, no ID). "+
				"viberq: tasks.Enqueuer.Enqueue with the default settings (validate, generated ID, record + queued event + task with ID and retention in one script).",
				pairs, n, g, fmtRatios(ratios), payloadSize()),
		})
	}
	batch, err := benchBatchEnqueue(ctx, b, client, enq)
	if err != nil {
		return out, err
	}
	return append(out, batch), nil
}

// enqueueRunSize is the enqueues per run and the pairs of runs of row 3a (g = 1) or 3b.
// A run of 5 000 takes about half a second here, short enough that the two runs of a
// pair share the host's state; the pairs are many because single pairs still spread
// widely on a shared machine (3a 0.46–1.48, 3b 0.55–1.07 in the full runs of 4
// December, evening). Shorter runs of 1 000 enqueues spread far more (3a 0.19–2.07: a
// pause of the host weighs on a tenth of a second), so the number of pairs is what
// narrows the median (BENCHMARKS.md, "4 December 2026, evening: where a lone
// enqueue's time goes, and a cheaper index entry").
func enqueueRunSize(b *bench, g int) (n, pairs int) {
	if g == 1 {
		return b.pick(5000, 2000), b.pick(11, 3)
	}
	return b.pick(5000, 2000), b.pick(15, 5)
}

// ---- row 4: limiter accuracy ----

func benchLimiter(ctx context.Context, b *bench) ([]benchResult, error) {
	const limit, procs = 300, 3
	window := time.Duration(b.pick(20, 6)) * time.Second
	backlog := limit * int(window/time.Second+8)
	sim, err := startSim(b.simConfig(dtsim.ProfileInstant))
	if err != nil {
		return nil, err
	}
	defer sim.close()
	enq, _, _, err := b.producer(sim.base)
	if err != nil {
		return nil, err
	}
	if _, _, err := enqueueMessages(ctx, enq, backlog, plainMessage); err != nil {
		return nil, err
	}
	sim.sim.Reset()
	sim.tap.reset()
	env := b.workerEnv(sim.base, map[string]string{config.EnvRateLimit: strconv.Itoa(limit)})
	children, stop, err := b.startWorkers(procs, env)
	defer stop()
	if err != nil {
		return nil, err
	}
	if err := b.waitServers(ctx, procs, children, 20*time.Second); err != nil {
		return nil, err
	}
	if err := sim.tap.waitSends(ctx, 1, 10*time.Second); err != nil {
		return nil, err
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(window):
	}
	for _, c := range children {
		if ok, err := c.exited(); ok {
			return nil, err
		}
	}
	st := sim.sim.Stats()
	for _, c := range children {
		_ = c.stop(30 * time.Second)
	}
	children = nil
	highest, mean, full := windowStats(st.AcceptedPerSecond)
	series := perSecondSeries(st.AcceptedPerSecond)
	burst := config.DefaultRateBurst
	maxOK := float64(limit)*1.02 + float64(burst)
	meanOK := 0.97 * limit
	how := fmt.Sprintf("%d worker processes (re-executed `viberq worker`, VIBERQ_RATE_LIMIT=%d, burst %d, other settings default, LOG_LEVEL warn), "+
		"%d messages queued first, run for %s after the first send; counts per Unix second of the simulator's accepted sends; "+
		"mean over the %d full seconds (first and last partial seconds dropped). Accepted in total: %d; per second: %v.",
		procs, limit, burst, backlog, window, full, st.Accepted, series)
	if full < int(window/time.Second)-3 {
		return nil, fmt.Errorf("only %d full seconds in a %s window", full, window)
	}
	return []benchResult{{
		Row: "4a", What: "limiter: highest 1-s count", Viberq: fmt.Sprintf("%d /s", highest), Value: fmt.Sprintf("%d", highest),
		Target: fmt.Sprintf("≤ %.0f (300×1.02+%d)", maxOK, burst), Result: passFail(float64(highest) <= maxOK),
		ViberqNum: float64(highest), ValueNum: float64(highest), How: how,
	}, {
		Row: "4b", What: "limiter: mean over full seconds", Viberq: fmt.Sprintf("%.1f /s", mean), Value: fmt.Sprintf("%.3f × 300", mean/limit),
		Target: "≥ 0.97 × 300", Result: passFail(mean >= meanOK), ViberqNum: mean, ValueNum: mean / limit,
	}}, nil
}

// ---- row 5: latency when idle ----

func benchLatency(ctx context.Context, b *bench) ([]benchResult, error) {
	n := b.pick(500, 60)
	sim, err := startSim(b.simConfig(dtsim.ProfileInstant))
	if err != nil {
		return nil, err
	}
	defer sim.close()
	arr := newArrivals()
	sim.tap.watch.Store(arr)
	enq, _, _, err := b.producer(sim.base)
	if err != nil {
		return nil, err
	}
	child, err := b.startChild([]string{"worker"}, b.workerEnv(sim.base, nil))
	if err != nil {
		return nil, err
	}
	defer func() { _ = child.stop(30 * time.Second) }()
	if err := b.waitServers(ctx, 1, []*childProc{child}, 20*time.Second); err != nil {
		return nil, err
	}
	const warmup = 5
	lat := make([]time.Duration, 0, n)
	for i := range n + warmup {
		// An idle gap before each message, uniform in [20, 120) ms: the worker is idle
		// (asleep in its task check) and the arrivals do not lock to its phase.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20*time.Millisecond + rand.N(100*time.Millisecond)):
		}
		m := benchMessage(i)
		ch := arr.expect(m.DestinationAddr)
		start := time.Now()
		if _, err := enq.Enqueue(ctx, tasks.EnqueueRequest{Message: m}); err != nil {
			return nil, err
		}
		select {
		case at := <-ch:
			if i >= warmup {
				lat = append(lat, at.Sub(start))
			}
		case <-time.After(10 * time.Second):
			if ok, err := child.exited(); ok {
				return nil, err
			}
			return nil, fmt.Errorf("message %d did not reach the simulator within 10 s", i)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	p50, p99 := percentile(lat, 50), percentile(lat, 99)
	return []benchResult{{
		Row: "5", What: "latency when idle, enqueue → simulator", Viberq: "p50 " + fmtMS(p50) + ", p99 " + fmtMS(p99),
		Value: "p99 " + fmtMS(p99), Target: "p99 ≤ 150 ms", Result: passFail(p99 <= 150*time.Millisecond),
		ViberqNum: float64(p50) / 1e6, ValueNum: float64(p99) / 1e6,
		How: fmt.Sprintf("%d messages one at a time (after %d warm-up), 20-120 ms idle gap before each; one worker process with default settings "+
			"(`viberq worker`, VIBERQ_METRICS_ADDR=off, VIBERQ_OUTBOX=false); time from Enqueuer.Enqueue to the send-viber request arriving at the "+
			"simulator (tap keyed by destination), max %s.", n, warmup, fmtMS(percentile(lat, 100))),
	}}, nil
}

// ---- row 6: memory ----

func benchMemory(ctx context.Context, b *bench) ([]benchResult, error) {
	n := b.pick(10000, 1000)
	sim, err := startSim(b.simConfig(dtsim.ProfileInstant))
	if err != nil {
		return nil, err
	}
	defer sim.close()
	enq, _, cfg, err := b.producer(sim.base)
	if err != nil {
		return nil, err
	}
	rdb := b.redis.rdb
	taskKey := func(q string) func(string) string {
		return func(id string) string { return "asynq:{" + q + "}:t:" + id }
	}
	recKey := func(id string) string { return tasks.DefaultPrefix + "msg:" + id }
	keyUsage := func(key string) float64 {
		v, err := rdb.MemoryUsage(ctx, key, 0).Result()
		if err != nil {
			return 0 // missing key (redis.Nil)
		}
		return float64(v)
	}

	// Queued, bare asynq: the task hash plus the task's share of the pending list.
	m0, err := b.redis.usedMemory(ctx)
	if err != nil {
		return nil, err
	}
	client := asynq.NewClientFromRedisClient(rdb)
	bareIDs := make([]string, n)
	if _, err := parallel(ctx, n, enqueueGoroutines, func(ctx context.Context, i int) error {
		info, err := client.EnqueueContext(ctx, asynq.NewTask(tasks.TypeSend, sendPayload(i, time.Now())), asynq.Queue(tasks.QueueCritical))
		if err == nil {
			bareIDs[i] = info.ID
		}
		return err
	}); err != nil {
		return nil, err
	}
	m1, err := b.redis.usedMemory(ctx)
	if err != nil {
		return nil, err
	}
	bareTask, err := meanMemoryUsage(ctx, rdb, bareIDs[:min(n, 200)], taskKey(tasks.QueueCritical))
	if err != nil {
		return nil, err
	}
	barePer := bareTask + keyUsage("asynq:{"+tasks.QueueCritical+"}:pending")/float64(n)
	bareUsed := float64(m1-m0) / float64(n)

	// Queued, viberq: record + task + pending list share + events stream share.
	if err := b.redis.flush(ctx); err != nil {
		return nil, err
	}
	if m0, err = b.redis.usedMemory(ctx); err != nil {
		return nil, err
	}
	ids, _, err := enqueueMessages(ctx, enq, n, plainMessage)
	if err != nil {
		return nil, err
	}
	if m1, err = b.redis.usedMemory(ctx); err != nil {
		return nil, err
	}
	sample := ids[:min(len(ids), 200)]
	recQueued, err := meanMemoryUsage(ctx, rdb, sample, recKey)
	if err != nil {
		return nil, err
	}
	taskQueued, err := meanMemoryUsage(ctx, rdb, sample, taskKey(tasks.QueueCritical))
	if err != nil {
		return nil, err
	}
	pendingShare := keyUsage("asynq:{"+tasks.QueueCritical+"}:pending") / float64(n)
	evQueued := keyUsage(tasks.DefaultPrefix+"events") / float64(n)
	// The reconciler's non-final index: a queued message is on its list of new records
	// until a sweep sorts it into the sorted set (no worker runs here, so it stays on
	// the list; both keys are counted).
	idxQueued := (keyUsage(tasks.DefaultPrefix+"nonfinal:new") + keyUsage(tasks.DefaultPrefix+"nonfinal")) / float64(n)
	queuedPer := recQueued + taskQueued + pendingShare + evQueued + idxQueued
	queuedUsed := float64(m1-m0) / float64(n)

	// Finished: deliver them all, let every poll run, then measure again.
	wcfg := cfg
	limitsOutOfTheWay(&wcfg)
	wcfg.Poll.First = time.Second
	w, err := b.startWorker(ctx, wcfg)
	if err != nil {
		return nil, err
	}
	err = w.waitFinals(ctx, n, 3*time.Minute)
	if err == nil {
		err = waitQueuesIdle(ctx, rdb, 30*time.Second)
	}
	if serr := w.stop(); err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	m2, err := b.redis.usedMemory(ctx)
	if err != nil {
		return nil, err
	}
	recFinal, err := meanMemoryUsage(ctx, rdb, sample, recKey)
	if err != nil {
		return nil, err
	}
	sendDone, err := meanMemoryUsage(ctx, rdb, sample, taskKey(tasks.QueueCritical))
	if err != nil {
		return nil, err
	}
	pollDone, err := meanMemoryUsage(ctx, rdb, sample, func(id string) string { return taskKey(tasks.QueueStatus)(tasks.PollTaskID(id, 0)) })
	if err != nil {
		return nil, err
	}
	zsets := (keyUsage("asynq:{"+tasks.QueueCritical+"}:completed") + keyUsage("asynq:{"+tasks.QueueStatus+"}:completed")) / float64(n)
	evFinal := keyUsage(tasks.DefaultPrefix+"events") / float64(n)
	retained := sendDone + pollDone + zsets
	finishedUsed := float64(m2-m0) / float64(n)

	res := []benchResult{{
		Row: "6a", What: "Redis bytes per queued message", Baseline: fmtBytes(barePer), Viberq: fmtBytes(queuedPer),
		Value: fmtBytes(queuedPer), Target: "≤ 1.5 KiB", Result: passFail(queuedPer <= 1536), BaselineNum: barePer, ViberqNum: queuedPer, ValueNum: queuedPer,
		How: fmt.Sprintf("%d messages enqueued; MEMORY USAGE (exact) of the message's keys: record hash %s + asynq task hash %s + share of the pending "+
			"list %s + share of the events stream %s + share of the non-final index %s (record and task means over %d messages). Baseline: bare "+
			"asynq task with the same %d-byte payload (task hash %s + list share). Server-wide INFO used_memory delta per message, for reference "+
			"(other databases on the server may be in use): viberq %s, bare %s.", n, fmtBytes(recQueued), fmtBytes(taskQueued), fmtBytes(pendingShare),
			fmtBytes(evQueued), fmtBytes(idxQueued),
			len(sample), payloadSize(), fmtBytes(bareTask), fmtBytes(queuedUsed), fmtBytes(bareUsed)),
	}, {
		Row: "6b", What: "Redis bytes per finished record", Viberq: fmtBytes(recFinal), Value: fmtBytes(recFinal), Target: "≤ 0.5 KiB",
		Result: passFail(recFinal <= 512), ViberqNum: recFinal, ValueNum: recFinal,
		How: fmt.Sprintf("MEMORY USAGE of the record hash viberq:msg:{id} after delivery (instant simulator, every poll run), mean over %d records; "+
			"kept for VIBERQ_RECORD_RETENTION (%s).", len(sample), cfg.Tasks.RecordRetention),
	}, {
		Row: "6c", What: "asynq retention + events per delivered message", Viberq: fmtBytes(retained + evFinal), Value: fmtBytes(retained + evFinal), Result: "info",
		ViberqNum: retained + evFinal, ValueNum: retained + evFinal,
		How: fmt.Sprintf("asynq keeps the completed send task for VIBERQ_TASK_RETENTION (%s): %s, and the completed poll task for "+
			"scheduler.DefaultRetention (%s): %s, plus their completed-zset entries %s; the events stream holds 4 events per delivered message "+
			"(queued, sending, accepted, delivered): %s per message, capped near VIBERQ_EVENTS_MAXLEN (%d). Server-wide used_memory delta per "+
			"delivered message with all of it retained: %s.", cfg.Tasks.TaskRetention, fmtBytes(sendDone), scheduler.DefaultRetention,
			fmtBytes(pollDone), fmtBytes(zsets), fmtBytes(evFinal), cfg.Tasks.EventsMaxLen, fmtBytes(finishedUsed)),
	}}

	rss, err := b.workerRSS(ctx, sim, b.pick(5000, 1000))
	if err != nil {
		return nil, err
	}
	return append(res, rss...), nil
}

// meanMemoryUsage is the mean MEMORY USAGE (SAMPLES 0: exact) of the keys of ids.
func meanMemoryUsage(ctx context.Context, rdb redis.UniversalClient, ids []string, key func(string) string) (float64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	pipe := rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.MemoryUsage(ctx, key(id), 0)
	}
	_, _ = pipe.Exec(ctx)
	var sum, got float64
	for _, c := range cmds {
		if v, err := c.Result(); err == nil {
			sum += float64(v)
			got++
		}
	}
	if got == 0 {
		return 0, fmt.Errorf("MEMORY USAGE: no key found (e.g. %s)", key(ids[0]))
	}
	return sum / got, nil
}

// waitQueuesIdle waits until no task is pending, active, scheduled or retrying in
// any of viberq's queues.
func waitQueuesIdle(ctx context.Context, rdb redis.UniversalClient, timeout time.Duration) error {
	insp := asynq.NewInspectorFromRedisClient(rdb)
	deadline := time.Now().Add(timeout)
	for {
		busy := 0
		for _, q := range worker.Queues {
			info, err := insp.GetQueueInfo(q)
			if err != nil {
				continue
			}
			busy += info.Pending + info.Active + info.Scheduled + info.Retry
		}
		if busy == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d tasks still queued after %s", busy, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// workerRSS runs a worker process at concurrency 100 through n messages (send and
// poll) and a bare asynq server process through 2n one-POST tasks, and reads their
// peak RSS.
func (b *bench) workerRSS(ctx context.Context, sim *simServer, n int) ([]benchResult, error) {
	const conc = 100
	// Baseline: bare asynq server process.
	if err := b.redis.flush(ctx); err != nil {
		return nil, err
	}
	if _, err := enqueueBare(ctx, asynq.NewClientFromRedisClient(b.redis.rdb), 2*n, enqueueGoroutines); err != nil {
		return nil, err
	}
	sim.sim.Reset()
	sim.tap.reset()
	bare, err := b.startChild([]string{"bench"}, map[string]string{
		benchChildEnv: benchChildBare, benchChildRedis: b.redis.url, benchChildSim: sim.base, benchChildKey: b.key,
		benchChildConc: strconv.Itoa(conc),
	})
	if err != nil {
		return nil, err
	}
	err = sim.tap.waitSends(ctx, int64(2*n), 3*time.Minute)
	if err == nil {
		err = waitQueuesIdle(ctx, b.redis.rdb, 30*time.Second)
	}
	var bareRSS int64
	if err == nil {
		bareRSS, err = bare.peakRSS()
	}
	if serr := bare.stop(30 * time.Second); err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("bare asynq process: %w", err)
	}

	// viberq worker process, its limiters set as high as VIBERQ_RATE_LIMIT goes.
	outOfTheWay := strconv.FormatFloat(config.MaxRate, 'f', -1, 64)
	if err := b.redis.flush(ctx); err != nil {
		return nil, err
	}
	enq, _, _, err := b.producer(sim.base)
	if err != nil {
		return nil, err
	}
	ids, _, err := enqueueMessages(ctx, enq, n, plainMessage)
	if err != nil {
		return nil, err
	}
	child, err := b.startChild([]string{"worker"}, b.workerEnv(sim.base, map[string]string{
		config.EnvConcurrency: strconv.Itoa(conc), config.EnvRateLimit: outOfTheWay, config.EnvRateBurst: "1000",
		config.EnvStatusRateLimit: outOfTheWay, config.EnvStatusRateBurst: "1000", config.EnvPollFirst: "1s",
	}))
	if err != nil {
		return nil, err
	}
	_, err = waitRecordsFinal(ctx, b.redis.rdb, ids, 3*time.Minute, func() error {
		if ok, err := child.exited(); ok {
			return err
		}
		return nil
	})
	var rss int64
	if err == nil {
		rss, err = child.peakRSS()
	}
	if serr := child.stop(30 * time.Second); err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("worker process: %w", err)
	}
	rt := ratio(float64(rss), float64(bareRSS))
	return []benchResult{{
		Row: "6d", What: "worker peak RSS, concurrency 100", Baseline: fmtBytes(float64(bareRSS)), Viberq: fmtBytes(float64(rss)),
		Value: fmtRatio(rt), Result: "info", BaselineNum: float64(bareRSS), ViberqNum: float64(rss), ValueNum: rt,
		How: fmt.Sprintf("VmHWM of a `viberq worker` process (concurrency %d, limits out of the way, first poll 1 s) after %d messages sent and "+
			"polled to delivered; baseline: VmHWM of a bare asynq server process (same binary, concurrency %d, one POST per task) after %d tasks.",
			conc, n, conc, 2*n),
	}}, nil
}

// ---- row 7: polling cost ----

func benchPolling(ctx context.Context, b *bench) ([]benchResult, error) {
	run := pollingRun{n: b.pick(600, 100), smsEvery: b.pick(5, 0), safetyNet: time.Duration(b.pick(15, 7)) * time.Second}
	without, err := b.pollingRun(ctx, run)
	if err != nil {
		return nil, fmt.Errorf("without callbacks: %w", err)
	}
	res := []benchResult{without.result("7a", "provider calls per delivered message, polling only", false)}
	run.callbacks = true
	wired, err := b.pollingRun(ctx, run)
	if err != nil {
		return nil, fmt.Errorf("with callbacks: %w", err)
	}
	res = append(res, wired.result("7b", "provider calls per message, with status callbacks", true))
	if wired.perMessage > 2.0001 && !b.quick {
		// The callbacks did not settle the messages: measure again with a
		// callback_url the API can match (our id as ?id=), to show what the fix gives.
		run.perMessageURL = true
		fixed, err := b.pollingRun(ctx, run)
		if err != nil {
			return nil, fmt.Errorf("with callbacks and ?id=: %w", err)
		}
		res = append(res, fixed.result("7c", "… with callbacks, callback_url?id= set by the producer", true))
	}
	return res, nil
}

// pollingRun describes one run of row 7.
type pollingRun struct {
	n             int
	smsEvery      int           // every smsEvery-th message has text_sms (0: none)
	callbacks     bool          // status callbacks to an in-process `viberq api`
	perMessageURL bool          // the producer sets callback_url?id={id} on each message
	safetyNet     time.Duration // first poll with callbacks (scaled down from 2 min)
}

type pollingOutcome struct {
	run          pollingRun
	delivered    int
	calls, sends int64
	perDelivered float64
	perMessage   float64
	states       map[tasks.State]int
	callbacks    string
	first        time.Duration
}

// result is the table line of a run: without callbacks the calls per delivered
// message against ≤ 3; with callbacks the calls per message against 1 (the send
// alone: no receive-viber call at all).
func (o pollingOutcome) result(row, what string, callbacks bool) benchResult {
	mix := "Viber only"
	if o.run.smsEvery > 0 {
		mix = fmt.Sprintf("every %dth Viber+SMS", o.run.smsEvery)
	}
	how := fmt.Sprintf("%d messages (%s), realistic simulator (1-6 s delivery, 10%% Viber failures, SMS leg 2-5 s, seed 1; timeline not scaled), "+
		"one in-process worker with default settings except send and status rate 100/s (the simulator's limit); first poll %s; "+
		"calls = send-viber + receive-viber requests at the simulator (%d sends) after every message is final and every scheduled poll has run; "+
		"states %v; %.2f calls per message.", o.run.n, mix, o.first, o.sends, o.states, o.perMessage)
	if o.run.callbacks {
		how += " Callbacks: the simulator POSTs final statuses to an in-process `viberq api` (worker/api, applied by tasks.CallbackApplier: each final status gets a confirming poll)"
		if o.run.perMessageURL {
			how += " at callback_url = VIBERQ_CALLBACK_URL + token + ?id={message id}, set per message by the producer"
		} else {
			how += " at the VIBERQ_CALLBACK_URL (+ token) that the worker puts on each message"
		}
		how += fmt.Sprintf("; the safety-net first poll is scaled from 2 min to %s so that it runs within the measurement; callbacks: %s.", o.first, o.callbacks)
	}
	if callbacks {
		return benchResult{Row: row, What: what, Viberq: fmt.Sprintf("%d calls / %d messages (%.2f per delivered)", o.calls, o.run.n, o.perDelivered),
			Value: fmt.Sprintf("%.2f", o.perMessage), Target: "≤ 2 (the send and the confirming poll)", Result: passFail(o.perMessage <= 2.0001),
			ViberqNum: float64(o.calls), ValueNum: o.perMessage, How: how}
	}
	return benchResult{Row: row, What: what, Viberq: fmt.Sprintf("%d calls / %d delivered", o.calls, o.delivered),
		Value: fmt.Sprintf("%.2f", o.perDelivered), Target: "≤ 3", Result: passFail(o.perDelivered <= 3.0001),
		ViberqNum: float64(o.calls), ValueNum: o.perDelivered, How: how}
}

// callbackToken is the secret path segment of the bench's callback endpoint.
const callbackToken = "bench-callback-token-0123456789"

func (b *bench) pollingRun(ctx context.Context, run pollingRun) (pollingOutcome, error) {
	out := pollingOutcome{run: run}
	if err := b.redis.flush(ctx); err != nil {
		return out, err
	}
	sim, err := startSim(b.simConfig(dtsim.ProfileRealistic))
	if err != nil {
		return out, err
	}
	defer sim.close()
	enq, store, cfg, err := b.producer(sim.base)
	if err != nil {
		return out, err
	}
	cfg.Limits.SendRate, cfg.Limits.StatusRate = 100, 100
	out.first = cfg.Poll.First
	callbackURL := ""
	if run.callbacks {
		cb := config.Callback{Token: config.Secret(callbackToken)}
		srv, err := api.New(api.Options{
			CallbackToken: callbackToken,
			Redis:         b.redis.rdb,
			Enqueuer:      enq,
			Records:       store,
			Status:        tasks.CallbackApplier{Store: store, Client: asynq.NewClientFromRedisClient(b.redis.rdb)},
			Gatherer:      prometheus.NewRegistry(),
			Registerer:    prometheus.NewRegistry(),
			Monitoring:    http.NotFoundHandler(),
			Logger:        zerolog.Nop(),
		})
		if err != nil {
			return out, err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return out, err
		}
		actx, cancel := context.WithCancel(ctx)
		served := make(chan struct{})
		go func() { _ = srv.Serve(actx, ln); close(served) }()
		defer func() { cancel(); <-served }()
		// What VIBERQ_CALLBACK_URL=http://host/callbacks/status with a token gives.
		cb.URL = "http://" + ln.Addr().String() + "/callbacks/status"
		callbackURL = cb.RevealURL()
		cfg.Callback = cb // VIBERQ_CALLBACK_URL and VIBERQ_CALLBACK_TOKEN
		cfg.Poll.FirstWithCallback = run.safetyNet
		out.first = run.safetyNet
	}
	w, err := b.startWorker(ctx, cfg)
	if err != nil {
		return out, err
	}
	defer func() { _ = w.stop() }()
	ids, _, err := enqueueMessages(ctx, enq, run.n, func(i int) (provider.Message, string) {
		m := benchMessage(i)
		if run.smsEvery > 0 && i%run.smsEvery == run.smsEvery-1 {
			m.TextSMS = "Your code is 482913"
		}
		if !run.perMessageURL {
			return m, ""
		}
		id := fmt.Sprintf("poll-%06d", i)
		m.CallbackURL = callbackURL + "?id=" + id
		return m, id
	})
	if err != nil {
		return out, err
	}
	states, err := waitRecordsFinal(ctx, b.redis.rdb, ids, 3*time.Minute, nil)
	if err != nil {
		return out, err
	}
	if err := waitQueuesIdle(ctx, b.redis.rdb, 3*time.Minute); err != nil {
		return out, err
	}
	st := sim.sim.Stats()
	out.states = states
	out.delivered = states[tasks.StateDelivered]
	out.sends = st.Requests[string(dtsim.EndpointSend)]
	out.calls = out.sends + st.Requests[string(dtsim.EndpointStatus)]
	out.perDelivered = ratio(float64(out.calls), float64(out.delivered))
	out.perMessage = float64(out.calls) / float64(run.n)
	out.callbacks = fmt.Sprintf("%d posted (2xx), %d failed", st.Callbacks.Sent, st.Callbacks.Failed)
	return out, nil
}

// ---- child mode: the bare asynq server process of row 6 ----

const (
	benchChildEnv   = "VIBERQ_BENCH_CHILD"
	benchChildBare  = "bare-server"
	benchChildRedis = "VIBERQ_BENCH_REDIS_URL"
	benchChildSim   = "VIBERQ_BENCH_SIM_URL"
	benchChildKey   = "VIBERQ_BENCH_SIM_KEY"
	benchChildConc  = "VIBERQ_BENCH_CONCURRENCY"
)

// IsChild reports whether this process is a bench child (VIBERQ_BENCH_CHILD set): then
// `viberq bench` runs RunChild instead of the table.
func IsChild() bool { return os.Getenv(benchChildEnv) != "" }

// RunChild is the bare asynq server process (the baseline of the worker's RSS, row 6)
// the bench re-executes this binary for: it serves until SIGTERM (ctx done).
func RunChild(ctx context.Context) error {
	if os.Getenv(benchChildEnv) != benchChildBare {
		return fmt.Errorf("unknown %s %q", benchChildEnv, os.Getenv(benchChildEnv))
	}
	opt, err := redis.ParseURL(os.Getenv(benchChildRedis))
	if err != nil {
		return errors.New("bench child: bad redis URL")
	}
	conc, err := strconv.Atoi(os.Getenv(benchChildConc))
	if err != nil || conc < 1 {
		return errors.New("bench child: bad concurrency")
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	hc := bareClient(conc)
	srv := asynq.NewServerFromRedisClient(rdb, bareServerConfig(conc))
	if err := srv.Start(bareHandler(hc, os.Getenv(benchChildSim), os.Getenv(benchChildKey))); err != nil {
		return err
	}
	<-ctx.Done()
	srv.Shutdown()
	return nil
}
