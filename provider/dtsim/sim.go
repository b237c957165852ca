package dtsim

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/viberq/viberq/provider"
)

// BasePath is the path clients put after the host: base URL = server URL + BasePath.
const BasePath = "/v1/api"

// Endpoint names one of the two API endpoints.
type Endpoint string

// Endpoints. EndpointAny matches both (InjectFault, Scripted).
const (
	EndpointAny    Endpoint = ""
	EndpointSend   Endpoint = "send-viber"
	EndpointStatus Endpoint = "receive-viber"
)

// Sim is the simulator: an http.Handler (see the package doc for the routes). It is
// safe for concurrent use. Close it when done (dtsimtest.NewServer does).
type Sim struct {
	cfg    Config
	tokens [][]byte // accepted Authorization tokens
	cb     *dispatcher

	closeOnce sync.Once
	closed    chan struct{}

	mu        sync.Mutex
	rng       *rand.Rand // fault draws, in request order
	start     time.Time  // throttle windows count from here
	since     time.Time  // last Reset
	st        store
	sendLim   bucket
	statusLim bucket
	balance   int64
	perSec    perSecond
	c         counters
	inject    []injection
	scripts   []Scripted
	reqs      []RecordedRequest // ring of the last cfg.RecordRequests
	reqNext   int
	logged    map[string]bool // silent cases already logged
}

type counters struct {
	requests        map[string]int64
	accepted        int64
	rejected        map[string]int64
	statusErrors    map[string]int64
	faults          map[string]int64
	tooMany         int64
	paymentRequired int64
	statusCalls     int64
	lenient         map[string]int64
}

func newCounters() counters {
	return counters{
		requests:     map[string]int64{},
		rejected:     map[string]int64{},
		statusErrors: map[string]int64{},
		faults:       map[string]int64{},
		lenient:      map[string]int64{},
	}
}

// Reasons counted in Stats.Rejected (send-viber) and Stats.StatusErrors (receive-viber).
const (
	ReasonUnauthorized     = "unauthorized"
	ReasonRateLimited      = "rate_limited"
	ReasonInvalidParameter = "invalid_parameter"
	ReasonBalance          = "balance"
	ReasonServerError      = "server_error"
	ReasonDropped          = "dropped"
	ReasonTimeout          = "timeout"
	ReasonClientGone       = "client_gone"
	ReasonMethodNotAllowed = "method_not_allowed"
	ReasonScripted         = "scripted"
)

// New returns a simulator for cfg. Invalid settings are corrected, not refused (see
// Config.Validate to refuse them): an unknown style falls back to the default, shares
// are cut to 0..1, inverted ranges collapse to their minimum.
func New(cfg Config) *Sim {
	cfg = cfg.withDefaults()
	now := cfg.Now()
	s := &Sim{
		cfg:    cfg,
		tokens: acceptedTokens(cfg.Key, cfg.EncodedKey),
		cb:     newDispatcher(cfg),
		closed: make(chan struct{}),
		start:  now,
	}
	s.resetLocked(now)
	return s
}

func (s *Sim) resetLocked(now time.Time) {
	s.rng = rand.New(rand.NewPCG(uint64(s.cfg.Seed), 0x6474_7369_6d)) // "dtsim"
	s.since = now
	if s.st.seen == nil {
		s.st = newStore(s.cfg.MaxMessages, s.cfg.FirstMessageID)
	} else {
		s.st.reset()
	}
	s.sendLim = newBucket(s.cfg.RatePerSec, s.cfg.Burst, now)
	s.statusLim = newBucket(s.cfg.StatusRatePerSec, s.cfg.StatusBurst, now)
	s.balance = max(s.cfg.Balance, Unlimited)
	s.perSec = perSecond{}
	s.c = newCounters()
	s.inject, s.scripts = nil, nil
	s.reqs, s.reqNext = nil, 0
}

// Config returns the effective configuration (defaults filled in).
func (s *Sim) Config() Config { return s.cfg }

// Reset forgets every message, counter, pending callback, injected fault and scripted
// answer, and restores the configured balance and a full rate bucket. Message ids keep
// growing, so an id from before the reset is unknown afterwards.
func (s *Sim) Reset() {
	s.mu.Lock()
	s.resetLocked(s.cfg.Now())
	s.mu.Unlock()
	s.cb.clear()
}

// SetBalance sets the number of sends left (a negative n means Unlimited).
func (s *Sim) SetBalance(n int64) {
	s.mu.Lock()
	s.balance = max(n, Unlimited)
	s.mu.Unlock()
}

