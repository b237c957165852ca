package provider

import (
	"regexp"
	"strings"
)

// phoneLikeRe matches what may be a phone number inside free text: 7 or more digits,
// optionally led by "+", with up to two spaces, dashes, dots or parentheses between digits
// ("380501234567", "+380 50 123-45-67", "(050) 123 45 67"). It also matches long ids
// and dates; masking those too is the price of never showing a number.
var phoneLikeRe = regexp.MustCompile(`\+?[0-9](?:[ \-.()]{0,2}[0-9]){6,}`)

// MaskPhones masks every phone-like run in s with MaskPhone and leaves the rest as
// is: for values whose shape is unknown (unknown JSON keys, undecodable payloads,
// free text). Use MaskPhone for a value known to be a phone number.
func MaskPhones(s string) string {
	return phoneLikeRe.ReplaceAllStringFunc(s, MaskPhone)
}

// uuidWordRe matches a UUID in its canonical form (8-4-4-4-12 hex digits) standing
// as a word of its own.
var uuidWordRe = regexp.MustCompile(`\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b`)

// MaskID is how a message ID, batch ID or task ID is shown wherever viberq shows it
// on its own account (log fields, alerts, error texts, a request's path): MaskPhones
// of it, but for the UUIDs in it. Producers choose IDs, idempotency keys such as
// "otp-380501234567", and one may hold a phone number; "order-42" stays as it is. A
// UUID in canonical form with at least one hex letter (every ID viberq generates is a
// UUIDv7) is shown whole: it is random, not a number anyone dialled, and MaskPhones
// would mask one in four of them (their hex holds runs of 7 decimal digits across a
// dash), hiding the message from an operator who searches the logs for its ID. What
// Redis stores and what the API answers the producer who gave the ID keep it as
// given (the Asynq UI shows task IDs, which are message IDs, as they are: README asks
// producers to keep numbers out of IDs).
func MaskID(id string) string {
	// The common cases without a regexp (every attempt's log line shows its ID): a
	// generated ID, and one with too few digits to hold a number.
	if isUUID(id) || digits(id) < 7 || !phoneLikeRe.MatchString(id) {
		return id
	}
	uuids := uuidWordRe.FindAllStringIndex(id, -1)
	if uuids == nil {
		return MaskPhones(id)
	}
	var b strings.Builder
	b.Grow(len(id))
	prev := 0
	for _, u := range uuids {
		if !strings.ContainsAny(id[u[0]:u[1]], "abcdefABCDEF") {
			continue // all decimal: masked with the rest
		}
		b.WriteString(MaskPhones(id[prev:u[0]]))
		b.WriteString(id[u[0]:u[1]])
		prev = u[1]
	}
	b.WriteString(MaskPhones(id[prev:]))
	return b.String()
}

// isUUID reports whether s is a UUID in canonical form with at least one hex letter:
// what uuidWordRe and MaskID's letter rule accept for a whole string.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	letter := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9':
		case 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F':
			letter = true
		default:
			return false
		}
	}
	return letter
}

// digits counts the ASCII digits in s.
func digits(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if '0' <= s[i] && s[i] <= '9' {
			n++
		}
	}
	return n
}
