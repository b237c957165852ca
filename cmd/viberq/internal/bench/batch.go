package bench

import (
	"context"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/viberq/viberq/tasks"
)

// ---- row 3c: batch enqueue ----

// benchBatchEnqueue is row 3c: tasks.Enqueuer.EnqueueBatch of many messages (one call,
// BatchPipeline scripts per round trip) against bare asynq Enqueue of as many tasks
// from one goroutine, in alternating pairs.
func benchBatchEnqueue(ctx context.Context, b *bench, client *asynq.Client, enq *tasks.Enqueuer) (benchResult, error) {
	n, pairs := b.pick(100_000, 10_000), b.pick(3, 1)
	reqs := make([]tasks.EnqueueRequest, n)
	for i := range reqs {
		reqs[i] = tasks.EnqueueRequest{Message: benchMessage(i), BatchID: "bench"}
	}
	bareRun := func() (float64, error) {
		if err := b.redis.flush(ctx); err != nil {
			return 0, err
		}
		d, err := enqueueBare(ctx, client, n, 1)
		if err != nil {
			return 0, fmt.Errorf("bare enqueue: %w", err)
		}
		return rate(n, d), nil
	}
	vqRun := func() (float64, error) {
		if err := b.redis.flush(ctx); err != nil {
			return 0, err
		}
		d, err := parallel(ctx, 1, 1, func(ctx context.Context, _ int) error {
			res, err := enq.EnqueueBatch(ctx, reqs)
			if err == nil && len(res) != n {
				err = fmt.Errorf("%d answers for %d requests", len(res), n)
			}
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("enqueue batch: %w", err)
		}
		return rate(n, d), nil
	}
	var bare, vq, ratios []float64
	for p := range pairs {
		var r, v float64
		var err error
		for k := range 2 {
			if (p+k)%2 == 0 {
				r, err = bareRun()
			} else {
				v, err = vqRun()
			}
			if err != nil {
				return benchResult{}, err
			}
		}
		bare, vq, ratios = append(bare, r), append(vq, v), append(ratios, v/r)
	}
	bm, vm, rt := median(bare), median(vq), median(ratios)
	b.logf("row 3c: bare %.0f/s, EnqueueBatch %.0f/s, pair ratios %s", bm, vm, fmtRatios(ratios))
	return benchResult{
		Row: "3c", What: fmt.Sprintf("batch enqueue of %d (msg/s)", n),
		Baseline: fmtRate(bm, "/s"), Viberq: fmtRate(vm, "/s"), Value: fmtRatio(rt), Target: "≥ 1.5",
		Result: passFail(rt >= 1.5), BaselineNum: bm, ViberqNum: vm, ValueNum: rt,
		How: fmt.Sprintf("%d pairs of runs (order alternating); value = median of the per-pair ratios (%s). "+
			"Baseline: asynq.Client.Enqueue of %d tasks with the same %d-byte payload from 1 goroutine (queue critical, no ID). "+
			"viberq: one tasks.Enqueuer.EnqueueBatch call of %d requests with a batch ID (validate, generated ID, record + queued event + batch counts + task, "+
			"one script per message, %d scripts per round trip).",
			pairs, fmtRatios(ratios), n, payloadSize(), n, tasks.BatchPipeline),
	}, nil
}
