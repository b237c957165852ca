// Package tasks is viberq's producer contract: the Asynq task type names, the payload
// JSON, the queues, the Enqueuer, the message records and the events stream.
//
// # Frozen contract
//
// Everything this package writes to Redis outlives a deploy: queued and scheduled tasks
// wait across restarts, records are kept for days, and apps in other languages read and
// write the same JSON. So the task type names (TypeSend "viber:send", TypePoll
// "viber:poll"), the queue names, the payload JSON field names, the record hash field
// names and the event fields are frozen. Never rename or re-type one. A change that
// old readers cannot ignore gets a new PayloadVersion (decoded beside the old one for
// at least one deploy); an optional new field may be added within a version, because
// decoders ignore unknown fields.
//
// # Payloads
//
// A send task ("viber:send", queue "critical" for transactional and "default" for
// promotional messages, task ID = message ID) carries SendArgs:
//
//	{"v":1,"id":"order-42","message":{"source_addr":"Shop","destination_addr":"380501234567",
//	 "message_type":106,"text":"Your code is 1234","text_sms":"Code 1234","source_type":2},
//	 "expires_at":"2026-11-05T10:00:40Z","enqueued_at":"2026-11-05T10:00:00Z"}
//
// "message" is the vendor's send-viber JSON (provider.Message) with destination_addr as
// a string of digits; validity_period in it is ignored, the worker sends what remains
// until expires_at. A poll task ("viber:poll", queue "status", task ID
// "poll:{id}:{n}") carries PollArgs. Producers that write tasks without the Go Enqueuer
// must use the same task ID and queue, validate the message themselves and may skip
// the record (the worker creates it when missing).
//
// # Records and events
//
// Each message has one Redis hash "{prefix}msg:{id}" (prefix "viberq:" by default),
// kept for Retention (7 days by default) after its last write. Its fields are those of
// Record's JSON tags except id (it is in the key) and queue (it follows source_type),
// stored compactly so that a finished record takes under 512 bytes of Redis memory:
// times as Unix milliseconds, booleans as "1", settled_by as its first letter ("p"
// for poll, ...), empty values absent. Every state change is appended, once, to the stream
// "{prefix}events" (capped near EventsMaxLen) with the fields id, from, to, channel,
// provider_message_id, error and at (Unix milliseconds); any Redis-connected app can
// follow delivery from it. The sorted set "{prefix}nonfinal" indexes the records not
// yet final (Store.DueNonFinal), for the worker's reconciler.
//
// States (State) follow DESIGN §3: queued → sending → accepted → delivered,
// undelivered or expired, with the side exits rejected, dropped, expired and unknown.
// Final states never change, except dropped, which an operator may re-run after a
// balance top-up (Update.Rerun). All writes go through one Lua script each, so
// concurrent workers and producers cannot interleave a compare-and-set.
//
// A provider status, from a poll or a status callback, is applied by one rule:
// DecideStatus, written by Store.ApplyStatus (README "Message states"). Only the
// provider's answer to a poll settles a record; a callback writes nothing and, when a
// poll would call its statuses final, asks for a confirming poll (CallbackApplier,
// ConfirmTask). Every move to a final state records settled_by (SettledByPoll, ...).
//
// The package does not log; it imports provider (types and validation), asynq and
// go-redis only.
package tasks
