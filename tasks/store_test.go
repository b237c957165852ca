package tasks_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

// legal is the state machine of README, Message states, written out independently of the code.
var legal = map[tasks.State][]tasks.State{
	tasks.StateQueued:   {tasks.StateQueued, tasks.StateSending, tasks.StateExpired, tasks.StateRejected, tasks.StateDropped, tasks.StateCancelled},
	tasks.StateSending:  {tasks.StateSending, tasks.StateQueued, tasks.StateAccepted, tasks.StateRejected, tasks.StateDropped, tasks.StateUnknown, tasks.StateExpired},
	tasks.StateAccepted: {tasks.StateAccepted, tasks.StateDelivered, tasks.StateUndelivered, tasks.StateExpired, tasks.StateUnknown},
}

// legalRerun adds what an operator's re-run of a dropped message allows.
var legalRerun = map[tasks.State][]tasks.State{
	tasks.StateDropped: {tasks.StateQueued, tasks.StateSending},
}

// pathTo lists the transitions from queued to each state.
var pathTo = map[tasks.State][]tasks.State{
	tasks.StateQueued:      nil,
	tasks.StateSending:     {tasks.StateSending},
	tasks.StateAccepted:    {tasks.StateSending, tasks.StateAccepted},
	tasks.StateDelivered:   {tasks.StateSending, tasks.StateAccepted, tasks.StateDelivered},
	tasks.StateUndelivered: {tasks.StateSending, tasks.StateAccepted, tasks.StateUndelivered},
	tasks.StateExpired:     {tasks.StateExpired},
	tasks.StateRejected:    {tasks.StateSending, tasks.StateRejected},
	tasks.StateDropped:     {tasks.StateSending, tasks.StateDropped},
	tasks.StateUnknown:     {tasks.StateSending, tasks.StateUnknown},
	tasks.StateCancelled:   {tasks.StateCancelled},
}

func TestCanTransitionTable(t *testing.T) {
	t.Parallel()
	finals := 0
	for _, from := range tasks.States {
		if from.Final() {
			finals++
		}
		for _, to := range tasks.States {
			want := slices.Contains(legal[from], to)
			require.Equal(t, want, tasks.CanTransition(from, to, false), "%s → %s", from, to)
			wantRerun := want || slices.Contains(legalRerun[from], to)
			require.Equal(t, wantRerun, tasks.CanTransition(from, to, true), "%s → %s with rerun", from, to)
		}
	}
	require.Equal(t, 7, finals)
	require.False(t, tasks.CanTransition("bogus", tasks.StateSending, true))
	require.False(t, tasks.CanTransition(tasks.StateQueued, "bogus", true))
}

// newRecord creates the queued record of a test message.
func newRecord(t *testing.T, b *testBundle, id string) tasks.Record {
	t.Helper()
	args := tasks.SendArgs{ID: id, Message: transactional(), ExpiresAt: b.clock.Now().Add(40 * time.Second), EnqueuedAt: b.clock.Now()}
	created, rec, err := b.store.Create(context.Background(), tasks.NewRecord(args, b.clock.Now()), "hash-"+id)
	require.NoError(t, err)
	require.True(t, created)
	return rec
}

// drive moves the record of id along pathTo[state].
func drive(t *testing.T, b *testBundle, id string, state tasks.State) {
	t.Helper()
	cur := tasks.StateQueued
	for _, next := range pathTo[state] {
		rec, ok, err := b.store.Transition(context.Background(), id, []tasks.State{cur}, next, tasks.Update{})
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, next, rec.State)
		cur = next
	}
}

// eventsOf returns the events of message id.
func eventsOf(t *testing.T, b *testBundle, id string) []tasks.Event {
	t.Helper()
	all, err := b.store.Events(context.Background(), "-", 1_000_000)
	require.NoError(t, err)
	var evs []tasks.Event
	for _, e := range all {
		if e.ID == id {
			evs = append(evs, e)
		}
	}
	return evs
}

