package dtsim

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// FaultKind names one injected fault (Stats.Faults keys, InjectFault, /_sim/inject).
type FaultKind string

// Fault kinds. Faults hit requests that would otherwise succeed: a bad key, a rate
// limit, an invalid body, an unknown message_id or an empty balance are answered as
// such and use up no fault.
const (
	FaultRateLimited            FaultKind = "rate_limited"              // 429 / code 0
	FaultServerError            FaultKind = "server_error"              // 500 / code 2, nothing accepted
	FaultServerErrorAfterAccept FaultKind = "server_error_after_accept" // accepted, then 500 / code 2
	FaultSlow                   FaultKind = "slow"                      // delayed, then normal
	FaultTimeout                FaultKind = "timeout"                   // hang, not accepted, then 504
	FaultTimeoutAccepted        FaultKind = "timeout_accepted"          // accepted, hang, then normal
	FaultDropBefore             FaultKind = "drop_before"               // connection reset, not accepted
	FaultDropAfter              FaultKind = "drop_after"                // accepted, connection reset
	FaultGarbageNonJSON         FaultKind = "garbage_nonjson"           // accepted, HTML body with 200
	FaultGarbageTruncated       FaultKind = "garbage_truncated"         // accepted, cut JSON with 200
	FaultGarbageWrongTypes      FaultKind = "garbage_wrongtypes"        // accepted, {"message_id":true} with 200
	FaultGarbageHuge            FaultKind = "garbage_huge"              // accepted, HugeBodySize JSON with 200
)

// FaultKinds lists every FaultKind.
var FaultKinds = []FaultKind{
	FaultRateLimited, FaultServerError, FaultServerErrorAfterAccept, FaultSlow,
	FaultTimeout, FaultTimeoutAccepted, FaultDropBefore, FaultDropAfter,
	FaultGarbageNonJSON, FaultGarbageTruncated, FaultGarbageWrongTypes, FaultGarbageHuge,
}

func validFault(k FaultKind) bool {
	for _, f := range FaultKinds {
		if f == k {
			return true
		}
	}
	return false
}

type injection struct {
	ep   Endpoint
	kind FaultKind
	n    int
}

// InjectFault makes the next n requests to ep (EndpointAny: either endpoint) that
// would otherwise succeed get kind, ahead of the random shares.
func (s *Sim) InjectFault(ep Endpoint, kind FaultKind, n int) error {
	if !validFault(kind) {
		return fmt.Errorf("dtsim: unknown fault kind %q", kind)
	}
	if ep != EndpointAny && ep != EndpointSend && ep != EndpointStatus {
		return fmt.Errorf("dtsim: unknown endpoint %q", ep)
	}
	if n <= 0 {
		return nil
	}
	s.mu.Lock()
	s.inject = append(s.inject, injection{ep: ep, kind: kind, n: n})
	s.mu.Unlock()
	return nil
}

// drawFault picks the fault of one request: an injected one first, else one uniform
// draw against the shares. The delay is for slow and timeout faults.
func (s *Sim) drawFault(ep Endpoint) (FaultKind, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &s.cfg.Faults
	kind := FaultKind("")
	for i := range s.inject {
		in := &s.inject[i]
		if in.ep == EndpointAny || in.ep == ep {
			kind = in.kind
			if in.n--; in.n == 0 {
				s.inject = append(s.inject[:i], s.inject[i+1:]...)
			}
			break
		}
	}
	if kind == "" {
		u := s.rng.Float64()
		acc := 0.0
		for _, sh := range []struct {
			kind  FaultKind
			share float64
		}{
			{FaultServerError, f.ServerError},
			{FaultServerErrorAfterAccept, f.ServerErrorAfterAccept},
			{FaultSlow, f.Slow},
			{FaultTimeout, f.Timeout},
			{FaultDropBefore, f.DropBefore},
			{FaultDropAfter, f.DropAfter},
			{"garbage", f.Garbage},
			{FaultRateLimited, f.RateLimited},
		} {
			if acc += clamp01(sh.share); u < acc {
				kind = sh.kind
				break
			}
		}
		switch kind {
		case FaultTimeout:
			if s.rng.Float64() < f.TimeoutAccept {
				kind = FaultTimeoutAccepted
			}
		case "garbage":
			kind = "garbage_" + FaultKind(f.GarbageKinds[s.rng.IntN(len(f.GarbageKinds))])
		}
	}
	if kind == "" {
		return "", 0
	}
	s.c.faults[string(kind)]++
	var d time.Duration
	switch kind {
	case FaultSlow:
		lo, hi := f.SlowMin, f.SlowMax
		if hi <= 0 {
			lo, hi = time.Second, time.Second // an injected slow fault with no range configured
		}
		d = uniform(s.rng, lo, hi)
	case FaultTimeout, FaultTimeoutAccepted:
		d = f.TimeoutHang
	}
	return kind, d
}

