package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

// DefaultRetention keeps a finished poll task's ID reserved, so that a poll handler
// run twice (a worker killed before the ack is re-run up to ~90 s later) cannot
// schedule its next poll twice. Short, because a busy system runs many polls.
const DefaultRetention = 2 * time.Minute

// Scheduler enqueues poll tasks. It is safe for concurrent use.
type Scheduler struct {
	client    *asynq.Client
	policy    Policy
	now       func() time.Time
	rnd       func() float64
	retention time.Duration
	taskOpts  []asynq.Option
}

// Option configures a Scheduler.
type Option func(*Scheduler)

// WithNow sets the clock. Defaults to time.Now.
func WithNow(now func() time.Time) Option { return func(s *Scheduler) { s.now = now } }

// WithRand sets the jitter source (values in [0, 1)). Defaults to math/rand/v2.
func WithRand(rnd func() float64) Option { return func(s *Scheduler) { s.rnd = rnd } }

// WithRetention sets the retention of finished poll tasks. Defaults to
// DefaultRetention.
func WithRetention(d time.Duration) Option { return func(s *Scheduler) { s.retention = d } }

// WithTaskOptions adds Asynq options to every poll task (e.g. asynq.MaxRetry,
// asynq.Timeout); they come after the scheduler's own.
func WithTaskOptions(opts ...asynq.Option) Option {
	return func(s *Scheduler) { s.taskOpts = append(s.taskOpts, opts...) }
}

// New returns a Scheduler that enqueues on client with the policy p (zero fields
// take the defaults).
func New(client *asynq.Client, p Policy, opts ...Option) *Scheduler {
	s := &Scheduler{client: client, policy: p.WithDefaults(), now: time.Now, retention: DefaultRetention}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Policy returns the scheduler's policy, defaults filled in.
func (s *Scheduler) Policy() Policy { return s.policy }

// Schedule enqueues poll number args.Poll of message args.ID to run after delay, with
// the task ID tasks.PollTaskID(args.ID, args.Poll) on queue tasks.QueueStatus. If
// that task exists (or finished within the retention) it does nothing and returns
// nil: scheduling is idempotent.
//
// Asynq keeps scheduled times in whole seconds and truncates (ProcessIn(2s) may fire
// after 1.1 s), so the run time is now+delay rounded up to a whole second, and at
// least one second away: a poll never runs before its time.
func (s *Scheduler) Schedule(ctx context.Context, args tasks.PollArgs, delay time.Duration) error {
	_, err := s.schedule(ctx, args, delay, s.now())
	return err
}

func (s *Scheduler) schedule(ctx context.Context, args tasks.PollArgs, delay time.Duration, now time.Time) (time.Time, error) {
	at := now.Add(max(delay, time.Second))
	if t := at.Truncate(time.Second); !t.Equal(at) {
		at = t.Add(time.Second)
	}
	opts := append([]asynq.Option{asynq.ProcessAt(at), asynq.Retention(s.retention)}, s.taskOpts...)
	task, err := tasks.NewPollTask(args, opts...)
	if err != nil {
		return time.Time{}, fmt.Errorf("schedule poll: %w", err)
	}
	_, err = s.client.EnqueueContext(ctx, task)
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return time.Time{}, fmt.Errorf("schedule poll %d of %s: %w", args.Poll, provider.MaskID(args.ID), err)
	}
	return at, nil
}

// ScheduleNext schedules poll number args.Poll at the time the policy gives for it
// (deadline from args.AcceptedAt and args.ExpiresAt). It returns ok=false and
// schedules nothing when the deadline has passed: polling is over, and the caller
// settles the message.
func (s *Scheduler) ScheduleNext(ctx context.Context, args tasks.PollArgs) (at time.Time, ok bool, err error) {
	now := s.now()
	deadline := s.policy.Deadline(args.AcceptedAt, args.ExpiresAt)
	delay, ok := s.policy.Next(args.Poll, args.AcceptedAt, deadline, now, s.rnd)
	if !ok {
		return time.Time{}, false, nil
	}
	at, err = s.schedule(ctx, args, delay, now)
	if err != nil {
		return time.Time{}, false, err
	}
	return at, true, nil
}
