package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/provider/dtsim/dtsimtest"
	"github.com/viberq/viberq/scheduler"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
	"github.com/viberq/viberq/worker"
	"github.com/viberq/viberq/worker/api"
	"github.com/viberq/viberq/worker/webhook"
)

// End-to-end: the real worker sends through the simulator, every state change lands
// in the events stream, the webhook service relays and POSTs them to an httptest
// receiver that checks each signature. What the receiver does not model: TLS, DNS
// (the guard is tested apart) and a receiver slower than the POST timeout.

const testKey = "test-access-key-0123456789"

// receiver is a webhook endpoint: it verifies every POST and answers failWith while
// fail() is true, else 204. It records what it acknowledged.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	fail   func() bool
	code   int
	posts  atomic.Int64
	failed atomic.Int64

	mu    sync.Mutex
	acked map[string][]webhook.Body // by message ID
	byEv  map[string]int            // acknowledged POSTs per event ID
	bad   []string
}

func newReceiver(t *testing.T, fail func() bool) *receiver {
	r := &receiver{t: t, fail: fail, code: http.StatusServiceUnavailable,
		acked: map[string][]webhook.Body{}, byEv: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	r.posts.Add(1)
	body, _ := io.ReadAll(req.Body)
	if err := webhook.Verify(req.Header.Get(webhook.SignatureHeader), body, testSecret, 0, time.Now()); err != nil {
		r.mu.Lock()
		r.bad = append(r.bad, err.Error())
		r.mu.Unlock()
		http.Error(w, "bad signature", http.StatusBadRequest)
		return
	}
	if r.fail != nil && r.fail() {
		r.failed.Add(1)
		w.WriteHeader(r.code)
		return
	}
	var b webhook.Body
	if err := json.Unmarshal(body, &b); err != nil || b.EventID != req.Header.Get(webhook.EventIDHeader) {
		r.mu.Lock()
		r.bad = append(r.bad, fmt.Sprintf("body %q: %v", body, err))
		r.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.acked[b.MessageID] = append(r.acked[b.MessageID], b)
	r.byEv[b.EventID]++
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) snapshot() (map[string][]webhook.Body, map[string]int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := make(map[string][]webhook.Body, len(r.acked))
	for k, v := range r.acked {
		a[k] = append([]webhook.Body(nil), v...)
	}
	e := make(map[string]int, len(r.byEv))
	for k, v := range r.byEv {
		e[k] = v
	}
	return a, e, append([]string(nil), r.bad...)
}

type bundle struct {
	rdb   redis.UniversalClient
	store *tasks.Store
	enq   *tasks.Enqueuer
	sim   *dtsim.Sim
	reg   *prometheus.Registry
	m     *webhook.Metrics
}

// setup runs a worker against the simulator and a webhook service with cfg on rdb,
// both stopped at Cleanup.
func setup(t *testing.T, rdb redis.UniversalClient, simCfg func(*dtsim.Config), cfg webhook.Config) *bundle {
	t.Helper()
	sc, err := dtsim.ProfileConfig(dtsim.ProfileInstant)
	require.NoError(t, err)
	sc.Key = testKey
	if simCfg != nil {
		simCfg(&sc)
	}
	sim, srv := dtsimtest.NewServer(t, sc)
	prov, err := provider.New(srv.URL+dtsim.BasePath, testKey, provider.WithTimeout(5*time.Second))
	require.NoError(t, err)
	store := tasks.NewStore(rdb, tasks.StoreOptions{})
	client := asynq.NewClientFromRedisClient(rdb)
	t.Cleanup(func() { _ = client.Close() })

	wcfg := worker.DefaultConfig()
	wcfg.SendRate, wcfg.StatusRate = 2000, 2000
	wcfg.TaskTimeout = 10 * time.Second
	wcfg.Poll = scheduler.Policy{First: 500 * time.Millisecond, MaxInterval: time.Second, SMSGrace: 5 * time.Second}
	wcfg.LogBurst = -1
	wcfg.ShutdownTimeout = 2 * time.Second
	w, err := worker.New(wcfg, worker.Deps{Redis: rdb, Provider: prov, Store: store, Scheduler: scheduler.New(client, wcfg.Poll)})
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	m, err := webhook.NewMetrics(reg)
	require.NoError(t, err)
	cfg.Secrets = []string{testSecret}
	cfg.AllowPrivate = true // the receiver is on 127.0.0.1
	cfg.RetryInitial, cfg.RetryMax = 200*time.Millisecond, time.Second
	cfg.TaskCheckInterval, cfg.DelayedTaskCheckInterval = 50*time.Millisecond, 200*time.Millisecond
	cfg.Block = 200 * time.Millisecond
	cfg.ShutdownTimeout = 2 * time.Second
	cfg.Concurrency = 20
	cfg.HostCoolOff = 500 * time.Millisecond // a receiver's outage opens its breaker: probe soon
	svc, err := webhook.New(cfg, webhook.Deps{Redis: rdb, Store: store, Metrics: m, Logger: zerolog.Nop()})
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = w.Run(ctx) }()
	go func() { defer wg.Done(); _ = svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	// The consumer group starts at the end of the stream: wait until it exists.
	require.Eventually(t, func() bool {
		return rdb.XInfoGroups(context.Background(), store.EventsKey()).Err() == nil
	}, 5*time.Second, 20*time.Millisecond)

	return &bundle{rdb: rdb, store: store, enq: tasks.NewEnqueuer(client, store, tasks.EnqueuerConfig{}), sim: sim, reg: reg, m: m}
}

// waitDrained waits until the relay has read and acknowledged every event of the
// stream and the webhooks queue holds no task that has yet to finish (pending,
// active, scheduled, retrying): from then on no POST is left to come (the test
// kills no worker, the one way delivery repeats a POST).
func (b *bundle) waitDrained(t *testing.T, within time.Duration) {
	t.Helper()
	ctx := context.Background()
	insp := asynq.NewInspectorFromRedisClient(b.rdb)
	var why string
	drained := func() bool {
		last, err := b.rdb.XRevRangeN(ctx, b.store.EventsKey(), "+", "-", 1).Result()
		if err != nil || len(last) == 0 {
			why = fmt.Sprintf("last event: %v", err)
			return false
		}
		groups, err := b.rdb.XInfoGroups(ctx, b.store.EventsKey()).Result()
		if err != nil {
			why = err.Error()
			return false
		}
		i := slices.IndexFunc(groups, func(g redis.XInfoGroup) bool { return g.Name == webhook.DefaultGroup })
		if i < 0 {
			why = "no relay group"
			return false
		}
		if g := groups[i]; g.Pending > 0 || g.LastDeliveredID != last[0].ID {
			why = fmt.Sprintf("relay at %s of %s, %d pending", g.LastDeliveredID, last[0].ID, g.Pending)
			return false
		}
		// Read after the relay was found done: every task it will make exists.
		q, err := insp.GetQueueInfo(tasks.QueueWebhooks)
		if err != nil {
			why = err.Error()
			return false
		}
		if n := q.Pending + q.Active + q.Scheduled + q.Retry + q.Aggregating; n > 0 {
			why = fmt.Sprintf("%d webhook tasks unfinished", n)
			return false
		}
		return true
	}
	deadline := time.Now().Add(within)
	for !drained() {
		if time.Now().After(deadline) {
			t.Fatalf("webhooks not drained after %s: %s", within, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func message(i int) provider.Message {
	return provider.Message{
		SourceAddr: "Shop", DestinationAddr: fmt.Sprintf("38050%07d", i), MessageType: provider.TypeText,
		Text: fmt.Sprintf("Promo %d", i), SourceType: provider.SourcePromotional,
	}
}

// waitFinal waits until every record of ids is final and returns them.
func (b *bundle) waitFinal(t *testing.T, ids []string, within time.Duration) map[string]tasks.Record {
	t.Helper()
	out := map[string]tasks.Record{}
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, id := range ids {
			if _, ok := out[id]; ok {
				continue
			}
			rec, err := b.store.Get(context.Background(), id)
			require.NoError(t, err)
			if rec.State.Final() {
				out[id] = rec
			}
		}
		if len(out) == len(ids) {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%d of %d records final after %s", len(out), len(ids), within)
	return nil
}

// 1,000 messages, the default URL, final events only; the receiver answers 503 to
// everything for its first 3 seconds. Every message's final state arrives exactly
// once as an acknowledged, signed POST: retried, none lost, none twice.
func TestE2EFinalWebhooksWhileReceiverFails(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t) // skips without VIBERQ_TEST_REDIS_URL
	var firstPost atomic.Int64
	rcv := newReceiver(t, func() bool {
		now := time.Now().UnixNano()
		firstPost.CompareAndSwap(0, now)
		return now-firstPost.Load() < int64(3*time.Second)
	})
	b := setup(t, rdb, func(c *dtsim.Config) { c.ViberFailShare = 0.1 }, webhook.Config{DefaultURL: rcv.srv.URL + "/hooks"})

	const n = 1000
	ids := make([]string, n)
	for i := range ids {
		res, err := b.enq.Enqueue(context.Background(), tasks.EnqueueRequest{ID: fmt.Sprintf("e2e-%04d", i), Message: message(i), TTL: time.Hour})
		require.NoError(t, err)
		ids[i] = res.ID
	}
	recs := b.waitFinal(t, ids, 90*time.Second)

	require.Eventually(t, func() bool {
		acked, _, _ := rcv.snapshot()
		return len(acked) == n
	}, 60*time.Second, 100*time.Millisecond, "every final state acknowledged")
	b.waitDrained(t, 60*time.Second) // a duplicate would have come by then
	acked, byEv, bad := rcv.snapshot()
	require.Empty(t, bad)
	require.Len(t, acked, n)
	states := map[tasks.State]int{}
	for _, id := range ids {
		got := acked[id]
		require.Len(t, got, 1, "message %s: one acknowledged POST", id)
		require.Equal(t, recs[id].State, got[0].To, id)
		require.True(t, got[0].Final)
		var rec map[string]any
		require.NoError(t, json.Unmarshal(got[0].Message, &rec))
		require.Equal(t, id, rec["id"])
		require.Equal(t, string(recs[id].State), rec["state"])
		require.NotContains(t, string(got[0].Message), message(0).DestinationAddr[:8], "the phone number is masked")
		states[got[0].To]++
	}
	for ev, k := range byEv {
		require.Equal(t, 1, k, "event %s acknowledged more than once", ev)
	}
	require.Positive(t, rcv.failed.Load(), "the receiver's outage was exercised")
	require.Positive(t, states[tasks.StateUndelivered], "more than one final state: %v", states)
	require.Equal(t, float64(n), counter(t, b.reg, "viberq_webhook_deliveries_total", "delivered"))
	require.Equal(t, float64(rcv.failed.Load()), counter(t, b.reg, "viberq_webhook_deliveries_total", "failed"))
	t.Logf("%d POSTs, %d refused by the receiver, final states %v", rcv.posts.Load(), rcv.failed.Load(), states)
}

// A message's own URL with "all" events gets every state change, the default URL
// none of them; a message without its own URL goes to the default, final only.
func TestE2EPerMessageURLAllEvents(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	def := newReceiver(t, nil)
	own := newReceiver(t, nil)
	b := setup(t, rdb, nil, webhook.Config{DefaultURL: def.srv.URL})

	_, err := b.enq.Enqueue(context.Background(), tasks.EnqueueRequest{ID: "own", Message: message(1), TTL: time.Hour,
		WebhookURL: own.srv.URL + "/mine", WebhookEvents: tasks.WebhookAll})
	require.NoError(t, err)
	_, err = b.enq.Enqueue(context.Background(), tasks.EnqueueRequest{ID: "dflt", Message: message(2), TTL: time.Hour})
	require.NoError(t, err)
	b.waitFinal(t, []string{"own", "dflt"}, 30*time.Second)

	// Once every event is relayed and every webhook task has finished, no POST is
	// left to come: a duplicate would have arrived by then.
	b.waitDrained(t, 20*time.Second)
	a, aEv, bad := own.snapshot()
	require.Empty(t, bad)
	got := map[tasks.State]int{}
	for _, body := range a["own"] {
		got[body.To]++
	}
	require.Equal(t, map[tasks.State]int{tasks.StateQueued: 1, tasks.StateSending: 1, tasks.StateAccepted: 1, tasks.StateDelivered: 1}, got,
		"every state change POSTed once")
	require.Len(t, aEv, 4)
	for ev, k := range aEv {
		require.Equal(t, 1, k, "event %s acknowledged more than once", ev)
	}
	require.Len(t, a, 1, "the message's own URL gets only its message")
	d, dEv, bad := def.snapshot()
	require.Empty(t, bad)
	require.Len(t, d, 1)
	require.Len(t, d["dflt"], 1)
	require.Equal(t, tasks.StateDelivered, d["dflt"][0].To)
	require.Equal(t, map[string]int{d["dflt"][0].EventID: 1}, dEv)

	// Every body is what the OpenAPI document's webhook promises.
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(loader.Context))
	schema := doc.Components.Schemas["WebhookEvent"].Value
	for _, body := range append(a["own"], d["dflt"]...) {
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		var v any
		require.NoError(t, json.Unmarshal(raw, &v))
		require.NoError(t, schema.VisitJSON(v, openapi3.EnableJSONSchema2020()), "%s", raw)
	}
}

// A receiver that always fails: after MaxRetry retries the task is archived in the
// webhooks queue (the Asynq UI's dead letter) and counted as dead. A receiver on a
// private address while those are not allowed is archived at once, never called.
func TestE2EDeadLetter(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	rcv := newReceiver(t, func() bool { return true })
	rcv.code = http.StatusInternalServerError
	b := setup(t, rdb, nil, webhook.Config{DefaultURL: rcv.srv.URL, MaxRetry: 2})
	_, err := b.enq.Enqueue(context.Background(), tasks.EnqueueRequest{ID: "dead", Message: message(3), TTL: time.Hour})
	require.NoError(t, err)

	insp := asynq.NewInspectorFromRedisClient(rdb)
	var archived []*asynq.TaskInfo
	require.Eventually(t, func() bool {
		archived, _ = insp.ListArchivedTasks(tasks.QueueWebhooks)
		return len(archived) == 1
	}, 30*time.Second, 100*time.Millisecond)
	require.Equal(t, tasks.TypeWebhook, archived[0].Type)
	require.EqualValues(t, 3, rcv.failed.Load(), "one attempt and two retries")
	require.Equal(t, 1.0, counter(t, b.reg, "viberq_webhook_deliveries_total", "dead"))
}

// With private addresses not allowed, a receiver on 127.0.0.1 is never called and
// the task is archived at once (no retry).
func TestPrivateAddressRefused(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	rcv := newReceiver(t, nil)
	reg := prometheus.NewRegistry()
	m, err := webhook.NewMetrics(reg)
	require.NoError(t, err)
	svc, err := webhook.New(webhook.Config{Secrets: []string{testSecret}, DefaultURL: rcv.srv.URL},
		webhook.Deps{Redis: rdb, Store: tasks.NewStore(rdb, tasks.StoreOptions{}), Metrics: m})
	require.NoError(t, err)
	task, err := tasks.NewWebhookTask(tasks.WebhookArgs{EventID: "1-1", ID: "x", Body: []byte(`{}`)})
	require.NoError(t, err)
	err = svc.Deliverer().ProcessTask(context.Background(), task)
	require.ErrorIs(t, err, asynq.SkipRetry)
	require.ErrorIs(t, err, webhook.ErrPrivateAddress)
	require.Zero(t, rcv.posts.Load())
	require.Equal(t, 1.0, counter(t, reg, "viberq_webhook_delivery_duration_seconds", "refused"))
}

// counter returns the value of the metric name with one label equal to label (a
// histogram's sample count).
func counter(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() != label {
					continue
				}
				if h := m.GetHistogram(); h != nil {
					return float64(h.GetSampleCount())
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
