package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultMaxCallbackBytes is the body limit of the callback handlers when they are
// given a limit <= 0.
const DefaultMaxCallbackBytes = 64 << 10

// StatusCallback is what the provider POSTs to a message's callback_url. The payload
// is undocumented (vendor notes: status callbacks), so parsing is tolerant: JSON or form data,
// message_id as a number or a numeric string, extra fields ignored. Treat it as a
// hint and confirm by polling receive-viber, the source of truth.
type StatusCallback struct {
	MessageID    MessageID
	Status       ViberStatus
	SMSMessageID *MessageID // nil when absent, null, "" or 0
	SMSStatus    *SMSStatus // nil when absent, null or ""
	// Raw is the body as received, so that unknown payloads can be logged verbatim
	// (vendor notes: status callbacks). It holds whatever the sender put there.
	Raw []byte
}

// Outcome combines both legs of the callback (see Combine).
func (c StatusCallback) Outcome(hasSMSFallback bool) Outcome {
	return Combine(c.Status, c.SMSStatus, hasSMSFallback)
}

// Reply is a two-way user reply to a 206/208 message (vendor notes: two-way replies).
type Reply struct {
	// MessageToken is the token of the reply, kept as the decimal text the provider
	// sent: Viber tokens can exceed 2^53, so it is never a float.
	MessageToken string
	PhoneNumber  string    // as sent by the provider; mask it with MaskPhone before logging
	Time         time.Time // UTC; zero when the provider sent none
	Text         string
	TrackingData string // e.g. "tracking_id:100035", from message.tracking_data or the top level
	// TrackingID is the id extracted from TrackingData ("tracking_id:(\d+)" or an
	// object's tracking_id), or a tracking_id field; it links the reply to our
	// outbound message_id. "" if none.
	TrackingID string
	// Unparsed lists the parts that could not be read, each with the reason; the reply
	// is kept all the same. Raw is then the body as received (nil when every part
	// was read).
	Unparsed []FieldError
	Raw      []byte
}

// CallbackError is a callback body that cannot be parsed. Field names the missing or
// bad field ("" when the body as a whole is unusable).
type CallbackError struct {
	Kind    string // "status callback" or "reply"
	Field   string
	Problem string
}

// Error returns e.g. "status callback: message_id: missing".
func (e *CallbackError) Error() string {
	if e.Field == "" {
		return e.Kind + ": " + e.Problem
	}
	return e.Kind + ": " + e.Field + ": " + e.Problem
}

const (
	kindStatus = "status callback"
	kindReply  = "reply"
)

// payload gives uniform access to a JSON object or form values.
type payload struct {
	obj  map[string]any // JSON, numbers as json.Number
	form url.Values
}

// parsePayload decodes body as JSON (application/json, */*+json, text/json) or as
// form data (application/x-www-form-urlencoded). Any other or missing content type is
// sniffed: a body starting with '{' is JSON, anything else form data.
func parsePayload(kind, contentType string, body []byte) (payload, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	trimmed := bytes.TrimSpace(body)
	isJSON := len(trimmed) > 0 && trimmed[0] == '{'
	switch {
	case mt == "application/x-www-form-urlencoded":
		isJSON = false
	case mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json"):
		isJSON = true
	}
	if len(trimmed) == 0 {
		return payload{}, &CallbackError{Kind: kind, Problem: "empty body"}
	}
	if isJSON {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil || obj == nil {
			return payload{}, &CallbackError{Kind: kind, Problem: "body is not a JSON object"}
		}
		if _, err := dec.Token(); err != io.EOF {
			return payload{}, &CallbackError{Kind: kind, Problem: "trailing data after the JSON object"}
		}
		return payload{obj: obj}, nil
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return payload{}, &CallbackError{Kind: kind, Problem: "body is neither JSON nor form data"}
	}
	return payload{form: form}, nil
}

// value returns the raw value of the first present name: json.Number, string, bool,
// map, slice for JSON; string for forms. nil values count as absent.
func (p payload) value(names ...string) (any, string, bool) {
	for _, n := range names {
		if p.obj != nil {
			if v, ok := p.obj[n]; ok && v != nil {
				return v, n, true
			}
			continue
		}
		if vs, ok := p.form[n]; ok && len(vs) > 0 {
			return vs[0], n, true
		}
	}
	return nil, names[0], false
}

// object returns a nested JSON object (e.g. "message"); nil for forms or non-objects.
func (p payload) object(name string) payload {
	if m, ok := p.obj[name].(map[string]any); ok {
		return payload{obj: m}
	}
	return payload{}
}

