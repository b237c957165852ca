package worker

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/tasks/redistest"
)

// slotLog records, through Limiter.onSlot, the slot each successful Wait returned on
// and its lateness (both on the Redis clock).
type slotLog struct {
	mu    sync.Mutex
	slots []int64 // µs
	sends []int64 // µs: slot + lateness, an upper bound of the return on Redis's clock
	late  []time.Duration
}

func (s *slotLog) hook(slotUS int64, late time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slots = append(s.slots, slotUS)
	s.sends = append(s.sends, slotUS+late.Microseconds())
	s.late = append(s.late, late)
}

func usTimes(us []int64) []time.Time {
	out := make([]time.Time, len(us))
	for i, u := range us {
		out[i] = time.UnixMicro(u)
	}
	return out
}

// TestLimiterSharedRate runs two Limiter values on one Redis (two "processes") with
// several goroutines each, and checks what the limiter guarantees, on the Redis clock
// and independent of how the scheduler ran the goroutines: the slots handed out are
// distinct and spaced by at least the emission interval; every Wait returned within
// the late tolerance of its slot (a later wake-up gives the slot up); hence no window
// of one second holds more than rate + 1 returns. (It used to compare the test's own
// clock after Wait returned, which a loaded machine could push to 42 in a second at
// 40/s.) It uses the real Redis when VIBERQ_TEST_REDIS_URL is set, else miniredis.
func TestLimiterSharedRate(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	const rate = 40
	m, err := NewMetrics(nil)
	require.NoError(t, err)
	log := &slotLog{}
	a := NewLimiter(rdb, "viberq:test:", BucketSend, rate, 1, m)
	b := NewLimiter(rdb, "viberq:test:", BucketSend, rate, 1, nil)
	a.onSlot, b.onSlot = log.hook, log.hook

	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 6 {
		l := a
		if i%2 == 1 {
			l = b
		}
		wg.Go(func() { // assert, not require: FailNow must run on the test's goroutine
			for {
				if _, err := l.Wait(ctx); err != nil {
					assert.ErrorIs(t, err, context.DeadlineExceeded)
					return
				}
			}
		})
	}
	wg.Wait()
	require.NotEmpty(t, log.slots)
	checkSlots(t, log, a.interval, a.lateTolerance(), rate)
}

