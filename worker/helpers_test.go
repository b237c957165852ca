package worker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/provider/dtsim/dtsimtest"
	"github.com/viberq/viberq/scheduler"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
)

const (
	testKey   = "test-access-key-0123456789"
	testPhone = "380501234567"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the JSON log lines whose message starts with prefix.
func (b *syncBuffer) lines(t *testing.T, prefix string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var v map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &v), sc.Text())
		if msg, _ := v["message"].(string); strings.HasPrefix(msg, prefix) {
			out = append(out, v)
		}
	}
	return out
}

// testBundle holds a Worker on miniredis (or the real Redis) and a simulator.
type testBundle struct {
	w      *Worker
	sim    *dtsim.Sim
	simURL string
	rdb    redis.UniversalClient
	store  *tasks.Store
	client *asynq.Client
	insp   *asynq.Inspector
	alerts *recAlerter
	logs   *syncBuffer
	m      *Metrics
}

type setupOpts struct {
	cfg      *Config
	simCfg   func(*dtsim.Config)
	key      string // provider key (default testKey)
	provOpts []provider.Option
	baseURL  string // overrides the simulator's URL
	rdb      redis.UniversalClient
	// asynqRedis, if set, is Deps.AsynqRedis.
	asynqRedis asynq.RedisConnOpt
	now        func() time.Time
	noDedup    bool
	prefix     string
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.SendRate, cfg.StatusRate = 1000, 1000
	cfg.TaskTimeout = 10 * time.Second
	cfg.Poll = scheduler.Policy{First: time.Second, MaxInterval: 2 * time.Second, SMSGrace: 10 * time.Second}
	cfg.LogBurst = -1
	return cfg
}

func setup(t *testing.T, o setupOpts) *testBundle {
	t.Helper()
	simCfg, err := dtsim.ProfileConfig(dtsim.ProfileInstant)
	require.NoError(t, err)
	simCfg.Key = testKey
	if o.simCfg != nil {
		o.simCfg(&simCfg)
	}
	sim, srv := dtsimtest.NewServer(t, simCfg)
	base := srv.URL + dtsim.BasePath
	if o.baseURL != "" {
		base = o.baseURL
	}
	key := testKey
	if o.key != "" {
		key = o.key
	}
	prov, err := provider.New(base, key, append([]provider.Option{provider.WithTimeout(5 * time.Second)}, o.provOpts...)...)
	require.NoError(t, err)

	rdb := o.rdb
	if rdb == nil {
		_, rdb = redistest.Mini(t)
	}
	prefix := o.prefix
	if prefix == "" {
		prefix = "viberq:"
	}
	store := tasks.NewStore(rdb, tasks.StoreOptions{Prefix: prefix})
	client := asynq.NewClientFromRedisClient(rdb)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspectorFromRedisClient(rdb)

	cfg := testConfig()
	if o.cfg != nil {
		cfg = *o.cfg
	}
	cfg.Prefix = prefix
	logs := &syncBuffer{}
	m, err := NewMetrics(nil)
	require.NoError(t, err)
	alerts := &recAlerter{}
	var alerter Alerter = NewDedupAlerter(rdb, prefix, time.Minute, m.CountAlerts(alerts))
	if o.noDedup {
		alerter = alerts
	}
	w, err := New(cfg, Deps{
		Redis:     rdb,
		Provider:  prov,
		Store:     store,
		Scheduler: scheduler.New(client, cfg.Poll),
		Alerter:   alerter,
		Logger:    zerolog.New(logs).Level(zerolog.DebugLevel),
		Metrics:   m,
		Now:       o.now,

		AsynqRedis: o.asynqRedis,
	})
	require.NoError(t, err)
	return &testBundle{w: w, sim: sim, simURL: base, rdb: rdb, store: store, client: client, insp: insp, alerts: alerts, logs: logs, m: m}
}

func transactional() provider.Message {
	return provider.Message{
		SourceAddr: "Shop", DestinationAddr: testPhone, MessageType: provider.TypeText,
		Text: "Your code is 1234", TextSMS: "Code 1234", SourceType: provider.SourceTransactional,
	}
}

func promotional() provider.Message {
	return provider.Message{
		SourceAddr: "Shop", DestinationAddr: "380671112233", MessageType: provider.TypeTextImageButton,
		Text: "Sale -20%", Image: "https://example.com/a.png", ButtonCaption: "Shop now",
		ButtonAction: "https://example.com/sale", SourceType: provider.SourcePromotional,
	}
}

// newSend writes the queued record of a message (as the Enqueuer does) and returns
// its send task.
func (b *testBundle) newSend(t *testing.T, id string, m provider.Message, expiresAt time.Time) (tasks.SendArgs, *asynq.Task) {
	t.Helper()
	now := time.Now()
	a := tasks.SendArgs{V: tasks.PayloadVersion, ID: id, Message: m, ExpiresAt: expiresAt, EnqueuedAt: now}
	created, _, err := b.store.Create(context.Background(), tasks.NewRecord(a, now), tasks.PayloadHash(m, a.TTL()))
	require.NoError(t, err)
	require.True(t, created)
	task, err := tasks.NewSendTask(a)
	require.NoError(t, err)
	// Enqueued too (nothing consumes it here), so that its queue exists for the
	// Inspector, as in production.
	_, err = b.client.Enqueue(task)
	require.NoError(t, err)
	return a, task
}

func (b *testBundle) process(t *testing.T, task *asynq.Task) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return b.w.Handler().ProcessTask(ctx, task)
}

func (b *testBundle) record(t *testing.T, id string) tasks.Record {
	t.Helper()
	rec, err := b.store.Get(context.Background(), id)
	require.NoError(t, err)
	return rec
}

func (b *testBundle) sends() int64 { return b.sim.Stats().Requests[string(dtsim.EndpointSend)] }

func (b *testBundle) statusCalls() int64 {
	return b.sim.Stats().Requests[string(dtsim.EndpointStatus)]
}

// pollTask returns the scheduled poll task n of id, decoded, or fails.
func (b *testBundle) pollTask(t *testing.T, id string, n int) (tasks.PollArgs, *asynq.Task) {
	t.Helper()
	// Poll 0 waits in the due-poll set until the dispatcher enqueues it: dispatch
	// every entry now, whatever its due time.
	_, err := b.w.dispatchDue(context.Background(), time.Now().Add(365*24*time.Hour))
	require.NoError(t, err)
	info, err := b.insp.GetTaskInfo(tasks.QueueStatus, tasks.PollTaskID(id, n))
	require.NoError(t, err, "poll %d of %s must be scheduled", n, id)
	task := asynq.NewTask(info.Type, info.Payload)
	a, err := tasks.Decode[tasks.PollArgs](task)
	require.NoError(t, err)
	return a, task
}
