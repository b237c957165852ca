package worker

import (
	"cmp"
	"time"

	"github.com/viberq/viberq/tasks"
)

// lastPollGrace is how late a poll may run after the polling deadline and still call
// the provider: the policy schedules the last poll exactly at the deadline, and asynq
// runs scheduled tasks up to a second or two late. A poll later than that (the workers
// were down) records expired without a call.
const lastPollGrace = 30 * time.Second

// pollDeadline is when polling of a stops (scheduler.Policy.Deadline).
func (w *Worker) pollDeadline(a tasks.PollArgs) time.Time {
	return w.sched.Policy().Deadline(a.AcceptedAt, a.ExpiresAt)
}

// pollArgsOf returns the arguments of poll n of an accepted record.
func pollArgsOf(rec tasks.Record, n int) tasks.PollArgs {
	return tasks.PollArgs{V: tasks.PayloadVersion, ID: rec.ID, ProviderMessageID: rec.ProviderMessageID,
		Poll: n, HasSMS: rec.HasSMS, AcceptedAt: cmp.Or(rec.AcceptedAt, rec.UpdatedAt), ExpiresAt: rec.ExpiresAt}
}
