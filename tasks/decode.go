package tasks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/viberq/viberq/provider"
)

// FieldMessage is the entry field that holds a whole JSON document.
const FieldMessage = "message"

// kind is how a field's value is read.
type kind int

const (
	kindString kind = iota // a JSON string
	kindDigits             // a JSON string, or a JSON integer kept as its digits (destination_addr)
	kindInt                // a JSON integer, or a string holding one
	kindTTL                // a Go duration string ("90s"), or seconds as a number or a string
	kindTime               // an RFC 3339 time string (send_at)
)

// fieldKinds lists every accepted field: id, ttl, send_at, batch_id, webhook_url,
// webhook_events and the provider.Message JSON names.
var fieldKinds = map[string]kind{
	"id":               kindString,
	"ttl":              kindTTL,
	"source_addr":      kindString,
	"destination_addr": kindDigits,
	"message_type":     kindInt,
	"text":             kindString,
	"text_sms":         kindString,
	"image":            kindString,
	"button_caption":   kindString,
	"button_action":    kindString,
	"source_type":      kindInt,
	"callback_url":     kindString,
	"validity_period":  kindInt,
	"webhook_url":      kindString,
	"webhook_events":   kindString,
	"send_at":          kindTime,
	"batch_id":         kindString,
}

// RequestFields returns the names of the fields DecodeJSON and DecodeFields accept, sorted.
func RequestFields() []string {
	out := make([]string, 0, len(fieldKinds))
	for k := range fieldKinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// IsRequestField reports whether name is one of RequestFields.
func IsRequestField(name string) bool {
	_, ok := fieldKinds[name]
	return ok
}

// DecodeError is a document that cannot be read as a message at all: malformed JSON
// (Problem) or fields viberq does not know (Unknown). Its text never quotes a value,
// and its field names have their phone-like runs masked (shownNames).
type DecodeError struct {
	// Problem says what is malformed, e.g. "body is not a JSON object"; "" when the
	// only problem is Unknown.
	Problem string
	// Unknown lists the unknown field names, sorted.
	Unknown []string
	// Duplicate lists the field names given more than once in one JSON object,
	// sorted. encoding/json would silently keep the last one; the producer may have
	// meant the first, so neither is guessed.
	Duplicate []string
}

// Error returns e.g. `malformed JSON: unexpected end of input`,
// `unknown fields "colour", "phone"` or `field "text" given more than once`.
func (e *DecodeError) Error() string {
	if e.Problem != "" {
		return e.Problem
	}
	var parts []string
	if len(e.Unknown) > 0 {
		parts = append(parts, quoteList("unknown field", e.Unknown))
	}
	if len(e.Duplicate) > 0 {
		parts = append(parts, quoteList("field", e.Duplicate)+" given more than once")
	}
	return strings.Join(parts, "; ")
}

// shownNames returns names as a DecodeError keeps and shows them: every phone-like run
// masked (provider.MaskPhones: a producer may put a number where a field name
// belongs, and no answer, log or dead-letter entry quotes one), sorted.
func shownNames(names []string) []string {
	for i, n := range names {
		names[i] = provider.MaskPhones(n)
	}
	sort.Strings(names)
	return names
}

// quoteList is `noun "a"` or `nouns "a", "b"`.
func quoteList(noun string, names []string) string {
	q := make([]string, len(names))
	for i, u := range names {
		q[i] = strconv.Quote(u)
	}
	if len(q) == 1 {
		return noun + " " + q[0]
	}
	return noun + "s " + strings.Join(q, ", ")
}

// ruleDuplicate is the Reasons rule of a field given more than once.
const ruleDuplicate = "given more than once"

// ruleUTF8 is the rule of a string that is not valid UTF-8 text.
const ruleUTF8 = "must be valid UTF-8 text (no invalid bytes, no lone UTF-16 surrogate escapes)"

// Reasons lists why a request was refused, as field/rule pairs: the fields of a
// *provider.ValidationError, the unknown fields (rule "unknown field") or the
// malformed document (field FieldMessage) of a *DecodeError, and "id" for
// ErrIdempotencyConflict (rule: ConflictText). Any other error gives one pair with an
// empty field.
func Reasons(err error) []provider.FieldError {
	var (
		ve *provider.ValidationError
		de *DecodeError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ve):
		return append([]provider.FieldError(nil), ve.Fields...)
	case errors.As(err, &de):
		var out []provider.FieldError
		if de.Problem != "" {
			out = append(out, provider.FieldError{Field: FieldMessage, Rule: de.Problem})
		}
		for _, u := range de.Unknown {
			out = append(out, provider.FieldError{Field: u, Rule: "unknown field"})
		}
		for _, u := range de.Duplicate {
			out = append(out, provider.FieldError{Field: u, Rule: ruleDuplicate})
		}
		return out
	case errors.Is(err, ErrIdempotencyConflict):
		return []provider.FieldError{{Field: "id", Rule: ConflictText(err)}}
	}
	return []provider.FieldError{{Rule: err.Error()}}
}

