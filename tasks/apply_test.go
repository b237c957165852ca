package tasks_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

func TestDecideStatus(t *testing.T) {
	t.Parallel()
	sms := func(s provider.SMSStatus) *provider.SMSStatus { return &s }
	smsID := provider.MessageID(9)
	accepted := func(hasSMS bool) tasks.Record {
		return tasks.Record{ID: "m", State: tasks.StateAccepted, ProviderMessageID: 7, HasSMS: hasSMS}
	}
	for _, tt := range []struct {
		desc    string
		rec     tasks.Record
		st      provider.StatusResult
		src     tasks.Source
		to      tasks.State
		write   bool
		confirm bool
		skip    string
		channel string
		by      string
		errSub  string
		// outcome is what provider.Combine makes of the answer, worked out by hand:
		// the outcome is reported even when the status is not applied.
		outcome provider.Outcome
	}{
		// Provider answers (polls) are authoritative.
		{"PollViberDelivered", accepted(false), provider.StatusResult{Status: provider.ViberDelivered}, tasks.SourcePoll, tasks.StateDelivered, true, false, "", tasks.ChannelViber, tasks.SettledByPoll, "", provider.OutcomeDeliveredViber},
		{"PollSMSDelivered", accepted(true), provider.StatusResult{Status: provider.ViberUndelivered, SMSMessageID: &smsID, SMSStatus: sms(provider.SMSDelivered)}, tasks.SourcePoll, tasks.StateDelivered, true, false, "", tasks.ChannelSMS, tasks.SettledByPoll, "", provider.OutcomeDeliveredSMS},
		{"PollViberFailedNoFallback", accepted(false), provider.StatusResult{Status: provider.ViberRejected}, tasks.SourcePoll, tasks.StateUndelivered, true, false, "", "", tasks.SettledByPoll, "viber rejected", provider.OutcomeUndelivered},
		{"PollBothFailed", accepted(true), provider.StatusResult{Status: provider.ViberError, SMSMessageID: &smsID, SMSStatus: sms(provider.SMSUndeliverable)}, tasks.SourcePoll, tasks.StateUndelivered, true, false, "", "", tasks.SettledByPoll, "sms", provider.OutcomeUndelivered},
		{"PollViberFailedSMSPending", accepted(true), provider.StatusResult{Status: provider.ViberUndelivered, SMSMessageID: &smsID, SMSStatus: sms(provider.SMSEnroute)}, tasks.SourcePoll, tasks.StateAccepted, true, false, "", "", "", "", provider.OutcomePending},
		{"PollViberFailedSMSNotYet", accepted(true), provider.StatusResult{Status: provider.ViberUndelivered}, tasks.SourcePoll, tasks.StateAccepted, true, false, "", "", "", "", provider.OutcomePending},
		{"PollPending", accepted(false), provider.StatusResult{Status: provider.ViberPending}, tasks.SourcePoll, tasks.StateAccepted, true, false, "", "", "", "", provider.OutcomePending},
		{"PollUnknownCodeIsPending", accepted(false), provider.StatusResult{Status: 77}, tasks.SourcePoll, tasks.StateAccepted, true, false, "", "", "", "", provider.OutcomePending},
		{"ConfirmingPollSettlesAsCallback", accepted(false), provider.StatusResult{Status: provider.ViberDelivered}, tasks.SourceConfirm, tasks.StateDelivered, true, false, "", tasks.ChannelViber, tasks.SettledByCallback, "", provider.OutcomeDeliveredViber},
		{"ConfirmingPollPending", accepted(false), provider.StatusResult{Status: provider.ViberSent}, tasks.SourceConfirm, tasks.StateAccepted, true, false, "", "", "", "", provider.OutcomePending},
		// Callbacks write nothing; final-looking ones ask for a confirming poll.
		{"CallbackDeliveredConfirms", accepted(false), provider.StatusResult{Status: provider.ViberDelivered}, tasks.SourceCallback, tasks.StateAccepted, false, true, "", "", "", "", provider.OutcomeDeliveredViber},
		{"CallbackUndeliveredConfirms", accepted(false), provider.StatusResult{Status: provider.ViberUndelivered}, tasks.SourceCallback, tasks.StateAccepted, false, true, "", "", "", "", provider.OutcomeUndelivered},
		{"CallbackViberFailedSMSMayCome", accepted(true), provider.StatusResult{Status: provider.ViberUndelivered}, tasks.SourceCallback, tasks.StateAccepted, false, false, "", "", "", "", provider.OutcomePending},
		{"CallbackPending", accepted(false), provider.StatusResult{Status: provider.ViberSent}, tasks.SourceCallback, tasks.StateAccepted, false, false, "", "", "", "", provider.OutcomePending},
		// Records a status does not apply to.
		{"FinalRecord", tasks.Record{State: tasks.StateDelivered, ProviderMessageID: 7}, provider.StatusResult{Status: provider.ViberUndelivered}, tasks.SourcePoll, tasks.StateAccepted, false, false, tasks.SkipFinal, "", "", "", provider.OutcomeUndelivered},
		{"FinalRecordCallback", tasks.Record{State: tasks.StateUndelivered, ProviderMessageID: 7}, provider.StatusResult{Status: provider.ViberDelivered}, tasks.SourceCallback, tasks.StateAccepted, false, false, tasks.SkipFinal, "", "", "", provider.OutcomeDeliveredViber},
		{"NotAcceptedYet", tasks.Record{State: tasks.StateSending}, provider.StatusResult{Status: provider.ViberDelivered}, tasks.SourceCallback, tasks.StateAccepted, false, false, tasks.SkipNotAccepted, "", "", "", provider.OutcomeDeliveredViber},
		{"OtherMessageID", accepted(false), provider.StatusResult{MessageID: 8, Status: provider.ViberDelivered}, tasks.SourcePoll, tasks.StateAccepted, false, false, tasks.SkipOtherID, "", "", "", provider.OutcomeDeliveredViber},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			c := tasks.DecideStatus(tt.rec, tt.st, tt.src)
			require.Equal(t, tt.to, c.To)
			require.Equal(t, tt.write, c.Write)
			require.Equal(t, tt.confirm, c.Confirm)
			require.Equal(t, tt.skip, c.Skip)
			require.Equal(t, tt.outcome, c.Outcome)
			require.Equal(t, tt.channel, c.Update.Channel)
			require.Equal(t, tt.by, c.Update.SettledBy)
			if !tt.write {
				require.Equal(t, tasks.Update{}, c.Update, "nothing to write")
				return
			}
			require.NotNil(t, c.Update.ViberStatus)
			require.Equal(t, tt.st.Status, *c.Update.ViberStatus)
			require.Equal(t, tt.st.SMSStatus, c.Update.SMSStatus)
			if tt.errSub != "" {
				require.NotNil(t, c.Update.Error)
				require.Contains(t, *c.Update.Error, tt.errSub)
			} else {
				require.Nil(t, c.Update.Error)
			}
		})
	}
}