func TestStoreEveryTransition(t *testing.T) {
	t.Parallel()
	b := setup(t, tasks.EnqueuerConfig{})
	ctx := context.Background()
	for _, from := range tasks.States {
		for _, to := range tasks.States {
			for _, rerun := range []bool{false, true} {
				id := fmt.Sprintf("m-%s-%s-%t", from, to, rerun)
				newRecord(t, b, id)
				drive(t, b, id, from)
				before, err := b.store.Get(ctx, id)
				require.NoError(t, err)
				nEvents := len(eventsOf(t, b, id))

				rec, ok, err := b.store.Transition(ctx, id, []tasks.State{from}, to, tasks.Update{Rerun: rerun})
				allowed := slices.Contains(legal[from], to) || rerun && slices.Contains(legalRerun[from], to)
				if !allowed {
					require.ErrorIs(t, err, tasks.ErrIllegalTransition, "%s → %s rerun=%t", from, to, rerun)
					after, err := b.store.Get(ctx, id)
					require.NoError(t, err)
					require.Equal(t, before, after)
					require.Len(t, eventsOf(t, b, id), nEvents)
					continue
				}
				require.NoError(t, err, "%s → %s", from, to)
				require.True(t, ok)
				require.Equal(t, to, rec.State)
				evs := eventsOf(t, b, id)
				if from == to {
					require.Len(t, evs, nEvents, "no event without a change")
					continue
				}
				require.Len(t, evs, nEvents+1, "%s → %s: one event", from, to)
				last := evs[len(evs)-1]
				require.Equal(t, from, last.From)
				require.Equal(t, to, last.To)
				require.Equal(t, to.Final(), !rec.FinalAt.IsZero(), "final_at of %s", to)
			}
		}
	}
}

func TestStoreTransitionCompareAndSet(t *testing.T) {
	t.Parallel()
	b := setup(t, tasks.EnqueuerConfig{})
	ctx := context.Background()
	newRecord(t, b, "cas")

	// Current state not in from: nothing written, the current record returned.
	rec, ok, err := b.store.Transition(ctx, "cas", []tasks.State{tasks.StateSending}, tasks.StateAccepted,
		tasks.Update{ProviderMessageID: 7, IncAttempts: true})
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, tasks.StateQueued, rec.State)
	require.Zero(t, rec.ProviderMessageID)
	require.Zero(t, rec.Attempts)
	require.Len(t, eventsOf(t, b, "cas"), 1)

	// Concurrent workers: exactly one moves queued → sending.
	const n = 20
	var wg sync.WaitGroup
	oks := make(chan bool, n)
	for range n {
		wg.Go(func() {
			_, ok, err := b.store.Transition(ctx, "cas", []tasks.State{tasks.StateQueued}, tasks.StateSending, tasks.Update{IncAttempts: true})
			assert.NoError(t, err)
			oks <- ok
		})
	}
	wg.Wait()
	close(oks)
	won := 0
	for ok := range oks {
		if ok {
			won++
		}
	}
	require.Equal(t, 1, won)
	rec, err = b.store.Get(ctx, "cas")
	require.NoError(t, err)
	require.Equal(t, 1, rec.Attempts)
	require.Len(t, eventsOf(t, b, "cas"), 2)
}

