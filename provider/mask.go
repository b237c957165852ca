package provider

import "regexp"

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

// MaskID is how a message ID, batch ID or task ID is shown wherever viberq shows it
// on its own account (log fields, alerts, error texts): MaskPhones of it. Producers
// choose IDs, idempotency keys such as "otp-380501234567", and one may hold a phone
// number; "order-42" stays as it is. What Redis stores and what the API answers the
// producer who gave the ID keep it as given (the Asynq UI shows task IDs, which are
// message IDs, as they are: README asks producers to keep numbers out of IDs).
func MaskID(id string) string { return MaskPhones(id) }