// scalar returns a number's text or a string; "" is absent. Other JSON kinds are an
// error naming the field.
func (p payload) scalar(kind string, names ...string) (string, bool, error) {
	v, name, ok := p.value(names...)
	if !ok {
		return "", false, nil
	}
	switch x := v.(type) {
	case json.Number:
		return string(x), true, nil
	case string:
		if !utf8.ValidString(x) {
			return "", false, &CallbackError{Kind: kind, Field: name, Problem: "invalid UTF-8"}
		}
		return x, x != "", nil
	}
	return "", false, &CallbackError{Kind: kind, Field: name, Problem: "must be a number or a string"}
}

func (p payload) empty() bool { return p.obj == nil && p.form == nil }

// ParseStatusCallback parses a status callback (vendor notes: status callbacks). contentType is the request's
// Content-Type. message_id and status are required (numbers or numeric strings);
// sms_message_id and sms_message_status are optional (absent, null or "" give nil).
// Unknown status codes are kept as they are (they mean pending, vendor notes: Viber statuses, SMS statuses). Errors are
// *CallbackError naming the field.
func ParseStatusCallback(contentType string, body []byte) (StatusCallback, error) {
	p, err := parsePayload(kindStatus, contentType, body)
	if err != nil {
		return StatusCallback{}, err
	}
	cb := StatusCallback{Raw: body}
	id, ok, err := callbackID(p, kindStatus, "message_id")
	if err != nil {
		return StatusCallback{}, err
	}
	if !ok {
		return StatusCallback{}, &CallbackError{Kind: kindStatus, Field: "message_id", Problem: "missing"}
	}
	if id == 0 {
		return StatusCallback{}, &CallbackError{Kind: kindStatus, Field: "message_id", Problem: "must be positive"}
	}
	cb.MessageID = id
	st, ok, err := callbackInt(p, kindStatus, "status")
	if err != nil {
		return StatusCallback{}, err
	}
	if !ok {
		return StatusCallback{}, &CallbackError{Kind: kindStatus, Field: "status", Problem: "missing"}
	}
	cb.Status = ViberStatus(st)
	if id, ok, err := callbackID(p, kindStatus, "sms_message_id"); err != nil {
		return StatusCallback{}, err
	} else if ok && id != 0 {
		cb.SMSMessageID = &id
	}
	if st, ok, err := callbackInt(p, kindStatus, "sms_message_status"); err != nil {
		return StatusCallback{}, err
	} else if ok {
		s := SMSStatus(st)
		cb.SMSStatus = &s
	}
	return cb, nil
}

func callbackID(p payload, kind, name string) (MessageID, bool, error) {
	s, ok, err := p.scalar(kind, name)
	if err != nil || !ok {
		return 0, false, err
	}
	id, err := ParseMessageID(strings.TrimSpace(s))
	if err != nil {
		return 0, false, &CallbackError{Kind: kind, Field: name, Problem: "must be a non-negative integer or numeric string"}
	}
	return id, true, nil
}

func callbackInt(p payload, kind, name string) (int, bool, error) {
	s, ok, err := p.scalar(kind, name)
	if err != nil || !ok {
		return 0, false, err
	}
	s = strings.TrimSpace(s)
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil || n < 0 || strings.HasPrefix(s, "+") {
		return 0, false, &CallbackError{Kind: kind, Field: name, Problem: "must be a non-negative integer"}
	}
	return int(n), true, nil
}

var trackingIDRe = regexp.MustCompile(`tracking_id:\s*(\d+)`)

// Epoch bounds for Reply.Time: values above msThreshold are milliseconds (vendor notes: two-way replies);
// anything beyond year 9999 is rejected.
const (
	msThreshold = 1e12
	maxEpochMS  = 253402300799999
)

