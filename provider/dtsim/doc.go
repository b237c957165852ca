// Package dtsim is an HTTP simulator of the DecisionTelecom Viber + SMS API. It backs
// the provider tests, `viberq sim`, the demo and the benchmarks.
//
// A *Sim is an http.Handler serving
//
//	POST {base}/send-viber      send
//	POST {base}/receive-viber   status query
//	GET  /_sim/stats            counters as JSON (Stats)
//	POST /_sim/reset            forget every message and counter (Reset)
//	POST /_sim/balance?n=N      set the balance (SetBalance)
//	POST /_sim/inject?kind=K&n=N[&endpoint=send-viber]  force the next N faults
//
// where {base} is any prefix: clients use base URL http://host:port/v1/api, and the
// bare /send-viber works too.
//
// The simulator is a second, independent reading of the vendor's page, not a mirror
// of the client: rules.go decides what the provider accepts from the page's own lines
// (quoted there) and imports none of package provider's validation, so a client that
// departs from the page fails the conformance test instead of agreeing with itself.
// Where the page is silent the simulator accepts, counts the case in Stats.Lenient and
// logs each kind once (Config.Logf); the client is strict there. The cases are listed
// in the README section "Where the vendor documentation is silent".
//
// What it models: Basic auth against one key (base64(key) as the SDKs send it and
// base64(key+":") as the page's PHP sample does); the page's validation, the first
// failing field named (code 1; "Invalid Parameter: <field>" in ShapeSDK, and always
// in the X-Dtsim-Invalid-Parameter header); both error transports (ErrorStyleStatus,
// ErrorStyleBody200); both answer shapes (ShapeDoc: the page's error bodies without
// name and only the statuses the page lists; ShapeSDK: the SDKs'); message_id as a
// number or a string; a per-message delivery plan (sent → pending → delivered or
// undelivered, then the SMS leg for Viber + SMS) drawn at accept time from the Seed
// and the message id and evaluated lazily, so a status query costs no goroutine and
// no timer; status callbacks and two-way replies pushed by a bounded dispatcher; a
// token-bucket rate limit (429, with or without Retry-After), a balance (402), and
// fault injection (500s before and after accepting, slow answers, timeouts, dropped
// connections, garbage bodies). Every accepted send is kept in a bounded ledger so
// tests can count duplicates.
//
// Test seams: dtsimtest.NewServer (an httptest.Server closed by tb.Cleanup), Config.Now (a
// test clock: statuses, rate limit and callback due times follow it), InjectFault
// (force the next N faults), Script (canned raw answers, e.g. a non-JSON 401),
// Requests (the last requests as received, Authorization header included), Ledger,
// MessageStatus and Stats.
//
// Decisions where the page is silent (also in the README section):
//   - A bad key answers HTTP 401 with the Yii2-style body
//     {"name":"Unauthorized","message":"Your request was made with invalid credentials.","code":0,"status":401}
//     in both error styles and shapes. Yii2 gives every HttpException code 0, the same
//     code as the vendor's 429: clients must classify by status, not by code alone.
//   - A body that is not a JSON object answers code 1 for "body"; a field of the wrong
//     JSON type names that field. Integers may be JSON integers or numeric strings;
//     destination_addr may be a string or a JSON integer (the page's example).
//   - An unknown, evicted or older-than-5-days message_id answers code 1 for
//     "message_id".
//   - The Viber leg ends at validity_period (1 day when absent, as the page says): a
//     delivery drawn later than that becomes status 4 at the deadline. The SMS leg
//     starts at the Viber failure and is not cut by validity_period.
//   - sms_message_id and sms_message_status are omitted until the SMS leg exists
//     (Config.SMSFieldsNull sends explicit nulls instead).
//
// The package imports only the standard library and provider (for its status and id
// types, never its rules); the token bucket is written here so that it runs on the
// injectable clock.
package dtsim
