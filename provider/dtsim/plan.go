package dtsim

import (
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/viberq/viberq/provider"
)

// record is one accepted message: its ledger data and its delivery plan. Offsets are
// milliseconds from the accept time (at most ~49 days), so a record stays small:
// the store holds up to Config.MaxMessages of them.
type record struct {
	id       int64
	at       int64 // accept time, Unix nanoseconds on the simulator's clock
	smsID    int64 // 0: no SMS leg
	dest     string
	textHash [32]byte

	pendingMS    uint32 // status 0 until here, then 5
	viberMS      uint32 // Viber outcome
	smsEnrouteMS uint32 // SMS 6 (accepted) until here, then 1 (enroute)
	smsFinalMS   uint32 // SMS outcome

	viberFinal int8 // provider.ViberStatus
	smsFinal   int8 // provider.SMSStatus
	flags      uint8
	calls      uint32 // receive-viber calls for this message
}

const (
	flagTextSMS = 1 << iota // sent with text_sms
	flagExpired             // the Viber leg was cut by validity_period
	flagDup                 // an earlier stored message had the same destination and text
)

// state is a record evaluated at one instant.
type state struct {
	viber  provider.ViberStatus
	smsLeg bool
	sms    provider.SMSStatus
	final  bool
}

// Outcome names used in Stats.Finals (the same words as provider.Outcome).
const (
	OutcomeDeliveredViber = "delivered_viber"
	OutcomeDeliveredSMS   = "delivered_sms"
	OutcomeUndelivered    = "undelivered"
)

func (st state) outcome() string {
	switch {
	case st.viber == provider.ViberDelivered:
		return OutcomeDeliveredViber
	case st.smsLeg && st.sms == provider.SMSDelivered:
		return OutcomeDeliveredSMS
	}
	return OutcomeUndelivered
}

// stateAt evaluates the plan elapsed after the accept time.
func (r *record) stateAt(elapsed time.Duration) state {
	ms := max(elapsed.Milliseconds(), 0) // offsets are rounded up, elapsed down: never early
	switch {
	case ms < int64(r.pendingMS):
		return state{viber: provider.ViberSent}
	case ms < int64(r.viberMS):
		return state{viber: provider.ViberPending}
	}
	st := state{viber: provider.ViberStatus(r.viberFinal)}
	if r.smsID == 0 {
		st.final = true
		return st
	}
	st.smsLeg = true
	switch {
	case ms < int64(r.smsEnrouteMS):
		st.sms = provider.SMSAccepted
	case ms < int64(r.smsFinalMS):
		st.sms = provider.SMSEnroute
	default:
		st.sms = provider.SMSStatus(r.smsFinal)
		st.final = true
	}
	return st
}

// finalMS is when the plan reaches its final state.
func (r *record) finalMS() uint32 {
	if r.smsID != 0 {
		return r.smsFinalMS
	}
	return r.viberMS
}

// planned is a plan plus what is pushed out of band.
type planned struct {
	rec   record
	reply *replyPlan
}

type replyPlan struct {
	atMS  uint32
	token uint64
	text  string
}

var replyTexts = []string{"Yes", "No", "Stop", "Thanks!", "1", "Call me back, please", "Дякую 👍"}

