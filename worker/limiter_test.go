package worker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/tasks/redistest"
)

// TestLimiterSharedRate runs two Limiter values on one Redis (two "processes") with
// several goroutines each, and checks that the tokens taken together never exceed the
// global rate: over the elapsed time T at most rate·T + burst (GCRA). It uses the real
// Redis when VIBERQ_TEST_REDIS_URL is set, else miniredis (which runs the reservation
// script, TIME included).
func TestLimiterSharedRate(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	const rate = 40
	m, err := NewMetrics(nil)
	require.NoError(t, err)
	a := NewLimiter(rdb, "viberq:test:", BucketSend, rate, 1, m)
	b := NewLimiter(rdb, "viberq:test:", BucketSend, rate, 1, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	var (
		mu    sync.Mutex
		times []time.Time
		wg    sync.WaitGroup
	)
	start := time.Now()
	for i := range 6 {
		l := a
		if i%2 == 1 {
			l = b
		}
		wg.Go(func() {
			for {
				if _, err := l.Wait(ctx); err != nil {
					require.ErrorIs(t, err, context.DeadlineExceeded)
					return
				}
				mu.Lock()
				times = append(times, time.Now())
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	require.NotEmpty(t, times)
	limit := int(elapsed.Seconds()*rate) + 1
	require.LessOrEqual(t, len(times), limit, "took %d tokens in %s at %d/s", len(times), elapsed, rate)
	// In every window of one second (sliding), at most rate + burst(1) tokens.
	require.LessOrEqual(t, maxInWindow(times, time.Second), rate+1)
}

// maxInWindow returns the largest number of times within any window of length w.
func maxInWindow(ts []time.Time, w time.Duration) int {
	best := 0
	sorted := append([]time.Time(nil), ts...)
	for i := 1; i < len(sorted); i++ { // insertion sort: small inputs
		for j := i; j > 0 && sorted[j].Before(sorted[j-1]); j-- {
			sorted[j], sorted[j-1] = sorted[j-1], sorted[j]
		}
	}
	j := 0
	for i := range sorted {
		for sorted[i].Sub(sorted[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

func TestLimiterPauseHonoured(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	l := NewLimiter(rdb, "viberq:", BucketSend, 1000, 1, nil)
	other := NewLimiter(rdb, "viberq:", BucketSend, 1000, 1, nil) // another process
	ctx := context.Background()

	require.NoError(t, l.Pause(ctx, 400*time.Millisecond))
	left, err := other.Paused(ctx)
	require.NoError(t, err)
	require.Greater(t, left, 300*time.Millisecond)

	// A shorter pause never shortens a longer one.
	require.NoError(t, other.Pause(ctx, 10*time.Millisecond))
	left, err = l.Paused(ctx)
	require.NoError(t, err)
	require.Greater(t, left, 300*time.Millisecond)

	start := time.Now()
	_, err = other.Wait(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "Wait must not return while paused")

	left, err = l.Paused(ctx)
	require.NoError(t, err)
	require.Zero(t, left)
	require.NoError(t, l.Pause(ctx, 0)) // no-op
	left, err = l.Paused(ctx)
	require.NoError(t, err)
	require.Zero(t, left)
}

func TestLimiterContext(t *testing.T) {
	t.Parallel()
	_, rdb := redistest.Mini(t)
	l := NewLimiter(rdb, "viberq:", BucketStatus, 10, 1, nil)

	t.Run("CancelWhilePaused", func(t *testing.T) {
		require.NoError(t, l.Pause(context.Background(), time.Minute))
		t.Cleanup(func() { require.NoError(t, l.Reset(context.Background())) })
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { _, err := l.Wait(ctx); done <- err }()
		cancel()
		select {
		case err := <-done:
			require.ErrorIs(t, err, context.Canceled)
		case <-time.After(5 * time.Second):
			t.Fatal("Wait ignored the cancelled context")
		}
	})
	t.Run("DeadlineBeforeToken", func(t *testing.T) {
		require.NoError(t, l.Pause(context.Background(), time.Minute))
		t.Cleanup(func() { require.NoError(t, l.Reset(context.Background())) })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		_, err := l.Wait(ctx)
		var le *LimitedError
		require.ErrorAs(t, err, &le)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, BucketStatus, le.Bucket)
		require.Greater(t, le.Wait, 10*time.Second)
		require.Less(t, time.Since(start), 5*time.Second, "must give up at once, not wait for the deadline")
	})
	t.Run("AlreadyDone", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := l.Wait(ctx)
		require.ErrorIs(t, err, context.Canceled)
	})
}

func TestLimiterUnlimitedAndRedisDown(t *testing.T) {
	t.Parallel()
	mr, rdb := redistest.Mini(t)
	l := NewLimiter(rdb, "viberq:", BucketSend, 0, 1, nil)
	var n atomic.Int64
	for range 100 {
		_, err := l.Wait(context.Background())
		require.NoError(t, err)
		n.Add(1)
	}
	require.EqualValues(t, 100, n.Load())

	mr.Close()
	_, err := l.Wait(context.Background())
	require.Error(t, err)
	require.False(t, errors.Is(err, context.DeadlineExceeded))
}

func TestLimiterInterval(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		rate  float64
		burst int
		iv    time.Duration
		wantB int
	}{
		{50, 1, 20 * time.Millisecond, 1},
		{0.5, 2, 2 * time.Second, 2},
		{2.5, 0, 400 * time.Millisecond, 1},
		{0, 1, 0, 1},
	} {
		l := NewLimiter(nil, "p:", BucketSend, tt.rate, tt.burst, nil)
		require.Equal(t, tt.iv, l.interval, "rate %v", tt.rate)
		_, b := l.Rate()
		require.Equal(t, tt.wantB, b)
	}
}

// TestLimiterWaitersDoNotPollRedis: every waiter reserves its own slot and sleeps until
// it, so the script calls stay close to the tokens taken however many wait (a polling
// limiter makes every waiter ask again every few milliseconds).
func TestLimiterWaitersDoNotPollRedis(t *testing.T) {
	t.Parallel()
	_, rdb := redistest.Mini(t)
	calls := &commandCounter{}
	rdb.AddHook(calls)
	const rate, waiters = 20, 30
	l := NewLimiter(rdb, "viberq:", BucketSend, rate, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var taken atomic.Int64
	var wg sync.WaitGroup
	for range waiters {
		wg.Go(func() {
			for {
				if _, err := l.Wait(ctx); err != nil {
					return
				}
				taken.Add(1)
			}
		})
	}
	wg.Wait()
	require.Greater(t, taken.Load(), int64(rate), "tokens were taken")
	// Each token costs one reservation and one pause check after the sleep; a waiter
	// beyond the horizon asks about once more per half horizon, and each ctx deadline
	// costs one more. A polling limiter makes ~900 calls here.
	n := calls.n.Load()
	require.Less(t, n, taken.Load()*3+waiters*4, "script calls %d for %d tokens", n, taken.Load())
}

// commandCounter is a go-redis hook counting the commands a client sends.
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// TestLimiterPauseDuringSleepToSlot: a 429 that pauses the bucket while a caller
// sleeps towards its reserved slot stops that caller too; it sends after the pause.
func TestLimiterPauseDuringSleepToSlot(t *testing.T) {
	t.Parallel()
	_, rdb := redistest.Mini(t)
	l := NewLimiter(rdb, "viberq:", BucketSend, 2, 1, nil) // a slot every 500 ms
	ctx := context.Background()
	_, err := l.Wait(ctx) // takes the first slot at once
	require.NoError(t, err)
	go func() {
		time.Sleep(100 * time.Millisecond)
		_ = l.Pause(ctx, 1500*time.Millisecond)
	}()
	start := time.Now()
	_, err = l.Wait(ctx) // reserves the slot at +500 ms, then finds the pause
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 1500*time.Millisecond, "sent into the pause")
}
