package config

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
	"strconv"
)

// Redacted is what a non-empty Secret prints instead of its value.
const Redacted = "[REDACTED]"

// Secret is a credential (API key, password, token). Every way of printing it (String,
// GoString, fmt verbs, JSON, text, slog) shows Redacted, or "" when it is empty, so a
// Config holding secrets can be logged whole. Call Reveal where the raw value is used.
// (Do not use a Secret as a JSON map key: encoding/json writes string keys verbatim.)
type Secret string

// Reveal returns the raw value. Call it only where the value is handed to the party
// that needs it (an HTTP header, a Redis dial), never to build a log line or an error.
func (s Secret) Reveal() string { return string(s) }

// IsSet reports whether the secret is non-empty.
func (s Secret) IsSet() bool { return s != "" }

// Equal reports whether v equals the secret, in time independent of where they differ
// (crypto/subtle). An empty secret equals nothing, not even "".
func (s Secret) Equal(v string) bool {
	if s == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(s), []byte(v)) == 1
}

// String returns Redacted, or "" when the secret is empty.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// GoString returns config.Secret("[REDACTED]") (the %#v form), or config.Secret("").
func (s Secret) GoString() string {
	return "config.Secret(" + strconv.Quote(s.String()) + ")"
}

// Format implements fmt.Formatter so that every verb and flag (%v %+v %#v %s %q %x
// %10s ...) formats the redacted form, never the value.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = fmt.Fprint(f, s.GoString())
		return
	}
	_, _ = fmt.Fprintf(f, fmt.FormatString(f, verb), s.String())
}

// MarshalJSON encodes the redacted form as a JSON string.
func (s Secret) MarshalJSON() ([]byte, error) {
	return []byte(strconv.Quote(s.String())), nil
}

// MarshalText returns the redacted form.
func (s Secret) MarshalText() ([]byte, error) {
	return []byte(s.String()), nil
}

// LogValue implements slog.LogValuer with the redacted form.
func (s Secret) LogValue() slog.Value {
	return slog.StringValue(s.String())
}
