package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks/redistest"
)

// boundTaskEventLua and boundTaskLua are not used by viberq: they bound what a lone
// caller's enqueue could gain from a design that keeps a queued message in asynq's
// task hash alone (BENCHMARKS.md, "Row 3a: the bound of the design that would change
// the promises"). Both check the record and the task key with one EXISTS and write
// asynq's task as enqueueCmd does, with the payload hash beside it; the first also
// appends the "queued" event. KEYS and ARGV are createLua's.
const (
	boundTaskEventLua = `
if redis.call('EXISTS', KEYS[1], KEYS[5]) > 0 then return 0 end
redis.call('HSET', KEYS[5], 'msg', ARGV[7], 'state', 'pending', 'pending_since', ARGV[8], 'payload_hash', ARGV[4])
redis.call('LPUSH', KEYS[6], ARGV[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
  'id', ARGV[3], 'from', '', 'to', 'queued', 'channel', '', 'provider_message_id', '', 'error', '', 'at', ARGV[4])
return 1
`
	boundTaskLua = `
if redis.call('EXISTS', KEYS[1], KEYS[5]) > 0 then return 0 end
redis.call('HSET', KEYS[5], 'msg', ARGV[7], 'state', 'pending', 'pending_since', ARGV[8], 'payload_hash', ARGV[4])
redis.call('LPUSH', KEYS[6], ARGV[3])
return 1
`
)

// BenchmarkEnqueueScriptBounds runs, in each iteration, one serial call of each of:
// asynq's Client.Enqueue of the same payload and options (BenchmarkAsynqEnqueue),
// Enqueuer.prepare with createLua (what Enqueue does for a lone caller), and
// Enqueuer.prepare with each bound script, timing every call on its own; so the four
// share the machine's state and the ratios to asynq (ratio-*, higher is faster) are
// comparable within one run. Real Redis only (skipped on miniredis):
//
//	VIBERQ_TEST_REDIS_URL=redis://127.0.0.1:6379 go test -run '^$' -bench EnqueueScriptBounds -benchtime 20000x ./tasks/
func BenchmarkEnqueueScriptBounds(b *testing.B) {
	if !redistest.Enabled() {
		b.Skip("real Redis only: set " + redistest.EnvURL)
	}
	rdb := redistest.Client(b)
	client := asynq.NewClientFromRedisClient(rdb)
	b.Cleanup(func() { _ = client.Close() })
	enq := NewEnqueuer(client, NewStore(rdb, StoreOptions{}), EnqueuerConfig{})
	ctx := context.Background()
	msg := provider.Message{SourceAddr: "Shop", DestinationAddr: "380501234567", MessageType: provider.TypeText,
		Text: "Your code is 1234", TextSMS: "Code 1234", SourceType: provider.SourceTransactional}
	seq := 0
	nextID := func() string { seq++; return "bound-" + strconv.Itoa(seq) }
	asynqCall := func() error {
		id, now := nextID(), time.Now()
		payload, err := json.Marshal(SendArgs{V: PayloadVersion, ID: id, Message: msg, ExpiresAt: now.Add(40 * time.Second), EnqueuedAt: now})
		if err != nil {
			return err
		}
		_, err = client.EnqueueContext(ctx, asynq.NewTask(TypeSend, payload), asynq.TaskID(id), asynq.Queue(QueueCritical),
			asynq.MaxRetry(DefaultMaxRetry), asynq.Retention(DefaultTaskRetention))
		return err
	}
	scriptCall := func(s *redis.Script) func() error {
		return func() error {
			p, err := enq.prepare(EnqueueRequest{ID: nextID(), Message: msg})
			if err != nil {
				return err
			}
			// 1: written. Anything else (an ID taken) would time a script that wrote
			// nothing.
			n, err := s.Run(ctx, rdb, p.call.keys, p.call.args...).Int()
			if err == nil && n != 1 {
				err = fmt.Errorf("script answered %d for %s, not 1 (written)", n, p.args.ID)
			}
			return err
		}
	}
	variants := []struct {
		name string
		call func() error
		d    time.Duration
	}{
		{name: "asynq", call: asynqCall},
		{name: "viberq", call: scriptCall(createScript)},
		{name: "task+event", call: scriptCall(redis.NewScript(boundTaskEventLua))},
		{name: "task", call: scriptCall(redis.NewScript(boundTaskLua))},
	}
	for b.Loop() {
		for i := range variants {
			v := &variants[i]
			start := time.Now()
			if err := v.call(); err != nil {
				b.Fatalf("%s: %v", v.name, err)
			}
			v.d += time.Since(start)
		}
	}
	for _, v := range variants {
		b.ReportMetric(float64(v.d.Microseconds())/float64(b.N), v.name+"-µs/op")
		if v.name != "asynq" {
			b.ReportMetric(float64(variants[0].d)/float64(v.d), "ratio-"+v.name)
		}
	}
}
