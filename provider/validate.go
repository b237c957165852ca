package provider

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// FieldError is one violated rule of a Message: Field is the vendor's JSON field name
// (e.g. "button_caption") and Rule a short human sentence such as
// "must be at most 30 characters, got 31".
type FieldError struct {
	Field string
	Rule  string
}

// Error returns "<field>: <rule>".
func (e FieldError) Error() string { return e.Field + ": " + e.Rule }

// ValidationError lists every rule a Message violates, in field order. It is returned
// by Message.Validate and by Client.Send before anything goes on the network.
type ValidationError struct {
	Fields []FieldError
}

// Error returns "invalid message: f1: rule; f2: rule".
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid message")
	for i, f := range e.Fields {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(f.Error())
	}
	return b.String()
}

// Has reports whether field is among the violations.
func (e *ValidationError) Has(field string) bool {
	for _, f := range e.Fields {
		if f.Field == field {
			return true
		}
	}
	return false
}

// Valid reports whether t is one of the four message types (vendor notes: fields and limits).
// 225 (seen once in a vendor example) is deliberately not valid (vendor notes: fields and limits).
func (t MessageType) Valid() bool {
	switch t {
	case TypeText, TypeTextImageButton, TypeTwoWayText, TypeTwoWayTextImageButton:
		return true
	}
	return false
}

// HasImageButton reports whether the type carries image, button_caption and
// button_action (108 and 208).
func (t MessageType) HasImageButton() bool {
	return t == TypeTextImageButton || t == TypeTwoWayTextImageButton
}

// TwoWay reports whether the type is a two-way type (206, 208; README, Settings: VIBERQ_TWO_WAY).
func (t MessageType) TwoWay() bool {
	return t == TypeTwoWayText || t == TypeTwoWayTextImageButton
}

// Valid reports whether s is 1 (promotional) or 2 (transactional).
func (s SourceType) Valid() bool { return s == SourcePromotional || s == SourceTransactional }

