package worker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
)

// testClock is a settable clock for the worker (the store keeps real time, so records
// are scored with real creation times and the worker's clock moves past them).
type testClock struct {
	mu sync.Mutex
	d  time.Duration
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.d)
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.d += d
}

const testPeriod = 10 * time.Second

// setupReconcile returns a worker on a reserved real Redis database, its clock and a
// reconciler with a 10 s period (swept by hand).
func setupReconcile(t *testing.T) (*testBundle, *testClock, *Reconciler) {
	t.Helper()
	clk := &testClock{}
	cfg := testConfig()
	cfg.Reconcile = ReconcileConfig{Period: testPeriod, Batch: 100}
	b := setup(t, setupOpts{rdb: redistest.Client(t), cfg: &cfg, now: clk.now})
	return b, clk, NewReconciler(b.w)
}

func sweep(t *testing.T, r *Reconciler) SweepResult {
	t.Helper()
	res, err := r.Sweep(context.Background())
	require.NoError(t, err)
	require.True(t, res.Leader)
	return res
}

func (b *testBundle) lastEvent(t *testing.T, id string) tasks.Event {
	t.Helper()
	evs, err := b.store.Events(context.Background(), "-", 10000)
	require.NoError(t, err)
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].ID == id {
			return evs[i]
		}
	}
	t.Fatalf("no event of %s", id)
	return tasks.Event{}
}

// A send task deleted in the Asynq UI leaves its record queued with nothing to finish
// it; the reconciler ends it cancelled, with an event and a metric, once the record
// has gone a period unchecked — and not before.
func TestReconcileDeletedTaskCancelled(t *testing.T) {
	t.Parallel()
	b, clk, r := setupReconcile(t)
	b.newSend(t, "del-1", transactional(), time.Now().Add(time.Hour))
	require.NoError(t, b.insp.DeleteTask(tasks.QueueCritical, "del-1"), "delete as the Asynq UI does")

	// The case: queued, no task, nothing will ever run it.
	_, err := b.insp.GetTaskInfo(tasks.QueueCritical, "del-1")
	require.ErrorIs(t, err, asynq.ErrTaskNotFound)
	require.Equal(t, tasks.StateQueued, b.record(t, "del-1").State)
	res := sweep(t, r)
	require.Zero(t, res.Checked, "a record younger than a period is not looked at")
	require.Equal(t, tasks.StateQueued, b.record(t, "del-1").State)

	clk.add(testPeriod + time.Second)
	res = sweep(t, r)
	require.Equal(t, 1, res.Checked)
	require.Equal(t, map[string]int{RepairCancelled: 1}, res.Repairs)
	rec := b.record(t, "del-1")
	require.Equal(t, tasks.StateCancelled, rec.State)
	require.Equal(t, tasks.SettledByReconciler, rec.SettledBy)
	require.Contains(t, rec.Error, "send task gone")
	ev := b.lastEvent(t, "del-1")
	require.Equal(t, tasks.StateQueued, ev.From)
	require.Equal(t, tasks.StateCancelled, ev.To)
	require.InDelta(t, 1, metricValue(t, b.m.repairs.WithLabelValues(RepairCancelled)), 0)
	n, err := b.store.NonFinalCount(context.Background())
	require.NoError(t, err)
	require.Zero(t, n, "a final record leaves the index")
	require.Len(t, b.logs.lines(t, "reconciler repaired a record"), 1)
}

// A record whose task never got written (an enqueue that died between the two) is
// the same orphan: cancelled before its TTL, expired after it.
func TestReconcileOrphanRecords(t *testing.T) {
	t.Parallel()
	b, clk, r := setupReconcile(t)
	ctx := context.Background()
	for _, c := range []struct {
		id  string
		ttl time.Duration
	}{{"orphan-live", time.Hour}, {"orphan-late", 5 * time.Second}} {
		now := time.Now()
		a := tasks.SendArgs{V: tasks.PayloadVersion, ID: c.id, Message: transactional(), ExpiresAt: now.Add(c.ttl), EnqueuedAt: now}
		_, _, err := b.store.Create(ctx, tasks.NewRecord(a, now), tasks.PayloadHash(a.Message, c.ttl))
		require.NoError(t, err)
	}
	clk.add(testPeriod + time.Second)
	res := sweep(t, r)
	require.Equal(t, map[string]int{RepairCancelled: 1, RepairExpired: 1}, res.Repairs)
	require.Equal(t, tasks.StateCancelled, b.record(t, "orphan-live").State)
	require.Equal(t, tasks.StateExpired, b.record(t, "orphan-late").State)
}

