package tasks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
)

// The Enqueue benchmarks compare Enqueuer.Enqueue (validation, record, event, task)
// with a bare asynq Enqueue of the same payload and options. Run against real Redis
// for meaningful figures (the redis-µs/op they report is Redis's own time in the
// scripts, from INFO commandstats, so only there):
//
//	VIBERQ_TEST_REDIS_URL=redis://127.0.0.1:6379 go test -run '^$' -bench 'Enqueue|RoundTrip' ./tasks/

var benchSeq atomic.Int64

func benchIDs() string { return "bench-" + strconv.FormatInt(benchSeq.Add(1), 10) }

func BenchmarkEnqueue(b *testing.B) {
	rdb := redistest.New(b)
	client := asynq.NewClientFromRedisClient(rdb)
	b.Cleanup(func() { _ = client.Close() })
	enq := tasks.NewEnqueuer(client, tasks.NewStore(rdb, tasks.StoreOptions{}), tasks.EnqueuerConfig{})
	ctx := context.Background()
	msg := transactional()
	run := func(next func() bool) {
		for next() {
			if _, err := enq.Enqueue(ctx, tasks.EnqueueRequest{ID: benchIDs(), Message: msg}); err != nil {
				b.Error(err)
				return
			}
		}
	}
	b.Run("Serial", func(b *testing.B) { defer scriptTime(b, rdb)(); run(b.Loop) })
	b.Run("Parallel", func(b *testing.B) {
		b.SetParallelism(16) // 16 goroutines per CPU
		b.RunParallel(func(pb *testing.PB) { run(pb.Next) })
	})
}

func BenchmarkAsynqEnqueue(b *testing.B) {
	rdb := redistest.New(b)
	client := asynq.NewClientFromRedisClient(rdb)
	b.Cleanup(func() { _ = client.Close() })
	ctx := context.Background()
	now := time.Now()
	run := func(next func() bool) {
		for next() {
			id := benchIDs()
			payload, err := json.Marshal(tasks.SendArgs{V: 1, ID: id, Message: transactional(), ExpiresAt: now.Add(40 * time.Second), EnqueuedAt: now})
			if err != nil {
				b.Error(err)
				return
			}
			task := asynq.NewTask(tasks.TypeSend, payload)
			if _, err := client.EnqueueContext(ctx, task, asynq.TaskID(id), asynq.Queue(tasks.QueueCritical),
				asynq.MaxRetry(tasks.DefaultMaxRetry), asynq.Retention(tasks.DefaultTaskRetention)); err != nil {
				b.Error(err)
				return
			}
		}
	}
	b.Run("Serial", func(b *testing.B) { defer scriptTime(b, rdb)(); run(b.Loop) })
	b.Run("Parallel", func(b *testing.B) {
		b.SetParallelism(16) // 16 goroutines per CPU
		b.RunParallel(func(pb *testing.PB) { run(pb.Next) })
	})
}

// BenchmarkEnqueueBatch measures EnqueueBatch per message (compare with
// BenchmarkAsynqEnqueue/Serial, one goroutine).
func BenchmarkEnqueueBatch(b *testing.B) {
	rdb := redistest.New(b)
	enq := tasks.NewEnqueuer(nil, tasks.NewStore(rdb, tasks.StoreOptions{}), tasks.EnqueuerConfig{})
	ctx := context.Background()
	const size = 1000
	reqs := make([]tasks.EnqueueRequest, size)
	for b.Loop() {
		for i := range reqs {
			reqs[i] = tasks.EnqueueRequest{ID: benchIDs(), Message: transactional(), BatchID: "bench"}
		}
		if _, err := enq.EnqueueBatch(ctx, reqs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/msg")
}

// BenchmarkEnqueueBatchResubmit measures a producer's retry of a whole campaign whose
// messages still wait in the queue (all duplicates of queued messages with their
// tasks in place), per message and as a ratio to the first submission of the same
// requests in the same iteration (resubmit/first, lower is cheaper).
func BenchmarkEnqueueBatchResubmit(b *testing.B) {
	rdb := redistest.New(b)
	enq := tasks.NewEnqueuer(nil, tasks.NewStore(rdb, tasks.StoreOptions{}), tasks.EnqueuerConfig{})
	ctx := context.Background()
	const size = 5000
	reqs := make([]tasks.EnqueueRequest, size)
	var first, again time.Duration
	for b.Loop() {
		for i := range reqs {
			reqs[i] = tasks.EnqueueRequest{ID: benchIDs(), Message: transactional(), BatchID: "bench"}
		}
		for _, d := range []*time.Duration{&first, &again} {
			start := time.Now()
			out, err := enq.EnqueueBatch(ctx, reqs)
			if err != nil {
				b.Fatal(err)
			}
			if out[0].Duplicate != (d == &again) {
				b.Fatalf("first result's Duplicate = %v", out[0].Duplicate)
			}
			*d += time.Since(start)
		}
	}
	b.ReportMetric(float64(again.Nanoseconds())/float64(b.N*size), "resubmit-ns/msg")
	b.ReportMetric(float64(again)/float64(first), "resubmit/first")
}

// BenchmarkRoundTripByRedisTime measures what a microsecond of work inside Redis costs
// a lone caller's round trip: one EVALSHA at a time of a Lua loop of n steps, no keys
// or arguments. Compare the steps of ns/op with those of redis-µs/op (BENCHMARKS.md,
// row 3a: on the 2-core VM of those runs a microsecond in Redis cost about 2.4).
func BenchmarkRoundTripByRedisTime(b *testing.B) {
	rdb := redistest.New(b)
	ctx := context.Background()
	for _, n := range []int{0, 2000, 5000} {
		script := redis.NewScript(fmt.Sprintf("local x = 0 for i = 1, %d do x = x + i end return 1", n))
		b.Run("steps="+strconv.Itoa(n), func(b *testing.B) {
			defer scriptTime(b, rdb)()
			for b.Loop() {
				if err := script.Run(ctx, rdb, nil).Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// scriptTime reads Redis's EVALSHA time (INFO commandstats, server-wide: run the
// benchmark alone) and returns a func that reports the time per b.N since as
// redis-µs/op. Nothing is reported where there are no such figures (miniredis).
func scriptTime(b *testing.B, rdb *redis.Client) func() {
	before, ok := tasks.EvalshaUsec(rdb)
	return func() {
		after, ok2 := tasks.EvalshaUsec(rdb)
		if ok && ok2 && b.N > 0 {
			b.ReportMetric((after-before)/float64(b.N), "redis-µs/op")
		}
	}
}