// draw makes the delivery plan of message id from the Seed and the id only, so a
// message's fate does not depend on the order of concurrent requests. Every draw is
// made whether used or not, so changing one share does not reshuffle the others.
func (s *Sim) draw(id int64, m sendRequest) planned {
	c := &s.cfg
	r := rand.New(rand.NewPCG(uint64(c.Seed), uint64(id)))
	viberAt := uniform(r, c.DeliverMin, c.DeliverMax)
	failU := r.Float64()
	failCode := c.ViberFailCodes[r.IntN(len(c.ViberFailCodes))]
	smsDur := uniform(r, c.SMSDelayMin, c.SMSDelayMax)
	smsU := r.Float64()
	replyU := r.Float64()
	replyDelay := uniform(r, c.ReplyDelayMin, c.ReplyDelayMax)
	token := 1<<53 + r.Uint64N(1<<62) // above 2^53: tokens must not go through float64
	replyText := replyTexts[r.IntN(len(replyTexts))]

	rec := record{id: id, dest: m.DestinationAddr}
	validity := c.Validity
	if m.ValidityPeriod > 0 {
		validity = time.Duration(m.ValidityPeriod) * time.Second
	}
	fail := failU < c.ViberFailShare
	if viberAt > validity {
		// Nothing is delivered after validity_period: the Viber leg ends undelivered at
		// the deadline.
		viberAt, fail, failCode = validity, true, provider.ViberUndelivered
		rec.flags |= flagExpired
	}
	rec.viberMS = toMS(viberAt)
	rec.pendingMS = min(toMS(c.PendingAfter), rec.viberMS)
	rec.viberFinal = int8(provider.ViberDelivered)
	if fail {
		rec.viberFinal = int8(failCode)
	}
	if m.TextSMS != "" {
		rec.flags |= flagTextSMS
		if fail {
			rec.smsID = c.FirstSMSMessageID + (id - c.FirstMessageID)
			rec.smsEnrouteMS = addMS(rec.viberMS, toMS(smsDur/2))
			rec.smsFinalMS = addMS(rec.viberMS, toMS(smsDur))
			switch {
			case smsU < c.SMSExpiredShare:
				rec.smsFinal = int8(provider.SMSExpired)
			case smsU < c.SMSExpiredShare+c.SMSUndeliverableShare:
				rec.smsFinal = int8(provider.SMSUndeliverable)
			default:
				rec.smsFinal = int8(provider.SMSDelivered)
			}
		}
	}
	p := planned{rec: rec}
	if !fail && m.twoWay() && c.ReplyURL != "" && replyU < c.ReplyShare {
		p.reply = &replyPlan{atMS: addMS(rec.viberMS, toMS(replyDelay)), token: token, text: replyText}
	}
	return p
}

func uniform(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Int64N(int64(hi-lo)+1))
}

// toMS rounds d up to whole milliseconds, clamped to the uint32 range.
func toMS(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(ms)
}

func addMS(a, b uint32) uint32 {
	if s := uint64(a) + uint64(b); s < math.MaxUint32 {
		return uint32(s)
	}
	return math.MaxUint32
}

// appendID writes a message id in the configured style.
func (s *Sim) appendID(b []byte, id int64) []byte {
	if s.cfg.IDStyle == IDString {
		b = append(b, '"')
		b = strconv.AppendInt(b, id, 10)
		return append(b, '"')
	}
	return strconv.AppendInt(b, id, 10)
}

// statusJSON is the receive-viber answer and the status callback body. In ShapeDoc
// only the codes the page lists go out: "sent" (0) is reported as pending (5), and an
// SMS leg shows its sms_message_id alone until it is final (3, 5, or
// SMSDeliveredCode for delivered).
func (s *Sim) statusJSON(r *record, st state) []byte {
	doc := s.cfg.Shape == ShapeDoc
	viber := int64(st.viber)
	if doc && st.viber == provider.ViberSent {
		viber = int64(provider.ViberPending)
	}
	b := make([]byte, 0, 96)
	b = append(b, `{"message_id":`...)
	b = s.appendID(b, r.id)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, viber, 10)
	switch {
	case st.smsLeg:
		b = append(b, `,"sms_message_id":`...)
		b = s.appendID(b, r.smsID)
		sms := int64(st.sms)
		if st.sms == provider.SMSDelivered {
			sms = int64(s.cfg.SMSDeliveredCode)
		}
		switch {
		case doc && !st.final && s.cfg.SMSFieldsNull:
			b = append(b, `,"sms_message_status":null`...)
		case doc && !st.final:
		default:
			b = append(b, `,"sms_message_status":`...)
			b = strconv.AppendInt(b, sms, 10)
		}
	case r.flags&flagTextSMS != 0 && s.cfg.SMSFieldsNull:
		b = append(b, `,"sms_message_id":null,"sms_message_status":null`...)
	}
	return append(b, '}')
}

// viberName and smsName are the Stats keys for final statuses.
func viberName(v provider.ViberStatus) string {
	switch v {
	case provider.ViberSent:
		return "sent"
	case provider.ViberDelivered:
		return "delivered"
	case provider.ViberError:
		return "error"
	case provider.ViberRejected:
		return "rejected"
	case provider.ViberUndelivered:
		return "undelivered"
	case provider.ViberPending:
		return "pending"
	case provider.ViberUnknown:
		return "unknown"
	}
	return "status(" + strconv.Itoa(int(v)) + ")"
}

func smsName(v provider.SMSStatus) string {
	switch v {
	case provider.SMSEnroute:
		return "enroute"
	case provider.SMSDelivered:
		return "delivered"
	case provider.SMSExpired:
		return "expired"
	case provider.SMSUndeliverable:
		return "undeliverable"
	case provider.SMSAccepted:
		return "accepted"
	}
	return "status(" + strconv.Itoa(int(v)) + ")"
}
