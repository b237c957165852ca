package tasks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
)

// sendArgsOf returns the payload of the send task of id.
func sendArgsOf(t *testing.T, b *testBundle, queue, id string) (tasks.SendArgs, *asynq.TaskInfo) {
	t.Helper()
	info, err := b.insp.GetTaskInfo(queue, id)
	require.NoError(t, err)
	var a tasks.SendArgs
	require.NoError(t, json.Unmarshal(info.Payload, &a))
	return a, info
}

func requireFields(t *testing.T, err error, fields ...string) *provider.ValidationError {
	t.Helper()
	var ve *provider.ValidationError
	require.ErrorAs(t, err, &ve)
	var got []string
	for _, f := range ve.Fields {
		got = append(got, f.Field)
	}
	require.ElementsMatch(t, fields, got, "violations: %v", ve)
	return ve
}

func TestEnqueueValidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("AllViolationsAtOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t, tasks.EnqueuerConfig{})
		m := transactional()
		m.MessageType = provider.TypeTwoWayText
		m.SourceAddr = ""
		m.Text = ""
		m.DestinationAddr = "+380501234567"
		_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "bad id!", Message: m, TTL: 500 * time.Millisecond})
		// 206 with text_sms is also a text_sms violation (106 + transactional only).
		ve := requireFields(t, err, "id", "ttl", "message_type", "source_addr", "text", "destination_addr", "text_sms")
		require.True(t, ve.Has("message_type"))
		require.Contains(t, err.Error(), "two-way types 206/208 are disabled (VIBERQ_TWO_WAY)")
		require.NotContains(t, err.Error(), "380501234567", "the number is not echoed")
		keys, err := b.rdb.Keys(ctx, "*").Result()
		require.NoError(t, err)
		keys = slices.DeleteFunc(keys, func(k string) bool { return k == redistest.LockKey(b.rdb.Options().DB) })
		require.Empty(t, keys, "nothing written")
	})

	tests := []struct {
		desc   string
		id     string
		ttl    time.Duration
		modify func(*provider.Message)
		fields []string // nil: valid
	}{
		{desc: "IDMaxLength", id: strings.Repeat("a", 128)},
		{desc: "IDTooLong", id: strings.Repeat("a", 129), fields: []string{"id"}},
		{desc: "IDAllowedPunctuation", id: "Order_1.2:3-4"},
		{desc: "IDSlash", id: "a/b", fields: []string{"id"}},
		{desc: "IDSpace", id: "a b", fields: []string{"id"}},
		{desc: "IDUnicode", id: "заказ", fields: []string{"id"}},
		{desc: "TTLMin", ttl: time.Second},
		{desc: "TTLBelowProviderFloor", ttl: 20 * time.Second},
		{desc: "TTLMax", ttl: 6 * time.Hour},
		{desc: "TTLTooShort", ttl: 999 * time.Millisecond, fields: []string{"ttl"}},
		{desc: "TTLTooLong", ttl: 6*time.Hour + time.Second, fields: []string{"ttl"}},
		{desc: "TTLNegative", ttl: -time.Minute, fields: []string{"ttl"}},
		{desc: "ValidityPeriodAsTTLTooShort", modify: func(m *provider.Message) { m.ValidityPeriod = 10 }, fields: []string{"validity_period"}},
		{desc: "ValidityPeriodIgnoredWithTTL", ttl: time.Minute, modify: func(m *provider.Message) { m.ValidityPeriod = 10 }},
		// With text_sms the vendor allows validity_period 40 only: another value is
		// refused naming the field and the rule.
		{desc: "TextSMSValidityPeriod3600", modify: func(m *provider.Message) { m.ValidityPeriod = 3600 }, fields: []string{"validity_period"}},
		{desc: "TextSMSValidityPeriod40", modify: func(m *provider.Message) { m.ValidityPeriod = 40 }},
		{desc: "TwoWayDisabled208", modify: func(m *provider.Message) {
			*m = promotional()
			m.MessageType = provider.TypeTwoWayTextImageButton
		}, fields: []string{"message_type"}},
		{desc: "BadMessageFields", modify: func(m *provider.Message) {
			*m = promotional()
			m.SourceType = 3
			m.ButtonCaption = strings.Repeat("x", 31)
		}, fields: []string{"source_type", "button_caption"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tasks.EnqueuerConfig{})
			m := transactional()
			if tt.modify != nil {
				tt.modify(&m)
			}
			res, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: tt.id, Message: m, TTL: tt.ttl})
			if tt.fields != nil {
				requireFields(t, err, tt.fields...)
				return
			}
			require.NoError(t, err)
			require.False(t, res.Duplicate)
		})
	}

	t.Run("TwoWayEnabled", func(t *testing.T) {
		t.Parallel()
		b := setup(t, tasks.EnqueuerConfig{TwoWay: true})
		m := promotional()
		m.MessageType = provider.TypeTwoWayTextImageButton
		_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{Message: m})
		require.NoError(t, err)
	})
}