// ParseReply parses a two-way reply: JSON or form data. The vendor page lists the
// fields without nesting or types (message_token, phone_number, time, message, text,
// tracking_data, tracking_id), so every plausible shape is kept: only message_token
// and phone_number (strings or numbers) are required, and a reply is never refused for
// its other parts. message_token is kept as the decimal text even above 2^53. time is
// epoch seconds, or milliseconds above 10^12, as a number or a numeric string, or an
// RFC 3339 / "2006-01-02 15:04:05" (UTC) string. The text is message.text, a top-level
// text, or message itself when it is a string. tracking_data is taken from message or
// the top level, as a string ("tracking_id:100035") or an object
// ({"tracking_id":100035}), and TrackingID from it or else from a tracking_id field.
// In form data nested names may be written message[text] or message.text. A part that
// cannot be read is listed in Unparsed with the reason, and the body kept in Raw.
// Errors are *CallbackError naming the missing field.
func ParseReply(contentType string, body []byte) (Reply, error) {
	p, err := parsePayload(kindReply, contentType, body)
	if err != nil {
		return Reply{}, err
	}
	var rp Reply
	tok, ok, err := p.scalar(kindReply, "message_token")
	if err != nil {
		return Reply{}, err
	}
	if !ok {
		return Reply{}, &CallbackError{Kind: kindReply, Field: "message_token", Problem: "missing"}
	}
	rp.MessageToken = tok
	if n, isNum := mustValue(p, "message_token").(json.Number); isNum && !allDigits(string(n)) {
		rp.unparsed("message_token", "not an integer; kept as sent")
	}
	phone, ok, err := p.scalar(kindReply, "phone_number")
	if err != nil {
		return Reply{}, err
	}
	if !ok {
		return Reply{}, &CallbackError{Kind: kindReply, Field: "phone_number", Problem: "missing"}
	}
	rp.PhoneNumber = phone

	if v, _, ok := p.value("time"); ok {
		t, reason := parseReplyTime(v)
		if reason != "" {
			rp.unparsed("time", reason)
		}
		rp.Time = t
	}

	msg := p.object("message")
	lookups := []payload{msg, p}
	if text, field, reason := firstText(lookups, "text", "message[text]", "message.text"); reason != "" {
		rp.unparsed(field, reason)
	} else {
		rp.Text = text
	}
	if rp.Text == "" {
		if s, ok := mustValue(p, "message").(string); ok {
			rp.Text = s
		}
	}

	tdRaw, tdField := firstValue(lookups, "tracking_data", "message[tracking_data]", "message.tracking_data")
	switch td := tdRaw.(type) {
	case nil:
	case string:
		rp.TrackingData = td
		if obj := jsonObjectIn(td); obj != nil {
			rp.TrackingID = trackingIDOf(obj["tracking_id"])
		}
	case json.Number:
		rp.TrackingData = string(td)
	case map[string]any:
		b, _ := json.Marshal(td)
		rp.TrackingData = string(b)
		rp.TrackingID = trackingIDOf(td["tracking_id"])
		if rp.TrackingID == "" {
			rp.unparsed(tdField, "object without a numeric tracking_id")
		}
	default:
		rp.unparsed(tdField, "neither a string nor an object")
	}
	if rp.TrackingID == "" {
		if m := trackingIDRe.FindStringSubmatch(rp.TrackingData); m != nil && len(m[1]) <= 19 {
			rp.TrackingID = m[1]
		}
	}
	if rp.TrackingID == "" {
		if v, field := firstValue(lookups, "tracking_id", "message[tracking_id]", "message.tracking_id"); v != nil {
			if rp.TrackingID = trackingIDOf(v); rp.TrackingID == "" {
				rp.unparsed(field, "not a decimal message id")
			}
		}
	}
	if len(rp.Unparsed) > 0 {
		rp.Raw = body
	}
	return rp, nil
}

// unparsed records a part of the reply that could not be read.
func (r *Reply) unparsed(field, reason string) {
	r.Unparsed = append(r.Unparsed, FieldError{Field: field, Rule: reason})
}

// parseReplyTime reads a reply time; reason is "" on success.
func parseReplyTime(v any) (time.Time, string) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = string(x)
	case string:
		s = strings.TrimSpace(x)
	default:
		return time.Time{}, "neither a number nor a string"
	}
	if s == "" {
		return time.Time{}, ""
	}
	if t, err := parseEpoch(s); err == nil {
		return t, ""
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			if t.UTC().Year() < 1970 {
				return time.Time{}, "out of range"
			}
			return t.UTC(), ""
		}
	}
	return time.Time{}, "not an epoch number or a date"
}

// firstValue returns the first present value among the payloads and names.
func firstValue(ps []payload, names ...string) (any, string) {
	for _, p := range ps {
		if p.empty() {
			continue
		}
		if v, name, ok := p.value(names...); ok {
			return v, name
		}
	}
	return nil, names[0]
}

// firstText returns the first present text; reason is set when it is not a string or
// a number.
func firstText(ps []payload, names ...string) (text, field, reason string) {
	for _, p := range ps {
		if p.empty() {
			continue
		}
		s, ok, err := p.scalar(kindReply, names...)
		if err != nil {
			var ce *CallbackError
			if errors.As(err, &ce) {
				return "", ce.Field, ce.Problem
			}
			return "", names[0], err.Error()
		}
		if ok {
			return s, "", ""
		}
	}
	return "", "", ""
}

