package worker

import (
	"context"
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

// pollArgsFor returns the arguments of poll 0 of an accepted send.
func pollArgsFor(a tasks.SendArgs, rec tasks.Record) tasks.PollArgs {
	acceptedAt := rec.AcceptedAt
	if acceptedAt.IsZero() {
		acceptedAt = rec.UpdatedAt
	}
	return tasks.PollArgs{
		V:                 tasks.PayloadVersion,
		ID:                a.ID,
		ProviderMessageID: rec.ProviderMessageID,
		Poll:              0,
		HasSMS:            a.Message.HasSMSFallback(),
		AcceptedAt:        acceptedAt,
		ExpiresAt:         a.ExpiresAt,
	}
}

// scheduleFirstPoll schedules poll 0 at the policy's time, or at once when the
// deadline has passed (that poll then settles the message). Idempotent: poll task IDs
// are unique per poll number.
func (w *Worker) scheduleFirstPoll(ctx context.Context, a tasks.PollArgs) error {
	_, ok, err := w.sched.ScheduleNext(ctx, a)
	if err != nil || ok {
		return err
	}
	return w.sched.Schedule(ctx, a, 0)
}
