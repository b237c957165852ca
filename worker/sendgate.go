package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/viberq/viberq/tasks"
)

// The send gate is the first Redis step of a send (README, "Exactly once, as far as
// it can be"; "The send path"): one script takes a token of the global send bucket,
// if one is free now, and moves the record queued → sending — both or neither. A
// record that is not queued is returned as it is, and no token is taken for it; a
// bucket with no token free now (or paused by a 429) refuses, returning the record,
// and the send waits in Limiter.Wait like any other.
//
// The token arithmetic is the Limiter's GCRA (limiter.go, reserveScript) restricted
// to a slot that is due now: same keys, same theoretical arrival time, so the gate
// and Wait share one bucket and its accuracy (BENCHMARKS.md, row 4). Only a slot due
// now is taken here: a later one would leave the record in sending while the caller
// sleeps towards it, and a crash then would end the message unknown, never sent.

// gateBefore checks the pause key and whether a token is free now (HK[1] TAT µs,
// HK[2] pause Unix ms; HA[1] emission interval µs, 0 = unlimited, HA[2] burst).
// Refusals: {0, ms} paused for ms; {1, µs} the next token is µs away.
const gateBefore = `
redis.replicate_commands()
local gt = redis.call('TIME')
local gnow = tonumber(gt[1]) * 1000000 + tonumber(gt[2])
local gpause = tonumber(redis.call('GET', HK[2]) or '0') or 0
local giv, gburst = tonumber(HA[1]), tonumber(HA[2])
local gtat = 0
if gpause * 1000 > gnow then
  refuse = {0, math.ceil(gpause - gnow / 1000)}
elseif giv > 0 then
  gtat = tonumber(redis.call('GET', HK[1]) or '0') or 0
  if gtat < gnow then gtat = gnow end
  local gwait = gtat + giv - giv * gburst - gnow
  if gwait > 0 then refuse = {1, gwait} end
end
`

// gateAfter takes the token, only once the record moved to sending.
const gateAfter = `
if giv > 0 then
  local nt = gtat + giv
  redis.call('SET', HK[1], string.format('%d', nt), 'PX', math.ceil((nt - gnow) / 1000) + 1000)
end
`

var sendGateHook = tasks.NewHook(gateBefore, gateAfter)

// gateResult is what the gate did.
type gateResult int

const (
	gateStarted  gateResult = iota // queued → sending with a token: send now
	gateNotReady                   // the record is not queued: nothing written, no token
	gateNoToken                    // no token free now (or paused): nothing written
	gateNoRecord                   // no record: nothing written, no token
)

// gate runs the send gate for message a: the record after it, and what happened.
func (w *Worker) gate(ctx context.Context, a tasks.SendArgs) (tasks.Record, gateResult, error) {
	l := w.sendLim
	rec, ok, _, err := w.store.TransitionWith(ctx, a.ID, []tasks.State{tasks.StateQueued}, tasks.StateSending,
		tasks.Update{IncAttempts: true}, sendGateHook, []string{l.tatKey, l.pauseKey}, l.interval.Microseconds(), l.burst)
	var refused *tasks.HookRefusedError
	switch {
	case errors.As(err, &refused) && refused.Found:
		return rec, gateNoToken, nil
	case errors.As(err, &refused), errors.Is(err, tasks.ErrNotFound):
		return rec, gateNoRecord, nil
	case err != nil:
		return rec, 0, fmt.Errorf("send %s: mark sending: %w", a.ID, err)
	case !ok:
		return rec, gateNotReady, nil
	}
	w.metrics.observeLimiterWait(BucketSend, 0)
	return rec, gateStarted, nil
}