func TestStoreFieldsAndStamps(t *testing.T) {
	t.Parallel()
	b := setup(t, tasks.EnqueuerConfig{})
	ctx := context.Background()
	created := newRecord(t, b, "f")
	require.Equal(t, tasks.StateQueued, created.State)
	require.Equal(t, "hash-f", created.PayloadHash)
	require.Equal(t, b.clock.Now(), created.CreatedAt)

	b.clock.Add(time.Second)
	rec, ok, err := b.store.Transition(ctx, "f", []tasks.State{tasks.StateQueued}, tasks.StateSending, tasks.Update{IncAttempts: true})
	require.NoError(t, err)
	require.True(t, ok)
	sentAt := b.clock.Now()
	require.Equal(t, sentAt, rec.SentAt)
	require.Equal(t, sentAt, rec.UpdatedAt)
	require.Equal(t, 1, rec.Attempts)

	// Another attempt in sending: a new sent_at, no event.
	b.clock.Add(time.Second)
	rec, ok, err = b.store.Transition(ctx, "f", []tasks.State{tasks.StateSending}, tasks.StateSending, tasks.Update{IncAttempts: true})
	require.NoError(t, err)
	require.True(t, ok)
	sentAt = b.clock.Now()
	require.Equal(t, sentAt, rec.SentAt)
	require.Equal(t, 2, rec.Attempts)
	require.Len(t, eventsOf(t, b, "f"), 2)

	b.clock.Add(time.Second)
	rec, ok, err = b.store.Transition(ctx, "f", []tasks.State{tasks.StateSending}, tasks.StateAccepted,
		tasks.Update{ProviderMessageID: 429, Error: new("")})
	require.NoError(t, err)
	require.True(t, ok)
	acceptedAt := b.clock.Now()
	require.Equal(t, acceptedAt, rec.AcceptedAt)
	require.Equal(t, sentAt, rec.SentAt)
	require.Equal(t, provider.MessageID(429), rec.ProviderMessageID)
	require.True(t, rec.FinalAt.IsZero())

	// Intermediate statuses: Update, no event, accepted_at unchanged.
	b.clock.Add(time.Second)
	vs, smsID, ss := provider.ViberUndelivered, provider.MessageID(36478), provider.SMSEnroute
	rec, ok, err = b.store.Update(ctx, "f", tasks.Update{ViberStatus: &vs, SMSMessageID: &smsID, SMSStatus: &ss, Polled: 1, Error: new("pending")})
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, tasks.StateAccepted, rec.State)
	require.Equal(t, acceptedAt, rec.AcceptedAt)
	require.Equal(t, b.clock.Now(), rec.UpdatedAt)
	require.Equal(t, 1, rec.Polls)
	require.Equal(t, &vs, rec.ViberStatus)
	require.Equal(t, &smsID, rec.SMSMessageID)
	require.Equal(t, &ss, rec.SMSStatus)
	require.Equal(t, "pending", rec.Error)
	require.Len(t, eventsOf(t, b, "f"), 3)

	// Polled raises polls, never lowers it, and adds nothing when it is reached: a
	// poll that runs again counts once.
	for _, tc := range []struct{ polled, want int }{{3, 3}, {1, 3}, {3, 3}, {0, 3}, {1, 3}} {
		rec, ok, err = b.store.Update(ctx, "f", tasks.Update{Polled: tc.polled})
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, tc.want, rec.Polls, "after Polled %d", tc.polled)
	}

	b.clock.Add(time.Second)
	delivered := provider.SMSDelivered
	rec, ok, err = b.store.Transition(ctx, "f", []tasks.State{tasks.StateAccepted}, tasks.StateDelivered,
		tasks.Update{Channel: tasks.ChannelSMS, SMSStatus: &delivered, Polled: 4, Error: new("")})
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, b.clock.Now(), rec.FinalAt)
	require.Equal(t, 4, rec.Polls)
	require.Empty(t, rec.Error)
	require.Equal(t, tasks.ChannelSMS, rec.Channel)

	evs := eventsOf(t, b, "f")
	require.Len(t, evs, 4)
	last := evs[3]
	require.Equal(t, tasks.Event{StreamID: last.StreamID, ID: "f", From: tasks.StateAccepted, To: tasks.StateDelivered,
		Channel: tasks.ChannelSMS, ProviderMessageID: 429, At: b.clock.Now()}, last)

	// Get agrees with what Transition returned.
	got, err := b.store.Get(ctx, "f")
	require.NoError(t, err)
	require.Equal(t, rec, got)

	// Final states stick: Update refuses, nothing is written.
	b.clock.Add(time.Second)
	again, ok, err := b.store.Update(ctx, "f", tasks.Update{Polled: 3, Channel: tasks.ChannelViber})
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, rec, again)
	_, _, err = b.store.Transition(ctx, "f", []tasks.State{tasks.StateDelivered}, tasks.StateUndelivered, tasks.Update{Rerun: true})
	require.ErrorIs(t, err, tasks.ErrIllegalTransition)
	// A final state reached by another path makes a CAS from a non-final state fail.
	_, ok, err = b.store.Transition(ctx, "f", []tasks.State{tasks.StateAccepted}, tasks.StateExpired, tasks.Update{})
	require.NoError(t, err)
	require.False(t, ok)
	require.Len(t, eventsOf(t, b, "f"), 4)
}

