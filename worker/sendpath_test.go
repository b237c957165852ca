package worker

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
)

func TestPlanSend(t *testing.T) {
	t.Parallel()
	rec := func(st tasks.State, pid int64, polls int) tasks.Record {
		return tasks.Record{ID: "m", State: st, ProviderMessageID: provider.MessageID(pid), Polls: polls}
	}
	tests := []struct {
		desc          string
		rec           tasks.Record
		ttlPassed     bool
		resendUnknown bool
		want          sendPlan
	}{
		{desc: "QueuedIsSent", rec: rec(tasks.StateQueued, 0, 0),
			want: sendPlan{step: stepSend, from: tasks.StateQueued}},
		{desc: "QueuedPastTTLExpires", rec: rec(tasks.StateQueued, 0, 0), ttlPassed: true,
			want: sendPlan{step: stepExpire, reason: "ttl passed before sending"}},
		{desc: "AcceptedUnpolledEnsuresPollNeverResends", rec: rec(tasks.StateAccepted, 7, 0),
			want: sendPlan{step: stepEnsurePoll, reason: "already accepted by the provider; not sent again", note: "first poll ensured"}},
		{desc: "AcceptedUnpolledPastTTLStillEnsuresPoll", rec: rec(tasks.StateAccepted, 7, 0), ttlPassed: true, resendUnknown: true,
			want: sendPlan{step: stepEnsurePoll, reason: "already accepted by the provider; not sent again", note: "first poll ensured"}},
		{desc: "AcceptedPolledDone", rec: rec(tasks.StateAccepted, 7, 2),
			want: sendPlan{step: stepDone, reason: "already accepted by the provider; not sent again"}},
		{desc: "DeliveredDone", rec: rec(tasks.StateDelivered, 7, 1),
			want: sendPlan{step: stepDone, reason: "already accepted by the provider; not sent again"}},
		{desc: "SendingWithHeldIDNeverResent", rec: rec(tasks.StateSending, 7, 0), resendUnknown: true,
			want: sendPlan{step: stepEnsurePoll, reason: "already accepted by the provider; not sent again", note: "first poll ensured"}},
		{desc: "ExpiredDone", rec: rec(tasks.StateExpired, 0, 0),
			want: sendPlan{step: stepDone, reason: "record already final (expired); nothing to do"}},
		{desc: "CancelledDone", rec: rec(tasks.StateCancelled, 0, 0),
			want: sendPlan{step: stepDone, reason: "record already final (cancelled); nothing to do"}},
		{desc: "UnknownDoneEvenWithResend", rec: rec(tasks.StateUnknown, 0, 0), resendUnknown: true,
			want: sendPlan{step: stepDone, reason: "record already final (unknown); nothing to do"}},
		{desc: "SendingIsUnknown", rec: rec(tasks.StateSending, 0, 0),
			want: sendPlan{step: stepUnknown, reason: "found in state sending: a previous attempt may have sent it",
				msg: "previous attempt was interrupted while sending; outcome unknown"}},
		{desc: "SendingResentWithResendUnknown", rec: rec(tasks.StateSending, 0, 0), resendUnknown: true,
			want: sendPlan{step: stepSend, from: tasks.StateSending, note: "found in state sending; resending (ResendUnknown)"}},
		{desc: "SendingPastTTLUnknownEvenWithResend", rec: rec(tasks.StateSending, 0, 0), ttlPassed: true, resendUnknown: true,
			want: sendPlan{step: stepUnknown, reason: "ttl passed before sending after an interrupted attempt",
				msg: "ttl passed before sending after an interrupted attempt; outcome unknown"}},
		{desc: "DroppedIsReRun", rec: rec(tasks.StateDropped, 0, 0),
			want: sendPlan{step: stepSend, from: tasks.StateDropped, rerun: true, note: "re-run of a dropped message"}},
		{desc: "DroppedPastTTLExpires", rec: rec(tasks.StateDropped, 0, 0), ttlPassed: true,
			want: sendPlan{step: stepExpire, reason: "ttl passed before sending"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, planSend(tt.rec, tt.ttlPassed, tt.resendUnknown))
		})
	}
}