// Permanent reports whether err means the request can never be enqueued as it is
// (a *DecodeError, a *provider.ValidationError or ErrIdempotencyConflict), as
// opposed to a transient failure such as Redis being unreachable.
func Permanent(err error) bool {
	var (
		ve *provider.ValidationError
		de *DecodeError
	)
	return errors.As(err, &ve) || errors.As(err, &de) || errors.Is(err, ErrIdempotencyConflict)
}

// DecodeJSON reads one message request from a JSON document, the body of
// POST /v1/messages and the "message" field of an outbox entry:
//
//	{"id":"order-42","ttl":"90s","source_addr":"Shop","destination_addr":"380501234567",
//	 "message_type":106,"source_type":2,"text":"Your code is 1234","text_sms":"Code 1234"}
//
// Every field is optional here (the Enqueuer decides what is required). id is the
// idempotency key; ttl is a Go duration string ("90s", "1h") or a number of seconds
// (number or string); message_type, source_type and validity_period are integers
// (numbers, or strings holding one); destination_addr is a string of digits (a JSON
// integer is accepted too); the others are strings. null is the same as absent.
//
// It returns a *DecodeError for malformed JSON, a document that is not an object,
// unknown fields or a field given twice; and a *provider.ValidationError when values
// have the wrong type or a string is not valid UTF-8 (invalid bytes, or a \uD800-
// \uDFFF escape that is not half of a pair: encoding/json would silently turn either
// into U+FFFD),
// listing those together with every other violation of provider.Message.Validate,
// the id rule and the TTL range, so that one answer names every bad field. The request
// decoded so far is returned with the error.
func DecodeJSON(data []byte) (EnqueueRequest, error) {
	raw, dup, err := jsonObject(data)
	if err != nil {
		return EnqueueRequest{}, err
	}
	if len(dup) > 0 {
		var unk []string
		for name := range raw {
			if _, ok := fieldKinds[name]; !ok {
				unk = append(unk, name)
			}
		}
		unk = shownNames(unk)
		return EnqueueRequest{}, &DecodeError{Unknown: unk, Duplicate: shownNames(dup)}
	}
	var (
		d   decoder
		unk []string
	)
	for name, v := range raw {
		k, ok := fieldKinds[name]
		if !ok {
			unk = append(unk, name)
			continue
		}
		s, present, rule := jsonScalar(k, v)
		if rule != "" {
			d.bad(name, rule)
			continue
		}
		if present {
			d.set(name, k, s)
		}
	}
	if len(unk) > 0 {
		unk = shownNames(unk)
		return d.req, &DecodeError{Unknown: unk}
	}
	return d.result()
}

// DecodeFields reads one message request from the fields of an outbox stream entry,
// in one of two forms:
//
//   - a field "message" holding a JSON document as read by DecodeJSON, optionally with
//     the fields "id" and/or "ttl" beside it (which must then agree with the document);
//   - flat fields: "id", "ttl" and the provider.Message JSON names, each value a
//     string (message_type, source_type and validity_period hold decimal integers).
//
// Empty values count as absent. Errors are as for DecodeJSON; in the flat form an
// unknown field is a *DecodeError.
func DecodeFields(values map[string]any) (EnqueueRequest, error) {
	if doc, ok := values[FieldMessage]; ok {
		return decodeWrapped(values, str(doc))
	}
	var (
		d   decoder
		unk []string
	)
	for name, v := range values {
		k, ok := fieldKinds[name]
		if !ok {
			unk = append(unk, name)
			continue
		}
		if s := str(v); s != "" {
			d.set(name, k, s)
		}
	}
	if len(unk) > 0 {
		unk = shownNames(unk)
		return d.req, &DecodeError{Unknown: unk}
	}
	return d.result()
}