// Balance returns the number of sends left, or Unlimited.
func (s *Sim) Balance() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.balance
}

// Close stops the callback dispatcher and ends hanging (timeout, slow) answers. The
// handler keeps answering afterwards, without callbacks. Close is idempotent.
func (s *Sim) Close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.cb.stop()
	})
}

func (s *Sim) now() time.Time { return s.cfg.Now() }

// ServeHTTP serves the API and the /_sim/ admin routes.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_sim/") {
		s.serveAdmin(w, r)
		return
	}
	ep := endpointOf(r.URL.Path)
	if ep == EndpointAny {
		writeYii(w, http.StatusNotFound, "Not Found", "Page not found.")
		return
	}
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	s.recordRequest(r, body)
	s.mu.Lock()
	s.c.requests[string(ep)]++
	s.mu.Unlock()

	if r.Method != http.MethodPost {
		s.reject(ep, ReasonMethodNotAllowed)
		w.Header().Set("Allow", http.MethodPost)
		writeYii(w, http.StatusMethodNotAllowed, "Method Not Allowed",
			"Method Not Allowed. This URL can only handle the following request methods: POST.")
		return
	}
	if sc, ok := s.popScript(ep); ok {
		s.reject(ep, ReasonScripted)
		sc.write(w)
		return
	}
	if !s.authorized(r) {
		s.reject(ep, ReasonUnauthorized)
		// Yii2's HttpBasicAuth answer, always with HTTP 401 (vendor notes: auth: undocumented).
		w.Header().Set("WWW-Authenticate", `Basic realm="api"`)
		writeYii(w, http.StatusUnauthorized, "Unauthorized", "Your request was made with invalid credentials.")
		return
	}
	if ok, wait := s.allow(w, ep); !ok {
		s.reject(ep, ReasonRateLimited)
		s.writeRateLimited(w, wait)
		return
	}
	if readErr != nil {
		s.reject(ep, ReasonInvalidParameter)
		s.writeError(w, errInvalid("body"))
		return
	}
	if ep == EndpointSend {
		s.serveSend(w, r, body)
	} else {
		s.serveStatus(w, r, body)
	}
}

// lenient counts the silent cases a request met (Stats.Lenient) and logs each kind
// once per simulator through Config.Logf: where the vendor's page is silent the
// simulator accepts, and says so.
func (s *Sim) lenient(notes []string) {
	if len(notes) == 0 {
		return
	}
	var first []string
	s.mu.Lock()
	for _, n := range notes {
		s.c.lenient[n]++
		if !s.logged[n] {
			if s.logged == nil {
				s.logged = map[string]bool{}
			}
			s.logged[n] = true
			first = append(first, n)
		}
	}
	s.mu.Unlock()
	for _, n := range first {
		s.cfg.Logf("dtsim: accepted where the vendor documentation is silent: %s (%s); logged once, counted in stats.lenient", n, silentWhy[n])
	}
}

// silentWhy says, per silent case, what the page leaves open.
var silentWhy = map[string]string{
	silentIntAsString:      "an integer field sent as a numeric string; the page gives no JSON types",
	silentDestNotDigits:    "destination_addr with characters other than digits; the page says only \"<= 20 chars\"",
	silentTextSMSType:      "text_sms on a message_type other than 106; the page says only \"только для транзакционных сообщений\"",
	silentImageOnText:      "image or button fields on a text-only type; the page's own example sends them with 106",
	silentImageButtonParts: "108/208 without all of image, button_caption and button_action; the page does not say which are required",
	silentURLScheme:        "a URL that is not http(s); the page says only \"Правильный URL\"",
	silentTextSMSLatin:     "text_sms counted one unit per Latin character; the page does not define \"Latin\"",
	silentImageType:        "an image URL whose path names no type; jpg/png is a property of the file",
}

// endpointOf accepts {any base}/send-viber and {any base}/receive-viber, with or
// without a trailing slash.
func endpointOf(path string) Endpoint {
	path = strings.TrimSuffix(path, "/")
	switch path[strings.LastIndexByte(path, '/')+1:] {
	case string(EndpointSend):
		return EndpointSend
	case string(EndpointStatus):
		return EndpointStatus
	}
	return EndpointAny
}

func (s *Sim) reject(ep Endpoint, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ep == EndpointSend {
		s.c.rejected[reason]++
	} else {
		s.c.statusErrors[reason]++
	}
	switch reason {
	case ReasonRateLimited:
		s.c.tooMany++
	case ReasonBalance:
		s.c.paymentRequired++
	}
}

