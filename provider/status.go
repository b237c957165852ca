package provider

import "strconv"

// ViberStatus is the Viber leg status (vendor notes: Viber statuses).
type ViberStatus int

// Viber statuses. 20 is Unknown (the Go SDK's 26 is a bug, vendor notes: Viber statuses).
const (
	ViberSent        ViberStatus = 0
	ViberDelivered   ViberStatus = 1
	ViberError       ViberStatus = 2
	ViberRejected    ViberStatus = 3
	ViberUndelivered ViberStatus = 4
	ViberPending     ViberStatus = 5
	ViberUnknown     ViberStatus = 20
)

// SMSStatus is the SMS leg status (sms_message_status). The vendor's page lists only
// 5 (undeliverable) and 3 (expired); the SDKs add 2 (delivered), and two of them 0
// and 6. The numbering is SMPP's message_state, which also names 1, 4, 7 and 8; those
// constants exist for display only: see Listed and Final.
type SMSStatus int

// SMS leg statuses.
const (
	SMSUnknown       SMSStatus = 0
	SMSEnroute       SMSStatus = 1
	SMSDelivered     SMSStatus = 2
	SMSExpired       SMSStatus = 3
	SMSDeleted       SMSStatus = 4
	SMSUndeliverable SMSStatus = 5
	SMSAccepted      SMSStatus = 6
	SMSUnknown7      SMSStatus = 7
	SMSRejected      SMSStatus = 8
)

// Outcome combines both legs (README, Message states).
type Outcome int

// Outcomes.
const (
	OutcomePending Outcome = iota
	OutcomeDeliveredViber
	OutcomeDeliveredSMS
	OutcomeUndelivered
)

// String returns the lowercase name of the status ("sent", "delivered", "error",
// "rejected", "undelivered", "pending", "unknown"), or "status(N)" for a code the
// vendor does not list (vendor notes: Viber statuses).
func (s ViberStatus) String() string {
	switch s {
	case ViberSent:
		return "sent"
	case ViberDelivered:
		return "delivered"
	case ViberError:
		return "error"
	case ViberRejected:
		return "rejected"
	case ViberUndelivered:
		return "undelivered"
	case ViberPending:
		return "pending"
	case ViberUnknown:
		return "unknown"
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}

// Final reports whether the Viber leg will not change any more: delivered (1), error
// (2), rejected (3) and undelivered (4). Sent (0), pending (5), unknown (20) and any
// unlisted code are not final (vendor notes: Viber statuses): the poller decides when to give up on them.
func (s ViberStatus) Final() bool {
	return s == ViberDelivered || s.Failed()
}

// Failed reports whether the Viber leg failed for good: error (2), rejected (3) or
// undelivered (4). With an SMS fallback the SMS leg may still follow (README, Message states).
func (s ViberStatus) Failed() bool {
	return s == ViberError || s == ViberRejected || s == ViberUndelivered
}

// String returns the lowercase SMPP-style name of the SMS leg status ("unknown",
// "enroute", "delivered", "expired", "deleted", "undeliverable", "accepted",
// "rejected"), or "sms_status(N)" for an unlisted code (vendor notes: SMS statuses).
func (s SMSStatus) String() string {
	switch s {
	case SMSUnknown, SMSUnknown7:
		return "unknown"
	case SMSEnroute:
		return "enroute"
	case SMSDelivered:
		return "delivered"
	case SMSExpired:
		return "expired"
	case SMSDeleted:
		return "deleted"
	case SMSUndeliverable:
		return "undeliverable"
	case SMSAccepted:
		return "accepted"
	case SMSRejected:
		return "rejected"
	}
	return "sms_status(" + strconv.Itoa(int(s)) + ")"
}

// Final reports whether the SMS leg will not change any more: delivered (2), expired
// (3) or undeliverable (5). Every other code is pending, including the SMPP-style
// codes nobody lists for this API (1, 4, 7, 8): a code the vendor's page and SDKs do
// not list may even mean "delivered", so it never ends a message (see Listed).
func (s SMSStatus) Final() bool {
	return s == SMSDelivered || s.Failed()
}

// Failed reports whether the SMS leg failed for good: expired (3) or undeliverable
// (5), the two codes the vendor's page lists ("Статусы SMS сообщений").
func (s SMSStatus) Failed() bool {
	return s == SMSExpired || s == SMSUndeliverable
}

// Listed reports whether the vendor's page or its SDKs list the code: 3 and 5 (page),
// 2 (every SDK; the page lists no "delivered"), 0 and 6 (two SDKs). A caller seeing an
// unlisted code should log it: the message stays pending.
func (s SMSStatus) Listed() bool {
	switch s {
	case SMSUnknown, SMSDelivered, SMSExpired, SMSUndeliverable, SMSAccepted:
		return true
	}
	return false
}

// Listed reports whether the vendor's page (1, 2, 3, 4, 5, 20) or its SDKs (0, sent)
// list the code. An unlisted code is pending; log it.
func (s ViberStatus) Listed() bool {
	switch s {
	case ViberSent, ViberDelivered, ViberError, ViberRejected, ViberUndelivered, ViberPending, ViberUnknown:
		return true
	}
	return false
}

// String returns "pending", "delivered_viber", "delivered_sms" or "undelivered"
// ("outcome(N)" for a value outside the enum).
func (o Outcome) String() string {
	switch o {
	case OutcomePending:
		return "pending"
	case OutcomeDeliveredViber:
		return "delivered_viber"
	case OutcomeDeliveredSMS:
		return "delivered_sms"
	case OutcomeUndelivered:
		return "undelivered"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Final reports whether the outcome is final: anything but pending.
func (o Outcome) Final() bool {
	return o == OutcomeDeliveredViber || o == OutcomeDeliveredSMS || o == OutcomeUndelivered
}

// Combine derives the overall result of a message from its two legs (README, Message states):
//
//   - delivered via Viber if the Viber status is 1;
//   - delivered via SMS if the SMS status is 2;
//   - undelivered if the Viber leg failed (2, 3, 4) and either the message has no SMS
//     fallback or the SMS leg failed (3, 5);
//   - pending otherwise, including every unknown code (never a crash).
//
// sms is nil while the provider reports no SMS status. The "no SMS leg appeared
// within the TTL plus a grace period" rule needs a clock and belongs to the
// poller, not here.
func Combine(viber ViberStatus, sms *SMSStatus, hasSMSFallback bool) Outcome {
	switch {
	case viber == ViberDelivered:
		return OutcomeDeliveredViber
	case sms != nil && *sms == SMSDelivered:
		return OutcomeDeliveredSMS
	case viber.Failed() && (!hasSMSFallback || (sms != nil && sms.Failed())):
		return OutcomeUndelivered
	}
	return OutcomePending
}