// Validate checks every rule of the vendor notes (fields and limits, TTL) and returns nil or a
// *ValidationError listing every violation at once:
//
//   - source_addr: required, at most 20 characters;
//   - destination_addr: required, ASCII digits only (international format without '+'),
//     7 to 15 digits (the numbering plans, see MinDestinationLen; README, "Where the
//     vendor documentation is silent");
//   - message_type: 106, 108, 206 or 208 (vendor notes: fields and limits: not 225); source_type: 1 or 2;
//   - text: required, at most 1000 characters; button_caption: at most 30;
//   - 106/206 are text only: image, button_caption and button_action must be empty (vendor notes: fields and limits);
//   - 108/208 need image, button_caption and button_action, and source_type 1, because
//     transactional messages are text only (vendor notes: fields and limits);
//   - text_sms only with message_type 106 and source_type 2 (vendor notes: fields and limits), and one SMS segment:
//     GSM-7 at most 160 units with extension characters counting 2, otherwise UCS-2 at
//     most 70 UTF-16 code units, so an emoji counts 2 (vendor notes: fields and limits, see SMSLength);
//   - image: absolute http(s) URL whose path does not name a file type other than
//     jpg, jpeg or png (.gif, .webp, .pdf, ...; see imageURLRule);
//   - button_action, callback_url: absolute http(s) URLs;
//   - validity_period: 0 means "not set", otherwise 40..21600 seconds, and exactly 40
//     with text_sms ("transactional message + SMS - TTL всего 40 секунд").
//
// "Characters" are Unicode code points; every text field must also be valid UTF-8.
func (m Message) Validate() error {
	var v validator

	v.text("source_addr", m.SourceAddr, true, MaxSourceAddrLen)

	switch {
	case m.DestinationAddr == "":
		v.add("destination_addr", "is required")
	case !allDigits(m.DestinationAddr):
		v.add("destination_addr", "must contain digits only (international format without '+')")
	case len(m.DestinationAddr) < MinDestinationLen || len(m.DestinationAddr) > MaxDestinationLen:
		v.add("destination_addr", fmt.Sprintf("must be %d to %d digits (an international number, E.164), got %d",
			MinDestinationLen, MaxDestinationLen, len(m.DestinationAddr)))
	}

	typeOK := m.MessageType.Valid()
	if !typeOK {
		v.add("message_type", "must be one of 106, 108, 206, 208, got "+shownInt(int(m.MessageType)))
	}

	v.text("text", m.Text, true, MaxTextLen)

	if m.TextSMS != "" {
		if m.MessageType != TypeText || m.SourceType != SourceTransactional {
			v.add("text_sms", fmt.Sprintf("is allowed only with message_type 106 and source_type 2 (transactional), got message_type %s and source_type %s", shownInt(int(m.MessageType)), shownInt(int(m.SourceType))))
		}
		if !utf8.ValidString(m.TextSMS) {
			v.add("text_sms", "must be valid UTF-8")
		} else if n, enc, limit := SMSLength(m.TextSMS); n > limit {
			v.add("text_sms", fmt.Sprintf("must fit one SMS segment: at most %d %s units, got %d", limit, encodingLabel(enc), n))
		}
	}

	imageButton := []struct {
		name, val string
		check     func(string) string
		maxLen    int
	}{
		{"image", m.Image, imageURLRule, 0},
		{"button_caption", m.ButtonCaption, nil, MaxButtonCaptionLen},
		{"button_action", m.ButtonAction, httpURLRule, 0},
	}
	for _, f := range imageButton {
		switch {
		case typeOK && !m.MessageType.HasImageButton():
			if f.val != "" {
				v.add(f.name, fmt.Sprintf("must be empty for message_type %d (text only)", int(m.MessageType)))
			}
		case typeOK && f.val == "":
			v.add(f.name, fmt.Sprintf("is required for message_type %d", int(m.MessageType)))
		case f.val == "":
		case f.check != nil:
			if r := f.check(f.val); r != "" {
				v.add(f.name, r)
			}
		default:
			v.text(f.name, f.val, false, f.maxLen)
		}
	}

	switch {
	case !m.SourceType.Valid():
		v.add("source_type", "must be 1 (promotional) or 2 (transactional), got "+shownInt(int(m.SourceType)))
	case typeOK && m.MessageType.HasImageButton() && m.SourceType != SourcePromotional:
		v.add("source_type", fmt.Sprintf("must be 1 (promotional) for message_type %d: transactional messages are text only", int(m.MessageType)))
	}

	if m.CallbackURL != "" {
		if r := httpURLRule(m.CallbackURL); r != "" {
			v.add("callback_url", r)
		}
	}

	switch {
	case m.ValidityPeriod == 0:
	case m.ValidityPeriod < MinValidityPeriod || m.ValidityPeriod > MaxValidityPeriod:
		v.add("validity_period", fmt.Sprintf("must be between %d and %d seconds, got %s", MinValidityPeriod, MaxValidityPeriod, shownInt(m.ValidityPeriod)))
	case m.TextSMS != "" && m.ValidityPeriod != SMSValidityPeriod:
		v.add("validity_period", fmt.Sprintf("must be %d seconds for a transactional message with text_sms (the vendor: TTL only 40 seconds), got %s", SMSValidityPeriod, shownInt(m.ValidityPeriod)))
	}

	if len(v.errs) == 0 {
		return nil
	}
	return &ValidationError{Fields: v.errs}
}

type validator struct{ errs []FieldError }

// shownInt is how a rule shows a number the producer gave: phone-like runs masked
// (MaskPhones), since a number put in the wrong field may be one. A rule shows the
// producer's values only this way; what it computes (a length, a limit) it shows as
// is.
func shownInt(n int) string { return MaskPhones(strconv.Itoa(n)) }

func (v *validator) add(field, rule string) {
	v.errs = append(v.errs, FieldError{Field: field, Rule: rule})
}

// text checks presence, UTF-8 validity and a length in code points.
func (v *validator) text(field, s string, required bool, maxLen int) {
	switch {
	case s == "":
		if required {
			v.add(field, "is required")
		}
	case !utf8.ValidString(s):
		v.add(field, "must be valid UTF-8")
	default:
		if n := utf8.RuneCountInString(s); n > maxLen {
			v.add(field, fmt.Sprintf("must be at most %d characters, got %d", maxLen, n))
		}
	}
}

func encodingLabel(enc string) string {
	if enc == EncodingGSM7 {
		return "GSM-7"
	}
	return "UCS-2"
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// httpURLRule returns "" when s is an absolute http or https URL with a host, or the
// violated rule.
func httpURLRule(s string) string {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return "must be an absolute http or https URL"
	}
	return ""
}

