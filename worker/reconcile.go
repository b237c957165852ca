package worker

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

// Reconciler defaults (ReconcileConfig).
const (
	// DefaultReconcilePeriod is how often the leader sweeps, and how long a non-final
	// record goes unchecked at most before a sweep looks at it.
	DefaultReconcilePeriod = 30 * time.Second
	// DefaultReconcileBatch bounds the records one sweep checks.
	DefaultReconcileBatch = 500
)

// ReconcileConfig configures the reconciler (README, "Message states").
type ReconcileConfig struct {
	// Period is how often the leader sweeps; a sweep checks the non-final records not
	// checked for a Period. A record whose send task was deleted (in the Asynq UI) is
	// final within two Periods while the records due fit in one Batch. Defaults to
	// DefaultReconcilePeriod (30s); negative disables the reconciler. A program that
	// disables it in every worker must at least sort the non-final index's list of new
	// records in itself (tasks.Store.DueNonFinal, say once a minute), or that list (one
	// ID per enqueue) only grows; and nothing then ends a record whose send task is
	// gone.
	Period time.Duration
	// Batch bounds the records one sweep checks. Defaults to DefaultReconcileBatch.
	Batch int
}

func (c ReconcileConfig) withDefaults() ReconcileConfig {
	c.Period = cmp.Or(c.Period, DefaultReconcilePeriod)
	c.Batch = cmp.Or(c.Batch, DefaultReconcileBatch)
	return c
}

// Repairs (the label of viberq_reconciler_repairs_total).
const (
	RepairCancelled = "cancelled" // queued, send task gone before the TTL: never sent
	RepairExpired   = "expired"   // queued past the TTL with no worker on it
	RepairUnknown   = "unknown"   // sending, no worker on it: it may have been sent
	RepairPoll      = "poll"      // accepted, no poll task: a poll is scheduled
)

// Reconciler finds the non-final records nothing will finish and moves each to what
// is true. One leader at a time among the workers, elected through a Redis lease
// (like River's leader elector: take the lease when it is free, renew it while
// leading, give it up on shutdown; a leader that cannot renew stops sweeping at once).
//
// The lease is a key holding the leader's token, "{epoch}:{random}", where the epoch
// comes from INCR at each election: a fencing token. It is re-checked before every
// record the leader repairs, and every repair is a compare-and-set on the record
// (tasks.Store.Transition from the state the check saw), so a leader deposed while it
// worked can at most make the repair the new leader would make.
//
// A sweep pages through the oldest members of the store's non-final index, those not
// checked for a Period, at most Batch of them, and for each looks up its tasks with
// asynq's Inspector (task ID = message ID; poll tasks "poll:{id}:{n}"):
//
//	queued,   send task active                  → fine
//	queued,   send task waiting, TTL not passed → fine
//	queued,   send task archived, TTL not passed→ fine (an operator may re-run it)
//	queued,   no send task, TTL not passed      → cancelled (deleted in the UI, or lost before it was written)
//	queued,   TTL passed a Period ago, no worker on it → expired
//	sending,  send task active or waiting       → fine (the handler settles it), unless the TTL passed a Period ago → unknown
//	sending,  no live send task                 → unknown (the request may have reached the provider)
//	accepted, poll task live, due in the due-poll set, or send task active → fine
//	accepted, neither                           → a poll is scheduled (the poll handler settles it)
//
// The record of a message without a send task cannot be re-enqueued: it holds the
// masked number and no text. A task deleted in the UI and one lost between the record
// and the task look the same, so both end cancelled (never sent).
type Reconciler struct {
	w      *Worker
	cfg    ReconcileConfig
	insp   *asynq.Inspector
	token  string
	leader bool
	log    zerolog.Logger
}

// NewReconciler returns the reconciler of w (Run starts one in every worker process;
// only the leader sweeps).
func NewReconciler(w *Worker) *Reconciler {
	return &Reconciler{w: w, cfg: w.cfg.Reconcile, insp: w.insp, log: w.log.With().Str("component", "reconciler").Logger()}
}