func TestDefaultSettledBy(t *testing.T) {
	t.Parallel()
	q, s, a := tasks.StateQueued, tasks.StateSending, tasks.StateAccepted
	require.Equal(t, tasks.SettledBySend, tasks.DefaultSettledBy([]tasks.State{q}, tasks.StateExpired))
	require.Equal(t, tasks.SettledBySend, tasks.DefaultSettledBy([]tasks.State{q, s}, tasks.StateDropped))
	require.Equal(t, tasks.SettledBySend, tasks.DefaultSettledBy([]tasks.State{s}, tasks.StateUnknown))
	require.Equal(t, tasks.SettledByOperator, tasks.DefaultSettledBy([]tasks.State{q}, tasks.StateCancelled))
	require.Equal(t, tasks.SettledByDeadline, tasks.DefaultSettledBy([]tasks.State{a}, tasks.StateUnknown))
}

// TestSettledByRoundTrip: every value survives the record hash's compact form.
func TestSettledByRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, tasks.EnqueuerConfig{})
	for _, by := range []string{tasks.SettledBySend, tasks.SettledByPoll, tasks.SettledByCallback,
		tasks.SettledByDeadline, tasks.SettledByOperator, tasks.SettledByReconciler} {
		id := "rt-" + by
		_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: id, Message: promotional()})
		require.NoError(t, err)
		rec, ok, err := b.store.Transition(ctx, id, []tasks.State{tasks.StateQueued}, tasks.StateExpired, tasks.Update{SettledBy: by})
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, by, rec.SettledBy)
		stored, err := b.store.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, by, stored.SettledBy)
	}
}

// acceptedRecord walks a new record to accepted with provider id pid.
func acceptedRecord(t *testing.T, b *testBundle, id string, pid provider.MessageID) tasks.Record {
	t.Helper()
	ctx := context.Background()
	_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: id, Message: promotional()})
	require.NoError(t, err)
	_, ok, err := b.store.Transition(ctx, id, []tasks.State{tasks.StateQueued}, tasks.StateSending, tasks.Update{IncAttempts: true})
	require.NoError(t, err)
	require.True(t, ok)
	rec, ok, err := b.store.Transition(ctx, id, []tasks.State{tasks.StateSending}, tasks.StateAccepted, tasks.Update{ProviderMessageID: pid})
	require.NoError(t, err)
	require.True(t, ok)
	return rec
}

