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
// until expires_at. Optional fields: "send_at" (RFC 3339; the task is scheduled for
// it and expires_at counts from it) and "batch_id". A poll task ("viber:poll", queue
// "status", task ID "poll:{id}:{n}") carries PollArgs. Producers that write tasks
// without the Go Enqueuer must use the same task ID and queue, validate the message
// themselves and may skip the record (the worker creates it when missing).
//
// # One atomic enqueue
//
// The Enqueuer writes a message's record, its "queued" event, its batch membership and
// its asynq send task in one Lua script: one round trip, and no crash can leave a
// record without its task or a task without its record. To do so it writes asynq's
// storage layout itself (asynqlayout.go, mirroring asynq v0.26.0's internal/rdb
// scripts); TestAsynqLayoutContract pins that layout against the asynq version in
// go.mod (byte-identical task hashes, the Inspector lists the tasks, the server runs
// them, TaskID conflicts hold). EnqueueBatch pipelines BatchPipeline such scripts per
// round trip. Scheduled messages (send_at) go to asynq's scheduled set with their time
// rounded up to the second, so they never run early.
//
// # Records and events
//
// Each message has one Redis hash "{prefix}msg:{id}" (prefix "viberq:" by default),
// kept for Retention (7 days by default) after its last write, and, for a scheduled
// message, also until its send_at. Its fields are those of Record's JSON tags except
// id (it is in the key) and queue (it follows source_type), stored compactly so that a
// finished record takes under 512 bytes of Redis memory: times as Unix milliseconds,
// booleans as "1", settled_by as its first letter ("p" for poll, ...), empty values
// absent (the batch ID is stored as "batch"). Every state change is appended, once, to
// the stream "{prefix}events" (capped near EventsMaxLen) with the fields id, from, to,
// channel, provider_message_id, error and at (Unix milliseconds); any Redis-connected
// app can follow delivery from it. The sorted set "{prefix}nonfinal", with the list
// "{prefix}nonfinal:new" of the records created since it was last sorted in, indexes
// the records not yet final (Store.DueNonFinal), for the worker's reconciler.
//
// A batch (the producer's batch_id) has a list of its message IDs,
// "{prefix}batch:ids:{batch}", and a hash of counts, "{prefix}batch:n:{batch}" (total,
// one field per state, delivered:viber and delivered:sms), moved by the same script as
// each state change, so the counts are exact at every moment.
//
// States (State) follow README's "Message states": queued → sending → accepted →
// delivered, undelivered or expired, with the side exits rejected, dropped, expired,
// unknown and cancelled. Final states never change, except dropped, which an operator
// may re-run after a balance top-up (Update.Rerun). All writes go through one Lua
// script each, so concurrent workers and producers cannot interleave a compare-and-set.
// A cancel (Enqueuer.Cancel, CancelBatch) is the compare-and-set queued → cancelled
// plus the removal of the send task: the worker's queued → sending and it cannot both
// win, so no message is both sent and cancelled.
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
