package tasks

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/viberq/viberq/provider"
)

// BatchPipeline is how many messages EnqueueBatch and CancelBatch write per Redis
// round trip (one Lua script each, pipelined).
const BatchPipeline = 500

// BatchKey returns the key of the counts of batch id: "{prefix}batch:n:{id}", a hash
// of state → number of messages, "total", and "delivered:{channel}".
func (s *Store) BatchKey(id string) string { return s.batchKeyBase() + "n:" + id }

// batchIDsKey returns the key of the list of the message IDs of batch id, in enqueue
// order: "{prefix}batch:ids:{id}".
func (s *Store) batchIDsKey(id string) string { return s.batchKeyBase() + "ids:" + id }

// batchKeyBase is the common prefix of the batch keys. The scripts that move a
// record's batch counts (transitionScript, cancelScript) get it and append "n:" or
// "ids:" and the batch ID as BatchKey and batchIDsKey do.
func (s *Store) batchKeyBase() string { return s.prefix + "batch:" }

// BatchCounts are the numbers of the messages of one batch.
type BatchCounts struct {
	// BatchID is the batch.
	BatchID string `json:"batch_id"`
	// Total is the number of messages enqueued in the batch.
	Total int `json:"total"`
	// States is the number of messages in each state; every state is present.
	States map[State]int `json:"states"`
	// Delivered is the number of delivered messages by channel (ChannelViber,
	// ChannelSMS); both are present.
	Delivered map[string]int `json:"delivered"`
}

// BatchCounts returns the counts of batch id, kept up to date by every state change
// (in the same script as the change), or ErrNotFound for a batch without messages
// (never used, or older than the Retention of its records). One round trip.
func (s *Store) BatchCounts(ctx context.Context, id string) (BatchCounts, error) {
	h, err := s.rdb.HGetAll(ctx, s.BatchKey(id)).Result()
	if err != nil {
		return BatchCounts{}, fmt.Errorf("batch %s: %w", provider.MaskID(id), err)
	}
	if len(h) == 0 {
		return BatchCounts{}, fmt.Errorf("batch %s: %w", provider.MaskID(id), ErrNotFound)
	}
	c := BatchCounts{BatchID: id, States: make(map[State]int, len(States)),
		Delivered: map[string]int{ChannelViber: 0, ChannelSMS: 0}}
	for _, st := range States {
		c.States[st] = 0
	}
	for k, v := range h {
		n, err := strconv.Atoi(v)
		if err != nil {
			return BatchCounts{}, fmt.Errorf("batch %s: bad count %s=%q", provider.MaskID(id), k, v)
		}
		switch ch, isCh := strings.CutPrefix(k, "delivered:"); {
		case k == "total":
			c.Total = n
		case isCh:
			c.Delivered[ch] = n
		case State(k).Valid():
			c.States[State(k)] = n
		}
	}
	return c, nil
}

// BatchResult is the answer to one request of EnqueueBatch.
type BatchResult struct {
	// EnqueueResult is the outcome when Err is nil: accepted (Duplicate false) or a
	// duplicate. Its ID is set whenever the request was valid, also when Err is a
	// Redis error, so that the producer can retry under the same ID.
	EnqueueResult
	// Err is nil, a *provider.ValidationError naming the bad fields, or
	// ErrIdempotencyConflict when the request is refused; any other error means the
	// request may or may not have been written (retry it with Result.ID: enqueue is
	// idempotent).
	Err error
}

// Refused reports whether the request was refused: invalid, or an idempotency
// conflict.
func (r BatchResult) Refused() bool {
	return r.Err != nil && (errors.Is(r.Err, ErrIdempotencyConflict) || isValidation(r.Err))
}

