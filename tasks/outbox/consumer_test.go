package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/outbox"
	"github.com/viberq/viberq/tasks/redistest"
)

const (
	stream = "viberq:outbox"
	group  = "viberq"
)

type testBundle struct {
	rdb   *redis.Client
	store *tasks.Store
	enq   *tasks.Enqueuer
	insp  *asynq.Inspector
	log   *hookLog
}

// hookLog records the consumer's hooks.
type hookLog struct {
	mu       sync.Mutex
	enqueued map[string]tasks.EnqueueResult
	rejected map[string][]provider.FieldError
	failed   []string
}

func (h *hookLog) hooks() outbox.Hooks {
	return outbox.Hooks{
		Enqueued: func(id string, res tasks.EnqueueResult) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.enqueued[id] = res
		},
		Rejected: func(id string, rs []provider.FieldError) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.rejected[id] = rs
		},
		Failed: func(id string, err error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.failed = append(h.failed, id+": "+err.Error())
		},
	}
}

func (h *hookLog) enqueuedResult(id string) (tasks.EnqueueResult, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r, ok := h.enqueued[id]
	return r, ok
}

func (h *hookLog) rejectedReasons(id string) ([]provider.FieldError, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r, ok := h.rejected[id]
	return r, ok
}

func (h *hookLog) failures() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.failed...)
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	rdb := redistest.New(t)
	store := tasks.NewStore(rdb, tasks.StoreOptions{})
	client := asynq.NewClientFromRedisClient(rdb)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	return &testBundle{
		rdb: rdb, store: store, insp: insp,
		enq: tasks.NewEnqueuer(client, store, tasks.EnqueuerConfig{}),
		log: &hookLog{enqueued: map[string]tasks.EnqueueResult{}, rejected: map[string][]provider.FieldError{}},
	}
}

// start runs a consumer until the test ends.
func (b *testBundle) start(t *testing.T, enq outbox.Enqueuer, opts outbox.Options) {
	t.Helper()
	if opts.Consumer == "" {
		opts.Consumer = "test-consumer"
	}
	opts.Block = 20 * time.Millisecond
	if opts.RetryDelay == 0 {
		opts.RetryDelay = 10 * time.Millisecond
	}
	opts.Hooks = b.log.hooks()
	c := outbox.New(b.rdb, enq, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(5 * time.Second):
			t.Error("consumer did not stop")
		}
	})
}

func (b *testBundle) xadd(t *testing.T, values ...any) string {
	t.Helper()
	id, err := b.rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: values}).Result()
	require.NoError(t, err)
	return id
}

func (b *testBundle) pending(t *testing.T) int64 {
	t.Helper()
	p, err := b.rdb.XPending(context.Background(), stream, group).Result()
	require.NoError(t, err)
	return p.Count
}

func (b *testBundle) sendTasks(t *testing.T, queue string) []*asynq.TaskInfo {
	t.Helper()
	ts, err := b.insp.ListPendingTasks(queue, asynq.PageSize(1000))
	if err != nil && errors.Is(err, asynq.ErrQueueNotFound) {
		return nil
	}
	require.NoError(t, err)
	return ts
}

const docJSON = `{"source_addr":"Shop","destination_addr":"380501234567","message_type":106,"source_type":2,"text":"Your code is 1234","text_sms":"Code 1234","ttl":"90s"}`