// acceptedTokens lists the Basic credentials that match the key (vendor notes: auth):
// base64(key) as the SDKs send it and base64(key+":") as libcurl does. With an
// encoded key the token is the key itself.
func acceptedTokens(key string, encoded bool) [][]byte {
	if key == "" {
		return nil
	}
	enc := base64.StdEncoding.EncodeToString
	if encoded {
		toks := [][]byte{[]byte(key)}
		if raw, err := base64.StdEncoding.DecodeString(key); err == nil && len(raw) > 0 && raw[len(raw)-1] != ':' {
			toks = append(toks, []byte(enc(append(raw, ':'))))
		}
		return toks
	}
	return [][]byte{[]byte(enc([]byte(key))), []byte(enc([]byte(key + ":")))}
}

func (s *Sim) authorized(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return false
	}
	t := []byte(strings.TrimSpace(tok))
	match := 0
	for _, a := range s.tokens {
		match |= subtle.ConstantTimeCompare(t, a)
	}
	return match == 1
}

// allow applies the throttle window and the endpoint's token bucket.
func (s *Sim) allow(w http.ResponseWriter, ep Endpoint) (bool, time.Duration) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	b := &s.sendLim
	if ep == EndpointStatus {
		b = &s.statusLim
	}
	if every, dur := s.cfg.ThrottleEvery, s.cfg.ThrottleFor; every > 0 && dur > 0 {
		phase := now.Sub(s.start) % every
		if phase < 0 {
			phase += every
		}
		if phase >= every-dur {
			return false, every - phase
		}
	}
	ok, wait, remaining := b.take(now)
	if b.rate > 0 && s.cfg.RateLimitHeaders {
		h := w.Header()
		h.Set("X-Rate-Limit-Limit", strconv.Itoa(b.limit()))
		h.Set("X-Rate-Limit-Remaining", strconv.Itoa(remaining))
		if ok {
			h.Set("X-Rate-Limit-Reset", "0")
		}
	}
	return ok, wait
}

// serveSend handles POST send-viber after auth and rate limit.
func (s *Sim) serveSend(w http.ResponseWriter, r *http.Request, body []byte) {
	m, field, notes := decodeSend(body)
	if field == "" {
		var more []string
		field, more = checkSend(m)
		notes = append(notes, more...)
	}
	s.lenient(notes)
	if field != "" {
		s.reject(EndpointSend, ReasonInvalidParameter)
		s.writeError(w, errInvalid(field))
		return
	}
	if s.Balance() == 0 {
		s.reject(EndpointSend, ReasonBalance)
		s.writeError(w, errBalance)
		return
	}
	textHash := sha256.Sum256([]byte(m.Text))
	key := dupKey(m.DestinationAddr, textHash)

	f, delay := s.drawFault(EndpointSend)
	switch f {
	case FaultRateLimited:
		s.reject(EndpointSend, ReasonRateLimited)
		s.writeRateLimited(w, time.Second)
		return
	case FaultServerError:
		s.reject(EndpointSend, ReasonServerError)
		s.writeError(w, errServer)
		return
	case FaultDropBefore:
		s.reject(EndpointSend, ReasonDropped)
		drop(w, r)
		return
	case FaultSlow:
		if !s.sleep(r, delay) {
			s.reject(EndpointSend, ReasonClientGone)
			drop(w, r)
			return
		}
	case FaultTimeout, FaultTimeoutAccepted:
		var id int64
		accepted := false
		if f == FaultTimeoutAccepted {
			// Accepted as the request arrives: the answer is what gets lost.
			if id, accepted = s.accept(m, textHash, key); !accepted {
				s.reject(EndpointSend, ReasonBalance)
				s.writeError(w, errBalance)
				return
			}
		}
		if !accepted {
			s.reject(EndpointSend, ReasonTimeout)
		}
		if !s.sleep(r, delay) {
			drop(w, r)
			return
		}
		if accepted {
			s.writeJSON(w, http.StatusOK, s.sendJSON(id))
		} else {
			writeGatewayTimeout(w)
		}
		return
	}

	id, ok := s.accept(m, textHash, key)
	if !ok {
		s.reject(EndpointSend, ReasonBalance)
		s.writeError(w, errBalance)
		return
	}
	switch f {
	case FaultServerErrorAfterAccept:
		s.writeError(w, errServer)
	case FaultDropAfter:
		drop(w, r)
	case FaultGarbageNonJSON, FaultGarbageTruncated, FaultGarbageWrongTypes, FaultGarbageHuge:
		s.writeGarbage(w, f, s.sendJSON(id), []byte(`{"message_id":true}`))
	default:
		s.writeJSON(w, http.StatusOK, s.sendJSON(id))
	}
}

