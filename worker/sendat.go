package worker

import (
	"fmt"
	"time"

	"github.com/viberq/viberq/tasks"
)

// beforeSendAt refuses to send a message before its send_at (README, "Scheduled
// sends: send_at"). asynq runs a scheduled task only once its time has come, but an
// operator can run it at once ("run now" in the Asynq UI moves it to pending): such a
// run sends nothing, leaves the record queued and asks for a retry at send_at,
// rounded up to the whole second as the Enqueuer schedules it (asynq keeps retry
// times in whole seconds, truncated, so the rounding keeps the retry from coming
// back early). The retry does not use up the retry budget. It returns nil when the
// message is due.
func (w *Worker) beforeSendAt(a tasks.SendArgs) (Decision, error) {
	now := w.now()
	if a.SendAt.IsZero() || !now.Before(a.SendAt) {
		return Decision{}, nil
	}
	due := a.SendAt.Truncate(time.Second)
	if due.Before(a.SendAt) {
		due = due.Add(time.Second)
	}
	delay := due.Sub(now)
	d := Decision{Action: ActionRetryAfter, Reason: "run before its send_at; not sent, back at send_at", VendorCode: -1, RetryAfter: delay}
	err := fmt.Errorf("send %s: scheduled for %s, run %s early: not sent before send_at",
		a.ID, a.SendAt.UTC().Format(time.RFC3339Nano), a.SendAt.Sub(now).Round(time.Millisecond))
	return d, &retryError{delay: delay, failure: false, err: err}
}
