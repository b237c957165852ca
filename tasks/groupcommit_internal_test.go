package tasks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks/redistest"
)

// gateHook holds every single EVALSHA (the direct flights) until released, and
// records the size of every pipeline (the shared flights).
type gateHook struct {
	release    chan struct{}
	held       atomic.Int32
	onPipeline func() // run before each pipeline of scripts goes out
	mu         sync.Mutex
	pipelines  []int
}

func (h *gateHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *gateHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "evalsha" {
			h.held.Add(1)
			<-h.release
		}
		return next(ctx, cmd)
	}
}

func (h *gateHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if cmds[0].Name() != "evalsha" {
			return next(ctx, cmds) // a new connection's handshake
		}
		h.mu.Lock()
		h.pipelines = append(h.pipelines, len(cmds))
		h.mu.Unlock()
		if h.onPipeline != nil {
			h.onPipeline()
		}
		return next(ctx, cmds)
	}
}

func (g *groupCommit) queued() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue)
}

func (g *groupCommit) flights() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inFlight
}

// recv takes the next value of ch, failing the test after 10 s (a caller left waiting).
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("an Enqueue call never returned")
		panic("unreachable")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 10*time.Second, time.Millisecond, "waiting for %s", what)
}

// TestEnqueueSharesRoundTrips: while maxCommitFlights enqueues are in flight, later
// callers queue; when a flight lands they go to Redis together as one pipeline, each
// still created with its task. A caller cancelled while queued is left out and
// nothing of it is written; the cancelled context of the caller that leads the batch
// does not fail the others. The script cache flushed meanwhile costs a reload, not a
// message.
func TestEnqueueSharesRoundTrips(t *testing.T) {
	rdb := redistest.New(t)
	hook := &gateHook{release: make(chan struct{})}
	rdb.AddHook(hook)
	enq := NewEnqueuer(nil, NewStore(rdb, StoreOptions{}), EnqueuerConfig{})
	enq.commit.noStream = true // the queue, as on a client without the stream
	msg := provider.Message{SourceAddr: "Shop", DestinationAddr: "380501234567", MessageType: provider.TypeText,
		Text: "Your code is 1234", SourceType: provider.SourceTransactional}
	ctx := context.Background()

	type answer struct {
		id  string
		res EnqueueResult
		err error
	}
	answers := make(chan answer, 64)
	enqueue := func(ctx context.Context, id string) {
		res, err := enq.Enqueue(ctx, EnqueueRequest{ID: id, Message: msg})
		answers <- answer{id, res, err}
	}
	// Two direct flights, held in the hook.
	for i := range maxCommitFlights {
		go enqueue(ctx, fmt.Sprintf("direct-%d", i))
	}
	waitFor(t, "the direct flights", func() bool { return hook.held.Load() == maxCommitFlights })

	// The first queued caller will lead the batch; its context is cancelled while its
	// pipeline is on the way. Another queued caller is cancelled while queued.
	leadCtx, cancelLead := context.WithCancel(ctx)
	hook.onPipeline = cancelLead
	go enqueue(leadCtx, "queued-0")
	waitFor(t, "the leader to queue", func() bool { return enq.commit.queued() == 1 })
	goneCtx, cancelGone := context.WithCancel(ctx)
	go enqueue(goneCtx, "gone")
	const more = 20
	for i := 1; i <= more; i++ {
		go enqueue(ctx, fmt.Sprintf("queued-%d", i))
	}
	waitFor(t, "the queue", func() bool { return enq.commit.queued() == more+2 })
	cancelGone()
	gone := recv(t, answers)
	require.Equal(t, "gone", gone.id)
	require.ErrorIs(t, gone.err, context.Canceled)
	require.Equal(t, more+1, enq.commit.queued())

	if redistest.Enabled() {
		require.NoError(t, rdb.ScriptFlush(ctx).Err()) // the batch's EVALSHAs get NOSCRIPT
	}
	close(hook.release)

	got := map[string]answer{}
	for range maxCommitFlights + more + 1 {
		a := recv(t, answers)
		got[a.id] = a
	}
	require.Zero(t, enq.commit.flights(), "every flight landed")
	for id, a := range got {
		require.NoError(t, a.err, id)
		require.False(t, a.res.Duplicate, id)
		require.Equal(t, QueueCritical, a.res.Queue, id)
	}
	hook.mu.Lock()
	pipelines := append([]int(nil), hook.pipelines...)
	hook.mu.Unlock()
	require.Contains(t, pipelines, more+1, "the queued calls went to Redis as one pipeline: %v", pipelines)

	insp := asynq.NewInspectorFromRedisClient(rdb)
	pending, err := insp.ListPendingTasks(QueueCritical, asynq.PageSize(100))
	require.NoError(t, err)
	require.Len(t, pending, maxCommitFlights+more+1, "one task per message")
	n, err := rdb.Exists(ctx, enq.store.Key("gone")).Result()
	require.NoError(t, err)
	require.Zero(t, n, "a caller cancelled while queued wrote nothing")
	queues, err := rdb.SMembers(ctx, asynqAllQueues).Result()
	require.NoError(t, err)
	require.Equal(t, []string{QueueCritical}, queues)
}