func TestApplyStatus(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("PollSettlesOnceAndSaysSo", func(t *testing.T) {
		t.Parallel()
		b := setup(t, tasks.EnqueuerConfig{})
		rec := acceptedRecord(t, b, "ap-1", 41)
		got, err := b.store.ApplyStatus(ctx, rec, provider.StatusResult{MessageID: 41, Status: provider.ViberDelivered}, tasks.SourcePoll, 1)
		require.NoError(t, err)
		require.True(t, got.Settled)
		require.Equal(t, tasks.StateDelivered, got.Record.State)
		require.Equal(t, tasks.SettledByPoll, got.Record.SettledBy)
		require.Equal(t, 1, got.Record.Polls)
		var js map[string]any
		require.NoError(t, json.Unmarshal(got.Record.JSON(), &js))
		require.Equal(t, "poll", js["settled_by"])

		// A later, weaker answer (from the record as read before) changes nothing.
		again, err := b.store.ApplyStatus(ctx, rec, provider.StatusResult{MessageID: 41, Status: provider.ViberUndelivered}, tasks.SourcePoll, 1)
		require.NoError(t, err)
		require.False(t, again.Settled)
		require.Contains(t, again.Skip, "changed concurrently")
		require.Equal(t, tasks.StateDelivered, again.Record.State)
		stored, err := b.store.Get(ctx, "ap-1")
		require.NoError(t, err)
		require.Equal(t, provider.ViberDelivered, *stored.ViberStatus, "the final answer's statuses stay")
		require.Equal(t, 1, stored.Polls)
	})

	t.Run("CallbackWritesNothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t, tasks.EnqueuerConfig{})
		rec := acceptedRecord(t, b, "ap-2", 42)
		before, err := b.rdb.HGetAll(ctx, b.store.Key("ap-2")).Result()
		require.NoError(t, err)
		got, err := b.store.ApplyStatus(ctx, rec, provider.StatusResult{MessageID: 42, Status: provider.ViberUndelivered}, tasks.SourceCallback, 0)
		require.NoError(t, err)
		require.True(t, got.Confirm)
		require.False(t, got.Settled)
		after, err := b.rdb.HGetAll(ctx, b.store.Key("ap-2")).Result()
		require.NoError(t, err)
		require.Equal(t, before, after)
	})

	t.Run("ConcurrentAnswersSettleOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t, tasks.EnqueuerConfig{})
		rec := acceptedRecord(t, b, "ap-3", 43)
		answers := []provider.StatusResult{
			{MessageID: 43, Status: provider.ViberDelivered},
			{MessageID: 43, Status: provider.ViberUndelivered},
			{MessageID: 43, Status: provider.ViberSent},
		}
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			settled []tasks.State
		)
		for i := range 12 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := b.store.ApplyStatus(ctx, rec, answers[i%len(answers)], tasks.SourcePoll, 1)
				if err != nil {
					t.Error(err)
					return
				}
				if got.Settled {
					mu.Lock()
					settled = append(settled, got.Record.State)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		require.Len(t, settled, 1, "exactly one answer settles")
		final, err := b.store.Get(ctx, "ap-3")
		require.NoError(t, err)
		require.Equal(t, settled[0], final.State)
		evs, err := b.store.Events(ctx, "-", 100)
		require.NoError(t, err)
		finals := 0
		for _, e := range evs {
			if e.ID == "ap-3" && e.To.Final() {
				finals++
			}
		}
		require.Equal(t, 1, finals, "one final event")
	})

	t.Run("RerunClearsSettledBy", func(t *testing.T) {
		t.Parallel()
		b := setup(t, tasks.EnqueuerConfig{})
		_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: "ap-4", Message: promotional()})
		require.NoError(t, err)
		rec, ok, err := b.store.Transition(ctx, "ap-4", []tasks.State{tasks.StateQueued}, tasks.StateDropped, tasks.Update{})
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, tasks.SettledBySend, rec.SettledBy)
		rec, ok, err = b.store.Transition(ctx, "ap-4", []tasks.State{tasks.StateDropped}, tasks.StateQueued, tasks.Update{Rerun: true})
		require.NoError(t, err)
		require.True(t, ok)
		require.Empty(t, rec.SettledBy)
		require.Contains(t, string(rec.JSON()), `"settled_by":null`)
	})
}

func TestCallbackApplierConfirmsOncePerSpacing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, tasks.EnqueuerConfig{})
	rec := acceptedRecord(t, b, "ap-cb", 44)
	a := tasks.CallbackApplier{Store: b.store, Client: b.client}
	for range 3 {
		got, err := a.ApplyCallback(ctx, rec, provider.StatusResult{MessageID: 44, Status: provider.ViberDelivered})
		require.NoError(t, err)
		require.True(t, got.Confirm)
	}
	pending, err := b.insp.ListPendingTasks(tasks.QueueStatus)
	require.NoError(t, err)
	require.Len(t, pending, 1, "one confirming poll however many callbacks")
	require.Equal(t, tasks.ConfirmTaskID("ap-cb"), pending[0].ID)
	require.Equal(t, tasks.TypePoll, pending[0].Type)
	pa, err := tasks.Decode[tasks.PollArgs](asynq.NewTask(pending[0].Type, pending[0].Payload))
	require.NoError(t, err)
	require.True(t, pa.Confirm)
	require.Equal(t, rec.ProviderMessageID, pa.ProviderMessageID)
	require.Equal(t, rec.ExpiresAt, pa.ExpiresAt)

	// A pending callback enqueues nothing.
	rec2 := acceptedRecord(t, b, "ap-cb2", 45)
	got, err := a.ApplyCallback(ctx, rec2, provider.StatusResult{MessageID: 45, Status: provider.ViberSent})
	require.NoError(t, err)
	require.False(t, got.Confirm)
	_, err = b.insp.GetTaskInfo(tasks.QueueStatus, tasks.ConfirmTaskID("ap-cb2"))
	require.ErrorIs(t, err, asynq.ErrTaskNotFound)
}