func TestEnqueueTTLAndTask(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, tasks.EnqueuerConfig{CallbackURL: "https://hooks.example.com/viber"})
	now := b.clock.Now()

	// Viber + SMS: 40 s by default, critical queue, the configured callback.
	res, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "sms", Message: transactional()})
	require.NoError(t, err)
	require.Equal(t, tasks.EnqueueResult{ID: "sms", Queue: tasks.QueueCritical, ExpiresAt: now.Add(40 * time.Second), State: tasks.StateQueued}, res)
	args, info := sendArgsOf(t, b, tasks.QueueCritical, "sms")
	require.Equal(t, tasks.TypeSend, info.Type)
	require.Equal(t, tasks.DefaultMaxRetry, info.MaxRetry)
	require.Equal(t, time.Hour, info.Retention)
	require.Equal(t, asynq.TaskStatePending, info.State)
	require.Equal(t, tasks.PayloadVersion, args.V)
	require.Equal(t, "https://hooks.example.com/viber", args.Message.CallbackURL)
	require.True(t, args.ExpiresAt.Equal(now.Add(40*time.Second)))
	require.True(t, args.EnqueuedAt.Equal(now))
	rec, err := b.store.Get(ctx, "sms")
	require.NoError(t, err)
	require.Equal(t, res.ExpiresAt, rec.ExpiresAt)
	require.True(t, rec.HasSMS)
	require.Equal(t, tasks.QueueCritical, rec.Queue)

	// Viber only: 1 h by default, default queue, the producer's own callback kept.
	m := promotional()
	m.CallbackURL = "https://mine.example.com/cb"
	res, err = b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "promo", Message: m})
	require.NoError(t, err)
	require.Equal(t, tasks.QueueDefault, res.Queue)
	require.Equal(t, now.Add(time.Hour), res.ExpiresAt)
	args, _ = sendArgsOf(t, b, tasks.QueueDefault, "promo")
	require.Equal(t, "https://mine.example.com/cb", args.Message.CallbackURL)

	// validity_period without a TTL is the TTL, and is not sent as given.
	m = promotional()
	m.ValidityPeriod = 120
	res, err = b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "vp", Message: m})
	require.NoError(t, err)
	require.Equal(t, now.Add(2*time.Minute), res.ExpiresAt)
	args, _ = sendArgsOf(t, b, tasks.QueueDefault, "vp")
	require.Zero(t, args.Message.ValidityPeriod)

	// ... and is the same request as the equal TTL: a duplicate, not a conflict.
	res, err = b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "vp", Message: promotional(), TTL: 2 * time.Minute})
	require.NoError(t, err)
	require.True(t, res.Duplicate)
}

func TestEnqueueIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, tasks.EnqueuerConfig{})

	first, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "order-1", Message: transactional()})
	require.NoError(t, err)
	require.False(t, first.Duplicate)

	b.clock.Add(5 * time.Second)
	again, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "order-1", Message: transactional()})
	require.NoError(t, err)
	require.True(t, again.Duplicate)
	require.Equal(t, first.ID, again.ID)
	require.Equal(t, first.ExpiresAt, again.ExpiresAt, "the first TTL holds")

	pending, err := b.insp.ListPendingTasks(tasks.QueueCritical)
	require.NoError(t, err)
	require.Len(t, pending, 1)
	require.Equal(t, "order-1", pending[0].ID)
	require.Len(t, eventsOf(t, b, "order-1"), 1)

	// Another message under the same key is a conflict, and changes nothing.
	other := transactional()
	other.Text = "Your code is 9999"
	_, err = b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "order-1", Message: other})
	require.ErrorIs(t, err, tasks.ErrIdempotencyConflict)
	require.Contains(t, err.Error(), "order-1")
	_, err = b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "order-1", Message: transactional(), TTL: time.Minute})
	require.ErrorIs(t, err, tasks.ErrIdempotencyConflict, "another TTL")
	args, _ := sendArgsOf(t, b, tasks.QueueCritical, "order-1")
	require.Equal(t, transactional().Text, args.Message.Text)
}

