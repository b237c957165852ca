// Package webhook delivers status webhooks: it POSTs the state changes of messages to
// the producers' URLs, signed, retried, and never in the way of sending.
//
// # Where the events come from
//
// Every state change already appends one entry to the events stream
// ("viberq:events", tasks.Store.EventsKey), written in the same Lua step as the
// record. A Relay reads that stream through its own consumer group
// (DefaultGroup, "viberq-webhooks") and turns each entry that a webhook wants into one
// asynq task of type tasks.TypeWebhook on the queue tasks.QueueWebhooks, whose task ID
// is derived from the entry ID (tasks.WebhookTaskID). So no code that changes a
// state knows about webhooks, and a relay that dies between enqueueing a task and
// acknowledging the entry costs nothing: the entry is claimed by another relay after
// ClaimIdle and its enqueue is refused as a duplicate (the finished task's ID stays
// reserved for TaskRetention, which must exceed ClaimIdle).
//
// Which entries a webhook wants: the message's own webhook_url, else the default URL
// (VIBERQ_WEBHOOK_URL); and the message's own webhook_events, else the default
// (VIBERQ_WEBHOOK_EVENTS): "final" wants only the move to a final state, "all" every
// change. The consumer group is created at the end of the stream the first time a
// relay starts: state changes from before webhooks were turned on are not sent. The
// stream is capped (VIBERQ_EVENTS_MAXLEN); a relay that falls further behind than the
// cap loses the trimmed entries.
//
// # The POST
//
// The body is the JSON of Body: the event (its stream ID, message ID, from, to,
// final, at) and the message's record as GET /v1/messages/{id} shows it, read when
// the relay prepared the task (the phone number is masked there; nothing else about
// the message is added). Every attempt sends the same bytes, with the headers
//
//	Content-Type: application/json
//	Viberq-Event-Id: <event_id>              the body's event_id, the same on every attempt
//	Viberq-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>
//
// with one v1 per configured secret (rotation). Verify checks a signature.
//
// # Delivery, retries and the dead letter
//
// A separate asynq server (Config.Concurrency slots, the webhooks queue only) runs
// the deliveries, so a slow or failing receiver never holds a send or poll slot (nor,
// for long, a webhook slot: see the next section). Any
// 2xx answer is a success. Anything else (3xx included: redirects are never followed),
// a timeout or a refused connection is retried with exponential backoff and jitter
// (RetryInitial doubling up to RetryMax) at most MaxRetry times; then the task is
// archived: visible and re-runnable in the Asynq UI (queue "webhooks"), and counted
// in viberq_webhook_deliveries_total{outcome="dead"}. Delivery is at least once: a
// worker that dies after the receiver answered 2xx but before asynq recorded it
// sends the same event again, so receivers deduplicate on the body's event_id (the
// header's value too, but the signature covers the body, not the headers).
//
// # One receiver cannot hold up the others
//
// Each process keeps, per receiver host (the URL's host name and port), a circuit
// breaker and a limit, so that a receiver that hangs or is down does not hold the
// slots every other producer's webhooks need:
//
//   - After HostFailures (5) consecutive host failures (a timeout, a connection
//     error: refused, reset, DNS, TLS; or an answer 429, 502, 503 or 504) the host's
//     breaker opens: its deliveries are held, not attempted (no dial), for
//     HostCoolOff (15s). Then one delivery is the probe: an answer (any status but
//     those) closes the breaker, a failure opens it again for twice as long, up to
//     HostCoolOffMax (5m). Other answers (a 500, a 404) do not count: the host is up,
//     and the webhook's own backoff retries them.
//   - A host that failed or answered slowly (in half the timeout or more) within the
//     last HostCoolOffMax has at most HostConcurrency deliveries in flight (a quarter
//     of Concurrency, at least 1); the others are held, and come back spread the
//     wider the more of them found the limit reached since a slot last freed. A
//     healthy host may use every slot: one receiver alone still gets the whole
//     concurrency.
//
// A held delivery returns an error wrapping ErrHeld (naming the host's last
// failure, which the Asynq UI shows as the task's last error), which the delivery
// server does not count as a failure (asynq's IsFailure): it is rescheduled,
// jittered, for when the host may let it through (never more than RetryMax later)
// without using one of the webhook's MaxRetry retries, so an outage of a few minutes
// costs no webhook its attempts. The retries count only real attempts; held
// deliveries are bounded by time instead: a webhook held by an open breaker once it
// has waited longer than the retry window (the backoff schedule's length, about 6
// hours, at least two HostCoolOffMax, counted from WebhookArgs.QueuedAt, when the
// relay queued it) is archived as dead. A webhook is never archived unattempted: its
// last attempt, and its first one when it is already past the window (a backlog the
// relay queued late, a dead letter re-run from the Asynq UI), go through whatever
// the host's state, and a delivery held behind a half-open breaker's probe waits
// for the probe's answer. The breakers live in the process: every worker learns
// about a host on its own, after at most HostFailures attempts plus those already
// in flight.
//
// # Addresses (SSRF)
//
// A producer chooses the webhook URL and the workers call it: without care that lets
// a producer make the workers call into their own network. Unless
// Config.AllowPrivate (VIBERQ_WEBHOOK_ALLOW_PRIVATE) is set, every connection is
// checked after DNS resolution, at dial time, and refused when the address is
// loopback, private (RFC 1918, fc00::/7), link-local (cloud metadata endpoints),
// CGNAT, unspecified, multicast, or another range the IANA special-purpose
// registries mark not globally reachable (documentation, benchmarking, the IETF
// protocol assignments 192.0.0.0/24 and 2001::/23 with Teredo, local-use NAT64, 6to4,
// and any IPv6 address outside global unicast 2000::/3, IPv4-compatible ::/96
// included); IPv4-mapped and well-known NAT64 (64:ff9b::/96) addresses are judged by
// the IPv4 address they embed (PublicAddr). Redirects are not followed at all, so a
// public URL cannot bounce the POST inward either; and no HTTP proxy from the
// environment is used (the check must see the real destination). A refused address
// is archived at once (it will not become public by retrying).
//
// This package imports tasks and asynq; nothing imports it but cmd/viberq.
package webhook
