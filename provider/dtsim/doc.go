// Package dtsim is an HTTP simulator of the DecisionTelecom Viber + SMS API
// (reference: ../shared/reference/decisiontelecom-api.md). It backs the provider
// tests, `viberq sim`, the demo and the benchmarks.
//
// A *Sim is an http.Handler serving
//
//	POST {base}/send-viber      send (reference §3, §4)
//	POST {base}/receive-viber   status query (reference §5)
//	GET  /_sim/stats            counters as JSON (Stats)
//	POST /_sim/reset            forget every message and counter (Reset)
//	POST /_sim/balance?n=N      set the balance (SetBalance)
//	POST /_sim/inject?kind=K&n=N[&endpoint=send-viber]  force the next N faults
//
// where {base} is any prefix: clients use base URL http://host:port/v1/api, and the
// bare /send-viber works too.
//
// What it models: Basic auth against one key (both encodings of reference §2);
// request validation through provider.Message.Validate, the first failing field
// named as "Invalid Parameter: <field>" (code 1); both error transports of §8.2
// (ErrorStyleStatus, ErrorStyleBody200); message_id as a number or a string (§4);
// a per-message delivery plan (sent → pending → delivered or undelivered, then the
// SMS leg for Viber + SMS) drawn at accept time from the Seed and the message id and
// evaluated lazily, so a status query costs no goroutine and no timer; status
// callbacks and two-way replies pushed by a bounded dispatcher; a token-bucket rate
// limit (429, with or without Retry-After), a balance (402), and fault injection
// (500s before and after accepting, slow answers, timeouts, dropped connections,
// garbage bodies). Every accepted send is kept in a bounded ledger so tests can
// count duplicates.
//
// Test seams: NewTestServer (an httptest.Server closed by tb.Cleanup), Config.Now (a
// test clock: statuses, rate limit and callback due times follow it), InjectFault
// (force the next N faults), Script (canned raw answers, e.g. a non-JSON 401),
// Requests (the last requests as received, Authorization header included), Ledger,
// MessageStatus and Stats.
//
// Decisions where the reference is silent (also in the README section):
//   - A bad key answers HTTP 401 with the Yii2-style body
//     {"name":"Unauthorized","message":"Your request was made with invalid credentials.","code":0,"status":401}
//     in both error styles. Yii2 gives every HttpException code 0, the same code as the
//     vendor's 429: clients must classify by status, not by code alone.
//   - A body that is not a JSON object answers code 1 "Invalid Parameter: body"; a field
//     of the wrong JSON type names that field. Integers must be JSON integers;
//     destination_addr may be a string or a JSON integer.
//   - An unknown, evicted or older-than-5-days message_id answers code 1
//     "Invalid Parameter: message_id".
//   - The Viber leg ends at validity_period (default 1 day when absent, reference §3.3):
//     a delivery drawn later than that becomes status 4 at the deadline. The SMS leg
//     starts at the Viber failure and is not cut by validity_period (the TTL is the wait
//     before the fallback, reference §3.3).
//   - sms_message_id and sms_message_status are omitted until the SMS leg exists
//     (Config.SMSFieldsNull sends explicit nulls instead).
//
// The package imports only the standard library and provider (DESIGN §6); the token
// bucket is written here so that it runs on the injectable clock.
package dtsim
