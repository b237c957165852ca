package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

// Due polls: the first poll of an accepted message is not enqueued by the send
// handler. The script that writes the acceptance (sending → accepted with the
// provider's message_id) also adds the message to the due-poll set
// "{prefix}polls:due" (member: message ID, score: when poll 0 is due, Unix ms) and,
// for a two-way message, writes the provider index — one round trip, one atomic step,
// so an accepted record never lacks its first poll. The dispatcher (one loop per
// worker process, every DelayedTaskCheckInterval, like asynq's forwarder) claims the
// entries due within the period plus dueLookahead, reads their records in one
// pipelined round trip and schedules poll 0 of each still accepted at its due time
// (task ID "poll:{id}:0", so a poll scheduled twice is one task), then removes the
// entries. A claim moves the entries dueClaimLease ahead: a process
// that dies between the claim and the removal leaves them due again after it. The
// reconciler counts a due-set entry as a poll (reconcile.go, ensurePoll).
//
// What it moves: the poll task no longer exists in asynq (nor in its UI) between the
// acceptance and the due time; `viberq status` shows the record accepted meanwhile.

// Dispatcher shape.
const (
	dueBatch      = 500
	dueClaimLease = 30 * time.Second
)

// dueKey is the due-poll set.
func (w *Worker) dueKey() string { return w.cfg.Prefix + "polls:due" }

// acceptAfter adds the message to the due-poll set (HK[1], score HA[1]) and, when
// HA[2] is "1", writes the provider index HK[2] for the record's retention.
const acceptAfter = `
redis.call('ZADD', HK[1], HA[1], ARGV[3])
if HA[2] == '1' then redis.call('SET', HK[2], ARGV[3], 'PX', ARGV[1]) end
`

var acceptHook = tasks.NewHook("", acceptAfter)

// firstPollDue is when poll 0 of a message accepted at acceptedAt is due.
func (w *Worker) firstPollDue(acceptedAt, expiresAt time.Time) time.Time {
	p := w.sched.Policy()
	d, ok := p.Next(0, acceptedAt, p.Deadline(acceptedAt, expiresAt), w.now(), nil)
	if !ok {
		return w.now()
	}
	return w.now().Add(d)
}

// transitionAccepted is the acceptance write: sending → accepted with the provider's
// message_id, the first poll made due and (two-way) the provider index, in one script.
func (w *Worker) transitionAccepted(ctx context.Context, a tasks.SendArgs, pid provider.MessageID) (tasks.Record, bool, error) {
	empty, index := "", "0"
	if a.Message.MessageType.TwoWay() {
		index = "1"
	}
	due := w.firstPollDue(w.now(), a.ExpiresAt)
	rec, ok, _, err := w.store.TransitionWith(ctx, a.ID, []tasks.State{tasks.StateSending}, tasks.StateAccepted,
		tasks.Update{ProviderMessageID: pid, Error: &empty}, acceptHook,
		[]string{w.dueKey(), w.store.ProviderIndexKey(pid)}, due.UnixMilli(), index)
	return rec, ok, err
}

// ensureDue makes poll 0 of an accepted record due (a re-delivered send task of a
// message accepted earlier), unless it is due already.
func (w *Worker) ensureDue(ctx context.Context, rec tasks.Record) error {
	due := w.firstPollDue(cmp.Or(rec.AcceptedAt, rec.UpdatedAt), rec.ExpiresAt)
	if err := w.rdb.ZAddNX(ctx, w.dueKey(), redis.Z{Score: float64(due.UnixMilli()), Member: rec.ID}).Err(); err != nil {
		return fmt.Errorf("make poll 0 of %s due: %w", provider.MaskID(rec.ID), err)
	}
	return nil
}

// pollDue reports whether message id is in the due-poll set.
func (w *Worker) pollDue(ctx context.Context, id string) (bool, error) {
	err := w.rdb.ZScore(ctx, w.dueKey(), id).Err()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("due poll of %s: %w", provider.MaskID(id), err)
	}
	return true, nil
}

// claimScript takes up to ARGV[3] entries of the due set KEYS[1] due by ARGV[1] (ms)
// and moves them ARGV[2] ms ahead. Returns their IDs and due times, flat.
var claimScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[3])
local lease = tonumber(ARGV[1]) + tonumber(ARGV[2])
for i = 1, #due, 2 do redis.call('ZADD', KEYS[1], 'XX', lease, due[i]) end
return due
`)

// dispatchDue enqueues poll 0 of up to dueBatch messages due by `until`, each to run
// at its due time (asynq's scheduled set), and returns how many entries it handled.
func (w *Worker) dispatchDue(ctx context.Context, until time.Time) (int, error) {
	flat, err := claimScript.Run(ctx, w.rdb, []string{w.dueKey()}, until.UnixMilli(), dueClaimLease.Milliseconds(), dueBatch).StringSlice()
	if err != nil || len(flat) == 0 {
		return 0, err
	}
	ids := make([]string, 0, len(flat)/2)
	dueAt := make(map[string]time.Time, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		ms, _ := strconv.ParseFloat(flat[i+1], 64)
		ids = append(ids, flat[i])
		dueAt[flat[i]] = time.UnixMilli(int64(ms))
	}
	recs, err := w.store.GetMany(ctx, ids)
	if err != nil {
		return 0, err
	}
	done := make([]any, 0, len(ids))
	var errs []error
	for _, id := range ids {
		rec, ok := recs[id]
		if ok && rec.State == tasks.StateAccepted && rec.Polls == 0 {
			if err := w.sched.Schedule(ctx, pollArgsOf(rec, 0), dueAt[id].Sub(w.now())); err != nil {
				errs = append(errs, err)
				continue // stays claimed: due again after the lease
			}
		}
		done = append(done, id)
	}
	if len(done) > 0 {
		if err := w.rdb.ZRem(ctx, w.dueKey(), done...).Err(); err != nil {
			errs = append(errs, fmt.Errorf("remove due polls: %w", err))
		}
	}
	return len(ids), errors.Join(errs...)
}

// dueLookahead is how far ahead of its due time the dispatcher takes an entry, beyond
// its period: asynq schedules in whole seconds, at least one second ahead
// (scheduler.Schedule), so a poll handed over a second or more before its due time
// runs when it would have run had the send handler scheduled it.
const dueLookahead = time.Second

// DispatchDuePolls schedules the first polls of accepted messages from the due-poll
// set, every DelayedTaskCheckInterval, until ctx is done. Run starts it; a program
// that embeds Handler in its own asynq server runs it beside.
func (w *Worker) DispatchDuePolls(ctx context.Context) {
	period := w.cfg.DelayedTaskCheckInterval
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for ctx.Err() == nil {
			n, err := w.dispatchDue(ctx, w.now().Add(period+dueLookahead))
			if err != nil && ctx.Err() == nil {
				if ok, _ := w.logLim.allow("due polls", w.now()); ok {
					w.log.Warn().Err(err).Msg("cannot dispatch due polls; they stay due")
				}
			}
			if err != nil || n < dueBatch {
				break
			}
		}
	}
}