// imageURLRule checks an image URL: absolute http(s), and refused for its type only
// when the last path segment names a file type other than jpg, jpeg or png: an
// extension (letters and digits after the last dot, with a letter) that is none of
// those and not a server-side script (php, asp, aspx, jsp, cgi, pl, py), which names
// the program serving the image rather than its type. The vendor asks for a jpg/jpeg
// or png image, a property of the file, not of its URL: CDN URLs such as
// https://cdn.example.com/img?id=5 are accepted (README, "Where the vendor
// documentation is silent").
func imageURLRule(s string) string {
	if r := httpURLRule(s); r != "" {
		return r
	}
	u, _ := url.Parse(s)
	seg := u.Path[strings.LastIndexByte(u.Path, '/')+1:]
	i := strings.LastIndexByte(seg, '.')
	if i < 0 {
		return ""
	}
	ext := strings.ToLower(seg[i+1:])
	letter := false
	for _, r := range ext {
		switch {
		case r >= 'a' && r <= 'z':
			letter = true
		case r >= '0' && r <= '9':
		default:
			return "" // not an extension
		}
	}
	if !letter || imageOrScript[ext] {
		return ""
	}
	return "must be a jpg, jpeg or png image, but the URL path names a ." + ext + " file (allowed: a path that ends in .jpg, .jpeg or .png, or names no type)"
}

// imageOrScript are the extensions an image URL may end in.
var imageOrScript = map[string]bool{
	"jpg": true, "jpeg": true, "png": true,
	"php": true, "asp": true, "aspx": true, "jsp": true, "cgi": true, "pl": true, "py": true,
}

// Encodings reported by SMSLength.
const (
	EncodingGSM7 = "gsm7"
	EncodingUCS2 = "ucs2"
)

// gsmBasic is the GSM 03.38 default alphabet (one septet each), without the escape.
const gsmBasic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
	"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"

// gsmExtension is the GSM 03.38 extension table: each costs two septets (escape + char).
const gsmExtension = "^{}\\[~]|€\f"

// SMSLength measures s as one SMS (vendor notes: fields and limits). If every character is in the GSM 03.38
// default alphabet or its extension table, the encoding is "gsm7", units are septets
// (extension characters such as € [ ] { } ^ ~ | \ count 2) and the limit is 160.
// Otherwise the encoding is "ucs2", units are UTF-16 code units (a character outside
// the BMP such as an emoji counts 2) and the limit is 70.
func SMSLength(s string) (units int, encoding string, limit int) {
	gsm := 0
	for _, r := range s {
		switch {
		case strings.ContainsRune(gsmBasic, r):
			gsm++
		case strings.ContainsRune(gsmExtension, r):
			gsm += 2
		default:
			n := 0
			for _, r := range s {
				if utf16.RuneLen(r) == 2 {
					n += 2
				} else {
					n++
				}
			}
			return n, EncodingUCS2, MaxSMSUCS2Len
		}
	}
	return gsm, EncodingGSM7, MaxSMSGSM7Len
}

// WireJSON returns the send-viber request body: only the fields the message type uses
// (vendor notes: fields and limits): 106/206 send text (and text_sms when set), 108/208 send text, image,
// button_caption and button_action. Empty optional fields are omitted, never sent as
// null or "" (vendor notes: fields and limits), and destination_addr is a string (vendor notes: fields and limits). Keys come in the vendor's
// documented order. For a message_type outside the four known ones every non-empty
// field is sent. WireJSON does not validate; Client.Send calls Validate first.
func (m Message) WireJSON() ([]byte, error) {
	w := wireMessage{
		SourceAddr:      m.SourceAddr,
		DestinationAddr: m.DestinationAddr,
		MessageType:     int(m.MessageType),
		Text:            m.Text,
		SourceType:      int(m.SourceType),
		CallbackURL:     m.CallbackURL,
		ValidityPeriod:  m.ValidityPeriod,
	}
	known := m.MessageType.Valid()
	if !known || !m.MessageType.HasImageButton() {
		w.TextSMS = m.TextSMS
	}
	if !known || m.MessageType.HasImageButton() {
		w.Image, w.ButtonCaption, w.ButtonAction = m.Image, m.ButtonCaption, m.ButtonAction
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // URLs keep their '&' readable
	if err := enc.Encode(w); err != nil {
		return nil, fmt.Errorf("encode message: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// wireMessage is the send-viber body in the vendor's documented key order.
type wireMessage struct {
	SourceAddr      string `json:"source_addr"`
	DestinationAddr string `json:"destination_addr"`
	MessageType     int    `json:"message_type"`
	Text            string `json:"text"`
	TextSMS         string `json:"text_sms,omitempty"`
	Image           string `json:"image,omitempty"`
	ButtonCaption   string `json:"button_caption,omitempty"`
	ButtonAction    string `json:"button_action,omitempty"`
	SourceType      int    `json:"source_type"`
	CallbackURL     string `json:"callback_url,omitempty"`
	ValidityPeriod  int    `json:"validity_period,omitempty"`
}
