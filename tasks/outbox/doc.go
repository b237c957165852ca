// Package outbox lets producers in any language send messages through Redis alone: they
// XADD an entry to the stream "viberq:outbox" and viberq's workers, reading it through
// the consumer group "viberq", turn each entry into a send task with the same
// validation and idempotency as the Go Enqueuer and the HTTP API.
//
// # Entry formats
//
// An entry is either one field "message" holding a JSON document, the same document
// as the body of POST /v1/messages (see tasks.DecodeJSON):
//
//	XADD viberq:outbox * message '{"id":"order-42","source_addr":"Shop","destination_addr":"380501234567","message_type":106,"source_type":2,"text":"Your code is 1234","text_sms":"Code 1234","ttl":"90s"}'
//
// (optionally with "id" and "ttl" as separate fields beside "message"), or flat fields,
// every value a string (see DecodeFields):
//
//	XADD viberq:outbox * id order-43 source_addr Shop destination_addr 380501234567 message_type 106 source_type 2 text "Your code is 1234"
//
// Fields: id (the idempotency key, 1..128 characters of letters, digits and . _ : -;
// optional), ttl (a Go duration such as "90s", or seconds; optional), source_addr,
// destination_addr, message_type, source_type, text, text_sms, image, button_caption,
// button_action, callback_url, validity_period. Unknown fields make the entry invalid.
//
// # Delivery guarantees
//
// An entry is acknowledged only after the Enqueuer wrote its record and task. An entry
// without an id gets the idempotency key "outbox:<entry ID>", so a redelivered entry
// (a consumer died after the enqueue but before the acknowledgement) never makes a
// second task. An invalid entry (unknown fields, bad JSON, a violated rule, an id
// reused with another message) is copied to "viberq:outbox:rejected" with the fields
// entry_id, reasons (a JSON list of {"field","rule"}) and rejected_at, followed by its
// own fields, and acknowledged. What is copied is masked and capped (RejectedValues):
// every phone-like run in every name and value, under any JSON key, is masked with
// provider.MaskPhones; each value is cut at 1 KiB and at most 64 fields are copied,
// so a 20 MB entry does not cost 20 MB again.
//
// A transient failure (Redis unreachable, out of memory) leaves the entry pending and
// the consumer goes on with the next entry: a failing entry never holds up the
// others. It is claimed again (XCLAIM) after a backoff that starts at RetryDelay (1 s)
// and doubles up to RetryMaxDelay (1 min); after MaxAttempts deliveries (10, counted
// by Redis, so across consumers and restarts) it is dead-lettered: copied to the
// rejected stream with the reason {"field":"entry","rule":"not enqueued after N
// attempts: <last error>"} and acknowledged. Entries of a dead consumer are claimed
// once idle for ClaimIdle. Acknowledged entries are deleted from the stream
// unless Options.KeepAcked is set, so the stream holds only the backlog: producers
// need no MAXLEN (a cap that a backlog can reach would drop unsent messages).
//
// The package does not log: Options.Hooks report what happens to each entry.
package outbox