// A queued record with its task waiting is left alone until its TTL has passed by a
// period with no worker on it (a paused queue); then it is expired, not left forever.
func TestReconcileQueuedWaitingThenExpired(t *testing.T) {
	t.Parallel()
	b, clk, r := setupReconcile(t)
	b.newSend(t, "wait-1", promotional(), time.Now().Add(20*time.Second))
	clk.add(testPeriod + time.Second)
	res := sweep(t, r)
	require.Equal(t, 1, res.Checked)
	require.Empty(t, res.Repairs)
	require.Equal(t, tasks.StateQueued, b.record(t, "wait-1").State)

	clk.add(testPeriod - time.Second) // checked just now: not due again yet; TTL just passed
	require.Zero(t, sweep(t, r).Checked)
	clk.add(testPeriod + 2*time.Second) // TTL passed by 12 s > period
	res = sweep(t, r)
	require.Equal(t, map[string]int{RepairExpired: 1}, res.Repairs)
	require.Equal(t, tasks.StateExpired, b.record(t, "wait-1").State)

	// The task, when a worker finally takes it, finds the record final and sends nothing.
	_, task := b.newSendTaskOnly(t, "wait-1", promotional(), time.Now().Add(20*time.Second))
	require.NoError(t, b.process(t, task))
	require.Zero(t, b.sends())
	require.Equal(t, tasks.StateExpired, b.record(t, "wait-1").State)
}

// newSendTaskOnly builds a send task without touching the record.
func (b *testBundle) newSendTaskOnly(t *testing.T, id string, m provider.Message, expiresAt time.Time) (tasks.SendArgs, *asynq.Task) {
	t.Helper()
	a := tasks.SendArgs{V: tasks.PayloadVersion, ID: id, Message: m, ExpiresAt: expiresAt, EnqueuedAt: time.Now()}
	task, err := tasks.NewSendTask(a)
	require.NoError(t, err)
	return a, task
}

// A record left in sending with no send task (its worker died and the task was then
// deleted, or archived) may have been sent: unknown. With its task still waiting to
// run again, the handler settles it, so the reconciler leaves it.
func TestReconcileSendingWithoutTask(t *testing.T) {
	t.Parallel()
	b, clk, r := setupReconcile(t)
	ctx := context.Background()
	b.newSend(t, "send-gone", transactional(), time.Now().Add(time.Hour))
	b.newSend(t, "send-waiting", transactional(), time.Now().Add(time.Hour))
	for _, id := range []string{"send-gone", "send-waiting"} {
		_, ok, err := b.store.Transition(ctx, id, []tasks.State{tasks.StateQueued}, tasks.StateSending, tasks.Update{IncAttempts: true})
		require.NoError(t, err)
		require.True(t, ok)
	}
	require.NoError(t, b.insp.DeleteTask(tasks.QueueCritical, "send-gone"))
	clk.add(testPeriod + time.Second)
	res := sweep(t, r)
	require.Equal(t, map[string]int{RepairUnknown: 1}, res.Repairs)
	require.Equal(t, tasks.StateUnknown, b.record(t, "send-gone").State)
	require.Equal(t, tasks.StateSending, b.record(t, "send-waiting").State)
	require.InDelta(t, 1, metricValue(t, b.m.unknown), 0)
}

