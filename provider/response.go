package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// SendResult is a successful send-viber answer (vendor notes: send answer). MessageID is the
// Viber message id; the SMS leg's id shows up only in StatusResult.
type SendResult struct {
	MessageID MessageID
}

// StatusResult is a receive-viber answer (vendor notes: endpoints).
type StatusResult struct {
	MessageID    MessageID
	Status       ViberStatus
	SMSMessageID *MessageID // nil when absent, null, "" or 0
	SMSStatus    *SMSStatus // nil when absent, null or ""
}

// Outcome combines both legs of the status (see Combine); hasSMSFallback tells whether
// the message was sent with a text_sms.
func (r StatusResult) Outcome(hasSMSFallback bool) Outcome {
	return Combine(r.Status, r.SMSStatus, hasSMSFallback)
}

// rawResponse is everything decodeResponse needs from an HTTP answer.
type rawResponse struct {
	op, url  string
	status   int
	header   http.Header
	body     []byte // at most MaxResponseBytes
	tooLarge bool   // the body was longer than MaxResponseBytes
	readErr  error  // the body could not be read to its end
}

// responseDecoder decodes a success body (a JSON object) into a result.
type responseDecoder interface {
	decode(obj map[string]json.RawMessage) error
}

// decodeResponse turns an answer into nil (v filled) or a typed error. It is pure, so
// the fuzz target can drive it. Order (vendor notes: errors):
//
//  1. HTTP 401/403 is UnauthorizedError whatever the body.
//  2. A body that is the vendor error JSON (integer code and status, a string message
//     or name, no message_id; see parseVendorError) is an error on any HTTP status,
//     200 included.
//  3. Any other non-2xx is an error by its HTTP status.
//  4. A 2xx body must be a complete JSON object within the size cap that decodes
//     into v; anything else is a ResponseError.
func decodeResponse(r rawResponse, cred *credential, now time.Time, v responseDecoder) error {
	var obj map[string]json.RawMessage
	isObj := false
	if !r.tooLarge && r.readErr == nil {
		isObj = decodeObject(r.body, &obj) == nil && obj != nil
	}
	var vendor *vendorError
	if isObj {
		vendor = parseVendorError(obj)
	}
	is2xx := r.status >= 200 && r.status <= 299

	if vendor != nil || !is2xx {
		return apiErrorFor(r, vendor, cred, now)
	}
	respErr := func(err error) error {
		return &ResponseError{Op: r.op, URL: r.url, HTTPStatus: r.status, Err: err, Snippet: snippet(r.body, cred)}
	}
	switch {
	case r.readErr != nil:
		return respErr(fmt.Errorf("reading body: %w", r.readErr))
	case r.tooLarge:
		return respErr(fmt.Errorf("body larger than %d bytes", MaxResponseBytes))
	case !isObj:
		if err := decodeObject(r.body, &obj); err != nil {
			return respErr(fmt.Errorf("body is not a JSON object: %w", err))
		}
		return respErr(errors.New("body is not a JSON object"))
	}
	if err := v.decode(obj); err != nil {
		return respErr(err)
	}
	return nil
}

// decodeObject decodes a JSON object; trailing data is an error.
func decodeObject(b []byte, obj *map[string]json.RawMessage) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(obj); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after JSON value")
	}
	if _, err := dec.Token(); err == nil {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

// vendorError is the provider's error JSON (vendor notes: errors).
type vendorError struct {
	code, status  int
	name, message string
}

// parseVendorError recognises the vendor's error body by the fields the vendor page
// lists for it ("Ошибки": message, code, status): an object with integer code and
// status, at least one of a string message or a string name (the SDKs' extra field),
// and no message_id. It applies on every HTTP status, 200 included, and on both
// endpoints, so a status answer's "status" is never read as a Viber status when the
// body is an error.
func parseVendorError(obj map[string]json.RawMessage) *vendorError {
	if _, ok := obj["message_id"]; ok {
		return nil
	}
	code, ok1 := jsonInt(obj["code"])
	status, ok2 := jsonInt(obj["status"])
	hasName, hasMessage := jsonIsString(obj["name"]), jsonIsString(obj["message"])
	if !ok1 || !ok2 || (!hasName && !hasMessage) {
		return nil
	}
	ve := &vendorError{code: code, status: status}
	if hasName {
		_ = json.Unmarshal(obj["name"], &ve.name)
	}
	if hasMessage {
		_ = json.Unmarshal(obj["message"], &ve.message)
	}
	return ve
}

func jsonIsString(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '"'
}

// jsonInt accepts a JSON number that is an integer fitting in an int32.
func jsonInt(raw json.RawMessage) (int, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] == '"' || raw[0] == 'n' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(raw), 10, 32)
	if err != nil {
		return 0, false
	}
	return int(n), true
}