func (s *Sim) sendJSON(id int64) []byte {
	b := append(make([]byte, 0, 32), `{"message_id":`...)
	b = s.appendID(b, id)
	return append(b, '}')
}

// accept takes one unit of balance, stores the message with its plan and schedules
// its callbacks. It reports false when the balance is empty.
func (s *Sim) accept(m sendRequest, textHash [32]byte, key uint64) (int64, bool) {
	now := s.now()
	s.mu.Lock()
	if s.balance == 0 {
		s.mu.Unlock()
		return 0, false
	}
	if s.balance > 0 {
		s.balance--
	}
	id := s.st.next
	p := s.draw(id, m)
	p.rec.at = now.UnixNano()
	p.rec.textHash = textHash
	s.st.add(p.rec, key)
	s.perSec.add(now)
	s.c.accepted++
	s.mu.Unlock()

	if m.CallbackURL != "" || p.reply != nil {
		s.cb.schedule(s.pushJobs(&p, m, now)...)
	}
	return id, true
}

// pushJobs lists the status callbacks (final state, or every change with
// CallbackIntermediate) and the two-way reply of a fresh message.
func (s *Sim) pushJobs(p *planned, m sendRequest, at time.Time) []*job {
	var jobs []*job
	rec := &p.rec
	if m.CallbackURL != "" {
		var offs []uint32
		if s.cfg.CallbackIntermediate {
			if rec.pendingMS > 0 && rec.pendingMS < rec.viberMS {
				offs = append(offs, rec.pendingMS)
			}
			offs = append(offs, rec.viberMS)
			if rec.smsID != 0 {
				offs = append(offs, rec.smsEnrouteMS, rec.smsFinalMS)
			}
		} else {
			offs = append(offs, rec.finalMS())
		}
		var last []byte
		for _, off := range offs {
			body := s.statusJSON(rec, rec.stateAt(time.Duration(off)*time.Millisecond))
			if string(body) == string(last) {
				continue
			}
			last = body
			jobs = append(jobs, &job{due: at.Add(time.Duration(off) * time.Millisecond), kind: jobStatus, url: m.CallbackURL, body: body})
		}
	}
	if p.reply != nil {
		due := at.Add(time.Duration(p.reply.atMS) * time.Millisecond)
		body, _ := json.Marshal(replyBody{
			MessageToken: p.reply.token,
			PhoneNumber:  rec.dest,
			Time:         due.UnixMilli(),
			Message:      replyMessage{Text: p.reply.text, TrackingData: s.trackingData(rec.id)},
		})
		jobs = append(jobs, &job{due: due, kind: jobReply, url: s.cfg.ReplyURL, body: body})
	}
	return jobs
}

// trackingData is the reply's tracking_data: in ShapeDoc the page's nesting
// ("tracking_data: tracking_id: Идентификатор сообщения") read as an object
// {"tracking_id":N}; in ShapeSDK the upstream Viber string "tracking_id:N".
func (s *Sim) trackingData(id int64) any {
	if s.cfg.Shape == ShapeDoc {
		return map[string]int64{"tracking_id": id}
	}
	return "tracking_id:" + strconv.FormatInt(id, 10)
}

// replyBody is the two-way reply: the page's fields ("Получить сообщение от
// пользователя для двусторонних сообщений"), time in milliseconds as upstream Viber.
type replyBody struct {
	MessageToken uint64       `json:"message_token"`
	PhoneNumber  string       `json:"phone_number"`
	Time         int64        `json:"time"`
	Message      replyMessage `json:"message"`
}

type replyMessage struct {
	Text         string `json:"text"`
	TrackingData any    `json:"tracking_data"`
}

