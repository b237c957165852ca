package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
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

// enqueueCalls is what the bound benchmarks call: asynq's Client.Enqueue of row 3a's
// payload and options (BenchmarkAsynqEnqueue), and Enqueuer.prepare with a script in
// place of createScript, each with a fresh ID. Real Redis only.
type enqueueCalls struct {
	rdb    *redis.Client
	store  *Store
	enq    *Enqueuer
	nextID func() string
	asynq  func() error
}

func newEnqueueCalls(b *testing.B) *enqueueCalls {
	if !redistest.Enabled() {
		b.Skip("real Redis only: set " + redistest.EnvURL)
	}
	rdb := redistest.Client(b)
	client := asynq.NewClientFromRedisClient(rdb)
	b.Cleanup(func() { _ = client.Close() })
	c := &enqueueCalls{rdb: rdb, store: NewStore(rdb, StoreOptions{})}
	seq := 0
	c.nextID = func() string { seq++; return "bound-" + strconv.Itoa(seq) }
	c.enq = NewEnqueuer(client, c.store, EnqueuerConfig{})
	c.asynq = func() error {
		id, now := c.nextID(), time.Now()
		payload, err := json.Marshal(SendArgs{V: PayloadVersion, ID: id, Message: boundMessage, ExpiresAt: now.Add(40 * time.Second), EnqueuedAt: now})
		if err != nil {
			return err
		}
		_, err = client.EnqueueContext(context.Background(), asynq.NewTask(TypeSend, payload), asynq.TaskID(id),
			asynq.Queue(QueueCritical), asynq.MaxRetry(DefaultMaxRetry), asynq.Retention(DefaultTaskRetention))
		return err
	}
	return c
}

// boundMessage is the message of every call.
var boundMessage = provider.Message{SourceAddr: "Shop", DestinationAddr: "380501234567", MessageType: provider.TypeText,
	Text: "Your code is 1234", TextSMS: "Code 1234", SourceType: provider.SourceTransactional}

// script returns a call of Enqueuer.prepare and then the script of src with its keys
// and arguments.
func (c *enqueueCalls) script(src string) func() error {
	s := redis.NewScript(src)
	return func() error {
		p, err := c.enq.prepare(EnqueueRequest{ID: c.nextID(), Message: boundMessage})
		if err != nil {
			return err
		}
		// 1: written. Anything else (an ID taken) would time a script that wrote
		// nothing.
		n, err := s.Run(context.Background(), c.rdb, p.call.keys, p.call.args...).Int()
		if err == nil && n != 1 {
			err = fmt.Errorf("script answered %d for %s, not 1 (written)", n, p.args.ID)
		}
		return err
	}
}