func TestEnqueueRequeuesLostTask(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, tasks.EnqueuerConfig{})
	first, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "lost", Message: transactional()})
	require.NoError(t, err)
	// As if the producer died between the record and the task.
	require.NoError(t, b.insp.DeleteTask(tasks.QueueCritical, "lost"))

	b.clock.Add(10 * time.Second)
	res, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "lost", Message: transactional()})
	require.NoError(t, err)
	require.True(t, res.Duplicate)
	args, _ := sendArgsOf(t, b, tasks.QueueCritical, "lost")
	require.True(t, args.ExpiresAt.Equal(first.ExpiresAt), "original expiry kept")
	require.True(t, args.EnqueuedAt.Equal(b.clock.Now().Add(-10*time.Second)))
	require.Len(t, eventsOf(t, b, "lost"), 1)
}

// A duplicate of a queued message learns from its one script whether the task is
// there: a resubmitted campaign still waiting in the queue costs no second round trip
// per message; only a task really gone is put back, with one more.
func TestEnqueueQueuedDuplicateRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, tasks.EnqueuerConfig{})
	reqs := make([]tasks.EnqueueRequest, 5)
	for i := range reqs {
		reqs[i] = tasks.EnqueueRequest{ID: fmt.Sprintf("camp-%d", i), Message: promotional(), BatchID: "camp"}
	}
	_, err := b.enq.EnqueueBatch(ctx, reqs)
	require.NoError(t, err)
	_, err = b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "lone", Message: transactional()})
	require.NoError(t, err)

	rt := &redistest.Counter{}
	b.rdb.AddHook(rt)
	res, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "lone", Message: transactional()})
	require.NoError(t, err)
	require.True(t, res.Duplicate)
	require.Equal(t, int64(1), rt.RoundTrips.Load(), "a queued duplicate whose task is there: one round trip")

	rt.RoundTrips.Store(0)
	out, err := b.enq.EnqueueBatch(ctx, reqs)
	require.NoError(t, err)
	for _, r := range out {
		require.NoError(t, r.Err)
		require.True(t, r.Duplicate)
	}
	// runPipelined's SCRIPT LOAD, then the pipeline of the five scripts.
	require.Equal(t, int64(2), rt.RoundTrips.Load(), "a resubmitted batch: no round trip per message")

	// Gone tasks come back, each with one more round trip (once the restoring script
	// is in Redis's cache: its first run here loads it, a round trip of its own).
	require.NoError(t, b.insp.DeleteTask(tasks.QueueCritical, "lone"))
	_, err = b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "lone", Message: transactional()})
	require.NoError(t, err)
	require.NoError(t, b.insp.DeleteTask(tasks.QueueCritical, "lone"))
	require.NoError(t, b.insp.DeleteTask(tasks.QueueDefault, "camp-3"))
	rt.RoundTrips.Store(0)
	res, err = b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "lone", Message: transactional()})
	require.NoError(t, err)
	require.True(t, res.Duplicate)
	require.Equal(t, int64(2), rt.RoundTrips.Load())
	rt.RoundTrips.Store(0)
	_, err = b.enq.EnqueueBatch(ctx, reqs)
	require.NoError(t, err)
	require.Equal(t, int64(3), rt.RoundTrips.Load())
	for _, id := range []string{"lone", "camp-3"} {
		q := map[string]string{"lone": tasks.QueueCritical, "camp-3": tasks.QueueDefault}[id]
		info, err := b.insp.GetTaskInfo(q, id)
		require.NoError(t, err, id)
		require.Equal(t, asynq.TaskStatePending, info.State, id)
	}
}

