package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

// The send gate is the first Redis step of a send (README, "Exactly once, as far as
// it can be"; "The send path"): one script takes a token of the global send bucket,
// if one is free now, and moves the record queued → sending — both or neither. A
// record that is not queued is returned as it is, and no token is taken for it; a
// bucket with no token free now (or paused by a 429) refuses, returning the record,
// and the send waits in Limiter.Wait like any other.
//
// The token arithmetic is the Limiter's GCRA (gcraLua in limiter.go, its only copy)
// restricted to a token that is due now: same keys, same theoretical arrival time,
// same floor (the TAT this process's latest token left, raised by the gate's tokens
// as by Wait's), so the gate and Wait share one bucket and its accuracy
// (BENCHMARKS.md, row 4). Only a token due now is taken here: a later one would leave
// the record in sending while the caller sleeps towards it, and a crash then would
// end the message unknown, never sent.

// gateBefore checks the pause key and whether a token is free now (HK[1] TAT µs,
// HK[2] pause Unix ms; HA[1] emission interval µs, 0 = unlimited, HA[2] burst, HA[3]
// the floor). Refusals: {0, ms} paused for ms; {1, µs} the next token is µs away.
const gateBefore = gcraLua + `
local gnow = gcra_now()
local giv = tonumber(HA[1])
local gpaused, gwait, gtat = gcra_check(HK[1], HK[2], gnow, giv, tonumber(HA[2]), tonumber(HA[3]) or 0)
if gpaused > 0 then
  refuse = {0, gpaused}
elseif giv > 0 and gwait > 0 then
  refuse = {1, gwait}
end
`

// gateAfter takes the token, only once the record moved to sending, and returns the
// new TAT (X[1]) for the caller's floor.
const gateAfter = `
if giv > 0 then
  gcra_take(HK[1], gnow, gtat)
  X[1] = gtat
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

// gate runs the send gate for message a: the record after it, and what happened. A
// started send's record holds what the gate's script read or wrote
// (Store.TransitionWith), with the masked destination taken from a, as the record's
// own was written from the same arguments (tasks.NewRecord); the send needs no more.
func (w *Worker) gate(ctx context.Context, a tasks.SendArgs) (tasks.Record, gateResult, error) {
	l := w.sendLim
	rec, ok, extra, err := w.store.TransitionWith(ctx, a.ID, []tasks.State{tasks.StateQueued}, tasks.StateSending,
		tasks.Update{IncAttempts: true}, sendGateHook, []string{l.tatKey, l.pauseKey},
		l.interval.Microseconds(), l.burst, l.lastTAT.Load())
	var refused *tasks.HookRefusedError
	switch {
	case errors.As(err, &refused) && refused.Found:
		return rec, gateNoToken, nil
	case errors.As(err, &refused), errors.Is(err, tasks.ErrNotFound):
		return rec, gateNoRecord, nil
	case err != nil:
		return rec, 0, fmt.Errorf("send %s: mark sending: %w", provider.MaskID(a.ID), err)
	case !ok:
		return rec, gateNotReady, nil
	}
	if len(extra) == 1 { // the token taken: its TAT is this process's floor, as after Wait
		if tat, isInt := extra[0].(int64); isInt {
			l.raiseFloor(tat)
		}
	}
	w.metrics.observeLimiterWait(BucketSend, 0)
	rec.DestMasked = provider.MaskPhone(a.Message.DestinationAddr)
	return rec, gateStarted, nil
}