// trackingIDOf reads a tracking_id given as a number or a decimal string.
func trackingIDOf(v any) string {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = string(x)
	case float64:
		s = strconv.FormatFloat(x, 'f', -1, 64)
	case string:
		s = strings.TrimSpace(x)
	}
	if allDigits(s) && len(s) <= 19 {
		return s
	}
	return ""
}

// jsonObjectIn decodes s when it is a JSON object (tracking_data sent as JSON text).
func jsonObjectIn(s string) map[string]any {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "{") {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var obj map[string]any
	if dec.Decode(&obj) != nil {
		return nil
	}
	return obj
}

func mustValue(p payload, name string) any {
	v, _, _ := p.value(name)
	return v
}

// parseEpoch reads seconds, or milliseconds above 10^12 (vendor notes: two-way replies).
func parseEpoch(s string) (time.Time, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || strings.ContainsAny(s, "xXpP_") {
		return time.Time{}, errors.New("must be an epoch number")
	}
	ms := f * 1000
	if f > msThreshold {
		ms = f
	}
	if ms < 0 || ms > maxEpochMS {
		return time.Time{}, errors.New("out of range")
	}
	return time.UnixMilli(int64(ms)).UTC(), nil
}

// IsReply tells a two-way reply from a status callback by key presence (vendor notes: two-way replies): the
// body (JSON, or form data when it does not start with '{') has a non-empty
// message_token and phone_number.
func IsReply(body []byte) bool {
	p, err := parsePayload(kindReply, "", body)
	if err != nil {
		return false
	}
	_, ok1, err1 := p.scalar(kindReply, "message_token")
	_, ok2, err2 := p.scalar(kindReply, "phone_number")
	return ok1 && ok2 && err1 == nil && err2 == nil
}

// StatusCallbackHandler adapts fn to an http.Handler for the callback_url endpoint.
// It reads at most maxBody bytes (DefaultMaxCallbackBytes when <= 0) and answers 413
// when the body is larger, 400 when ParseStatusCallback fails, 500 when fn returns an
// error (the provider may retry), 200 otherwise. POST and PUT carry the payload in the
// body, GET in the query string; other methods get 405. fn may be nil.
func StatusCallbackHandler(maxBody int64, fn func(*http.Request, StatusCallback) error) http.Handler {
	return callbackHandler(maxBody, ParseStatusCallback, fn)
}

// ReplyHandler is StatusCallbackHandler for two-way replies (ParseReply).
func ReplyHandler(maxBody int64, fn func(*http.Request, Reply) error) http.Handler {
	return callbackHandler(maxBody, ParseReply, fn)
}

func callbackHandler[T any](maxBody int64, parse func(string, []byte) (T, error), fn func(*http.Request, T) error) http.Handler {
	if maxBody <= 0 {
		maxBody = DefaultMaxCallbackBytes
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var (
			body []byte
			ct   = r.Header.Get("Content-Type")
		)
		switch r.Method {
		case http.MethodPost, http.MethodPut:
			b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
			if err != nil {
				var mbe *http.MaxBytesError
				if errors.As(err, &mbe) {
					http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
					return
				}
				http.Error(w, "cannot read body", http.StatusBadRequest)
				return
			}
			body = b
		case http.MethodGet:
			if int64(len(r.URL.RawQuery)) > maxBody {
				http.Error(w, "query too large", http.StatusRequestEntityTooLarge)
				return
			}
			body, ct = []byte(r.URL.RawQuery), "application/x-www-form-urlencoded"
		default:
			w.Header().Set("Allow", "GET, POST, PUT")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		v, err := parse(ct, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if fn != nil {
			if err := fn(r, v); err != nil {
				http.Error(w, "internal error", http.StatusInternalServerError)
				return
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
}

// MaskPhone hides the middle of a phone number for logs: "380501234567" becomes
// "380*****4567" (first 3 and last 4 characters kept when at least 3 are hidden).
// Shorter values keep only their last 2 characters (at least 3 hidden), and values of
// 4 or fewer characters are hidden entirely. The length is preserved.
func MaskPhone(p string) string {
	r := []rune(p)
	n := len(r)
	keepHead, keepTail := 0, 0
	switch {
	case n >= 10:
		keepHead, keepTail = 3, 4
	case n >= 5:
		keepTail = 2
	}
	for i := keepHead; i < n-keepTail; i++ {
		r[i] = '*'
	}
	return string(r)
}
