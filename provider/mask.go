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
// as a word of its own; streamIDRe a Redis stream entry ID whose milliseconds are a
// date of this century's first third (13 digits led by 1: no phone number is that,
// country code 1 numbers having 11 digits), as in a webhook's task ID.
var (
	uuidWordRe = regexp.MustCompile(`\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b`)
	streamIDRe = regexp.MustCompile(`\b1[0-9]{12}-[0-9]+\b`)
)

// MaskID is how a message ID, batch ID or task ID is shown wherever viberq shows it
// on its own account (log fields, alerts, error texts, a request's path, asynq's
// lines): MaskPhones of it, but for the UUIDs and stream entry IDs in it. Producers
// choose IDs, idempotency keys such as "otp-380501234567", and one may hold a phone
// number; "order-42" stays as it is. A UUID (version 1 to 8, RFC 9562 variant, at
// least one hex letter: every ID viberq generates is a UUIDv7) is shown whole: it is
// random, not a number anyone dialled, and MaskPhones would mask one in four of them
// (their hex holds runs of 7 decimal digits across a dash), hiding the message from
// an operator who searches the logs for its ID; so is a stream entry ID (a webhook's
// task ID, webhook:{entry}). A phone-like run that reaches outside such a word is
// masked whole. What Redis stores and what the API answers the producer who gave the
// ID keep it as given (the Asynq UI shows task IDs, which are message IDs, as they
// are: README asks producers to keep numbers out of IDs).
func MaskID(id string) string {
	// The common cases without a regexp (every attempt's log line shows its ID): a
	// generated ID, and one with too few digits to hold a number.
	if isUUID(id) || digits(id) < 7 {
		return id
	}
	runs := phoneLikeRe.FindAllStringIndex(id, -1)
	if runs == nil {
		return id
	}
	var keep [][]int
	for _, u := range uuidWordRe.FindAllStringIndex(id, -1) {
		if isUUID(id[u[0]:u[1]]) {
			keep = append(keep, u)
		}
	}
	keep = append(keep, streamIDRe.FindAllStringIndex(id, -1)...)
	var b strings.Builder
	b.Grow(len(id))
	prev := 0
	for _, r := range runs {
		inside := false
		for _, k := range keep {
			if k[0] <= r[0] && r[1] <= k[1] {
				inside = true
				break
			}
		}
		if inside {
			continue
		}
		b.WriteString(id[prev:r[0]])
		b.WriteString(MaskPhone(id[r[0]:r[1]]))
		prev = r[1]
	}
	b.WriteString(id[prev:])
	return b.String()
}

// isUUID reports whether s is a UUID in canonical form, of version 1 to 8 and the
// RFC 9562 variant (10xx), with at least one hex letter.
func isUUID(s string) bool {
	if len(s) != 36 || s[14] < '1' || s[14] > '8' || !strings.ContainsRune("89abAB", rune(s[19])) {
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