// TestEnqueueSharedFlightRedisDown: a batch that cannot reach Redis answers every call
// in it with the error; nothing hangs.
func TestEnqueueSharedFlightRedisDown(t *testing.T) {
	rdb := DeadRedis(t)
	hook := &gateHook{release: make(chan struct{})}
	rdb.AddHook(hook)
	enq := NewEnqueuer(nil, NewStore(rdb, StoreOptions{}), EnqueuerConfig{})
	enq.commit.noStream = true // the queue, as on a client without the stream
	msg := provider.Message{SourceAddr: "Shop", DestinationAddr: "380501234567", MessageType: provider.TypeText,
		Text: "Hello", SourceType: provider.SourceTransactional}
	errs := make(chan error, 16)
	for i := range maxCommitFlights + 8 {
		go func() {
			_, err := enq.Enqueue(context.Background(), EnqueueRequest{ID: fmt.Sprintf("m-%d", i), Message: msg})
			errs <- err
		}()
	}
	waitFor(t, "the queue", func() bool { return enq.commit.queued() == 8 })
	close(hook.release)
	for range maxCommitFlights + 8 {
		err := recv(t, errs)
		require.Error(t, err)
		var ve *provider.ValidationError
		require.False(t, errors.As(err, &ve))
	}
	require.Zero(t, enq.commit.queued())
	require.Zero(t, enq.commit.flights())
}

// panicHook panics in the first pipeline of scripts once armed.
type panicHook struct{ gateHook }

func (h *panicHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if cmds[0].Name() == "evalsha" {
			panic("hook exploded")
		}
		return next(ctx, cmds)
	}
}

// TestEnqueueSharedFlightPanics: a panic inside a shared flight, recovered by the
// caller that led it (as net/http recovers a handler), answers the batch's other
// callers with an error and gives the flight back: later calls go through.
func TestEnqueueSharedFlightPanics(t *testing.T) {
	rdb := redistest.New(t)
	hook := &panicHook{gateHook{release: make(chan struct{})}}
	rdb.AddHook(hook)
	enq := NewEnqueuer(nil, NewStore(rdb, StoreOptions{}), EnqueuerConfig{})
	enq.commit.noStream = true // the queue, as on a client without the stream
	msg := provider.Message{SourceAddr: "Shop", DestinationAddr: "380501234567", MessageType: provider.TypeText,
		Text: "Hello", SourceType: provider.SourceTransactional}
	type answer struct {
		err      error
		panicked bool
	}
	answers := make(chan answer, 16)
	enqueue := func(id string) {
		defer func() {
			if recover() != nil {
				answers <- answer{panicked: true}
			}
		}()
		_, err := enq.Enqueue(context.Background(), EnqueueRequest{ID: id, Message: msg})
		answers <- answer{err: err}
	}
	for i := range maxCommitFlights {
		go enqueue(fmt.Sprintf("direct-%d", i))
	}
	waitFor(t, "the direct flights", func() bool { return hook.held.Load() == maxCommitFlights })
	for i := range 5 {
		go enqueue(fmt.Sprintf("queued-%d", i))
	}
	waitFor(t, "the queue", func() bool { return enq.commit.queued() == 5 })
	close(hook.release)
	var panicked, failed, ok int
	for range maxCommitFlights + 5 {
		switch a := recv(t, answers); {
		case a.panicked:
			panicked++
		case errors.Is(a.err, errFlightFailed):
			failed++
		case a.err == nil:
			ok++
		}
	}
	require.Equal(t, []int{1, 4, maxCommitFlights}, []int{panicked, failed, ok})
	require.Zero(t, enq.commit.flights(), "the panicked flight landed")
	_, err := enq.Enqueue(context.Background(), EnqueueRequest{ID: "after", Message: msg})
	require.NoError(t, err)
}

