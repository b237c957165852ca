package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// MessageID is a provider message id (message_id, sms_message_id).
//
// The provider documents it as a JSON number, and one official SDK's tests feed a
// numeric string (vendor notes: send answer), so UnmarshalJSON accepts both 429 and "429".
// It is always sent back as a JSON number, as every SDK does. Negative, fractional,
// exponent, empty or non-numeric values are rejected; null leaves the value unchanged
// (use *MessageID to tell "absent" from "present").
type MessageID int64

// String returns the id in decimal.
func (id MessageID) String() string { return strconv.FormatInt(int64(id), 10) }

// MarshalJSON encodes the id as a JSON number.
func (id MessageID) MarshalJSON() ([]byte, error) {
	return strconv.AppendInt(nil, int64(id), 10), nil
}

// UnmarshalJSON accepts a JSON integer or a string holding a decimal integer (vendor notes: send answer).
func (id *MessageID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("message id: %w", err)
		}
	}
	v, err := ParseMessageID(s)
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// errBadMessageID is wrapped by every ParseMessageID failure.
var errBadMessageID = errors.New("must be a non-negative decimal integer")

// ParseMessageID parses a decimal message id such as "429": ASCII digits only, no
// sign, no spaces, no fraction or exponent, at most int64. The error never quotes s.
func ParseMessageID(s string) (MessageID, error) {
	if s == "" || len(s) > 19 {
		return 0, fmt.Errorf("invalid message id: %w", errBadMessageID)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("invalid message id: %w", errBadMessageID)
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid message id: %w", errBadMessageID)
	}
	return MessageID(v), nil
}

// truncate shortens s to at most n bytes (on a rune boundary) for error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