// decodeWrapped reads the "message" JSON form with optional id and ttl beside it.
func decodeWrapped(values map[string]any, doc string) (EnqueueRequest, error) {
	var unk []string
	for name := range values {
		if name != FieldMessage && name != "id" && name != "ttl" {
			unk = append(unk, name)
		}
	}
	if len(unk) > 0 {
		unk = shownNames(unk)
		return EnqueueRequest{}, &DecodeError{Unknown: unk}
	}
	req, err := DecodeJSON([]byte(doc))
	var de *DecodeError
	if errors.As(err, &de) {
		if de.Problem != "" {
			return req, &DecodeError{Problem: "message: " + de.Problem, Unknown: de.Unknown}
		}
		return req, err
	}
	var extra []provider.FieldError
	var ve *provider.ValidationError
	if errors.As(err, &ve) {
		extra = ve.Fields
	}
	if id := str(values["id"]); id != "" {
		switch {
		case req.ID == "":
			req.ID = id
		case req.ID != id:
			extra = append(extra, provider.FieldError{Field: "id", Rule: "differs from the id inside message"})
		}
	}
	if s := str(values["ttl"]); s != "" {
		ttl, rule := parseTTL(s)
		switch {
		case rule != "":
			extra = append(extra, provider.FieldError{Field: "ttl", Rule: rule})
		case req.TTL == 0:
			req.TTL = ttl
		case req.TTL != ttl:
			extra = append(extra, provider.FieldError{Field: "ttl", Rule: "differs from the ttl inside message"})
		}
	}
	if len(extra) > 0 {
		return req, &provider.ValidationError{Fields: dedupe(extra)}
	}
	return req, err
}

// jsonObject decodes data as one JSON object; dup lists the names given more than
// once, in the order of their second occurrence (its caller shows them through
// shownNames, which sorts). A name that is not valid UTF-8 is a malformed document.
func jsonObject(data []byte) (raw map[string]json.RawMessage, dup []string, err error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil, &DecodeError{Problem: "empty document: want a JSON object"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	malformed := func(err error) error {
		var se *json.SyntaxError
		switch {
		case errors.As(err, &se):
			return &DecodeError{Problem: fmt.Sprintf("malformed JSON at byte %d: %s", se.Offset, se.Error())}
		case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
			return &DecodeError{Problem: "malformed JSON: unexpected end of input"}
		}
		return &DecodeError{Problem: "not a JSON object"}
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, malformed(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, &DecodeError{Problem: "not a JSON object"}
	}
	raw = map[string]json.RawMessage{}
	seen := map[string]int{}
	for dec.More() {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, malformed(err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, nil, &DecodeError{Problem: "not a JSON object"}
		}
		if !validJSONString(bytes.TrimLeft(data[start:dec.InputOffset()], " \t\r\n,")) {
			return nil, nil, &DecodeError{Problem: "malformed JSON: a field name is not valid UTF-8"}
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, malformed(err)
		}
		if seen[name]++; seen[name] == 2 {
			dup = append(dup, name)
		}
		raw[name] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, malformed(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, &DecodeError{Problem: "malformed JSON: data after the object"}
	}
	return raw, dup, nil
}

// validJSONString reports whether the JSON string literal q (with its quotes) is valid
// UTF-8 and has no lone surrogate escape (\uD800-\uDFFF not forming a pair).
func validJSONString(q []byte) bool {
	if !utf8.Valid(q) {
		return false
	}
	for i := 0; i < len(q); i++ {
		if q[i] != '\\' || i+1 >= len(q) {
			continue
		}
		if q[i+1] != 'u' {
			i++ // an escape such as \\ or \": skip its second byte
			continue
		}
		r, ok := hex4(q, i+2)
		if !ok {
			return false
		}
		i += 5
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return false // a low surrogate without its high half
		case r >= 0xD800 && r <= 0xDBFF:
			if i+6 >= len(q) || q[i+1] != '\\' || q[i+2] != 'u' {
				return false
			}
			lo, ok := hex4(q, i+3)
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return false
			}
			i += 6
		}
	}
	return true
}

// hex4 reads the 4 hex digits at q[i:i+4].
func hex4(q []byte, i int) (rune, bool) {
	if i+4 > len(q) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(q[i:i+4]), 16, 16)
	return rune(n), err == nil
}

// jsonScalar turns one JSON value into the text that decoder.set parses. present is
// false for null; rule names a wrong type.
func jsonScalar(k kind, v json.RawMessage) (s string, present bool, rule string) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || string(v) == "null" {
		return "", false, ""
	}
	switch v[0] {
	case '"':
		if !validJSONString(v) {
			return "", false, ruleUTF8
		}
		if err := json.Unmarshal(v, &s); err != nil {
			return "", false, "must be a valid JSON string"
		}
		return s, s != "", ""
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		switch k {
		case kindString:
			return "", false, "must be a string"
		case kindTime:
			return "", false, "must be an RFC 3339 time string like 2026-12-24T10:00:00Z"
		case kindDigits:
			if !allDigits(string(v)) {
				return "", false, "must be a string of digits"
			}
		case kindInt:
			if !isInteger(string(v)) {
				return "", false, "must be an integer"
			}
		}
		return string(v), true, ""
	}
	switch k {
	case kindInt:
		return "", false, "must be an integer"
	case kindTTL:
		return "", false, ttlRule
	case kindDigits:
		return "", false, "must be a string of digits"
	}
	return "", false, "must be a string"
}