// EnqueueBatch enqueues many messages and answers for each, in the order of reqs:
// accepted, duplicate, or refused with the reason, as Enqueue would answer it alone.
// A refused request never stops the others. Each message is still one atomic step
// (record, event, task) as in Enqueue; BatchPipeline of them go in each round trip.
// Requests are written in order, so of two requests with the same ID the first
// creates the message and the second is its duplicate (or a conflict) — unless the
// script cache is flushed in the middle of a round trip (see runPipelined).
//
// The error is nil when every request has its answer; otherwise it is the first
// Redis error, and the requests it concerns carry it in their Err.
func (e *Enqueuer) EnqueueBatch(ctx context.Context, reqs []EnqueueRequest) ([]BatchResult, error) {
	out := make([]BatchResult, len(reqs))
	// One goroutine validates and encodes the next chunk while this one waits for
	// Redis to run the current one; chunks are still written one after the other, in
	// order. The two write disjoint elements of out.
	type chunk struct {
		idx []int
		ps  []prepared
	}
	chunks := make(chan chunk, 1)
	var prepErr error
	go func() {
		defer close(chunks)
		for start := 0; start < len(reqs); start += BatchPipeline {
			end := min(start+BatchPipeline, len(reqs))
			c := chunk{idx: make([]int, 0, end-start), ps: make([]prepared, 0, end-start)}
			for i := start; i < end; i++ {
				p, err := e.prepare(reqs[i])
				if err != nil {
					out[i].Err = err
					if !isValidation(err) && prepErr == nil {
						prepErr = err
					}
					continue
				}
				c.idx, c.ps = append(c.idx, i), append(c.ps, p)
			}
			chunks <- c
		}
	}()
	var firstErr error
	for c := range chunks {
		calls := make([]scriptCall, len(c.ps))
		for k, p := range c.ps {
			calls[k] = scriptCall{keys: p.call.keys, args: p.call.args}
		}
		replies := runPipelined(ctx, e.store.rdb, createScript, calls)
		for k, p := range c.ps {
			res, err := e.finish(ctx, p, replies[k].Val(), replies[k].Err())
			out[c.idx[k]] = BatchResult{EnqueueResult: res, Err: err}
			if err != nil && !errors.Is(err, ErrIdempotencyConflict) && firstErr == nil {
				firstErr = err
			}
		}
	}
	// The channel is closed: prepErr is final and visible here.
	return out, cmp.Or(prepErr, firstErr)
}

func isValidation(err error) bool {
	var ve *provider.ValidationError
	return errors.As(err, &ve)
}

// scriptCall is one run of a script in a pipeline.
type scriptCall struct {
	keys []string
	args []any
}

// runPipelined runs script once per call in one pipelined round trip (EVALSHA), and
// once more for the calls Redis answered NOSCRIPT (a NOSCRIPT call ran nothing, so
// running it again is safe). A SCRIPT LOAD goes first, in a round trip of its own (one
// per BatchPipeline calls; go-redis does not keep it ahead of the EVALSHAs inside a
// pipeline), so the calls run in order even on a Redis that lost its script cache (a
// restart, SCRIPT FLUSH); only a flush landing in the middle of the round trip sends
// the calls after it back for a second round, out of order with those that ran.
func runPipelined(ctx context.Context, rdb redis.UniversalClient, script *redis.Script, calls []scriptCall) []*redis.Cmd {
	return pipelineScript(ctx, rdb, script, calls, true)
}

// runPipelinedLazy is runPipelined without the SCRIPT LOAD ahead: one round trip
// while the script is cached (always, but for the first use after a restart or a
// SCRIPT FLUSH), for callers that do not need the calls to run in order (groupCommit:
// concurrent callers have no order between them).
func runPipelinedLazy(ctx context.Context, rdb redis.UniversalClient, script *redis.Script, calls []scriptCall) []*redis.Cmd {
	return pipelineScript(ctx, rdb, script, calls, false)
}

func pipelineScript(ctx context.Context, rdb redis.UniversalClient, script *redis.Script, calls []scriptCall, preload bool) []*redis.Cmd {
	out := make([]*redis.Cmd, len(calls))
	run := func(idx []int) {
		pipe := rdb.Pipeline()
		for _, i := range idx {
			out[i] = pipe.EvalSha(ctx, script.Hash(), calls[i].keys, calls[i].args...)
		}
		_, _ = pipe.Exec(ctx) // each command carries its own error
	}
	all := make([]int, len(calls))
	for i := range all {
		all[i] = i
	}
	if preload {
		// A failed load shows again in the calls' own errors.
		_ = script.Load(ctx, rdb).Err()
	}
	run(all)
	var again []int
	for i, c := range out {
		if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		if err := script.Load(ctx, rdb).Err(); err != nil {
			for _, i := range again {
				out[i] = redis.NewCmd(ctx)
				out[i].SetErr(fmt.Errorf("load script: %w", err))
			}
			return out
		}
		run(again)
	}
	return out
}