// leaseKey and epochKey are the leader lease and its fencing counter.
func (r *Reconciler) leaseKey() string { return r.w.cfg.Prefix + "reconciler:lease" }
func (r *Reconciler) epochKey() string { return r.w.cfg.Prefix + "reconciler:epoch" }

// leaseTTL outlives two periods, so a leader renewing every Period keeps it through a
// slow sweep; a dead leader's lease is free again after it.
func (r *Reconciler) leaseTTL() time.Duration { return 2*r.cfg.Period + 5*time.Second }

// electScript takes a free lease. KEYS[1] lease, KEYS[2] epoch; ARGV[1] random part,
// ARGV[2] ttl ms. Returns the token, or false when someone holds the lease.
var electScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local tok = redis.call('INCR', KEYS[2]) .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], tok, 'PX', ARGV[2])
return tok
`)

// renewScript extends the lease if it still holds our token. KEYS[1] lease; ARGV[1]
// token, ARGV[2] ttl ms. Returns 1 when renewed.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// resignScript deletes the lease if it holds our token.
var resignScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// elect takes or renews the lease and reports whether this process leads.
func (r *Reconciler) elect(ctx context.Context) (bool, error) {
	ttl := r.leaseTTL().Milliseconds()
	if r.leader {
		n, err := renewScript.Run(ctx, r.w.rdb, []string{r.leaseKey()}, r.token, ttl).Int()
		if err != nil {
			return false, fmt.Errorf("renew reconciler lease: %w", err)
		}
		if n == 1 {
			return true, nil
		}
		r.setLeader(false, "lease lost")
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	tok, err := electScript.Run(ctx, r.w.rdb, []string{r.leaseKey(), r.epochKey()}, hex.EncodeToString(b[:]), ttl).Text()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("take reconciler lease: %w", err)
	}
	r.token = tok
	r.setLeader(true, "lease taken")
	return true, nil
}

func (r *Reconciler) setLeader(v bool, why string) {
	if r.leader == v {
		return
	}
	r.leader = v
	r.w.metrics.setReconcileLeader(v)
	r.log.Info().Bool("leader", v).Str("token", r.token).Msg("reconciler " + why)
}

// stillLeader re-checks the fencing token before a repair.
func (r *Reconciler) stillLeader(ctx context.Context) bool {
	n, err := renewScript.Run(ctx, r.w.rdb, []string{r.leaseKey()}, r.token, r.leaseTTL().Milliseconds()).Int()
	if err != nil || n != 1 {
		r.setLeader(false, "lease lost during a sweep")
		return false
	}
	return true
}

// resign gives the lease up, so another worker takes over at its next period.
func (r *Reconciler) resign() {
	if !r.leader {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = resignScript.Run(ctx, r.w.rdb, []string{r.leaseKey()}, r.token).Err()
	r.setLeader(false, "resigned")
}

// Run campaigns every Period and, while leading, sweeps; it returns when ctx is done,
// giving the lease up.
func (r *Reconciler) Run(ctx context.Context) {
	if r.cfg.Period < 0 {
		return
	}
	defer r.resign()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := r.Sweep(ctx); err != nil && ctx.Err() == nil {
			if ok, _ := r.w.logLim.allow("reconciler", r.w.now()); ok {
				r.log.Warn().Err(err).Msg("reconciler sweep failed")
			}
		}
		t.Reset(r.cfg.Period)
	}
}

// SweepResult counts what one sweep did.
type SweepResult struct {
	Leader  bool
	Checked int
	Repairs map[string]int
}

// Sweep takes or renews the lease and, when leading, checks up to Batch non-final
// records not checked for a Period. A record it cannot check is logged and checked
// again after a Period; an error of Redis ends the sweep. Run calls it every Period;
// tests call it directly.
func (r *Reconciler) Sweep(ctx context.Context) (SweepResult, error) {
	res := SweepResult{Repairs: map[string]int{}}
	lead, err := r.elect(ctx)
	if err != nil || !lead {
		return res, err
	}
	res.Leader = true
	now := r.w.now()
	ids, err := r.w.store.DueNonFinal(ctx, now.Add(-r.cfg.Period), r.cfg.Batch)
	if err != nil {
		return res, err
	}
	// Counted after DueNonFinal has sorted the new records in: those finished
	// meanwhile are gone from the count.
	if n, err := r.w.store.NonFinalCount(ctx); err == nil {
		r.w.metrics.setNonFinal(n)
	}
	for _, id := range ids {
		if ctx.Err() != nil || !r.stillLeader(ctx) {
			return res, ctx.Err()
		}
		repair, err := r.check(ctx, id)
		res.Checked++
		r.w.metrics.countReconcileChecked()
		if err != nil {
			// One record that cannot be checked (an unreadable field, say) must not stop
			// the sweep for good: it stays the oldest, and every sweep would end at it.
			// It goes to the back of the index and the sweep goes on; when Redis
			// itself fails, the re-score fails too and the sweep ends here.
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			if merr := r.w.store.MarkChecked(ctx, id, now); merr != nil {
				return res, errors.Join(err, merr)
			}
			if ok, _ := r.w.logLim.allow("reconciler record", r.w.now()); ok {
				r.log.Warn().Err(err).Str("msg_id", provider.MaskID(id)).Msg("reconciler cannot check a record; it is checked again after a period")
			}
			continue
		}
		if repair != "" {
			res.Repairs[repair]++
		}
	}
	return res, nil
}

// taskState is the asynq state of a task, "" when there is none (never written,
// deleted, or completed and past its retention).
func (r *Reconciler) taskState(queue, id string) (asynq.TaskState, bool, error) {
	info, err := r.insp.GetTaskInfo(queue, id)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("look up task %s: %w", provider.MaskID(id), err)
	}
	return info.State, true, nil
}

// live reports whether a task in state s will still run (or runs now).
func live(s asynq.TaskState, ok bool) bool {
	if !ok {
		return false
	}
	switch s {
	case asynq.TaskStateActive, asynq.TaskStatePending, asynq.TaskStateScheduled, asynq.TaskStateRetry, asynq.TaskStateAggregating:
		return true
	}
	return false
}

// check looks at one record and repairs it when nothing will finish it; it returns the
// repair made ("" for none).
func (r *Reconciler) check(ctx context.Context, id string) (string, error) {
	st := r.w.store
	rec, err := st.Get(ctx, id)
	if errors.Is(err, tasks.ErrNotFound) || err == nil && rec.State.Final() {
		_, err = st.ForgetNonFinal(ctx, id)
		return "", err
	}
	if err != nil {
		return "", err
	}
	now := r.w.now()
	lateBy := now.Sub(rec.ExpiresAt) // > 0: the TTL has passed
	sendState, sendOK, err := r.taskState(rec.Queue, id)
	if err != nil {
		return "", err
	}
	sendActive := sendOK && sendState == asynq.TaskStateActive

	switch rec.State {
	case tasks.StateQueued:
		switch {
		case sendActive:
		case lateBy > r.cfg.Period:
			return r.repair(ctx, rec, tasks.StateExpired, RepairExpired,
				"reconciler: ttl passed with no worker on the send task ("+taskWord(sendState, sendOK)+"); not sent")
		case !sendOK || sendState == asynq.TaskStateCompleted:
			if lateBy > 0 {
				return r.repair(ctx, rec, tasks.StateExpired, RepairExpired, "reconciler: no send task and the ttl passed; not sent")
			}
			return r.repair(ctx, rec, tasks.StateCancelled, RepairCancelled,
				"reconciler: send task gone (deleted, or lost before it was written); not sent")
		}
	case tasks.StateSending:
		switch {
		case sendActive, r.w.held.has(id): // a worker here still holds its accepted message_id
		case live(sendState, sendOK) && lateBy <= r.cfg.Period:
		default:
			return r.repair(ctx, rec, tasks.StateUnknown, RepairUnknown,
				"reconciler: sending with no worker on the send task ("+taskWord(sendState, sendOK)+"); it may have been sent")
		}
	case tasks.StateAccepted:
		if sendActive {
			break // the acceptance script wrote the due-poll entry; the send task ends now
		}
		return r.ensurePoll(ctx, rec)
	}
	return "", st.MarkChecked(ctx, id, now)
}

func taskWord(s asynq.TaskState, ok bool) string {
	if !ok {
		return "none"
	}
	return s.String()
}

// maxPollProbe is how many poll numbers around the record's poll count are looked up:
// a poll retried after it wrote (its next schedule failed) leaves the count one ahead
// of it (tasks.Update.Polled: a poll counts once however often it runs), and a
// record written before that rule may be further off.
const maxPollProbe = 2

// ensurePoll makes sure an accepted record has a live poll task, scheduling one (run
// at once) under the first unused poll number when it has none.
func (r *Reconciler) ensurePoll(ctx context.Context, rec tasks.Record) (string, error) {
	if due, err := r.w.pollDue(ctx, rec.ID); err != nil || due {
		// In the due-poll set: the dispatcher enqueues its poll (duepolls.go).
		if err != nil {
			return "", err
		}
		return "", r.w.store.MarkChecked(ctx, rec.ID, r.w.now())
	}
	free := -1
	for n := max(0, rec.Polls-maxPollProbe); n <= rec.Polls+maxPollProbe; n++ {
		s, ok, err := r.taskState(tasks.QueueStatus, tasks.PollTaskID(rec.ID, n))
		if err != nil {
			return "", err
		}
		if live(s, ok) {
			return "", r.w.store.MarkChecked(ctx, rec.ID, r.w.now())
		}
		if !ok && free < 0 && n >= rec.Polls {
			free = n
		}
	}
	if free < 0 {
		free = rec.Polls + maxPollProbe + 1
	}
	if err := r.w.sched.Schedule(ctx, pollArgsOf(rec, free), 0); err != nil {
		return "", err
	}
	r.w.metrics.countRepair(RepairPoll)
	r.log.Warn().Str("msg_id", provider.MaskID(rec.ID)).Int64("provider_msg_id", int64(rec.ProviderMessageID)).
		Str("status", string(rec.State)).Int("poll", free).Str("repair", RepairPoll).
		Msg("reconciler: accepted message had no poll task; poll scheduled")
	return RepairPoll, r.w.store.MarkChecked(ctx, rec.ID, r.w.now())
}

// repair moves rec from the state it was seen in to `to`, with an event (the
// Transition's), a metric and a log line. A refused compare-and-set means the record
// moved meanwhile: nothing to repair.
func (r *Reconciler) repair(ctx context.Context, rec tasks.Record, to tasks.State, repair, why string) (string, error) {
	got, ok, err := r.w.store.Transition(ctx, rec.ID, []tasks.State{rec.State}, to, tasks.Update{Error: shortErr(why), SettledBy: tasks.SettledByReconciler})
	if err != nil {
		return "", fmt.Errorf("reconcile %s: %w", provider.MaskID(rec.ID), err)
	}
	if !ok {
		return "", nil
	}
	r.w.metrics.countRepair(repair)
	r.w.metrics.countFinal(string(got.State), got.Channel, got.Polls, false)
	if to == tasks.StateUnknown {
		r.w.metrics.countUnknown()
	}
	r.log.Warn().Str("msg_id", provider.MaskID(rec.ID)).Str("from", string(rec.State)).Str("status", string(got.State)).
		Str("repair", repair).Str("reason", why).Str("dest", rec.DestMasked).
		Str("age", r.w.now().Sub(rec.CreatedAt).Round(time.Second).String()).
		Msg("reconciler repaired a record")
	return repair, nil
}
