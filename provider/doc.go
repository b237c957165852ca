// Package provider is the DecisionTelecom Viber + SMS HTTP API client: wire types,
// status enums, validation rules, typed errors and the parsing of what the provider
// sends to us (status callbacks and two-way replies).
//
// It never retries and never logs (the queue is the retry loop, see worker). It
// imports only the standard library.
//
// Files: message.go and validate.go (Message, Validate, WireJSON, SMSLength), id.go
// (MessageID), status.go (statuses, Outcome, Combine), client.go (Client and its one
// request funnel), response.go (response decoding and error mapping), errors.go (the
// typed errors and MaybeSent), callback.go (status callbacks, two-way replies, their
// http.Handler adapters, MaskPhone).
//
// The access key never appears in an error, in any fmt rendering of a Client or an
// error, or in vendor text quoted by an error: every spelling of it (as given, Base64
// with and without the trailing colon) is replaced by "[REDACTED]".
//
// Vendor reference: ../shared/reference/decisiontelecom-api.md; the ambiguous cases
// follow its §10 decisions (Q1..Q19), which are cited next to the code that implements them.
package provider