// checkSlots asserts the limiter's guarantee over the recorded slots.
func checkSlots(t *testing.T, log *slotLog, iv, tolerance time.Duration, rate int) {
	t.Helper()
	slots := append([]int64(nil), log.slots...)
	slices.Sort(slots)
	for i := 1; i < len(slots); i++ {
		require.GreaterOrEqual(t, slots[i]-slots[i-1], iv.Microseconds(), "slots %d and %d closer than the interval", i-1, i)
	}
	for _, l := range log.late {
		require.GreaterOrEqual(t, l, time.Duration(0))
		require.LessOrEqual(t, l, tolerance, "Wait returned later than the tolerance after its slot")
	}
	require.LessOrEqual(t, maxInWindow(usTimes(log.sends), time.Second), rate+1)
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

// redisMS returns Redis's clock in Unix ms, as the pause scripts read it (TIME,
// truncated to the millisecond).
func redisMS(t *testing.T, rdb redis.UniversalClient) int64 {
	t.Helper()
	tm, err := rdb.Time(context.Background()).Result()
	require.NoError(t, err)
	return tm.UnixMilli()
}

// TestLimiterPauseHonoured: a pause set by one process is seen by another, is never
// shortened by a shorter one, and no Wait returns on a slot inside it. Checked on the
// Redis clock, where the pause lives (its key holds the end in Unix ms, compared with
// TIME), by bracketing each call between two reads of that clock: what the limiter
// guarantees holds however long the scheduler took between the calls (a stall longer
// than the pause only makes the bounds looser, never false).
func TestLimiterPauseHonoured(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	l := NewLimiter(rdb, "viberq:", BucketSend, 1000, 1, nil)
	other := NewLimiter(rdb, "viberq:", BucketSend, 1000, 1, nil) // another process
	log := &slotLog{}
	other.onSlot = log.hook
	ctx := context.Background()

	const pause = 400 * time.Millisecond
	before := redisMS(t, rdb)
	require.NoError(t, l.Pause(ctx, pause))
	// The pause ends pause after the script read the clock: no sooner than
	// before+pause. Paused is the time from its own read of the clock to that end.
	ends := before + pause.Milliseconds()
	checkLeft := func(left time.Duration, readBy int64) {
		t.Helper()
		require.LessOrEqual(t, left, pause)
		require.GreaterOrEqual(t, left.Milliseconds(), ends-readBy, "the pause ends no sooner than %d", ends)
	}
	left, err := other.Paused(ctx)
	require.NoError(t, err)
	checkLeft(left, redisMS(t, rdb))

	// A shorter pause never shortens a longer one.
	require.NoError(t, other.Pause(ctx, 10*time.Millisecond))
	left, err = l.Paused(ctx)
	require.NoError(t, err)
	checkLeft(left, redisMS(t, rdb))

	// Wait returns on a slot after the pause: it reserves none while the pause key's
	// end is ahead of Redis's clock.
	_, err = other.Wait(ctx)
	require.NoError(t, err)
	require.Len(t, log.slots, 1)
	require.GreaterOrEqual(t, log.slots[0], ends*1000, "Wait returned on a slot inside the pause")

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
	calls := &redistest.Counter{}
	rdb.AddHook(calls)
	const rate, waiters = 20, 30
	l := NewLimiter(rdb, "viberq:", BucketSend, rate, 1, nil)
	var taken atomic.Int64
	// Windows of 1.5 s, one more while none was taken: how many tokens are taken
	// depends on the scheduler (a waiter that wakes late gives its slot up, and a
	// machine loaded enough, as CI's race run of every package at once, can make
	// every waiter late for a whole window); that some were is what matters here.
	windows := 0
	for ; windows < 5 && taken.Load() == 0; windows++ {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
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
		cancel()
	}
	require.Positive(t, taken.Load(), "tokens were taken (%d windows of 1.5 s)", windows)
	// Each slot reserved (at most rate × 1.5 s + 1 a window, whether used or given up
	// by a waiter that woke late on a loaded machine) costs one reservation and one
	// pause check after the sleep; a waiter beyond the horizon asks about once more
	// per half horizon, and each ctx deadline costs one more. A polling limiter makes
	// ~900 calls a window here. (Bounded by what the bucket can hand out, not by the
	// tokens taken, which depend on the scheduler.)
	n := calls.Commands.Load()
	require.Less(t, n, int64(windows)*(int64(rate*3/2+1)*3+waiters*4), "script calls %d for %d tokens in %d windows", n, taken.Load(), windows)
}

// TestLimiterPauseDuringSleepToSlot: a 429 that pauses the bucket while a caller
// sleeps towards its reserved slot stops that caller too; it sends after the pause.
// The pause is set at a known point instead of after a sleep of the test's own: the
// limiter's clock hook sets it when the caller wakes for its slot, after the
// reservation and before the caller re-checks the pause. Checked on the Redis clock:
// the slot Wait returned on (onSlot) lies after the end of the pause.
func TestLimiterPauseDuringSleepToSlot(t *testing.T) {
	t.Parallel()
	_, rdb := redistest.Mini(t)
	l := NewLimiter(rdb, "viberq:", BucketSend, 2, 1, nil) // a slot every 500 ms
	ctx := context.Background()
	_, err := l.Wait(ctx) // takes the first slot at once
	require.NoError(t, err)
	firstTAT, err := rdb.Get(ctx, l.tatKey).Int64()
	require.NoError(t, err)

	const pause = time.Second
	var (
		calls   atomic.Int64
		pauseAt atomic.Int64 // Redis ms read just before the pause was set
	)
	l.now = func() time.Time {
		// Wait with a context without deadline reads the clock at its start (call
		// 1), before the reservation (call 2) and when it wakes for the slot (call
		// 3): the pause comes then, while the slot is reserved and not yet used.
		if calls.Add(1) == 3 {
			tat, err := rdb.Get(ctx, l.tatKey).Int64()
			require.NoError(t, err)
			require.Greater(t, tat, firstTAT, "the second slot is reserved before the pause")
			pauseAt.Store(redisMS(t, rdb))
			require.NoError(t, l.Pause(ctx, pause))
		}
		return time.Now()
	}
	log := &slotLog{}
	l.onSlot = log.hook
	_, err = l.Wait(ctx) // reserves the slot at +500 ms, wakes, finds the pause
	require.NoError(t, err)
	require.GreaterOrEqual(t, calls.Load(), int64(3), "the pause was set")
	require.Len(t, log.slots, 1)
	end := pauseAt.Load() + pause.Milliseconds() // no sooner than this
	require.GreaterOrEqual(t, log.slots[0], end*1000, "sent into the pause")
}

// TestLimiterLateWakeGivesSlotUp: a caller whose clock says it woke more than the
// tolerance after its slot (here: a clock that jumps 300 ms between the reservation
// and the wake-up, as a stalled process would see) does not use the slot; it reserves
// the next one. Checked on the TAT, not on timing.
func TestLimiterLateWakeGivesSlotUp(t *testing.T) {
	t.Parallel()
	_, rdb := redistest.Mini(t)
	l := NewLimiter(rdb, "viberq:", BucketSend, 10, 1, nil) // 100 ms interval
	log := &slotLog{}
	l.onSlot = log.hook
	var calls atomic.Int64
	l.now = func() time.Time {
		// Call 1: start of Wait; call 2: asked (first reservation); call 3: the
		// wake-up check of the first slot, 300 ms late; later calls: real time + 300 ms.
		if calls.Add(1) >= 3 {
			return time.Now().Add(300 * time.Millisecond)
		}
		return time.Now()
	}
	_, err := l.Wait(context.Background())
	require.NoError(t, err)
	require.Len(t, log.slots, 1)
	tat, err := rdb.Get(context.Background(), l.tatKey).Int64()
	require.NoError(t, err)
	// Two slots were reserved (the TAT is two intervals past the first), and the one
	// used is the second: one interval before the TAT.
	require.Equal(t, tat-l.interval.Microseconds(), log.slots[0])
	require.LessOrEqual(t, log.late[0], l.lateTolerance())
}

// TestLimiterFloorSurvivesLostTAT: Redis loses the bucket's TAT (a restart without
// persistence, a flush) while this process holds slots up to a second ahead: the
// next reservation still comes after them, never on top of them.
func TestLimiterFloorSurvivesLostTAT(t *testing.T) {
	t.Parallel()
	_, rdb := redistest.Mini(t)
	ctx := context.Background()
	l := NewLimiter(rdb, "viberq:", BucketSend, 10, 1, nil)
	// Reserve 8 slots ahead (800 ms), as 8 waiters would, then lose the TAT.
	var last int64
	for range 8 {
		res, err := reserveScript.Run(ctx, rdb, []string{l.tatKey, l.pauseKey}, l.interval.Microseconds(), 1, maxAhead.Microseconds(), l.lastTAT.Load()).Int64Slice()
		require.NoError(t, err)
		require.EqualValues(t, 1, res[0])
		l.raiseFloor(res[3])
		last = res[2]
	}
	require.NoError(t, rdb.Del(ctx, l.tatKey).Err())
	log := &slotLog{}
	l.onSlot = log.hook
	_, err := l.Wait(ctx)
	require.NoError(t, err)
	require.Len(t, log.slots, 1)
	require.GreaterOrEqual(t, log.slots[0]-last, l.interval.Microseconds(), "a slot handed out again after the TAT was lost")
}

// TestLimiterBulkLeavesRoomForPriority: promotional callers (WaitBulk) reserve at most
// bulkAhead ahead, so a transactional caller (Wait) that arrives behind any backlog of
// them gets a slot within bulkAhead plus one interval. The reservation arithmetic is
// checked directly; without the shorter horizon the backlog would hold a full second.
func TestLimiterBulkLeavesRoomForPriority(t *testing.T) {
	t.Parallel()
	_, rdb := redistest.Mini(t)
	ctx := context.Background()
	l := NewLimiter(rdb, "viberq:", BucketSend, 50, 1, nil) // 20 ms interval
	reserve := func(ahead time.Duration) []int64 {
		res, err := reserveScript.Run(ctx, rdb, []string{l.tatKey, l.pauseKey}, l.interval.Microseconds(), 1, ahead.Microseconds(), 0).Int64Slice()
		require.NoError(t, err)
		return res
	}
	bulk := 0
	for { // a promotional backlog reserves until its horizon is full
		res := reserve(bulkAhead)
		if res[0] != 1 {
			require.EqualValues(t, 0, res[0])
			break
		}
		bulk++
		require.Less(t, bulk, 1000)
	}
	require.GreaterOrEqual(t, bulk, int(bulkAhead/l.interval)-1)
	res := reserve(maxAhead)
	require.EqualValues(t, 1, res[0], "the transactional caller reserves at once")
	require.LessOrEqual(t, time.Duration(res[1])*time.Microsecond, bulkAhead+l.interval)
	// WaitBulk itself waits for room rather than reserve beyond its horizon.
	_, err := l.WaitBulk(ctx)
	require.NoError(t, err)
}

// TestRedisClockBound: the local time of a slot is never later than the true one (so
// the lateness measured from it is never too small), and one fast round trip in the
// window makes it tight even for a reply that queued 50 ms before Redis ran it.
func TestRedisClockBound(t *testing.T) {
	t.Parallel()
	var c redisClock
	epoch := time.Now()
	const offset = int64(1_700_000_000_000_000) // Redis's clock, µs, at epoch
	at := func(d time.Duration) int64 { return offset + d.Microseconds() }

	// A fast call: Redis ran the script 200 µs after the request left.
	slot := c.slot(epoch, at(200*time.Microsecond), at(200*time.Microsecond))
	require.False(t, slot.After(epoch.Add(200*time.Microsecond)))
	// A slow one: queued 50 ms before Redis ran it; the slot is 10 ms after that.
	asked := epoch.Add(time.Second)
	trueSlot := asked.Add(60 * time.Millisecond)
	got := c.slot(asked, at(time.Second+50*time.Millisecond), at(time.Second+60*time.Millisecond))
	require.False(t, got.After(trueSlot), "the bound is later than the true slot")
	require.LessOrEqual(t, trueSlot.Sub(got), 200*time.Microsecond, "not tight: %s", trueSlot.Sub(got))
	// Without a fast call in the window (a new window starts), the bound is the
	// request's departure plus the wait: still never later than the true slot.
	asked = epoch.Add(redisClockWindow + 2*time.Second)
	trueSlot = asked.Add(60 * time.Millisecond)
	got = c.slot(asked, at(redisClockWindow+2*time.Second+50*time.Millisecond), at(redisClockWindow+2*time.Second+60*time.Millisecond))
	require.False(t, got.After(trueSlot))
	require.Equal(t, asked.Add(10*time.Millisecond), got)
}