// An accepted message whose poll task is gone (deleted in the UI, or its scheduling
// failed and nothing retried it) is never polled; the reconciler schedules a poll,
// and the poll settles it. One with a live poll is left alone.
func TestReconcileAcceptedWithoutPoll(t *testing.T) {
	t.Parallel()
	b, clk, r := setupReconcile(t)
	a, task := b.newSend(t, "acc-1", transactional(), time.Now().Add(time.Hour))
	require.NoError(t, b.process(t, task))
	require.Equal(t, tasks.StateAccepted, b.record(t, "acc-1").State)

	// Due in the due-poll set: that counts as a poll, nothing to repair.
	clk.add(testPeriod + time.Second)
	res := sweep(t, r)
	require.Equal(t, 1, res.Checked)
	require.Empty(t, res.Repairs)

	// The entry lost (say, dispatched and the poll task deleted in the UI): repaired.
	require.NoError(t, b.rdb.ZRem(context.Background(), b.w.dueKey(), "acc-1").Err())
	clk.add(testPeriod + time.Second)
	res = sweep(t, r)
	require.Equal(t, map[string]int{RepairPoll: 1}, res.Repairs)
	pa, poll := b.pollTask(t, "acc-1", 0)
	require.Equal(t, b.record(t, "acc-1").ProviderMessageID, pa.ProviderMessageID)
	require.Equal(t, a.Message.HasSMSFallback(), pa.HasSMS)

	// With that poll live, a later sweep changes nothing.
	clk.add(testPeriod + time.Second)
	res = sweep(t, r)
	require.Equal(t, 1, res.Checked)
	require.Empty(t, res.Repairs)

	// The scheduled poll asks the provider.
	require.Zero(t, b.statusCalls())
	require.NoError(t, b.process(t, poll))
	require.EqualValues(t, 1, b.statusCalls())
}

// A record the reconciler cannot read (here a corrupt polls field) does not stop the
// sweep: it goes to the back of the index, and the records after it are still
// repaired. Before, every sweep ended at it, and nothing behind it was ever checked.
func TestReconcileSkipsUnreadableRecord(t *testing.T) {
	t.Parallel()
	b, clk, r := setupReconcile(t)
	ctx := context.Background()
	b.newSend(t, "bad", transactional(), time.Now().Add(time.Hour))
	require.NoError(t, b.rdb.HSet(ctx, b.store.Key("bad"), "polls", "x").Err())
	require.NoError(t, b.rdb.ZAdd(ctx, b.store.NonFinalKey(), redis.Z{Score: 1, Member: "bad"}).Err()) // the oldest
	_, task := b.newSend(t, "acc-2", transactional(), time.Now().Add(time.Hour))
	require.NoError(t, b.process(t, task))
	require.NoError(t, b.rdb.ZRem(ctx, b.w.dueKey(), "acc-2").Err()) // its first poll lost

	clk.add(testPeriod + time.Second)
	before := clk.now().UnixMilli()
	res := sweep(t, r)
	after := clk.now().UnixMilli()
	require.Equal(t, 2, res.Checked)
	require.Equal(t, map[string]int{RepairPoll: 1}, res.Repairs, "the record behind the unreadable one is repaired")
	b.pollTask(t, "acc-2", 0)
	score, err := b.rdb.ZScore(ctx, b.store.NonFinalKey(), "bad").Result()
	require.NoError(t, err, "the unreadable record stays in the index")
	require.True(t, float64(before) <= score && score <= float64(after), "re-scored by the sweep (at %v, sweep %d..%d): checked again after a period", score, before, after)
}

// One leader at a time: a second reconciler does not sweep while the first holds the
// lease, takes over once it resigns, and a leader whose lease was taken stops.
func TestReconcileLeaderLease(t *testing.T) {
	t.Parallel()
	b, _, r1 := setupReconcile(t)
	r2 := NewReconciler(b.w)
	ctx := context.Background()
	res1, err := r1.Sweep(ctx)
	require.NoError(t, err)
	require.True(t, res1.Leader)
	res2, err := r2.Sweep(ctx)
	require.NoError(t, err)
	require.False(t, res2.Leader, "the lease is held")
	require.InDelta(t, 1, metricValue(t, b.m.leader), 0)

	r1.resign()
	res2, err = r2.Sweep(ctx)
	require.NoError(t, err)
	require.True(t, res2.Leader, "free after the leader resigned")
	require.NotEqual(t, r1.token, r2.token, "each election has its own fencing token")

	// Someone else's token in the lease (r2's expired and a third took it): r2 stops.
	require.NoError(t, b.rdb.Set(ctx, r2.leaseKey(), "99:other", time.Minute).Err())
	require.False(t, r2.stillLeader(ctx))
	res2, err = r2.Sweep(ctx)
	require.NoError(t, err)
	require.False(t, res2.Leader)
}

