package faulttest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/provider/dtsim/dtsimtest"
	"github.com/viberq/viberq/scheduler"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/worker"
)

// Redis outage mid-accept: the provider accepts a send while Redis is down. Before the
// fix the worker tried the accepted write for 5 s, gave up, and the next attempt found
// the record in "sending" and recorded unknown although the provider's message_id had
// been in hand. Now the write retries until the task's time runs out (outage shorter
// than the task timeout) and then the process holds the ID and writes it once Redis
// answers (outage longer): either way the record ends accepted with that ID, is
// polled, and never unknown.
//
// Redis is a private redis-server with AOF (appendfsync always), killed with SIGKILL
// while the send request is at the simulator and restarted from its AOF.
func TestFaultRedisOutageMidAccept(t *testing.T) {
	needRedisServer(t)
	for _, c := range []struct {
		name string
		down time.Duration
		held bool
	}{
		{"shorter-than-task", 7 * time.Second, false}, // > the old 5 s write timeout, < TaskTimeout 12 s
		{"longer-than-task", 16 * time.Second, true},  // > TaskTimeout: the ID is held by the process
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			runOutageMidAccept(t, c.name, c.down, c.held)
		})
	}
}

func runOutageMidAccept(t *testing.T, name string, down time.Duration, wantHeld bool) {
	logs := logDir(t, "redis-outage-mid-accept-"+name)
	rs := startRedisServer(t, logs, false, "--appendonly", "yes", "--appendfsync", "always")
	t.Cleanup(rs.crash)
	rdb := redis.NewClient(&redis.Options{Addr: rs.addr(), DialTimeout: 300 * time.Millisecond,
		ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })

	simCfg, err := dtsim.ProfileConfig(dtsim.ProfileInstant)
	if err != nil {
		t.Fatal(err)
	}
	simCfg.Key = testKey
	simCfg.Faults.SlowMin, simCfg.Faults.SlowMax = time.Second, time.Second
	sim, srv := dtsimtest.NewServer(t, simCfg)
	// The send is answered after 1 s: Redis dies meanwhile.
	if err := sim.InjectFault(dtsim.EndpointSend, dtsim.FaultSlow, 1); err != nil {
		t.Fatal(err)
	}
	prov, err := provider.New(srv.URL+dtsim.BasePath, testKey, provider.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	store := tasks.NewStore(rdb, tasks.StoreOptions{})
	logBuf := &lockedBuffer{}
	runWorker(t, worker.Config{
		TaskTimeout: 12 * time.Second, SendRate: 1000, StatusRate: 1000, LogBurst: -1,
		DelayedTaskCheckInterval: 200 * time.Millisecond,
		Poll:                     scheduler.Policy{First: 200 * time.Millisecond, MaxInterval: time.Second, SMSGrace: 10 * time.Second},
		Reconcile:                worker.ReconcileConfig{Period: time.Second},
	}, worker.Deps{Redis: rdb, Provider: prov, Store: store, Logger: zerolog.New(logBuf)})
	ctx := context.Background()
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), store, tasks.EnqueuerConfig{})
	msg := validMsg()
	msg.TextSMS = ""
	const id = "mid-accept-1"
	if _, err := enq.Enqueue(ctx, tasks.EnqueueRequest{ID: id, Message: msg, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for sim.Stats().Requests[string(dtsim.EndpointSend)] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no send within 15 s; worker log:\n%s", tail(string(logBuf.Bytes()), 3000))
		}
		time.Sleep(10 * time.Millisecond)
	}
	rs.crash() // Redis goes away while the provider is accepting the message...
	time.Sleep(down)
	rs.start(logs) // ...and comes back from its AOF.
	if err := waitPing(rdb, 10*time.Second); err != nil {
		t.Fatalf("redis after restart: %v", err)
	}
	back := time.Now()

	led := sim.Ledger()
	if len(led) != 1 {
		t.Fatalf("the simulator accepted %d sends, want 1", len(led))
	}
	var rec tasks.Record
	for time.Since(back) < 30*time.Second {
		if rec, err = store.Get(context.Background(), id); err == nil && rec.State.Final() {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	report := fmt.Sprintf("Redis down %s mid-accept: record %q, provider id %d (simulator's %d), %s after Redis came back",
		down, rec.State, rec.ProviderMessageID, led[0].MessageID, time.Since(back).Round(100*time.Millisecond))
	t.Log(report)
	f := Figures{Scenario: "redis-outage-mid-accept-" + name, Title: "Redis outage mid-accept (" + name + ")",
		Fault:    fmt.Sprintf("redis-server SIGKILL while send-viber was answering, down %s, restarted from its AOF; TaskTimeout 12s", down),
		Messages: 1, States: map[string]int{string(rec.State): 1}, SimAccepted: int64(len(led)),
		RecoverSeconds: time.Since(back).Seconds(), UnknownAccepted: -1, Bucket429: -1, Notes: report}
	if rec.State == tasks.StateUnknown {
		f.Unknown = 1
	}
	if !rec.State.Final() {
		f.NotFinal = 1
	}
	defer func() { f.Pass = !t.Failed(); writeFigures(t, f) }()
	if rec.State == tasks.StateUnknown || rec.ProviderMessageID != led[0].MessageID {
		t.Logf("worker log:\n%s", tail(string(logBuf.Bytes()), 6000))
		t.Fatalf("the provider's message_id was known but not recorded: %s", report)
	}
	if rec.State != tasks.StateDelivered {
		t.Logf("worker log:\n%s", tail(string(logBuf.Bytes()), 6000))
		t.Errorf("want delivered (polled after the acceptance was written): %s", report)
	}
	if held := strings.Contains(string(logBuf.Bytes()), "held accepted message_id written after Redis came back"); held != wantHeld {
		t.Errorf("the ID was held by the process: %v, want %v", held, wantHeld)
	}
	if n := sim.Stats().Requests[string(dtsim.EndpointSend)]; n != 1 {
		t.Errorf("%d send requests, want 1 (never sent twice)", n)
	}
}

// runWorker runs an in-process worker until the test ends.
func runWorker(t *testing.T, cfg worker.Config, deps worker.Deps) {
	t.Helper()
	w, err := worker.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Error("worker did not stop")
		}
	})
}
