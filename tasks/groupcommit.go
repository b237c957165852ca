package tasks

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"
)

// groupCommit lets concurrent Enqueue calls share round trips. A lone call (nothing
// else in flight) runs its own script at once, so a lone producer never waits for
// anyone and pays no hand-off. Concurrent calls on a *redis.Client go through that
// client's full-duplex autopipeline (go-redis: one connection, a writer streaming
// the commands of every caller while a reader hands back their replies), so Redis
// never waits between batches; on any other client (a Ring, say) they queue:
// a call that finds fewer than maxCommitFlights writes in flight runs its own script,
// one that arrives while they are all in flight queues up, and when a flight lands
// the first queued call takes the whole queue to Redis as one pipeline. Each message
// is still its own script, atomic as before; what the calls share is the network
// round trip and the system calls on both sides, which are what bound many
// concurrent producers on one Redis (BENCHMARKS.md, row 3b: the flights leave the
// cores idle between a batch's last reply and the next batch, the stream does not).
//
// Either way a call whose ctx has ended before it is written returns the context's
// error with nothing written, and a call that is written waits for its true answer
// (bounded by go-redis's timeouts), even if its ctx ends meanwhile. go-redis marks
// its autopipeline API experimental; TestEnqueueStreams and its siblings pin what is
// relied on here, so an upgrade that changes it fails the build or the tests.
type groupCommit struct {
	mu       sync.Mutex
	inFlight int
	queue    []*commitReq
	// noStream turns the full-duplex stream off: concurrent calls always queue (the
	// tests of the queue).
	noStream bool
	apOnce   sync.Once
	ap       *redis.AutoPipeliner // nil: no stream on this client
}

// maxCommitFlights bounds the writes in flight from one Enqueuer: one being answered
// while the next is written keeps Redis busy without splitting the queue into many
// small pipelines.
const maxCommitFlights = 2

// commitReq is one queued script call.
type commitReq struct {
	call  scriptCall
	reply any
	err   error
	done  chan struct{}     // closed once reply and err are set
	lead  chan []*commitReq // receives the batch this call is to take to Redis
}

// run runs script with call on rdb, sharing a round trip with concurrent calls.
//
// A call made while another is in flight goes to the stream when rdb has one: if its
// ctx has ended it returns the context's error unwritten, otherwise it is written and
// waits for its answer without the ctx (the stream writes it at once; taking it back
// is not possible).
//
// A call still queued when its ctx ends leaves the queue unwritten and returns the
// context's error. Once taken into a batch it is written even if its ctx ends: the
// batch runs without the leader's cancellation (one caller's cancelled context must
// not fail the others' writes), bounded by go-redis's timeouts (pool, read, write) and
// at most one more round trip to reload the script after a NOSCRIPT.
//
// A panic inside a flight (a go-redis hook, say) still lands it and answers every call
// of its batch with errFlightFailed before it goes on up, so a recovered panic (as
// net/http recovers a handler's) cannot leave callers waiting or flights taken.
func (g *groupCommit) run(ctx context.Context, rdb redis.UniversalClient, script *redis.Script, call scriptCall) (any, error) {
	g.mu.Lock()
	concurrent := g.inFlight > 0
	g.mu.Unlock()
	if concurrent {
		if ap := g.stream(rdb); ap != nil {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			g.mu.Lock()
			g.inFlight++
			g.mu.Unlock()
			defer g.land()
			return script.Run(context.WithoutCancel(ctx), ap, call.keys, call.args...).Result()
		}
	}
	g.mu.Lock()
	if g.inFlight < maxCommitFlights && len(g.queue) == 0 {
		g.inFlight++
		g.mu.Unlock()
		defer g.land()
		return script.Run(ctx, rdb, call.keys, call.args...).Result()
	}
	r := &commitReq{call: call, done: make(chan struct{}), lead: make(chan []*commitReq, 1)}
	g.queue = append(g.queue, r)
	g.mu.Unlock()
	for {
		select {
		case <-r.done:
			return r.reply, r.err
		case batch := <-r.lead:
			func() {
				defer g.land()
				g.flush(context.WithoutCancel(ctx), rdb, script, batch)
			}()
		case <-ctx.Done():
			g.mu.Lock()
			if i := slices.Index(g.queue, r); i >= 0 {
				g.queue = slices.Delete(g.queue, i, i+1)
				g.mu.Unlock()
				return nil, ctx.Err()
			}
			g.mu.Unlock()
			// Taken into a batch already: its answer (or the lead) is coming.
			ctx = context.WithoutCancel(ctx)
		}
	}
}

// stream returns the full-duplex autopipeline of rdb, made on first use, or nil when
// rdb is no *redis.Client (or go-redis refuses one). go-redis keeps one per client,
// shared with any other user of it, and closes it with the client.
func (g *groupCommit) stream(rdb redis.UniversalClient) *redis.AutoPipeliner {
	if g.noStream {
		return nil
	}
	g.apOnce.Do(func() {
		c, ok := rdb.(*redis.Client)
		if !ok {
			return
		}
		if ap, err := c.AutoPipelineWithOptions(&redis.AutoPipelineOptions{FullDuplex: true}); err == nil {
			g.ap = ap
		}
	})
	return g.ap
}

// land ends a flight: if calls queued meanwhile, the first of them takes the queue to
// Redis (the flight passes to it); otherwise one flight fewer is in the air.
func (g *groupCommit) land() {
	g.mu.Lock()
	if len(g.queue) == 0 {
		g.inFlight--
		g.mu.Unlock()
		return
	}
	batch := g.queue
	g.queue = nil
	g.mu.Unlock()
	batch[0].lead <- batch
}

// errFlightFailed answers the calls of a batch whose flight panicked.
var errFlightFailed = errors.New("enqueue: the shared round trip failed")

// flush runs batch in one pipeline and answers every call in it, even when it panics.
func (g *groupCommit) flush(ctx context.Context, rdb redis.UniversalClient, script *redis.Script, batch []*commitReq) {
	answered := 0
	defer func() {
		for _, r := range batch[answered:] {
			r.err = errFlightFailed
			close(r.done)
		}
	}()
	calls := make([]scriptCall, len(batch))
	for i, r := range batch {
		calls[i] = r.call
	}
	replies := runPipelinedLazy(ctx, rdb, script, calls)
	for i, r := range batch {
		r.reply, r.err = replies[i].Result()
		close(r.done)
		answered = i + 1
	}
}