func TestConsumerEnqueuesJSONEntry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	entry := b.xadd(t, "message", docJSON, "id", "json-1")
	b.start(t, b.enq, outbox.Options{})

	require.Eventually(t, func() bool { _, ok := b.log.enqueuedResult(entry); return ok }, 5*time.Second, 10*time.Millisecond)
	rec, err := b.store.Get(context.Background(), "json-1")
	require.NoError(t, err)
	require.Equal(t, tasks.StateQueued, rec.State)
	require.Equal(t, "380*****4567", rec.DestMasked)
	require.Equal(t, 90*time.Second, rec.ExpiresAt.Sub(rec.CreatedAt))
	info, err := b.insp.GetTaskInfo(tasks.QueueCritical, "json-1")
	require.NoError(t, err)
	require.Equal(t, tasks.TypeSend, info.Type)
	require.Zero(t, b.pending(t))
	// Acknowledged entries are deleted by default.
	n, err := b.rdb.XLen(context.Background(), stream).Result()
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestConsumerEnqueuesFlatEntryWithoutID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	entry := b.xadd(t, "source_addr", "Shop", "destination_addr", "380671112233", "message_type", "108",
		"source_type", "1", "text", "Sale today", "image", "https://example.com/sale.png",
		"button_caption", "Shop now", "button_action", "https://example.com/sale")
	b.start(t, b.enq, outbox.Options{KeepAcked: true})

	require.Eventually(t, func() bool { _, ok := b.log.enqueuedResult(entry); return ok }, 5*time.Second, 10*time.Millisecond)
	res, _ := b.log.enqueuedResult(entry)
	require.Equal(t, "outbox:"+entry, res.ID)
	require.Equal(t, tasks.QueueDefault, res.Queue)
	require.Len(t, b.sendTasks(t, tasks.QueueDefault), 1)
	require.Zero(t, b.pending(t))
	n, err := b.rdb.XLen(context.Background(), stream).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "KeepAcked keeps the entry")
}

func TestConsumerRejectsInvalidEntry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	entry := b.xadd(t, "destination_addr", "380501234567", "message_type", "999", "text", "", "source_type", "2")
	b.start(t, b.enq, outbox.Options{})

	require.Eventually(t, func() bool { _, ok := b.log.rejectedReasons(entry); return ok }, 5*time.Second, 10*time.Millisecond)
	require.Zero(t, b.pending(t), "a rejected entry is acknowledged")

	msgs, err := b.rdb.XRange(context.Background(), stream+":rejected", "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	v := msgs[0].Values
	require.Equal(t, entry, v["entry_id"])
	require.Equal(t, "380*****4567", v["destination_addr"])
	var reasons []outbox.Reason
	require.NoError(t, json.Unmarshal([]byte(v["reasons"].(string)), &reasons))
	fields := map[string]bool{}
	for _, r := range reasons {
		fields[r.Field] = true
		require.NotEmpty(t, r.Rule)
	}
	require.True(t, fields["source_addr"] && fields["message_type"] && fields["text"], "every bad field: %v", reasons)
	for _, m := range msgs {
		for _, val := range m.Values {
			require.NotContains(t, val, "380501234567")
		}
	}
	_, err = b.store.Get(context.Background(), "outbox:"+entry)
	require.ErrorIs(t, err, tasks.ErrNotFound)
}

func TestConsumerRejectsUnknownFieldWithEveryOtherReason(t *testing.T) {
	t.Parallel()
	b := setup(t)
	entry := b.xadd(t, "id", "u-1", "source_addr", "Shop", "destination_addr", "+380501234567",
		"message_type", "106", "source_type", "2", "colour", "red")
	b.start(t, b.enq, outbox.Options{})
	require.Eventually(t, func() bool { _, ok := b.log.rejectedReasons(entry); return ok }, 5*time.Second, 10*time.Millisecond)
	rs, _ := b.log.rejectedReasons(entry)
	fields := map[string]bool{}
	for _, r := range rs {
		fields[r.Field] = true
	}
	require.Equal(t, map[string]bool{"colour": true, "destination_addr": true, "text": true}, fields)
}

func TestConsumerRejectsMalformedJSONMasked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	entry := b.xadd(t, "message", `{"destination_addr":"380501234567", oops`)
	b.start(t, b.enq, outbox.Options{})
	require.Eventually(t, func() bool { _, ok := b.log.rejectedReasons(entry); return ok }, 5*time.Second, 10*time.Millisecond)
	msgs, err := b.rdb.XRange(context.Background(), stream+":rejected", "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.NotContains(t, msgs[0].Values["message"], "380501234567")
	require.Contains(t, msgs[0].Values["message"], "oops")
}

