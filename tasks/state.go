package tasks

import (
	"errors"
	"fmt"
)

// State is the delivery state of a message (README, Message states). The values are stored in
// records and events: never rename one.
type State string

// States.
const (
	// StateQueued: enqueued, not yet taken by a worker (or put back after a send that
	// certainly did not reach the provider).
	StateQueued State = "queued"
	// StateSending: a worker is calling send-viber.
	StateSending State = "sending"
	// StateAccepted: the provider returned a message_id; polling for the outcome.
	StateAccepted State = "accepted"
	// StateDelivered (final): delivered by Viber or by the SMS fallback (see Channel).
	StateDelivered State = "delivered"
	// StateUndelivered (final): the provider reported a failure on every leg.
	StateUndelivered State = "undelivered"
	// StateExpired (final): the TTL passed before sending, or before any final status.
	StateExpired State = "expired"
	// StateRejected (final): invalid for the provider (400 / code 1).
	StateRejected State = "rejected"
	// StateDropped (final): the provider's balance was empty (402 / code 3); an operator
	// may re-run the archived task after a top-up (Update.Rerun).
	StateDropped State = "dropped"
	// StateUnknown (final): the send may or may not have happened (README, Exactly once), or no
	// final status arrived before the provider's status window closed.
	StateUnknown State = "unknown"
	// StateCancelled (final): stopped before it was sent, by a producer or an operator
	// (a cancelled batch, a task deleted in the Asynq UI). Only a queued record can be
	// cancelled, so a cancelled message was never handed to the provider.
	StateCancelled State = "cancelled"
)

// States lists every state, in flow order.
var States = []State{
	StateQueued, StateSending, StateAccepted,
	StateDelivered, StateUndelivered, StateExpired, StateRejected, StateDropped, StateUnknown,
	StateCancelled,
}

// Channels of a delivered message (Record.Channel).
const (
	ChannelViber = "viber"
	ChannelSMS   = "sms"
)

// Valid reports whether s is one of States.
func (s State) Valid() bool {
	switch s {
	case StateQueued, StateSending, StateAccepted,
		StateDelivered, StateUndelivered, StateExpired, StateRejected, StateDropped, StateUnknown,
		StateCancelled:
		return true
	}
	return false
}

// Final reports whether s is final: delivered, undelivered, expired, rejected,
// dropped, unknown or cancelled.
func (s State) Final() bool {
	switch s {
	case StateDelivered, StateUndelivered, StateExpired, StateRejected, StateDropped, StateUnknown,
		StateCancelled:
		return true
	}
	return false
}

// nonFinal lists the states whose records Update may change.
var nonFinal = []State{StateQueued, StateSending, StateAccepted}

// transitions lists the legal state changes, besides staying in a non-final state.
var transitions = map[State][]State{
	// expired: TTL passed before sending; rejected/dropped: decided without a call
	// (e.g. a message invalid under current rules, or sends paused for balance).
	// cancelled: a producer or operator stopped it before any send began.
	StateQueued: {StateSending, StateExpired, StateRejected, StateDropped, StateCancelled},
	// queued: the send certainly did not reach the provider (429, refused connection,
	// 5xx to be retried); unknown: it may have (README, Exactly once).
	StateSending: {StateQueued, StateAccepted, StateRejected, StateDropped, StateUnknown, StateExpired},
	// expired: no final status before the deadline while the TTL ran out; unknown: the
	// provider's 5-day status window closed without a final status.
	StateAccepted: {StateDelivered, StateUndelivered, StateExpired, StateUnknown},
}

// rerunTransitions are allowed only with Update.Rerun: an operator re-ran the
// archived task of a dropped message after a balance top-up (README, Error policy: the 402 row).
var rerunTransitions = map[State][]State{
	StateDropped: {StateQueued, StateSending},
}

// CanTransition reports whether a record may go from one state to another. Staying in
// the same non-final state is allowed (a field update); final states never change,
// except dropped → queued or sending when rerun is set.
func CanTransition(from, to State, rerun bool) bool {
	if !from.Valid() || !to.Valid() {
		return false
	}
	if from == to {
		return !from.Final()
	}
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	if rerun {
		for _, s := range rerunTransitions[from] {
			if s == to {
				return true
			}
		}
	}
	return false
}

// ErrIllegalTransition is returned by Store.Transition when a from state can never
// reach the target state: a programming error, not a race.
var ErrIllegalTransition = errors.New("illegal state transition")

func checkTransition(from []State, to State, rerun bool) error {
	if len(from) == 0 {
		return fmt.Errorf("%w: no from state", ErrIllegalTransition)
	}
	for _, f := range from {
		if !CanTransition(f, to, rerun) {
			return fmt.Errorf("%w: %q → %q", ErrIllegalTransition, f, to)
		}
	}
	return nil
}
