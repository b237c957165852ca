package dtsim

import (
	"encoding/json"
	"maps"
	"net/http"
	"strconv"
	"time"
)

// Stats is a snapshot of the simulator's counters since New or the last Reset
// (GET /_sim/stats serves it as JSON).
type Stats struct {
	Profile Profile   `json:"profile,omitempty"`
	Since   time.Time `json:"since"`
	Now     time.Time `json:"now"`

	// Requests counts API requests by endpoint ("send-viber", "receive-viber").
	Requests map[string]int64 `json:"requests"`
	// Accepted counts accepted sends, including those answered with a fault
	// (server_error_after_accept, timeout_accepted, drop_after, garbage_*).
	Accepted int64 `json:"accepted"`
	// Rejected counts send-viber requests that accepted nothing, by reason
	// (Reason* constants); StatusErrors the same for receive-viber.
	Rejected     map[string]int64 `json:"rejected"`
	StatusErrors map[string]int64 `json:"status_errors"`
	// TooManyRequests and PaymentRequired count 429 and 402 answers on both endpoints.
	TooManyRequests int64 `json:"too_many_requests"`
	PaymentRequired int64 `json:"payment_required"`
	// Duplicates counts accepted sends whose destination and text equal those of an
	// earlier stored send.
	Duplicates int64 `json:"duplicates"`
	// AcceptedPerSecond maps a Unix second to the sends accepted in it (last hour);
	// MaxAcceptedPerSecond is the highest count of any second since Reset.
	AcceptedPerSecond    map[int64]int64 `json:"accepted_per_second"`
	MaxAcceptedPerSecond int64           `json:"max_accepted_per_second"`
	// Finals counts stored messages whose plan is final now, by outcome
	// ("delivered_viber", "delivered_sms", "undelivered"); Pending the others.
	// FinalViber and FinalSMS split the finals by the last status of each leg, and
	// ExpiredByValidity counts Viber legs cut by validity_period.
	Finals            map[string]int64 `json:"finals"`
	Pending           int64            `json:"pending"`
	FinalViber        map[string]int64 `json:"final_viber"`
	FinalSMS          map[string]int64 `json:"final_sms"`
	ExpiredByValidity int64            `json:"expired_by_validity"`
	// StatusCalls counts receive-viber calls for known messages; per message: the mean
	// and the maximum over stored messages.
	StatusCalls              int64   `json:"status_calls"`
	StatusCallsPerMessage    float64 `json:"status_calls_per_message"`
	MaxStatusCallsPerMessage int64   `json:"max_status_calls_per_message"`
	// Faults counts injected faults by FaultKind.
	Faults map[string]int64 `json:"faults"`
	// Lenient counts accepted sends that met a case the vendor's page is silent on,
	// by kind (see README, "Where the vendor documentation is silent").
	Lenient map[string]int64 `json:"lenient"`
	// Balance is the sends left, or -1 (Unlimited).
	Balance int64 `json:"balance"`
	// Messages is how many messages are stored; Evicted how many were forgotten to
	// stay within Config.MaxMessages.
	Messages int   `json:"messages"`
	Evicted  int64 `json:"evicted"`
	// Callbacks and Replies count the POSTs to callback_url and to Config.ReplyURL.
	Callbacks PushStats `json:"callbacks"`
	Replies   PushStats `json:"replies"`
}

// Stats returns a snapshot. Finals are computed by walking the stored messages
// (O(MaxMessages)), so call it for reports, not per request.
func (s *Sim) Stats() Stats {
	now := s.now()
	s.mu.Lock()
	out := Stats{
		Profile:              s.cfg.Profile,
		Since:                s.since,
		Now:                  now,
		Requests:             maps.Clone(s.c.requests),
		Accepted:             s.c.accepted,
		Rejected:             maps.Clone(s.c.rejected),
		StatusErrors:         maps.Clone(s.c.statusErrors),
		TooManyRequests:      s.c.tooMany,
		PaymentRequired:      s.c.paymentRequired,
		Duplicates:           s.st.duplicates,
		AcceptedPerSecond:    s.perSec.snapshot(now),
		MaxAcceptedPerSecond: s.perSec.max,
		Finals:               map[string]int64{},
		FinalViber:           map[string]int64{},
		FinalSMS:             map[string]int64{},
		StatusCalls:          s.c.statusCalls,
		Faults:               maps.Clone(s.c.faults),
		Lenient:              maps.Clone(s.c.lenient),
		Balance:              s.balance,
		Messages:             s.st.len(),
		Evicted:              s.st.evicted,
	}
	var calls int64
	s.st.each(func(r *record) {
		calls += int64(r.calls)
		out.MaxStatusCallsPerMessage = max(out.MaxStatusCallsPerMessage, int64(r.calls))
		st := r.stateAt(now.Sub(time.Unix(0, r.at)))
		if !st.final {
			out.Pending++
			return
		}
		out.Finals[st.outcome()]++
		out.FinalViber[viberName(st.viber)]++
		if st.smsLeg {
			out.FinalSMS[smsName(st.sms)]++
		}
		if r.flags&flagExpired != 0 {
			out.ExpiredByValidity++
		}
	})
	s.mu.Unlock()
	if out.Messages > 0 {
		out.StatusCallsPerMessage = float64(calls) / float64(out.Messages)
	}
	out.Callbacks, out.Replies = s.cb.snapshot()
	return out
}

// serveAdmin serves /_sim/*. These routes take no credential: the simulator is a
// test and demo tool (bind it to localhost).
func (s *Sim) serveAdmin(w http.ResponseWriter, r *http.Request) {
	route := r.Method + " " + r.URL.Path
	switch route {
	case "GET /_sim/stats":
		writeAdmin(w, http.StatusOK, s.Stats())
	case "GET /_sim/config":
		writeAdmin(w, http.StatusOK, s.cfg)
	case "POST /_sim/reset":
		s.Reset()
		writeAdmin(w, http.StatusOK, map[string]bool{"reset": true})
	case "POST /_sim/balance":
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil {
			writeAdmin(w, http.StatusBadRequest, map[string]string{"error": "n: want an integer (-1 = unlimited)"})
			return
		}
		s.SetBalance(n)
		writeAdmin(w, http.StatusOK, map[string]int64{"balance": s.Balance()})
	case "POST /_sim/inject":
		q := r.URL.Query()
		n := 1
		if v := q.Get("n"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil {
				writeAdmin(w, http.StatusBadRequest, map[string]string{"error": "n: want an integer"})
				return
			}
		}
		if err := s.InjectFault(Endpoint(q.Get("endpoint")), FaultKind(q.Get("kind")), n); err != nil {
			writeAdmin(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeAdmin(w, http.StatusOK, map[string]any{"kind": q.Get("kind"), "n": n, "endpoint": q.Get("endpoint")})
	default:
		writeAdmin(w, http.StatusNotFound, map[string]string{"error": "unknown route " + route +
			": GET /_sim/stats, GET /_sim/config, POST /_sim/reset, POST /_sim/balance?n=N, POST /_sim/inject?kind=K&n=N&endpoint=E"})
	}
}

func writeAdmin(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encode"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