func TestStoreDroppedRerun(t *testing.T) {
	t.Parallel()
	b := setup(t, tasks.EnqueuerConfig{})
	ctx := context.Background()
	newRecord(t, b, "d")
	drive(t, b, "d", tasks.StateSending)
	rec, ok, err := b.store.Transition(ctx, "d", []tasks.State{tasks.StateSending}, tasks.StateDropped, tasks.Update{Error: new("402 balance empty")})
	require.NoError(t, err)
	require.True(t, ok)
	require.False(t, rec.FinalAt.IsZero())

	_, _, err = b.store.Transition(ctx, "d", []tasks.State{tasks.StateDropped}, tasks.StateSending, tasks.Update{})
	require.ErrorIs(t, err, tasks.ErrIllegalTransition)

	b.clock.Add(time.Minute)
	rec, ok, err = b.store.Transition(ctx, "d", []tasks.State{tasks.StateQueued, tasks.StateDropped}, tasks.StateSending,
		tasks.Update{Rerun: true, IncAttempts: true, Error: new("")})
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, tasks.StateSending, rec.State)
	require.True(t, rec.FinalAt.IsZero(), "final_at cleared on rerun")
	require.Equal(t, b.clock.Now(), rec.SentAt)
	require.Equal(t, 1, rec.Attempts)
	require.Empty(t, rec.Error)

	evs := eventsOf(t, b, "d")
	require.Equal(t, []tasks.State{tasks.StateQueued, tasks.StateSending, tasks.StateDropped, tasks.StateSending}, toStates(evs))

	rec, ok, err = b.store.Transition(ctx, "d", []tasks.State{tasks.StateSending}, tasks.StateAccepted, tasks.Update{ProviderMessageID: 9})
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, tasks.StateAccepted, rec.State)
}

func TestStoreRetention(t *testing.T) {
	t.Parallel()
	b := setup(t, tasks.EnqueuerConfig{})
	ctx := context.Background()
	store := tasks.NewStore(b.rdb, tasks.StoreOptions{Prefix: "ret:", Retention: time.Hour, Now: b.clock.Now})
	args := tasks.SendArgs{ID: "r", Message: promotional(), ExpiresAt: b.clock.Now().Add(time.Hour), EnqueuedAt: b.clock.Now()}
	_, _, err := store.Create(ctx, tasks.NewRecord(args, b.clock.Now()), "h")
	require.NoError(t, err)
	require.Equal(t, "ret:msg:r", store.Key("r"))
	// A queued record has no expiry: its message is on its way (the reconciler sees to
	// it that every record moves on); its first change gives it the retention.
	requireNoExpiry(t, b, "ret:msg:r")
	n, err := b.rdb.XLen(ctx, "ret:events").Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n)

	// Every write sets the expiry anew.
	_, ok, err := store.Update(ctx, "r", tasks.Update{Polled: 1})
	require.NoError(t, err)
	require.True(t, ok)
	requireTTL(t, b, "ret:msg:r", time.Hour)
	require.NoError(t, b.rdb.PExpire(ctx, "ret:msg:r", time.Minute).Err())
	_, ok, err = store.Update(ctx, "r", tasks.Update{Polled: 1})
	require.NoError(t, err)
	require.True(t, ok)
	requireTTL(t, b, "ret:msg:r", time.Hour)

	require.NoError(t, b.rdb.PExpire(ctx, "ret:msg:r", time.Minute).Err())
	_, ok, err = store.Transition(ctx, "r", []tasks.State{tasks.StateQueued}, tasks.StateExpired, tasks.Update{})
	require.NoError(t, err)
	require.True(t, ok)
	requireTTL(t, b, "ret:msg:r", time.Hour)

	// Default retention is 7 days.
	newRecord(t, b, "r7")
	_, ok, err = b.store.Transition(ctx, "r7", []tasks.State{tasks.StateQueued}, tasks.StateSending, tasks.Update{})
	require.NoError(t, err)
	require.True(t, ok)
	requireTTL(t, b, b.store.Key("r7"), 7*24*time.Hour)
}