func clamp01(v float64) float64 {
	switch {
	case v > 0 && v <= 1:
		return v
	case v > 1:
		return 1
	}
	return 0 // negative or NaN
}

// drop ends the exchange without an answer: the connection is hijacked and reset
// (SO_LINGER 0). Under an http.Server that cannot hijack (HTTP/2) the handler aborts
// with http.ErrAbortHandler, which the server recovers; outside a server (an
// httptest.ResponseRecorder) nothing is written.
func drop(w http.ResponseWriter, r *http.Request) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = conn.Close()
			return
		}
	}
	if r.Context().Value(http.ServerContextKey) != nil {
		panic(http.ErrAbortHandler)
	}
}

// vendorError is one row of the page's error table ("Ошибки": message, code, status),
// with the English name and message the SDK READMEs give for it.
type vendorError struct {
	Name      string // SDK READMEs
	Message   string // SDK READMEs
	DocText   string // the page's message
	Code      int
	Status    int
	Parameter string // the refused field, for "Invalid Parameter: <field>"
}

var (
	errRateLimited = vendorError{Name: "Too Many Requests", Message: "Rate limit exceeded", DocText: "Rate limit превышен", Code: 0, Status: http.StatusTooManyRequests}
	errServer      = vendorError{Name: "Internal server error", Message: "The server encountered an unexpected condition which prevented it from fulfilling the request", DocText: "Сервер столкнулся с непредвиденной ситуацией, из-за которой он не смог выполнить запрос", Code: 2, Status: http.StatusInternalServerError}
	errBalance     = vendorError{Name: "Topup balance is required", Message: "User balance is empty", DocText: "Баланс пользователя пуст", Code: 3, Status: http.StatusPaymentRequired}
)

func errInvalid(field string) vendorError {
	return vendorError{Name: "Invalid Parameter: " + field, Message: "Empty parameter or parameter validation error", DocText: "Пустой параметр или ошибка проверки параметра", Code: 1, Status: http.StatusBadRequest, Parameter: field}
}

// sdkError and docError are the two error bodies, keys in their sources' order.
type sdkError struct {
	Name    string `json:"name"`
	Message string `json:"message"`
	Code    int    `json:"code"`
	Status  int    `json:"status"`
}

type docError struct {
	Message string `json:"message"`
	Code    int    `json:"code"`
	Status  int    `json:"status"`
}

// HeaderInvalidParameter names the refused field of a code 1 answer in both shapes
// (the page's error body does not name it). It is the simulator's, not the vendor's.
const HeaderInvalidParameter = "X-Dtsim-Invalid-Parameter"

// writeError sends a vendor error in the configured style and shape.
func (s *Sim) writeError(w http.ResponseWriter, e vendorError) {
	status := e.Status
	if s.cfg.ErrorStyle == ErrorStyleBody200 {
		status = http.StatusOK
	}
	if e.Parameter != "" {
		w.Header().Set(HeaderInvalidParameter, e.Parameter)
	}
	var b []byte
	if s.cfg.Shape == ShapeDoc {
		b, _ = json.Marshal(docError{Message: e.DocText, Code: e.Code, Status: e.Status})
	} else {
		b, _ = json.Marshal(sdkError{Name: e.Name, Message: e.Message, Code: e.Code, Status: e.Status})
	}
	s.writeJSON(w, status, b)
}