// decoder accumulates a request and the type errors met on the way.
type decoder struct {
	req  EnqueueRequest
	errs []provider.FieldError
}

func (d *decoder) bad(field, rule string) {
	d.errs = append(d.errs, provider.FieldError{Field: field, Rule: rule})
}

// set parses s, the text of field name, into the request.
func (d *decoder) set(name string, k kind, s string) {
	m := &d.req.Message
	switch k {
	case kindInt:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < math.MinInt32 || n > math.MaxInt32 {
			d.bad(name, "must be an integer")
			return
		}
		switch name {
		case "message_type":
			m.MessageType = provider.MessageType(n)
		case "source_type":
			m.SourceType = provider.SourceType(n)
		case "validity_period":
			m.ValidityPeriod = n
		}
		return
	case kindTTL:
		ttl, rule := parseTTL(s)
		if rule != "" {
			d.bad(name, rule)
			return
		}
		d.req.TTL = ttl
		return
	case kindTime:
		t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
		if err != nil {
			d.bad(name, "must be an RFC 3339 time like 2026-12-24T10:00:00Z")
			return
		}
		d.req.SendAt = t
		return
	}
	switch name {
	case "id":
		d.req.ID = s
	case "source_addr":
		m.SourceAddr = s
	case "destination_addr":
		m.DestinationAddr = s
	case "text":
		m.Text = s
	case "text_sms":
		m.TextSMS = s
	case "image":
		m.Image = s
	case "button_caption":
		m.ButtonCaption = s
	case "button_action":
		m.ButtonAction = s
	case "callback_url":
		m.CallbackURL = s
	case "webhook_url":
		d.req.WebhookURL = s
	case "webhook_events":
		d.req.WebhookEvents = s
	case "batch_id":
		d.req.BatchID = s
	}
}

// result returns the request, or with type errors a *provider.ValidationError that
// also lists every other violation that can be found without the Enqueuer.
func (d *decoder) result() (EnqueueRequest, error) {
	if len(d.errs) == 0 {
		return d.req, nil
	}
	all := append(append([]provider.FieldError(nil), d.errs...), RequestFaults(d.req)...)
	return d.req, &provider.ValidationError{Fields: dedupe(all)}
}

// dedupe keeps the first violation of each field (type errors come first, so a field
// of the wrong type is not also reported as "is required").
func dedupe(fs []provider.FieldError) []provider.FieldError {
	seen := map[string]bool{}
	out := fs[:0:0]
	for _, f := range fs {
		if seen[f.Field] {
			continue
		}
		seen[f.Field] = true
		out = append(out, f)
	}
	return out
}

const ttlRule = `must be a Go duration such as "90s" or "1h", or a number of seconds`

var secondsRe = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

// ParseTTL reads a TTL as every producer interface does (the HTTP API, the outbox, the
// CLI's CSV): parseTTL. It returns the TTL, or the rule s breaks.
func ParseTTL(s string) (time.Duration, string) { return parseTTL(s) }

// parseTTL reads a Go duration ("90s", "1h30m") or a number of seconds ("90", "90.5"),
// which must not be 0 (under a nanosecond included).
func parseTTL(s string) (time.Duration, string) {
	s = strings.TrimSpace(s)
	var d time.Duration
	if secondsRe.MatchString(s) {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f > 1e9 {
			return 0, "is too large"
		}
		d = time.Duration(f * float64(time.Second))
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			if strings.HasPrefix(s, "-") {
				return 0, "must not be negative"
			}
			return 0, ttlRule
		}
	}
	if d < 0 {
		return 0, "must not be negative"
	}
	if d == 0 {
		// Given, a TTL of 0 is out of range like any other: taken for none, it would
		// turn into the default the producer did not ask for.
		return 0, fmt.Sprintf("must be between %s and %s, got 0s (leave ttl out for the default)", MinTTL, MaxTTL)
	}
	return d, ""
}

func str(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return string(x)
	}
	return fmt.Sprint(v)
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isInteger(s string) bool {
	return allDigits(strings.TrimPrefix(s, "-"))
}