func requireNoExpiry(t *testing.T, b *testBundle, key string) {
	t.Helper()
	ttl, err := b.rdb.PTTL(context.Background(), key).Result()
	require.NoError(t, err)
	require.Equal(t, time.Duration(-1), ttl, "%s exists without an expiry", key)
}

func requireTTL(t *testing.T, b *testBundle, key string, want time.Duration) {
	t.Helper()
	ttl, err := b.rdb.PTTL(context.Background(), key).Result()
	require.NoError(t, err)
	require.LessOrEqual(t, ttl, want)
	require.Greater(t, ttl, want-time.Minute)
}

func TestStoreEventsCapped(t *testing.T) {
	t.Parallel()
	b := setup(t, tasks.EnqueuerConfig{})
	ctx := context.Background()
	store := tasks.NewStore(b.rdb, tasks.StoreOptions{Prefix: "cap:", EventsMaxLen: 10, Now: b.clock.Now})
	for i := range 500 {
		args := tasks.SendArgs{ID: fmt.Sprint(i), Message: promotional(), ExpiresAt: b.clock.Now().Add(time.Hour)}
		_, _, err := store.Create(ctx, tasks.NewRecord(args, b.clock.Now()), "h")
		require.NoError(t, err)
	}
	n, err := b.rdb.XLen(ctx, "cap:events").Result()
	require.NoError(t, err)
	require.Less(t, n, int64(500), "MAXLEN ~ trims (approximately: whole macro nodes)")
}

func TestStoreNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t, tasks.EnqueuerConfig{})
	ctx := context.Background()
	_, err := b.store.Get(ctx, "nope")
	require.ErrorIs(t, err, tasks.ErrNotFound)
	_, _, err = b.store.Transition(ctx, "nope", []tasks.State{tasks.StateQueued}, tasks.StateSending, tasks.Update{})
	require.ErrorIs(t, err, tasks.ErrNotFound)
	_, _, err = b.store.Update(ctx, "nope", tasks.Update{Polled: 1})
	require.ErrorIs(t, err, tasks.ErrNotFound)
	exists, err := b.rdb.Exists(ctx, b.store.Key("nope")).Result()
	require.NoError(t, err)
	require.Zero(t, exists, "a failed transition creates nothing")
}

func TestStoreCreateExisting(t *testing.T) {
	t.Parallel()
	b := setup(t, tasks.EnqueuerConfig{})
	ctx := context.Background()
	first := newRecord(t, b, "x")
	drive(t, b, "x", tasks.StateSending)

	args := tasks.SendArgs{ID: "x", Message: promotional(), ExpiresAt: b.clock.Now().Add(time.Hour)}
	created, existing, err := b.store.Create(ctx, tasks.NewRecord(args, b.clock.Now()), "other")
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, tasks.StateSending, existing.State)
	require.Equal(t, first.PayloadHash, existing.PayloadHash)
	require.Equal(t, first.Queue, existing.Queue)
	require.Len(t, eventsOf(t, b, "x"), 2, "no second queued event")
}

