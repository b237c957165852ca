package worker

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/provider/dtsim/dtsimtest"
	"github.com/viberq/viberq/scheduler"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
)

// Environment of a child worker process (the test binary re-executed by
// TestIntegrationTwoProcessesGlobalLimit).
const (
	envChild      = "VIBERQ_WORKER_TEST_CHILD" // the child's name; set = child mode
	envChildRedis = "VIBERQ_WORKER_TEST_REDIS" // redis:// URL with the database
	envChildSim   = "VIBERQ_WORKER_TEST_SIM"   // provider base URL
	envChildRate  = "VIBERQ_WORKER_TEST_RATE"  // global sends per second
)

func TestMain(m *testing.M) {
	if name := os.Getenv(envChild); name != "" {
		os.Exit(childWorker(name))
	}
	os.Exit(m.Run())
}

// childWorker runs one worker process until SIGTERM or until its stdin closes (the
// parent test died), logging to stderr.
func childWorker(name string) int {
	log := zerolog.New(os.Stderr).With().Str("proc", name).Logger()
	opt, err := redis.ParseURL(os.Getenv(envChildRedis))
	if err != nil {
		log.Error().Err(err).Msg("bad redis url")
		return 2
	}
	rate, err := strconv.ParseFloat(os.Getenv(envChildRate), 64)
	if err != nil {
		log.Error().Err(err).Msg("bad rate")
		return 2
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	prov, err := provider.New(os.Getenv(envChildSim), testKey, provider.WithUserAgent("viberq-"+name))
	if err != nil {
		log.Error().Err(err).Msg("provider")
		return 2
	}
	cfg := fastConfig()
	cfg.SendRate = rate
	cfg.Concurrency = 10
	client := asynq.NewClientFromRedisClient(rdb)
	defer client.Close()
	w, err := New(cfg, Deps{
		Redis: rdb, Provider: prov, Store: tasks.NewStore(rdb, tasks.StoreOptions{}),
		Scheduler: scheduler.New(client, cfg.Poll), Logger: log.Level(zerolog.WarnLevel),
	})
	if err != nil {
		log.Error().Err(err).Msg("new worker")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); stop() }()
	if err := w.Run(ctx); err != nil {
		log.Error().Err(err).Msg("run")
		return 1
	}
	return 0
}

// TestIntegrationTwoProcessesGlobalLimit starts two worker PROCESSES (this test binary
// re-executed in child mode) on one Redis with a global limit of N sends/s and burst 1,
// enqueues 6·N messages, and checks at the simulator that the sends never exceeded N
// in any one-second window: from the ledger's accept times, over every sliding window
// [t, t+1s), and over every calendar second (the simulator's per-second counter).
//
// The bucket spaces the tokens at least 1/N apart on Redis' clock, so at the limiter
// no window holds more than N. The simulator sees each send a little later (the
// record write and the HTTP request after the token), and that delay varies, so two
// sends can arrive closer than 1/N: one extra send per window — the configured burst
// B = 1 — is allowed for that arrival jitter, and no more.
func TestIntegrationTwoProcessesGlobalLimit(t *testing.T) {
	// Not parallel: the measure should not compete with other tests for the CPU.
	rdb := redistest.Client(t)
	redisURL := redistest.URL(t)
	const n = 5 // sends per second, global
	const burst = 1
	const messages = 6 * n

	simCfg, err := dtsim.ProfileConfig(dtsim.ProfileInstant)
	require.NoError(t, err)
	simCfg.Key, simCfg.RecordRequests = testKey, 10_000
	sim, srv := dtsimtest.NewServer(t, simCfg)
	base := srv.URL + dtsim.BasePath

	for _, name := range []string{"a", "b"} {
		startChild(t, name, redisURL, base, n)
	}

	store := tasks.NewStore(rdb, tasks.StoreOptions{})
	client := asynq.NewClientFromRedisClient(rdb)
	t.Cleanup(func() { _ = client.Close() })
	e := tasks.NewEnqueuer(client, store, tasks.EnqueuerConfig{})
	for i := range messages {
		_, err := e.Enqueue(context.Background(), tasks.EnqueueRequest{ID: fmt.Sprintf("mp-%02d", i), Message: promotional2(i), TTL: time.Hour})
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return len(sim.Ledger()) >= messages }, 60*time.Second, 50*time.Millisecond,
		"all messages must be accepted")
	// The simulator has each send before its worker writes the acceptance: wait for
	// the records to catch up.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for i := range messages {
			rec, err := store.Get(context.Background(), fmt.Sprintf("mp-%02d", i))
			require.NoError(c, err)
			require.Contains(c, []tasks.State{tasks.StateAccepted, tasks.StateDelivered}, rec.State, rec.ID)
		}
	}, 10*time.Second, 50*time.Millisecond, "every accepted send's record must be accepted")

	ledger := sim.Ledger()
	require.Len(t, ledger, messages)
	times := make([]time.Time, len(ledger))
	for i, le := range ledger {
		require.False(t, le.Duplicate)
		times[i] = le.At
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	sliding := maxInWindow(times, time.Second)
	st := sim.Stats()
	t.Logf("global limit %d/s: max %d sends in a sliding 1 s window, max %d in a calendar second, %d sends over %s",
		n, sliding, st.MaxAcceptedPerSecond, len(times), times[len(times)-1].Sub(times[0]).Round(time.Millisecond))
	require.LessOrEqual(t, sliding, n+burst, "sliding window")
	require.LessOrEqual(t, st.MaxAcceptedPerSecond, int64(n+burst), "calendar second")
	require.GreaterOrEqual(t, sliding, n-1, "the limit should be reached, else the test measures nothing")

	// Both processes sent.
	perProc := map[string]int{}
	for _, r := range sim.Requests() {
		if r.Path == dtsim.BasePath+"/send-viber" {
			perProc[r.Header.Get("User-Agent")]++
		}
	}
	require.Positive(t, perProc["viberq-a"], "process a sent nothing: %v", perProc)
	require.Positive(t, perProc["viberq-b"], "process b sent nothing: %v", perProc)
}

// startChild runs the test binary as a worker process; it is stopped with SIGTERM at
// Cleanup (and dies with its stdin if this process dies).
func startChild(t *testing.T, name, redisURL, simURL string, rate int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		envChild+"="+name, envChildRedis+"="+redisURL, envChildSim+"="+simURL, envChildRate+"="+strconv.Itoa(rate))
	stderr := &syncBuffer{}
	cmd.Stderr, cmd.Stdout = stderr, stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker process %s: %v", name, err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("worker process %s did not stop on SIGTERM", name)
		}
		_ = stdin.Close()
		if t.Failed() {
			t.Logf("worker process %s output:\n%s", name, stderr.String())
		}
	})
}