// streamed returns an Enqueuer on rdb whose calls all count as concurrent (one
// flight is taken for good), so that every call goes to the full-duplex stream.
func streamed(t *testing.T, rdb redis.UniversalClient) *Enqueuer {
	t.Helper()
	enq := NewEnqueuer(nil, NewStore(rdb, StoreOptions{}), EnqueuerConfig{})
	enq.commit.inFlight = 1
	return enq
}

// TestEnqueueStreams: concurrent calls on a *redis.Client go through its full-duplex
// stream, each message still written once with its task: of two calls with one ID,
// one creates it and the other is told it is a duplicate.
func TestEnqueueStreams(t *testing.T) {
	rdb := redistest.New(t)
	enq := streamed(t, rdb)
	msg := provider.Message{SourceAddr: "Shop", DestinationAddr: "380501234567", MessageType: provider.TypeText,
		Text: "Hello", SourceType: provider.SourceTransactional}
	const ids = 32
	type answer struct {
		id  string
		res EnqueueResult
		err error
	}
	answers := make(chan answer, 2*ids)
	for i := range 2 * ids {
		go func() {
			id := fmt.Sprintf("s-%d", i%ids)
			res, err := enq.Enqueue(context.Background(), EnqueueRequest{ID: id, Message: msg})
			answers <- answer{id, res, err}
		}()
	}
	created := map[string]int{}
	for range 2 * ids {
		a := recv(t, answers)
		require.NoError(t, a.err, a.id)
		if !a.res.Duplicate {
			created[a.id]++
		}
	}
	require.NotNil(t, enq.commit.ap, "the calls went to the stream")
	require.Len(t, created, ids)
	for id, n := range created {
		require.Equal(t, 1, n, "%s created once", id)
	}
	require.Equal(t, 1, enq.commit.flights(), "every streamed call gave its flight back")
	insp := asynq.NewInspectorFromRedisClient(rdb)
	pending, err := insp.ListPendingTasks(QueueCritical, asynq.PageSize(100))
	require.NoError(t, err)
	require.Len(t, pending, ids, "one task per message")

	if redistest.Enabled() {
		// The script cache flushed: the stream's EVALSHA gets NOSCRIPT, and the script
		// is sent again.
		require.NoError(t, rdb.ScriptFlush(context.Background()).Err())
		res, err := enq.Enqueue(context.Background(), EnqueueRequest{ID: "after-flush", Message: msg})
		require.NoError(t, err)
		require.False(t, res.Duplicate)
	}
}

// TestEnqueueStreamCancelled: a concurrent call whose context has ended is not
// written.
func TestEnqueueStreamCancelled(t *testing.T) {
	rdb := redistest.New(t)
	enq := streamed(t, rdb)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := enq.Enqueue(ctx, EnqueueRequest{ID: "gone", Message: provider.Message{SourceAddr: "Shop",
		DestinationAddr: "380501234567", MessageType: provider.TypeText, Text: "Hello", SourceType: provider.SourceTransactional}})
	require.ErrorIs(t, err, context.Canceled)
	n, err := rdb.Exists(context.Background(), enq.store.Key("gone")).Result()
	require.NoError(t, err)
	require.Zero(t, n)
	require.Equal(t, 1, enq.commit.flights())
}

// TestEnqueueStreamRedisDown: concurrent calls that cannot reach Redis through the
// stream get an error each; nothing hangs and every flight is given back.
func TestEnqueueStreamRedisDown(t *testing.T) {
	rdb := DeadRedis(t)
	enq := streamed(t, rdb)
	msg := provider.Message{SourceAddr: "Shop", DestinationAddr: "380501234567", MessageType: provider.TypeText,
		Text: "Hello", SourceType: provider.SourceTransactional}
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			_, err := enq.Enqueue(context.Background(), EnqueueRequest{ID: fmt.Sprintf("m-%d", i), Message: msg})
			errs <- err
		}()
	}
	for range 8 {
		err := recv(t, errs)
		require.Error(t, err)
		var ve *provider.ValidationError
		require.False(t, errors.As(err, &ve))
	}
	require.Equal(t, 1, enq.commit.flights())
}