func TestRecordNeverStoresFullNumber(t *testing.T) {
	t.Parallel()
	b := setup(t, tasks.EnqueuerConfig{})
	ctx := context.Background()
	rec := newRecord(t, b, "p")
	require.Equal(t, "380*****4567", rec.DestMasked)
	h, err := b.rdb.HGetAll(ctx, b.store.Key("p")).Result()
	require.NoError(t, err)
	for k, v := range h {
		require.NotContains(t, v, "380501234567", k)
		require.NotContains(t, v, "501234", k)
	}
	require.Equal(t, "380*****4567", h["dest"])
	require.NotContains(t, string(rec.JSON()), "501234")
}

func TestRecordJSON(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 5, 10, 0, 0, 123_000_000, time.FixedZone("EET", 2*3600))
	vs := provider.ViberDelivered
	rec := tasks.Record{
		ID: "a", State: tasks.StateDelivered, Channel: tasks.ChannelViber, ProviderMessageID: 429,
		ViberStatus: &vs, Attempts: 1, Polls: 2, Queue: tasks.QueueCritical, MessageType: 106, SourceType: 2,
		HasSMS: true, DestMasked: "380*****4567", PayloadHash: "h", SettledBy: tasks.SettledByPoll,
		CreatedAt: at, UpdatedAt: at, SentAt: at, AcceptedAt: at, FinalAt: at, ExpiresAt: at.Add(40 * time.Second),
	}
	want := `{"id":"a","state":"delivered","channel":"viber","provider_message_id":429,"viber_status":1,` +
		`"sms_message_id":null,"sms_status":null,"attempts":1,"polls":2,"error":"","settled_by":"poll","queue":"critical",` +
		`"message_type":106,"source_type":2,"has_sms":true,"dest":"380*****4567","payload_hash":"h",` +
		`"created_at":"2026-11-05T08:00:00.123Z","updated_at":"2026-11-05T08:00:00.123Z",` +
		`"sent_at":"2026-11-05T08:00:00.123Z","accepted_at":"2026-11-05T08:00:00.123Z",` +
		`"final_at":"2026-11-05T08:00:00.123Z","expires_at":"2026-11-05T08:00:40.123Z",` +
		`"batch_id":null,"send_at":null}`
	require.JSONEq(t, want, string(rec.JSON()))
	rec.BatchID, rec.SendAt = "spring", at.Add(-time.Hour)
	require.Contains(t, string(rec.JSON()), `"batch_id":"spring","send_at":"2026-11-05T07:00:00.123Z"`)

	empty := string(tasks.Record{ID: "b", State: tasks.StateQueued}.JSON())
	for _, f := range []string{"provider_message_id", "viber_status", "sent_at", "accepted_at", "final_at", "settled_by"} {
		require.Contains(t, empty, `"`+f+`":null`)
	}
	require.False(t, strings.Contains(empty, "0001-01-01"))
}

func toStates(evs []tasks.Event) []tasks.State {
	var s []tasks.State
	for _, e := range evs {
		s = append(s, e.To)
	}
	return s
}

func TestProviderIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, tasks.EnqueuerConfig{})
	rdb := b.rdb
	s := tasks.NewStore(rdb, tasks.StoreOptions{Retention: time.Hour})

	_, ok, err := s.LookupProvider(ctx, 4242)
	require.NoError(t, err)
	require.False(t, ok, "nothing indexed yet")

	require.NoError(t, s.IndexProvider(ctx, 4242, "reply-me"))
	id, ok, err := s.LookupProvider(ctx, 4242)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "reply-me", id)
	require.Greater(t, rdb.TTL(ctx, s.ProviderIndexKey(4242)).Val(), 59*time.Minute, "the index lives as long as records")

	_, ok, err = s.LookupProvider(ctx, 4243)
	require.NoError(t, err)
	require.False(t, ok, "another provider ID is not indexed")
}