func (s *Sim) writeRateLimited(w http.ResponseWriter, wait time.Duration) {
	secs := strconv.Itoa(retryAfterSeconds(wait))
	if s.cfg.RetryAfter {
		w.Header().Set("Retry-After", secs)
	}
	if s.cfg.RateLimitHeaders {
		h := w.Header()
		if h.Get("X-Rate-Limit-Limit") == "" {
			h.Set("X-Rate-Limit-Limit", "0")
		}
		h.Set("X-Rate-Limit-Remaining", "0")
		h.Set("X-Rate-Limit-Reset", secs)
	}
	s.writeError(w, errRateLimited)
}

func (s *Sim) writeJSON(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeYii sends a framework error (401, 404, 405) the way Yii2 renders an
// HttpException: code 0 and the real HTTP status, whatever the error style.
func writeYii(w http.ResponseWriter, status int, name, message string) {
	b, _ := json.Marshal(sdkError{Name: name, Message: message, Code: 0, Status: status})
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeGatewayTimeout is what a proxy in front of a stuck backend answers.
func writeGatewayTimeout(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(http.StatusGatewayTimeout)
	_, _ = w.Write([]byte("<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center><h1>504 Gateway Time-out</h1></center>\r\n</body>\r\n</html>\r\n"))
}

// writeGarbage sends a broken HTTP 200 answer: good is the answer it breaks, wrong
// the same answer with wrong JSON types.
func (s *Sim) writeGarbage(w http.ResponseWriter, kind FaultKind, good, wrong []byte) {
	h := w.Header()
	switch kind {
	case FaultGarbageNonJSON:
		h.Set("Content-Type", "text/html; charset=UTF-8")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body><h1>The service is temporarily unavailable.</h1></body></html>"))
	case FaultGarbageTruncated:
		cut := good[:max(1, len(good)*2/3)]
		s.writeJSON(w, http.StatusOK, cut)
	case FaultGarbageWrongTypes:
		s.writeJSON(w, http.StatusOK, wrong)
	case FaultGarbageHuge:
		h.Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(http.StatusOK)
		head := append(bytes.TrimSuffix(good, []byte("}")), `,"padding":"`...)
		if _, err := w.Write(head); err != nil {
			return
		}
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		for left := s.cfg.Faults.HugeBodySize - len(head) - 2; left > 0; left -= len(chunk) {
			if _, err := w.Write(chunk[:min(left, len(chunk))]); err != nil {
				return
			}
		}
		_, _ = w.Write([]byte(`"}`))
	}
}

// Scripted is a canned answer for the next request to Endpoint (EndpointAny: either),
// served before auth and everything else; nothing is accepted. Status 0 means 200.
type Scripted struct {
	Endpoint Endpoint
	Status   int
	Header   http.Header
	Body     []byte
}

// Script queues canned answers, served in order, each once.
func (s *Sim) Script(answers ...Scripted) {
	s.mu.Lock()
	s.scripts = append(s.scripts, answers...)
	s.mu.Unlock()
}

func (s *Sim) popScript(ep Endpoint) (Scripted, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, sc := range s.scripts {
		if sc.Endpoint == EndpointAny || sc.Endpoint == ep {
			s.scripts = append(s.scripts[:i], s.scripts[i+1:]...)
			return sc, true
		}
	}
	return Scripted{}, false
}

func (sc Scripted) write(w http.ResponseWriter) {
	for k, v := range sc.Header {
		w.Header()[k] = append([]string(nil), v...)
	}
	status := sc.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write(sc.Body)
}

func hexHash(h [32]byte) string { return hex.EncodeToString(h[:]) }
