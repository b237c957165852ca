// Package api is `viberq api`: one HTTP server for producers, the provider's
// callbacks, operators and probes.
//
//	POST /v1/messages                 enqueue a message (bearer token)          202, 400, 401, 403, 409, 413, 415, 422, 429, 503
//	GET  /v1/messages/{id}            the message record, status JSON (token)   200, 401, 404, 429, 503
//	POST /v1/messages/{id}/cancel     stop a message not yet sent (token)       200, 401, 403, 404, 429, 503
//	POST /v1/batches                  enqueue up to 10,000 messages (token)     200, 400, 401, 403, 413, 415, 422, 429, 503
//	GET  /v1/batches/{id}             a batch's counts (token)                  200, 401, 404, 429, 503
//	POST /v1/batches/{id}/cancel      stop a batch's unsent messages (token)    200, 401, 403, 404, 429, 503
//	POST /callbacks/{token}/status    provider status callback                  200, 401, 404, 413, 503
//	POST /callbacks/{token}/inbound   provider two-way reply                    200, 401, 404, 413, 503
//	     /monitoring/                 the Asynq web UI (basic auth)             401 without credentials
//	GET  /metrics                     Prometheus
//	GET  /healthz                     the process is alive
//	GET  /readyz                      Redis answers PING within 1s (else 503)
//	GET  /openapi.yaml                the OpenAPI 3.1 contract of all of these (OpenAPI)
//
// openapi.yaml is the contract: every route, request and answer, errors included, and
// the status webhooks the workers send. TestOpenAPIContract validates real answers
// against it (kin-openapi), so a change here or there that breaks the other fails.
//
// # Messages
//
// The POST body is the JSON document of tasks.DecodeJSON: an optional "id", an
// optional "ttl" (a Go duration such as "90s", or seconds) and the provider.Message
// fields (source_addr, destination_addr, message_type, text, text_sms, image,
// button_caption, button_action, source_type, callback_url). The idempotency key is
// the Idempotency-Key header or the "id" field (both given and different: 422; the
// header given empty or twice: 422, since taken for no key it would make every retry
// a new message). The
// Content-Type must be application/json (415), the body at most
// Options.MaxBodyBytes (413); malformed JSON, unknown fields and fields given
// twice are 400, naming the fields; a string with invalid UTF-8 or a lone surrogate
// escape is 422 naming its field (tasks.DecodeJSON). A message the Enqueuer refuses
// is 422 with every bad field:
//
//	{"error":"invalid message","fields":[{"field":"text","rule":"is required"}, ...]}
//
// The same key with another message is 409, as is a key still held by the finished
// asynq task of an earlier message whose record has expired (tasks.ErrIDHeld; the
// error text says which). Success is 202:
//
//	{"id":"order-42","duplicate":false,"queue":"critical","state":"queued","expires_at":"..."}
//
// # Callbacks
//
// The provider's callbacks authenticate with what is configured
// (Options.CallbackToken, CallbackUser, CallbackPassword): a secret path token (the
// token segment may come before or after the kind, so the callback URL viberq builds
// from VIBERQ_CALLBACK_URL=https://host/callbacks/status works as is), basic auth, or
// both. A wrong or missing token is 404, wrong basic
// credentials 401; with neither configured the endpoints are 404. Both endpoints tell
// a reply from a status by key presence (vendor notes: two-way replies).
//
// A status callback names our message by the "id" query parameter of its
// callback_url (else through Options.ProviderIndex) and is applied through
// Options.Status (tasks.CallbackApplier) by the rule polls follow too
// (tasks.DecideStatus): a callback writes nothing; when a poll would call its
// statuses final it queues a confirming poll, and the provider's answer to that poll
// settles the record (README "Provider callbacks"). The answer's result is
// "confirming", "pending", "final" or "ignored". Payloads that cannot be parsed,
// unknown messages and records already final are logged (digits masked) and answered
// 200: the provider must not retry what can never succeed.
//
// A two-way reply is appended to the stream viberq:inbound (MAXLEN ~ 100000) with the
// fields message_token, phone, time (RFC 3339), text, tracking_id (the provider
// message_id it answers), message_id (our ID, when Options.ProviderIndex resolves it,
// else "") and received_at. A repeated message_token within a day is stored once.
//
// # Security
//
// Browsers: a state-changing request (not GET, HEAD or OPTIONS) that a browser sends
// from another origin (Sec-Fetch-Site, else Origin against Host) is refused with 403
// on every route, so a foreign page cannot pause queues or delete tasks through
// /monitoring/api with cached Basic credentials, nor post messages. Every answer
// forbids framing (X-Frame-Options DENY, CSP frame-ancestors 'none') and sniffing
// (nosniff). Guessing: failed authentications (bearer token, /monitoring, callbacks)
// are counted per client address in Redis across all pods, slowed down, refused for
// the rest of the window past a limit, and logged at warn with the address
// (AuthFailures). config refuses a /monitoring password shorter than 16 characters
// and placeholder secrets.
//
// No token, password, full phone number or message text is written to a response,
// a log line or an error: logs carry masked numbers, callback paths are never logged,
// and the Asynq UI shows payloads masked (FormatPayload).
package api
