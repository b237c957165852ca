package tasks_test

import (
	"context"
	"encoding/json"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
)

// The Enqueue benchmarks compare Enqueuer.Enqueue (validation, record, event, task)
// with a bare asynq Enqueue of the same payload and options. Run against real Redis
// for meaningful figures:
//
//	VIBERQ_TEST_REDIS_URL=redis://127.0.0.1:6379 go test -run '^$' -bench Enqueue ./tasks/

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
	b.Run("Serial", func(b *testing.B) { run(b.Loop) })
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
	b.Run("Serial", func(b *testing.B) { run(b.Loop) })
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