// Run sweeps at once and then one Period after each sweep ended, and a sweep takes
// the records last checked (here: created) a Period or more before it: a task
// deleted in the UI ends its record at the first sweep at least a Period after the
// record was created. That comes within two Periods plus a sweep's own time when
// Run's timer fires on time, which the scheduler does not promise: the 10 s below is
// the deadline of a stuck test (20 Periods), not that promise. What is checked of
// the timing is what the reconciler decides: the record ended no sooner than a
// Period after its creation (FinalAt and CreatedAt are both the store's clock, the
// worker's too here), at the first sweep that took it (it was checked once). And the
// lease is given up when Run returns.
func TestReconcileRunEndsDeletedTask(t *testing.T) {
	t.Parallel()
	const period = 500 * time.Millisecond
	cfg := testConfig()
	cfg.Reconcile = ReconcileConfig{Period: period}
	b := setup(t, setupOpts{rdb: redistest.Client(t), cfg: &cfg})
	b.newSend(t, "run-del", promotional(), time.Now().Add(time.Hour))
	require.NoError(t, b.insp.DeleteTask(tasks.QueueDefault, "run-del"))
	deleted := time.Now()

	ctx, cancel := context.WithCancel(context.Background())
	r := NewReconciler(b.w)
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	// The condition runs off the test's goroutine: no require in it (b.record).
	require.Eventually(t, func() bool {
		rec, err := b.store.Get(context.Background(), "run-del")
		return err == nil && rec.State == tasks.StateCancelled
	}, 10*time.Second, 50*time.Millisecond, "the record of the deleted task was not ended")
	t.Logf("record cancelled %s after the task was deleted (period %s)", time.Since(deleted).Round(time.Millisecond), period)
	cancel()
	<-done
	rec := b.record(t, "run-del")
	require.Equal(t, tasks.StateCancelled, rec.State)
	require.GreaterOrEqual(t, rec.FinalAt.Sub(rec.CreatedAt), period, "ended by a sweep sooner than a Period after the creation")
	require.Equal(t, 1.0, metricValue(t, b.m.checked), "ended by the first sweep that took it")
	require.Equal(t, 1.0, metricValue(t, b.m.repairs.WithLabelValues(RepairCancelled)))
	n, err := b.rdb.Exists(context.Background(), r.leaseKey()).Result()
	require.NoError(t, err)
	require.Zero(t, n, "lease given up")
}

// A sending record whose accepted message_id this process still holds (Redis was
// unreachable when it came back) is not taken for lost: no unknown while the ID is
// known here.
func TestReconcileLeavesHeldAcceptance(t *testing.T) {
	t.Parallel()
	b, clk, r := setupReconcile(t)
	ctx := context.Background()
	b.newSend(t, "held-1", transactional(), time.Now().Add(time.Hour))
	_, ok, err := b.store.Transition(ctx, "held-1", []tasks.State{tasks.StateQueued}, tasks.StateSending, tasks.Update{IncAttempts: true})
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, b.insp.DeleteTask(tasks.QueueCritical, "held-1"))
	require.True(t, b.w.held.add("held-1", 4242))

	clk.add(testPeriod + time.Second)
	res := sweep(t, r)
	require.Equal(t, 1, res.Checked)
	require.Empty(t, res.Repairs)
	require.Equal(t, tasks.StateSending, b.record(t, "held-1").State)

	// Once nothing holds it, the same record is unknown.
	b.w.held.remove("held-1")
	clk.add(testPeriod + time.Second)
	require.Equal(t, map[string]int{RepairUnknown: 1}, sweep(t, r).Repairs)
}