func TestConsumerIdempotencyConflictRejected(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.enq.Enqueue(context.Background(), tasks.EnqueueRequest{ID: "dup-1", Message: validMessage()})
	require.NoError(t, err)
	other := strings.Replace(docJSON, "Your code is 1234", "Another text", 1)
	entry := b.xadd(t, "message", other, "id", "dup-1")
	b.start(t, b.enq, outbox.Options{})
	require.Eventually(t, func() bool { _, ok := b.log.rejectedReasons(entry); return ok }, 5*time.Second, 10*time.Millisecond)
	rs, _ := b.log.rejectedReasons(entry)
	require.Equal(t, "id", rs[0].Field)
}

// flakyEnqueuer fails on demand, before or after calling the real Enqueuer.
type flakyEnqueuer struct {
	next        outbox.Enqueuer
	failBefore  atomic.Bool
	failAfterN  atomic.Int32 // fail this many calls after the real enqueue succeeded
	calls       atomic.Int32
	duplicateOK atomic.Int32
}

func (f *flakyEnqueuer) Enqueue(ctx context.Context, req tasks.EnqueueRequest) (tasks.EnqueueResult, error) {
	f.calls.Add(1)
	if f.failBefore.Load() {
		return tasks.EnqueueResult{}, errors.New("redis: connection refused")
	}
	res, err := f.next.Enqueue(ctx, req)
	if err == nil && f.failAfterN.Add(-1) >= 0 {
		return tasks.EnqueueResult{}, errors.New("i/o timeout after the write")
	}
	if res.Duplicate {
		f.duplicateOK.Add(1)
	}
	return res, err
}

func TestConsumerAcksOnlyAfterEnqueue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := &flakyEnqueuer{next: b.enq}
	f.failBefore.Store(true)
	entry := b.xadd(t, "message", docJSON, "id", "later-1")
	b.start(t, f, outbox.Options{ClaimIdle: time.Hour})

	require.Eventually(t, func() bool { return len(b.log.failures()) > 0 }, 5*time.Second, 10*time.Millisecond)
	require.EqualValues(t, 1, b.pending(t), "a failed enqueue leaves the entry pending")
	_, ok := b.log.enqueuedResult(entry)
	require.False(t, ok)
	_, err := b.store.Get(context.Background(), "later-1")
	require.ErrorIs(t, err, tasks.ErrNotFound)
	require.Contains(t, b.log.failures()[0], entry)
}

func TestConsumerRetriesPendingAfterTransientFailure(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := &flakyEnqueuer{next: b.enq}
	f.failAfterN.Store(1) // the first enqueue works, but the consumer "does not know"
	entry := b.xadd(t, "message", strings.Replace(docJSON, `"ttl":"90s"`, `"ttl":"60s"`, 1))
	b.start(t, f, outbox.Options{ClaimIdle: 100 * time.Millisecond})

	require.Eventually(t, func() bool { _, ok := b.log.enqueuedResult(entry); return ok }, 5*time.Second, 10*time.Millisecond)
	res, _ := b.log.enqueuedResult(entry)
	require.True(t, res.Duplicate, "the redelivery finds the first enqueue")
	require.GreaterOrEqual(t, f.calls.Load(), int32(2))
	require.Len(t, b.sendTasks(t, tasks.QueueCritical), 1, "one task despite the redelivery")
	require.Zero(t, b.pending(t))
}

func TestConsumerClaimsPendingOfDeadConsumer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	require.NoError(t, b.rdb.XGroupCreateMkStream(ctx, stream, group, "0").Err())
	e1 := b.xadd(t, "message", docJSON, "id", "dead-1")
	e2 := b.xadd(t, "message", strings.Replace(docJSON, "380501234567", "380501234568", 1), "id", "dead-2")
	// A consumer reads both entries and dies without acknowledging them.
	got, err := b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "dead-pod-1", Streams: []string{stream, ">"}, Count: 10}).Result()
	require.NoError(t, err)
	require.Len(t, got[0].Messages, 2)
	require.EqualValues(t, 2, b.pending(t))

	b.start(t, b.enq, outbox.Options{Consumer: "live-pod-2", ClaimIdle: 150 * time.Millisecond})
	require.Eventually(t, func() bool {
		_, ok1 := b.log.enqueuedResult(e1)
		_, ok2 := b.log.enqueuedResult(e2)
		return ok1 && ok2
	}, 5*time.Second, 10*time.Millisecond)
	require.Zero(t, b.pending(t))
	for _, id := range []string{"dead-1", "dead-2"} {
		rec, err := b.store.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, tasks.StateQueued, rec.State)
	}
	require.Len(t, b.sendTasks(t, tasks.QueueCritical), 2)
}

