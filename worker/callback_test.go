package worker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
)

// confirmTask returns the confirming poll a callback enqueued for id, decoded, or fails.
func (b *testBundle) confirmTask(t *testing.T, id string) (tasks.PollArgs, *asynq.Task) {
	t.Helper()
	info, err := b.insp.GetTaskInfo(tasks.QueueStatus, tasks.ConfirmTaskID(id))
	require.NoError(t, err, "the confirming poll of %s must be queued", id)
	require.Equal(t, asynq.TaskStatePending, info.State, "it runs at once")
	task := asynq.NewTask(info.Type, info.Payload)
	a, err := tasks.Decode[tasks.PollArgs](task)
	require.NoError(t, err)
	require.True(t, a.Confirm)
	return a, task
}

// callback applies a status callback for id as `viberq api` does (tasks.CallbackApplier).
func (b *testBundle) callback(t *testing.T, id string, st provider.StatusResult) tasks.Applied {
	t.Helper()
	rec := b.record(t, id)
	if st.MessageID == 0 {
		st.MessageID = rec.ProviderMessageID
	}
	got, err := tasks.CallbackApplier{Store: b.store, Client: b.client}.ApplyCallback(context.Background(), rec, st)
	require.NoError(t, err)
	return got
}

// TestForgedCallbacksEndAsTheProviderSays reproduces the report "a single callback
// with a valid token set 4 of 5 records undelivered while the provider had delivered
// them, and the next poll ended without asking the provider": before the fix every
// one of these records ended undelivered with 0 status calls. Now a callback writes
// nothing, its final-looking statuses get one confirming poll, and the provider's
// answer settles. Real Redis (the confirming task's ID and the Lua compare-and-set).
func TestForgedCallbacksEndAsTheProviderSays(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{rdb: redistest.Client(t)})
	const n = 5
	for i := range n {
		id := fmt.Sprintf("forged-%d", i)
		_, _, pt := b.accepted(t, id, promotional(), time.Hour) // the simulator delivers at once
		got := b.callback(t, id, provider.StatusResult{Status: provider.ViberUndelivered})
		require.True(t, got.Confirm, "a poll would call undelivered without an SMS leg final")
		require.False(t, got.Write)
		rec := b.record(t, id)
		require.Equal(t, tasks.StateAccepted, rec.State, "a callback alone settles nothing")
		require.Nil(t, rec.ViberStatus, "a callback writes no status")

		// A repeat within tasks.ConfirmSpacing adds no second confirming poll.
		b.callback(t, id, provider.StatusResult{Status: provider.ViberUndelivered})
		_, ct := b.confirmTask(t, id)
		require.NoError(t, b.process(t, ct))
		rec = b.record(t, id)
		require.Equal(t, tasks.StateDelivered, rec.State, "the provider's answer, not the callback's")
		require.Equal(t, tasks.ChannelViber, rec.Channel)
		require.Equal(t, tasks.SettledByCallback, rec.SettledBy)
		require.Zero(t, rec.Polls, "a confirming poll is not a scheduled poll")

		// The scheduled poll then ends without a call: the record is final.
		require.NoError(t, b.process(t, pt))
		require.Equal(t, tasks.StateDelivered, b.record(t, id).State)
	}
	require.EqualValues(t, n, b.statusCalls(), "one provider call per message: the confirming poll")
	require.Equal(t, float64(n), metricValue(t, b.m.finals.WithLabelValues(string(tasks.StateDelivered), tasks.ChannelViber)),
		"each final state counted once, by the poll that made it")
}