func TestEnqueueBeyondQueuedIsNoOp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, tasks.EnqueuerConfig{})
	_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "done", Message: promotional()})
	require.NoError(t, err)
	drive(t, b, "done", tasks.StateAccepted)
	// The task finished and its retention ended: only the record remembers the ID.
	require.NoError(t, b.insp.DeleteTask(tasks.QueueDefault, "done"))

	rt := &redistest.Counter{}
	b.rdb.AddHook(rt)
	res, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "done", Message: promotional()})
	require.NoError(t, err)
	require.True(t, res.Duplicate)
	require.Equal(t, tasks.StateAccepted, res.State)
	require.Equal(t, int64(1), rt.RoundTrips.Load(), "a duplicate past queued: one round trip, no restore")
	_, err = b.insp.GetTaskInfo(tasks.QueueDefault, "done")
	require.ErrorIs(t, err, asynq.ErrTaskNotFound, "no second send task")
}

func TestEnqueueGeneratedIDs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, tasks.EnqueuerConfig{})
	r1, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{Message: promotional()})
	require.NoError(t, err)
	r2, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{Message: promotional()})
	require.NoError(t, err)
	require.NotEqual(t, r1.ID, r2.ID)
	for _, id := range []string{r1.ID, r2.ID} {
		u, err := uuid.Parse(id)
		require.NoError(t, err)
		require.EqualValues(t, 7, u.Version())
		require.True(t, tasks.ValidID(id))
	}
	pending, err := b.insp.ListPendingTasks(tasks.QueueDefault)
	require.NoError(t, err)
	require.Len(t, pending, 2)
}

func TestEnqueueConcurrentSameKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, tasks.EnqueuerConfig{})
	const n = 32
	results := make(chan tasks.EnqueueResult, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			res, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "race", Message: transactional()})
			if assert.NoError(t, err) {
				results <- res
			}
		})
	}
	wg.Wait()
	close(results)
	fresh := 0
	for res := range results {
		require.Equal(t, "race", res.ID)
		if !res.Duplicate {
			fresh++
		}
	}
	require.Equal(t, 1, fresh, "exactly one caller created the message")
	pending, err := b.insp.ListPendingTasks(tasks.QueueCritical)
	require.NoError(t, err)
	require.Len(t, pending, 1)
	require.Len(t, eventsOf(t, b, "race"), 1)
}

// TestEnqueueRedisDown: Enqueue that cannot write returns an error that is no
// refusal (not tasks.Permanent: no validation error, no idempotency conflict), so
// the producer retries the message instead of dropping it.
func TestEnqueueRedisDown(t *testing.T) {
	t.Parallel()
	t.Run("Unreachable", func(t *testing.T) {
		t.Parallel()
		// Nothing listens at Redis's address.
		_, err := deadEnqueuer(t).Enqueue(context.Background(), tasks.EnqueueRequest{ID: "x", Message: promotional()})
		require.Error(t, err)
		var oe *net.OpError
		require.ErrorAs(t, err, &oe, "the cause is kept: %v", err)
		require.False(t, tasks.Permanent(err), "a Redis failure taken for a refusal: %v", err)
	})
	t.Run("CallerGaveUp", func(t *testing.T) {
		t.Parallel()
		// Redis is up; the caller's context ended before the call (its HTTP client
		// went away, its deadline passed). Not Redis down: nothing is written either,
		// so the caller's retry creates the message once.
		b := setup(t, tasks.EnqueuerConfig{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "x", Message: promotional()})
		require.ErrorIs(t, err, context.Canceled)
		require.False(t, tasks.Permanent(err))
		requireNothingWritten(t, b)
	})
}

// TestEnqueueRepublishesQueue: an Enqueuer adds a queue to asynq's set of queues once,
// not with every message, and again once publishAgain (a minute) has passed, so a queue
// removed from the set (the Asynq UI's delete) comes back.
func TestEnqueueRepublishesQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, tasks.EnqueuerConfig{})
	inSet := func() bool {
		ok, err := b.rdb.SIsMember(ctx, "asynq:queues", tasks.QueueCritical).Result()
		require.NoError(t, err)
		return ok
	}
	_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "pub-1", Message: transactional()})
	require.NoError(t, err)
	require.True(t, inSet())

	require.NoError(t, b.rdb.SRem(ctx, "asynq:queues", tasks.QueueCritical).Err())
	_, err = b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "pub-2", Message: transactional()})
	require.NoError(t, err)
	require.False(t, inSet(), "within the minute the queue is not written again")

	b.clock.Add(61 * time.Second)
	_, err = b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "pub-3", Message: transactional()})
	require.NoError(t, err)
	require.True(t, inSet(), "after a minute the queue is added again")
}