// TestSendRoundTrips pins the Redis round trips of a send: the handler makes two (the
// gate: token + queued → sending; the acceptance: accepted + first poll due), so with
// asynq's dequeue and completion a send is four. The hook (limiter_test.go) counts
// commands, a pipeline's one by one: two commands are at most two round trips. A go-redis EVALSHA that Redis does
// not know yet is retried as EVAL (one more, once per script and server): the count
// is taken from the second message on.
func TestSendRoundTrips(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	cfg := testConfig()
	cfg.SendRate, cfg.SendBurst = 1e6, 1000
	b := setup(t, setupOpts{rdb: rdb, cfg: &cfg})
	count := &redistest.Counter{}
	rdb.AddHook(count)

	for i, id := range []string{"rt-warm", "rt-1", "rt-2", "rt-3"} {
		two := promotional()
		if i%2 == 1 {
			two = transactional()
		}
		_, task := b.newSend(t, id, two, time.Now().Add(time.Hour))
		before := count.Commands.Load()
		require.NoError(t, b.process(t, task))
		if i > 0 {
			require.EqualValues(t, 2, count.Commands.Load()-before, "Redis round trips of the send handler for %s", id)
		}
		require.Equal(t, tasks.StateAccepted, b.record(t, id).State)
	}
}

// TestSendGateBothOrNeither: the gate takes a token only with the move to sending.
func TestSendGateBothOrNeither(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := testConfig()
	cfg.SendRate, cfg.SendBurst = 1, 1 // one token, then the next in a second
	b := setup(t, setupOpts{rdb: redistest.New(t), cfg: &cfg})
	tat := func() string { v, _ := b.rdb.Get(ctx, b.w.sendLim.tatKey).Result(); return v }

	// A record that is not queued: nothing written, no token taken.
	a, _ := b.newSend(t, "g-final", transactional(), time.Now().Add(time.Hour))
	_, ok, err := b.store.Transition(ctx, a.ID, []tasks.State{tasks.StateQueued}, tasks.StateCancelled, tasks.Update{})
	require.NoError(t, err)
	require.True(t, ok)
	rec, g, err := b.w.gate(ctx, a)
	require.NoError(t, err)
	require.Equal(t, gateNotReady, g)
	require.Equal(t, tasks.StateCancelled, rec.State)
	require.Empty(t, tat(), "no token taken for a record that is not sent")

	// No record: nothing written.
	_, g, err = b.w.gate(ctx, tasks.SendArgs{ID: "g-none", ExpiresAt: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	require.Equal(t, gateNoRecord, g)
	require.Empty(t, tat())

	// A queued record: the token and sending together.
	a1, _ := b.newSend(t, "g-1", transactional(), time.Now().Add(time.Hour))
	rec, g, err = b.w.gate(ctx, a1)
	require.NoError(t, err)
	require.Equal(t, gateStarted, g)
	require.Equal(t, tasks.StateSending, rec.State)
	require.Equal(t, 1, rec.Attempts)
	taken := tat()
	require.NotEmpty(t, taken)

	// The bucket's next token is a second away: refused, the record returned as it is.
	a2, _ := b.newSend(t, "g-2", transactional(), time.Now().Add(time.Hour))
	rec, g, err = b.w.gate(ctx, a2)
	require.NoError(t, err)
	require.Equal(t, gateNoToken, g)
	require.Equal(t, tasks.StateQueued, rec.State)
	require.Equal(t, taken, tat())

	// Paused by a 429: refused too.
	require.NoError(t, b.w.sendLim.Reset(ctx))
	require.NoError(t, b.w.sendLim.Pause(ctx, time.Minute))
	_, g, err = b.w.gate(ctx, a2)
	require.NoError(t, err)
	require.Equal(t, gateNoToken, g)
	require.Equal(t, tasks.StateQueued, b.record(t, a2.ID).State)
	require.Empty(t, tat())
}

// TestSendGateHonoursFloor: Redis loses the bucket's TAT while this process still
// holds a token (taken by Wait, or by the gate itself): the gate refuses the token
// the floor says is taken, as Wait does (TestLimiterFloorSurvivesLostTAT), instead of
// handing it out a second time.
func TestSendGateHonoursFloor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := testConfig()
	cfg.SendRate, cfg.SendBurst = 0.1, 1 // one token, then the next in 10 s
	b := setup(t, setupOpts{rdb: redistest.New(t), cfg: &cfg})
	l := b.w.sendLim

	// Wait takes the only token free now, then Redis loses the TAT.
	_, err := l.Wait(ctx)
	require.NoError(t, err)
	require.NoError(t, b.rdb.Del(ctx, l.tatKey).Err())
	a1, _ := b.newSend(t, "f-1", transactional(), time.Now().Add(time.Hour))
	rec, g, err := b.w.gate(ctx, a1)
	require.NoError(t, err)
	require.Equal(t, gateNoToken, g, "the gate handed out the token Wait had taken")
	require.Equal(t, tasks.StateQueued, rec.State)

	// The gate's own token raises the floor too (from a clean start: no floor, no TAT).
	l.lastTAT.Store(0)
	require.NoError(t, l.Reset(ctx))
	rec, g, err = b.w.gate(ctx, a1)
	require.NoError(t, err)
	require.Equal(t, gateStarted, g)
	require.Equal(t, tasks.StateSending, rec.State)
	require.NoError(t, b.rdb.Del(ctx, l.tatKey).Err())
	a2, _ := b.newSend(t, "f-2", transactional(), time.Now().Add(time.Hour))
	rec, g, err = b.w.gate(ctx, a2)
	require.NoError(t, err)
	require.Equal(t, gateNoToken, g, "the gate handed out again the token it had taken")
	require.Equal(t, tasks.StateQueued, rec.State)
}

// TestDuePollDispatch: the acceptance makes poll 0 due; the dispatcher enqueues it
// when due, once, and drops the entry of a record settled meanwhile.
func TestDuePollDispatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, setupOpts{rdb: redistest.New(t)})
	a, task := b.newSend(t, "d-1", transactional(), time.Now().Add(time.Hour))
	require.NoError(t, b.process(t, task))
	rec := b.record(t, a.ID)
	score, err := b.rdb.ZScore(ctx, b.w.dueKey(), a.ID).Result()
	require.NoError(t, err)
	due := time.UnixMilli(int64(score))
	require.WithinDuration(t, rec.AcceptedAt.Add(b.w.sched.Policy().First), due, 50*time.Millisecond)

	// Not due yet: nothing enqueued.
	n, err := b.w.dispatchDue(ctx, due.Add(-time.Millisecond))
	require.NoError(t, err)
	require.Zero(t, n)
	_, err = b.insp.GetTaskInfo(tasks.QueueStatus, tasks.PollTaskID(a.ID, 0))
	require.Error(t, err)

	// Due within the lookahead: scheduled at its due time (asynq's whole second at or
	// after it), the entry removed. The delay is taken from the worker's clock and
	// asynq adds it to its own a moment later, so the time the dispatch took (long on a
	// loaded machine) may add to the due time, never more.
	before := time.Now()
	n, err = b.w.dispatchDue(ctx, due)
	took := time.Since(before)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	info, err := b.insp.GetTaskInfo(tasks.QueueStatus, tasks.PollTaskID(a.ID, 0))
	require.NoError(t, err)
	require.False(t, info.NextProcessAt.Before(due.Truncate(time.Second)), "poll 0 at %s, due %s", info.NextProcessAt, due)
	require.True(t, info.NextProcessAt.Before(due.Add(took+time.Second)), "poll 0 at %s, due %s, dispatch took %s", info.NextProcessAt, due, took)
	pa, _ := b.pollTask(t, a.ID, 0)
	require.Equal(t, rec.ProviderMessageID, pa.ProviderMessageID)
	require.Zero(t, pa.Poll)
	require.ErrorIs(t, b.rdb.ZScore(ctx, b.w.dueKey(), a.ID).Err(), redis.Nil)

	// Settled meanwhile (a status callback): the entry goes, no poll.
	a2, task2 := b.newSend(t, "d-2", transactional(), time.Now().Add(time.Hour))
	require.NoError(t, b.process(t, task2))
	_, ok, err := b.store.Transition(ctx, a2.ID, []tasks.State{tasks.StateAccepted}, tasks.StateDelivered, tasks.Update{Channel: tasks.ChannelViber})
	require.NoError(t, err)
	require.True(t, ok)
	n, err = b.w.dispatchDue(ctx, time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = b.insp.GetTaskInfo(tasks.QueueStatus, tasks.PollTaskID(a2.ID, 0))
	require.Error(t, err)
	require.ErrorIs(t, b.rdb.ZScore(ctx, b.w.dueKey(), a2.ID).Err(), redis.Nil)
}