func TestCallbackRules(t *testing.T) {
	t.Parallel()

	t.Run("ViberFailureWhileSMSMayComeIsNotFinal", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{simCfg: func(c *dtsim.Config) { c.DeliverMin, c.DeliverMax = time.Hour, time.Hour }})
		b.accepted(t, "cb-sms", transactional(), time.Hour) // transactional() has text_sms
		got := b.callback(t, "cb-sms", provider.StatusResult{Status: provider.ViberUndelivered})
		require.Equal(t, provider.OutcomePending, got.Outcome)
		require.False(t, got.Confirm, "the SMS leg may still come: nothing to confirm")
		_, err := b.insp.GetTaskInfo(tasks.QueueStatus, tasks.ConfirmTaskID("cb-sms"))
		require.ErrorIs(t, err, asynq.ErrTaskNotFound)
		require.Equal(t, tasks.StateAccepted, b.record(t, "cb-sms").State)
	})

	t.Run("ConfirmingPollStillPendingLeavesTheScheduledPolls", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{simCfg: func(c *dtsim.Config) { c.DeliverMin, c.DeliverMax = time.Hour, time.Hour }})
		b.accepted(t, "cb-early", promotional(), time.Hour)
		require.True(t, b.callback(t, "cb-early", provider.StatusResult{Status: provider.ViberDelivered}).Confirm)
		_, ct := b.confirmTask(t, "cb-early")
		require.NoError(t, b.process(t, ct))
		rec := b.record(t, "cb-early")
		require.Equal(t, tasks.StateAccepted, rec.State, "the provider says pending: an early or forged callback settles nothing")
		require.Zero(t, rec.Polls, "the scheduled polls' numbering is left alone")
		require.NotNil(t, rec.ViberStatus)
		require.False(t, provider.Combine(*rec.ViberStatus, rec.SMSStatus, rec.HasSMS).Final(), "the provider's pending statuses are recorded")
		require.EqualValues(t, 1, b.statusCalls())
		_, err := b.insp.GetTaskInfo(tasks.QueueStatus, tasks.PollTaskID("cb-early", 1))
		require.ErrorIs(t, err, asynq.ErrTaskNotFound, "a confirming poll schedules no poll: poll 0 is still scheduled")
		b.pollTask(t, "cb-early", 0)
	})

	t.Run("FinalRecordIsNotReopened", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		_, _, pt := b.accepted(t, "cb-final", promotional(), time.Hour)
		require.NoError(t, b.process(t, pt))
		require.Equal(t, tasks.StateDelivered, b.record(t, "cb-final").State)
		got := b.callback(t, "cb-final", provider.StatusResult{Status: provider.ViberUndelivered})
		require.Equal(t, tasks.SkipFinal, got.Skip)
		require.False(t, got.Confirm)
		require.Equal(t, tasks.StateDelivered, b.record(t, "cb-final").State)
	})

	t.Run("OtherMessageIDIgnored", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		rec, _, _ := b.accepted(t, "cb-other", promotional(), time.Hour)
		got := b.callback(t, "cb-other", provider.StatusResult{MessageID: rec.ProviderMessageID + 1, Status: provider.ViberDelivered})
		require.Equal(t, tasks.SkipOtherID, got.Skip)
		require.False(t, got.Confirm)
	})
}

// TestConfirmingPollThatGivesUpDecidesNothing: a confirming poll whose retries run
// out (the provider answers 500 to every status call) is archived and leaves the
// record accepted for the scheduled polls; a scheduled poll that gives up would end
// unknown.
func TestConfirmingPollThatGivesUpDecidesNothing(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.Poll.First = time.Hour // only the confirming poll runs here
	b := setup(t, setupOpts{cfg: &cfg})
	b.accepted(t, "cb-500", promotional(), time.Hour)
	require.NoError(t, b.sim.InjectFault(dtsim.EndpointStatus, dtsim.FaultServerError, 100))
	require.True(t, b.callback(t, "cb-500", provider.StatusResult{Status: provider.ViberDelivered}).Confirm)
	b.run(t)
	require.Eventually(t, func() bool {
		info, err := b.insp.GetTaskInfo(tasks.QueueStatus, tasks.ConfirmTaskID("cb-500"))
		return err == nil && info.State == asynq.TaskStateArchived
	}, 20*time.Second, 20*time.Millisecond, "the confirming poll is archived after its retries")
	rec := b.record(t, "cb-500")
	require.Equal(t, tasks.StateAccepted, rec.State, "and decided nothing")
	require.Empty(t, rec.SettledBy)
	require.GreaterOrEqual(t, b.statusCalls(), int64(2), "it did retry")
	b.pollTask(t, "cb-500", 0)
}
