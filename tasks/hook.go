package tasks

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/viberq/viberq/provider"
)

// A Hook runs a caller's Lua around a Transition, in the same script: one round trip
// and one atomic step for a state change and what must happen with it (the worker's
// send gate takes a limiter token only together with the move to sending; its
// acceptance write schedules the first poll together with the move to accepted).
// The Store keeps the compare-and-set, its checks, stamps and event; the hook adds
// to them and cannot weaken them.
//
// The script is, in order: the hook's Before, which may refuse by setting the table
// refuse to integers (the Transition then does not run; Before must not have written
// anything, and the caller gets the record as it is); the Transition (tasks' own script, unchanged); the hook's After,
// run only when the Transition applied, which may fill the table X with integers or
// strings returned to the caller. In Before and After, HK[i] are the hook's keys
// (KEYS after the Store's three), HA[i] its arguments (ARGV after the Store's), and
// the message ID is ARGV[3], the record's retention in ms ARGV[1].
type Hook struct {
	script *redis.Script
}

// NewHook builds a hook from its two Lua fragments (either may be empty). Build
// hooks once (package variables): each is one script cached by Redis.
func NewHook(before, after string) *Hook {
	src := "local partial = true\nlocal function transition()\n" + transitionLua + "\nend\n" + `
local nk, na = tonumber(ARGV[#ARGV-1]), tonumber(ARGV[#ARGV])
local HK, HA, X = {}, {}, {}
for i = 1, nk do HK[i] = KEYS[3 + i] end
for i = 1, na do HA[i] = ARGV[#ARGV - 2 - na + i] end
local refuse = nil
` + before + `
if refuse then return {-2, refuse, redis.call('HGETALL', KEYS[1])} end
local r = transition()
if type(r) == 'table' and r[1] == 1 then
` + after + `
end
if type(r) == 'table' then return {r[1], r[2], X} end
return r
`
	return &Hook{script: redis.NewScript(src)}
}

// HookRefusedError is returned by TransitionWith when the hook's Before refused:
// nothing was written. Reply is what Before put in refuse; Found reports whether the
// record exists (TransitionWith then returns it as it is).
type HookRefusedError struct {
	Reply []int64
	Found bool
}

func (e *HookRefusedError) Error() string {
	return fmt.Sprintf("transition refused by its hook %v", e.Reply)
}

// TransitionWith is Transition with hook h run in the same script, with the hook's
// keys and arguments. It returns what Transition returns, plus what the hook's After
// put in X (nil when the Transition did not apply), or a *HookRefusedError when the
// hook's Before refused; with one difference: when the Transition applied, the
// record holds only its ID and the fields the script read or wrote (State,
// ProviderMessageID, Channel, Error, BatchID, Polls, FinalAt, SourceType and with it
// Queue, Attempts when counted, UpdatedAt, and this change's stamps and fields), not
// the message's own (DestMasked, CreatedAt, ExpiresAt, ...), which a caller with the
// send task has already. A record that did not change, or a refusal, comes whole.
func (s *Store) TransitionWith(ctx context.Context, id string, from []State, to State, upd Update,
	h *Hook, keys []string, args ...any) (rec Record, ok bool, extra []any, err error) {
	if err := checkTransition(from, to, upd.Rerun); err != nil {
		return Record{}, false, nil, fmt.Errorf("transition %s: %w", provider.MaskID(id), err)
	}
	now := s.now()
	set, chg := stamps(from, to, upd, now)
	argv := s.transitionArgs(id, from, to, upd, set, chg, now)
	argv = append(argv, args...)
	argv = append(argv, len(keys), len(args))
	res, err := h.script.Run(ctx, s.rdb, append(s.transitionKeys(id), keys...), argv...).Result()
	if err != nil {
		return Record{}, false, nil, fmt.Errorf("transition %s: %w", provider.MaskID(id), err)
	}
	if arr, isArr := res.([]any); isArr && len(arr) == 3 {
		if n, _ := arr[0].(int64); n == -2 {
			return refusal(id, arr)
		}
	}
	rec, ok, extra, err = parseTransition(id, res)
	if !ok {
		extra = nil
	}
	return rec, ok, extra, err
}

func refusal(id string, arr []any) (Record, bool, []any, error) {
	refused := &HookRefusedError{}
	vals, _ := arr[1].([]any)
	for _, v := range vals {
		n, _ := v.(int64)
		refused.Reply = append(refused.Reply, n)
	}
	h, err := hashReply(arr[2])
	if err != nil {
		return Record{}, false, nil, fmt.Errorf("transition %s: %w", provider.MaskID(id), err)
	}
	var rec Record
	if len(h) > 0 {
		refused.Found = true
		if rec, err = recordFromHash(id, h); err != nil {
			return Record{}, false, nil, err
		}
	}
	return rec, false, nil, fmt.Errorf("transition %s: %w", provider.MaskID(id), refused)
}