// apiErrorFor builds the typed error for a vendor error JSON (vendor != nil) or a bare
// non-2xx status. The class is decided by, in order: HTTP 401/403; the vendor's
// status field; the vendor's code (1, 2, 3; 0 only when the vendor status is not an
// HTTP error status, because Yii2 reports code 0 for every HTTP exception, so code 0
// alone does not mean "rate limited"); the HTTP status.
func apiErrorFor(r rawResponse, vendor *vendorError, cred *credential, now time.Time) error {
	base := APIError{Op: r.op, URL: r.url, HTTPStatus: r.status, Code: -1}
	class := classNone
	if r.status == http.StatusUnauthorized || r.status == http.StatusForbidden {
		class = classUnauthorized
	}
	if vendor != nil {
		base.Code, base.Status = vendor.code, vendor.status
		base.Name = cleanVendorText(cred, vendor.name, 200)
		base.Message = cleanVendorText(cred, vendor.message, 500)
		if class == classNone {
			class = classOfStatus(vendor.status)
		}
		if class == classNone {
			switch {
			case vendor.code == 1:
				class = classInvalid
			case vendor.code == 2:
				class = classServer
			case vendor.code == 3:
				class = classBalance
			case vendor.code == 0 && vendor.status < 400:
				class = classRateLimit
			}
		}
	} else {
		base.Name = http.StatusText(r.status)
		if !r.tooLarge {
			base.Body = snippet(r.body, cred)
		}
	}
	if class == classNone {
		class = classOfStatus(r.status)
	}
	switch class {
	case classRateLimit:
		return &RateLimitError{APIError: base, RetryAfter: retryAfter(r.header, now)}
	case classInvalid:
		return &InvalidParameterError{APIError: base, Param: paramFrom(base.Name, base.Message)}
	case classServer:
		return &ServerError{APIError: base}
	case classBalance:
		return &BalanceError{APIError: base}
	case classUnauthorized:
		return &UnauthorizedError{APIError: base}
	}
	return &base
}

var paramRe = regexp.MustCompile(`(?i)invalid parameter:\s*\[?([A-Za-z0-9_.\-]{1,64})\]?`)

// paramFrom extracts <field> from "Invalid Parameter: <field>" (vendor notes: errors),
// looking at the name first and then at the message.
func paramFrom(texts ...string) string {
	for _, t := range texts {
		if m := paramRe.FindStringSubmatch(t); m != nil {
			return m[1]
		}
	}
	return ""
}

// maxRetryAfter bounds a provider hint so that absurd values cannot overflow.
const maxRetryAfter = 7 * 24 * time.Hour

// retryAfter reads the provider's hint (README, Error policy): Retry-After as delay-seconds or an HTTP
// date; else X-Rate-Limit-Reset, which Yii2's RateLimiter sends as seconds until the
// window resets (a value above 10^9 is taken as a Unix time instead). 0 when there is
// no usable hint; hints beyond 7 days are capped.
func retryAfter(h http.Header, now time.Time) time.Duration {
	clamp := func(d time.Duration) time.Duration {
		return min(max(d, 0), maxRetryAfter)
	}
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if n, err := strconv.ParseUint(v, 10, 64); err == nil {
			return clamp(secondsDuration(n))
		}
		if t, err := http.ParseTime(v); err == nil {
			return clamp(t.Sub(now))
		}
	}
	if v := strings.TrimSpace(h.Get("X-Rate-Limit-Reset")); v != "" {
		if n, err := strconv.ParseUint(v, 10, 64); err == nil {
			if n > 1e9 {
				if n > math.MaxInt32*4 {
					return maxRetryAfter
				}
				return clamp(time.Unix(int64(n), 0).Sub(now))
			}
			return clamp(secondsDuration(n))
		}
	}
	return 0
}

func secondsDuration(n uint64) time.Duration {
	if n > uint64(maxRetryAfter/time.Second) {
		return maxRetryAfter
	}
	return time.Duration(n) * time.Second
}