func TestConsumerSharesWorkWithoutDuplicates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 40
	for i := range n {
		dest := "3805012" + string(rune('0'+i/10)) + string(rune('0'+i%10)) + "000"
		b.xadd(t, "source_addr", "Shop", "destination_addr", dest, "message_type", "106",
			"source_type", "2", "text", "hello")
	}
	b.start(t, b.enq, outbox.Options{Consumer: "a", Count: 3})
	b.start(t, b.enq, outbox.Options{Consumer: "b", Count: 3})
	require.Eventually(t, func() bool { return len(b.sendTasks(t, tasks.QueueCritical)) == n }, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return b.pending(t) == 0 }, 5*time.Second, 10*time.Millisecond)
	// The Enqueued hook runs after the ack: the last one may still be on its way.
	require.Eventually(t, func() bool {
		b.log.mu.Lock()
		defer b.log.mu.Unlock()
		return len(b.log.enqueued) >= n
	}, 5*time.Second, 10*time.Millisecond)
	b.log.mu.Lock()
	defer b.log.mu.Unlock()
	require.Len(t, b.log.enqueued, n)
	for _, r := range b.log.enqueued {
		require.False(t, r.Duplicate)
	}
}

func TestConsumerStopsOnCancel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := outbox.New(b.rdb, b.enq, outbox.Options{Block: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	time.Sleep(30 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestConsumerSurvivesRedisOutage(t *testing.T) {
	t.Parallel()
	mr, rdb := redistest.Mini(t)
	store := tasks.NewStore(rdb, tasks.StoreOptions{})
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), store, tasks.EnqueuerConfig{})
	var failures atomic.Int32
	var enqueued atomic.Int32
	c := outbox.New(rdb, enq, outbox.Options{Block: 20 * time.Millisecond, RetryDelay: 10 * time.Millisecond,
		Hooks: outbox.Hooks{
			Failed:   func(id string, err error) { failures.Add(1); t.Log("failed", id, err) },
			Enqueued: func(string, tasks.EnqueueResult) { enqueued.Add(1) },
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	time.Sleep(50 * time.Millisecond)
	addr := mr.Addr()
	mr.Close()
	require.Eventually(t, func() bool { return failures.Load() > 0 }, 5*time.Second, 10*time.Millisecond)
	// A new, empty Redis on the same address: the group is gone too (NOGROUP).
	mr2 := miniredis.NewMiniRedis()
	require.NoError(t, mr2.StartAddr(addr))
	t.Cleanup(mr2.Close)
	_, err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: []any{"message", docJSON}}).Result()
	require.NoError(t, err)
	require.Eventually(t, func() bool { return enqueued.Load() == 1 }, 5*time.Second, 10*time.Millisecond)
}

func TestRejectedValuesReservedNames(t *testing.T) {
	t.Parallel()
	v := outbox.RejectedValues(redis.XMessage{ID: "1-0", Values: map[string]any{"entry_id": "x", "phone": "tel 380501234567"}},
		[]provider.FieldError{{Field: "phone", Rule: "unknown field"}}, time.Unix(0, 0))
	m := map[string]any{}
	for i := 0; i < len(v); i += 2 {
		m[v[i].(string)] = v[i+1]
	}
	require.Equal(t, "1-0", m["entry_id"])
	require.Equal(t, "x", m["original_entry_id"])
	require.Equal(t, "tel 380*****4567", m["phone"])
	require.Equal(t, "1970-01-01T00:00:00Z", m["rejected_at"])
}