// serveStatus handles POST receive-viber after auth and rate limit.
func (s *Sim) serveStatus(w http.ResponseWriter, r *http.Request, body []byte) {
	id, ok := decodeStatus(body)
	if !ok {
		s.reject(EndpointStatus, ReasonInvalidParameter)
		s.writeError(w, errInvalid("message_id"))
		return
	}
	now := s.now()
	s.mu.Lock()
	rec := s.st.get(id)
	if rec == nil || now.Sub(time.Unix(0, rec.at)) > s.cfg.StatusWindow {
		s.mu.Unlock()
		// Undocumented (vendor notes: errors): answered like any bad parameter.
		s.reject(EndpointStatus, ReasonInvalidParameter)
		s.writeError(w, errInvalid("message_id"))
		return
	}
	rec.calls++
	s.c.statusCalls++
	cp := *rec
	s.mu.Unlock()

	f, delay := s.drawFault(EndpointStatus)
	switch f {
	case FaultRateLimited:
		s.reject(EndpointStatus, ReasonRateLimited)
		s.writeRateLimited(w, time.Second)
		return
	case FaultServerError, FaultServerErrorAfterAccept:
		s.reject(EndpointStatus, ReasonServerError)
		s.writeError(w, errServer)
		return
	case FaultDropBefore, FaultDropAfter:
		s.reject(EndpointStatus, ReasonDropped)
		drop(w, r)
		return
	case FaultSlow:
		if !s.sleep(r, delay) {
			s.reject(EndpointStatus, ReasonClientGone)
			drop(w, r)
			return
		}
	case FaultTimeout, FaultTimeoutAccepted:
		s.reject(EndpointStatus, ReasonTimeout)
		if s.sleep(r, delay) {
			writeGatewayTimeout(w)
		} else {
			drop(w, r)
		}
		return
	}
	st := cp.stateAt(s.now().Sub(time.Unix(0, cp.at)))
	out := s.statusJSON(&cp, st)
	switch f {
	case FaultGarbageNonJSON, FaultGarbageTruncated, FaultGarbageWrongTypes, FaultGarbageHuge:
		s.writeGarbage(w, f, out, []byte(`{"message_id":"x","status":"delivered"}`))
	default:
		s.writeJSON(w, http.StatusOK, out)
	}
}

// sleep waits d; false when the client went away or the Sim was closed first (the
// caller then drops the connection rather than answer an empty 200).
func (s *Sim) sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.closed:
		return false
	}
}

// decodeStatus reads {"message_id": N} (a JSON integer or a numeric string).
func decodeStatus(body []byte) (int64, bool) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return 0, false
	}
	raw := []byte(obj["message_id"])
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		raw = raw[1 : len(raw)-1]
	}
	if !digitsOnly(raw) || len(raw) > 18 {
		return 0, false
	}
	id, err := strconv.ParseInt(string(raw), 10, 64)
	return id, err == nil && id > 0
}

func digitsOnly(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// RecordedRequest is one request to send-viber or receive-viber as it arrived.
type RecordedRequest struct {
	At     time.Time   `json:"at"`
	Method string      `json:"method"`
	Path   string      `json:"path"`
	Header http.Header `json:"-"` // holds the Authorization header: never printed
	Body   []byte      `json:"body"`
}

func (s *Sim) recordRequest(r *http.Request, body []byte) {
	n := s.cfg.RecordRequests
	if n <= 0 {
		return
	}
	rr := RecordedRequest{At: s.now(), Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) < n {
		s.reqs = append(s.reqs, rr)
		return
	}
	s.reqs[s.reqNext] = rr
	s.reqNext = (s.reqNext + 1) % n
}

// Requests returns the last Config.RecordRequests API requests, oldest first.
func (s *Sim) Requests() []RecordedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RecordedRequest, 0, len(s.reqs))
	out = append(out, s.reqs[s.reqNext:]...)
	return append(out, s.reqs[:s.reqNext]...)
}

// Ledger returns every stored accepted send, oldest first (at most Config.MaxMessages).
func (s *Sim) Ledger() []LedgerEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]LedgerEntry, 0, s.st.len())
	s.st.each(func(r *record) {
		out = append(out, LedgerEntry{
			MessageID:   provider.MessageID(r.id),
			Destination: r.dest,
			TextHash:    hexHash(r.textHash),
			At:          time.Unix(0, r.at).UTC(),
			StatusCalls: int(r.calls),
			Duplicate:   r.flags&flagDup != 0,
		})
	})
	return out
}

// MessageStatus evaluates the plan of id now, as receive-viber would answer it (without
// counting a status call). ok is false for an unknown id.
func (s *Sim) MessageStatus(id provider.MessageID) (res provider.StatusResult, final bool, ok bool) {
	s.mu.Lock()
	rec := s.st.get(int64(id))
	if rec == nil {
		s.mu.Unlock()
		return res, false, false
	}
	cp := *rec
	s.mu.Unlock()
	st := cp.stateAt(s.now().Sub(time.Unix(0, cp.at)))
	res = provider.StatusResult{MessageID: id, Status: st.viber}
	if st.smsLeg {
		smsID, sms := provider.MessageID(cp.smsID), st.sms
		res.SMSMessageID, res.SMSStatus = &smsID, &sms
	}
	return res, st.final, true
}