// BenchmarkEnqueueScriptBounds runs, in each iteration, one serial call of each of:
// asynq's Client.Enqueue of the same payload and options (BenchmarkAsynqEnqueue),
// Enqueuer.prepare with createLua (what Enqueue does for a lone caller), and
// Enqueuer.prepare with each bound script (recordTaskLua, boundTaskEventLua,
// boundTaskLua), timing every call on its own; so the five share the machine's state
// and the ratios to asynq (ratio-*, higher is faster) are comparable within one run. Real Redis only (skipped on miniredis):
//
//	VIBERQ_TEST_REDIS_URL=redis://127.0.0.1:6379 go test -run '^$' -bench EnqueueScriptBounds -benchtime 20000x ./tasks/
func BenchmarkEnqueueScriptBounds(b *testing.B) {
	c := newEnqueueCalls(b)
	variants := []struct {
		name string
		call func() error
		d    time.Duration
	}{
		{name: "asynq", call: c.asynq},
		{name: "viberq", call: c.script(createLua)},
		{name: "record+task", call: c.script(recordTaskLua)},
		{name: "task+event", call: c.script(boundTaskEventLua)},
		{name: "task", call: c.script(boundTaskLua)},
	}
	if recordTaskLua == createLua || strings.Contains(recordTaskLua, "XADD") || strings.Contains(recordTaskLua, "KEYS[8]") {
		b.Fatal("recordTaskLua: createLua no longer has the index entry or the event it cuts")
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

// trimLeanLua is not used by viberq either: it is createLua with a "queued" event of
// three fields (id, to, at) in place of seven, so that BenchmarkEnqueueRedisTime can
// say what that saving is worth in Redis's own time (BENCHMARKS.md, "4 December 2026,
// evening: where a lone enqueue's time goes, and a cheaper index entry").
var trimLeanLua = strings.Replace(createLua,
	"'id', ARGV[3], 'from', '', 'to', 'queued', 'channel', '', 'provider_message_id', '', 'error', '', 'at', ARGV[4])",
	"'id', ARGV[3], 'to', 'queued', 'at', ARGV[4])", 1)

// recordTaskLua is not used by viberq either: it is createLua without the non-final
// index's entry and the "queued" event, so the record and the task alone, in one
// script: the least that the issue's "one round trip for the record and the task
// together" writes. It bounds what a lone caller's enqueue could reach while keeping a
// record at enqueue, whatever becomes of the index and the event.
var recordTaskLua = strings.Replace(strings.Replace(createLua,
	"redis.call('RPUSH', KEYS[8], ARGV[3])\n", "", 1),
	"redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',\n  'id', ARGV[3], 'from', '', 'to', 'queued', 'channel', '', 'provider_message_id', '', 'error', '', 'at', ARGV[4])\n", "", 1)

// zsetCreateLua is createLua with the index entry it had before the list of new records:
// the record's ID goes straight into the sorted set (here a key of its own beside
// the list), scored with now.
var zsetCreateLua = strings.Replace(createLua, "redis.call('RPUSH', KEYS[8], ARGV[3])",
	"redis.call('ZADD', KEYS[8] .. ':zset', ARGV[4], ARGV[3])", 1)

// BenchmarkEnqueueRedisTime measures Redis's own time per enqueue (redis-µs, from
// INFO commandstats, the EVALSHA line: asynq's enqueue is one EVALSHA too) of
// asynq's Client.Enqueue, viberq's enqueue script as it is, with the sorted set's
// ZADD in place of the list's RPUSH (zsetCreateLua), with a lean event (trimLeanLua),
// the record and the task alone (recordTaskLua), the bound script boundTaskLua, and an
// empty script
// given viberq's keys and arguments; and each one's wall time per call from one
// goroutine (µs). Every iteration runs a block of 500 calls of each in turn, and
// every ten iterations the index, the events stream and the pending list are
// deleted, as row 3a's runs of 5 000 start on an empty database. The wall times
// spread with the host, the Redis times less: compare variants within one run. Real
// Redis only:
//
//	VIBERQ_TEST_REDIS_URL=redis://127.0.0.1:6379 go test -run '^$' -bench EnqueueRedisTime -benchtime 40x ./tasks/
func BenchmarkEnqueueRedisTime(b *testing.B) {
	if zsetCreateLua == createLua || trimLeanLua == createLua {
		b.Fatal("zsetCreateLua or trimLeanLua: createLua no longer has what it replaces")
	}
	c := newEnqueueCalls(b)
	rdb, store, ctx := c.rdb, c.store, context.Background()
	variants := []struct {
		name    string
		call    func() error
		d       time.Duration
		redisUs float64
		n       int
	}{
		{name: "asynq", call: c.asynq},
		{name: "zset", call: c.script(zsetCreateLua)},
		{name: "viberq", call: c.script(createLua)},
		{name: "lean", call: c.script(trimLeanLua)},
		{name: "record+task", call: c.script(recordTaskLua)},
		{name: "task", call: c.script(boundTaskLua)},
		{name: "empty", call: c.script("return 1")},
	}
	for i := range variants { // load every script before the first block is timed
		if err := variants[i].call(); err != nil {
			b.Fatalf("%s: %v", variants[i].name, err)
		}
	}
	const block = 500
	iter := 0
	for b.Loop() {
		if iter%10 == 0 {
			nf := store.NonFinalKey()
			if err := rdb.Del(ctx, nf, store.NonFinalNewKey(), store.NonFinalNewKey()+":zset", store.EventsKey(), asynqPendingKey(QueueCritical)).Err(); err != nil {
				b.Fatal(err)
			}
		}
		iter++
		for i := range variants {
			v := &variants[i]
			before, ok := EvalshaUsec(rdb)
			if !ok {
				b.Fatal("no INFO commandstats")
			}
			start := time.Now()
			for range block {
				if err := v.call(); err != nil {
					b.Fatalf("%s: %v", v.name, err)
				}
			}
			v.d += time.Since(start)
			after, ok := EvalshaUsec(rdb)
			if !ok {
				b.Fatal("no INFO commandstats")
			}
			v.redisUs += after - before
			v.n += block
		}
	}
	for _, v := range variants {
		b.ReportMetric(v.redisUs/float64(v.n), v.name+"-redis-µs")
		b.ReportMetric(float64(v.d.Microseconds())/float64(v.n), v.name+"-µs")
	}
}
