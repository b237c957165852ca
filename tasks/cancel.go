package tasks

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/viberq/viberq/provider"
)

// cancelLua moves a queued record to cancelled and removes its send task, in one step.
//
// KEYS[1] record, KEYS[2] events stream, KEYS[3] non-final index (nonfinal.go)
// ARGV[1] retention ms, ARGV[2] stream cap, ARGV[3] id, ARGV[4] now ms, ARGV[5] the
// batch key base (batchKeyBase), ARGV[6] the settled_by code of SettledByOperator,
// ARGV[7..] the key prefixes of the send queues
// ("asynq:{critical}:", ...).
//
// Returns {1, removed} when cancelled (removed 1 when a task was removed, 0 when there
// was none or it is active: a worker holds it and its compare-and-set queued → sending
// will fail), {0, state} when the record is not queued (nothing written), {-1} when
// there is no record. The record part is transitionScript's queued → cancelled; the
// task part mirrors asynq v0.26.0's deleteTaskCmd (internal/rdb/inspect.go) for the
// states a send task can be in (send tasks have no unique key and no group).
var cancelScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {-1} end
if cur ~= 'queued' then return {0, cur} end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'final_at', ARGV[4], 'updated_at', ARGV[4], 'settled_by', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[3])
local ev = redis.call('HMGET', KEYS[1], 'channel', 'provider_message_id', 'error', 'batch')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
  'id', ARGV[3], 'from', cur, 'to', 'cancelled', 'channel', ev[1] or '',
  'provider_message_id', ev[2] or '', 'error', ev[3] or '', 'at', ARGV[4])
if ev[4] then
  local ck = ARGV[5] .. 'n:' .. ev[4]
  redis.call('HINCRBY', ck, cur, -1)
  redis.call('HINCRBY', ck, 'cancelled', 1)
  if redis.call('PTTL', ck) < tonumber(ARGV[1]) then -- the batch keys share one expiry
    redis.call('PEXPIRE', ck, ARGV[1])
    redis.call('PEXPIRE', ARGV[5] .. 'ids:' .. ev[4], ARGV[1])
  end
end
local removed = 0
for i = 7, #ARGV do
  local tk = ARGV[i] .. 't:' .. ARGV[3]
  local st = redis.call('HGET', tk, 'state')
  if st == 'pending' then
    if redis.call('LREM', ARGV[i] .. 'pending', 1, ARGV[3]) > 0 then
      redis.call('DEL', tk)
      removed = 1
    end
  elseif st and st ~= 'active' and st ~= 'aggregating' then
    if redis.call('ZREM', ARGV[i] .. st, ARGV[3]) > 0 then
      redis.call('DEL', tk)
      removed = 1
    end
  end
end
return {1, removed}
`)

// sendQueues are the queues a send task can be in (QueueFor).
var sendQueues = []string{QueueCritical, QueueDefault}

func (e *Enqueuer) cancelCall(id string) scriptCall {
	s := e.store
	args := []any{s.retention.Milliseconds(), s.maxLen, id, e.cfg.Now().UnixMilli(), s.batchKeyBase(), settledCode(SettledByOperator)}
	for _, q := range sendQueues {
		args = append(args, asynqQueuePrefix(q))
	}
	return scriptCall{keys: []string{s.Key(id), s.EventsKey(), s.NonFinalKey()}, args: args}
}

// cancelReply decodes a cancelScript reply: cancelled, or the state that prevented it.
func cancelReply(id string, res any, err error) (cancelled bool, state State, _ error) {
	if err != nil {
		return false, "", fmt.Errorf("cancel %s: %w", provider.MaskID(id), err)
	}
	arr, ok := res.([]any)
	if !ok || len(arr) == 0 {
		return false, "", fmt.Errorf("cancel %s: unexpected script reply %T", provider.MaskID(id), res)
	}
	switch code, _ := arr[0].(int64); {
	case code == -1:
		return false, "", fmt.Errorf("cancel %s: %w", provider.MaskID(id), ErrNotFound)
	case code == 1:
		return true, StateCancelled, nil
	case len(arr) == 2:
		st, _ := arr[1].(string)
		return false, State(st), nil
	}
	return false, "", fmt.Errorf("cancel %s: unexpected script reply %v", provider.MaskID(id), arr)
}

// Cancel stops message id if it has not been sent: a queued record moves to cancelled
// (an event, final) and its send task is removed, in one atomic step. It returns true
// when it cancelled the message, false and the state it found when the message is
// already past queued (sending, accepted or final: a cancel never undoes a send), and
// ErrNotFound when there is no record.
//
// A cancel racing a worker cannot produce a message both sent and cancelled: the
// worker's compare-and-set queued → sending and this one queued → cancelled run on the
// same record in Redis, and exactly one of them wins. A task a worker holds already
// stays with it; its compare-and-set then fails and it sends nothing.
func (e *Enqueuer) Cancel(ctx context.Context, id string) (cancelled bool, state State, err error) {
	c := e.cancelCall(id)
	res, err := cancelScript.Run(ctx, e.store.rdb, c.keys, c.args...).Result()
	return cancelReply(id, res, err)
}

// CancelResult is the outcome of CancelBatch.
type CancelResult struct {
	// Cancelled is the number of messages this call cancelled.
	Cancelled int `json:"cancelled"`
	// NotCancelled is the number of messages that were past queued (being sent,
	// sent, or already final, cancelled included) or whose record has expired.
	NotCancelled int `json:"not_cancelled"`
}

// CancelBatch cancels every message of batch id that has not been sent yet, as Cancel
// does for one, BatchPipeline per round trip, and returns the numbers. It returns
// ErrNotFound for a batch without messages. Messages enqueued into the batch while it
// runs may escape it; cancelling again catches them.
//
// Cost: pending tasks are removed from asynq's pending list, which costs Redis a scan
// from the newest end of the list to the task. The batch is walked newest first, so a
// batch enqueued last costs little; each message enqueued after the batch into the
// same queue adds one step per pending task removed.
func (e *Enqueuer) CancelBatch(ctx context.Context, id string) (CancelResult, error) {
	var res CancelResult
	key := e.store.batchIDsKey(id)
	n, err := e.store.rdb.LLen(ctx, key).Result()
	if err != nil {
		return res, fmt.Errorf("cancel batch %s: %w", provider.MaskID(id), err)
	}
	if n == 0 {
		return res, fmt.Errorf("cancel batch %s: %w", provider.MaskID(id), ErrNotFound)
	}
	for end := n - 1; end >= 0; end -= BatchPipeline {
		start := max(end-BatchPipeline+1, 0)
		ids, err := e.store.rdb.LRange(ctx, key, start, end).Result()
		if err != nil {
			return res, fmt.Errorf("cancel batch %s: %w", provider.MaskID(id), err)
		}
		calls := make([]scriptCall, len(ids))
		for k := range ids {
			calls[k] = e.cancelCall(ids[len(ids)-1-k])
		}
		replies := runPipelined(ctx, e.store.rdb, cancelScript, calls)
		for k, r := range replies {
			ok, _, err := cancelReply(ids[len(ids)-1-k], r.Val(), r.Err())
			switch {
			case errors.Is(err, ErrNotFound):
				res.NotCancelled++
			case err != nil:
				return res, fmt.Errorf("cancel batch %s: %w", provider.MaskID(id), err)
			case ok:
				res.Cancelled++
			default:
				res.NotCancelled++
			}
		}
	}
	return res, nil
}