// snippet returns a short, printable, redacted excerpt of a body for error messages.
func snippet(b []byte, cred *credential) string {
	return cleanVendorText(cred, string(b), 200)
}

// sanitizeText makes vendor text safe for one log line: valid UTF-8, control
// characters as spaces, whitespace collapsed, at most n bytes.
func sanitizeText(s string, n int) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.IsSpace(r) {
			if r == utf8.RuneError {
				r = '?'
			} else {
				if !space && b.Len() > 0 {
					b.WriteByte(' ')
				}
				space = true
				continue
			}
		}
		space = false
		b.WriteRune(r)
		if b.Len() >= n {
			break
		}
	}
	return truncate(strings.TrimSpace(b.String()), n)
}

// cleanVendorText redacts secrets, sanitizes, and redacts again (sanitizing collapses
// whitespace, which could reassemble a key that contains spaces).
func cleanVendorText(cred *credential, s string, n int) string {
	return cred.redact(sanitizeText(cred.redact(s), n))
}

// sendDecoder decodes {"message_id":429} or {"message_id":"429"} (vendor notes: send answer).
type sendDecoder struct{ res SendResult }

func (d *sendDecoder) decode(obj map[string]json.RawMessage) error {
	id, ok, err := idField(obj, "message_id")
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("message_id: missing")
	}
	if id == 0 {
		return errors.New("message_id: must be positive")
	}
	d.res = SendResult{MessageID: id}
	return nil
}

// statusDecoder decodes {"message_id":429,"status":1,"sms_message_id":36478,
// "sms_message_status":2}; the SMS fields are optional (vendor notes: endpoints). A message_id
// that differs from the one asked for is an error; a missing one is filled in.
type statusDecoder struct {
	want MessageID
	res  StatusResult
}

func (d *statusDecoder) decode(obj map[string]json.RawMessage) error {
	id, ok, err := idField(obj, "message_id")
	if err != nil {
		return err
	}
	if !ok {
		id = d.want
	} else if id != d.want {
		return errors.New("message_id: the answer is for another message") // ids not quoted: errors stay free of body values
	}
	st, ok, err := intField(obj, "status")
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("status: missing")
	}
	res := StatusResult{MessageID: id, Status: ViberStatus(st)}
	smsID, ok, err := idField(obj, "sms_message_id")
	if err != nil {
		return err
	}
	if ok && smsID != 0 {
		res.SMSMessageID = &smsID
	}
	smsSt, ok, err := intField(obj, "sms_message_status")
	if err != nil {
		return err
	}
	if ok {
		s := SMSStatus(smsSt)
		res.SMSStatus = &s
	}
	d.res = res
	return nil
}

// idField reads a message id given as a number or a numeric string (vendor notes: send answer). Absent,
// null and "" report ok=false. Errors never quote the value.
func idField(obj map[string]json.RawMessage, name string) (MessageID, bool, error) {
	s, ok, err := scalarField(obj, name)
	if err != nil || !ok {
		return 0, false, err
	}
	id, err := ParseMessageID(s)
	if err != nil {
		return 0, false, fmt.Errorf("%s: %w", name, errBadMessageID)
	}
	return id, true, nil
}

// intField reads a status code given as a number or a numeric string. Absent, null
// and "" report ok=false.
func intField(obj map[string]json.RawMessage, name string) (int, bool, error) {
	s, ok, err := scalarField(obj, name)
	if err != nil || !ok {
		return 0, false, err
	}
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil || n < 0 || strings.HasPrefix(s, "+") {
		return 0, false, fmt.Errorf("%s: must be a non-negative integer", name)
	}
	return int(n), true, nil
}

// scalarField returns the text of a JSON number, or the content of a JSON string.
func scalarField(obj map[string]json.RawMessage, name string) (string, bool, error) {
	raw, present := obj[name]
	raw = bytes.TrimSpace(raw)
	if !present || string(raw) == "null" {
		return "", false, nil
	}
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false, fmt.Errorf("%s: bad string", name)
		}
		if s == "" {
			return "", false, nil
		}
		return s, true, nil
	}
	if len(raw) > 0 && (raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')) {
		return string(raw), true, nil
	}
	return "", false, fmt.Errorf("%s: must be a number or a numeric string", name)
}
