package tasks_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

// A hooked transition that applies answers with the fields its script read or wrote,
// each as the record now holds it, and not the message's own; one that does not
// apply answers with the whole record.
func TestTransitionWithAnswersWhatItReadOrWrote(t *testing.T) {
	t.Parallel()
	b := setup(t, tasks.EnqueuerConfig{})
	ctx := context.Background()
	st := b.store
	_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "p", BatchID: "camp", Message: transactional(), TTL: time.Minute})
	require.NoError(t, err)
	hook := tasks.NewHook("", "")
	b.clock.Add(time.Second)

	rec, ok, _, err := st.TransitionWith(ctx, "p", []tasks.State{tasks.StateQueued}, tasks.StateSending,
		tasks.Update{IncAttempts: true}, hook, nil)
	require.NoError(t, err)
	require.True(t, ok)
	full, err := st.Get(ctx, "p")
	require.NoError(t, err)
	require.Equal(t, tasks.Record{ID: "p", State: tasks.StateSending, Attempts: 1, BatchID: "camp",
		SourceType: provider.SourceTransactional, Queue: tasks.QueueCritical, SentAt: full.SentAt, UpdatedAt: full.UpdatedAt}, rec)
	require.Equal(t, b.clock.Now().UnixMilli(), rec.SentAt.UnixMilli())
	require.NotEmpty(t, full.DestMasked, "the record itself is whole")

	b.clock.Add(time.Second)
	empty := ""
	rec, ok, _, err = st.TransitionWith(ctx, "p", []tasks.State{tasks.StateSending}, tasks.StateAccepted,
		tasks.Update{ProviderMessageID: provider.MessageID(77), Error: &empty}, hook, nil)
	require.NoError(t, err)
	require.True(t, ok)
	full, err = st.Get(ctx, "p")
	require.NoError(t, err)
	require.Equal(t, tasks.Record{ID: "p", State: tasks.StateAccepted, ProviderMessageID: 77, BatchID: "camp",
		SourceType: provider.SourceTransactional, Queue: tasks.QueueCritical, AcceptedAt: full.AcceptedAt,
		UpdatedAt: full.UpdatedAt}, rec, "attempts not counted here: not in the answer")
	require.Equal(t, b.clock.Now().UnixMilli(), rec.AcceptedAt.UnixMilli())

	// Not applied: the whole record as it is.
	rec, ok, _, err = st.TransitionWith(ctx, "p", []tasks.State{tasks.StateQueued}, tasks.StateSending,
		tasks.Update{IncAttempts: true}, hook, nil)
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, full, rec)
}
