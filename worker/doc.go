// Package worker is viberq's asynq server: the viber:send and viber:poll handlers,
// the error policy, the global rate limiters, alerts and metrics. It is the only
// package that knows both the queue and the vendor, so all delivery policy lives here
// (README: How it works, Error policy).
//
// # Flow
//
// A send task (tasks.SendArgs) is handled top down (send.go, README "The send path"):
// load — the send gate moves a queued record to "sending" together with a free token
// of the global send bucket, in one script, and returns any other record as it is
// (creating it for producers that enqueue raw JSON); decide — planSend, a pure table:
// a record already final, or one that holds the provider's message_id, is never sent
// again (a re-delivered task only makes sure polling runs); "sending" means an earlier
// attempt may have sent it, so it becomes "unknown" unless Config.ResendUnknown; a
// message past its TTL becomes "expired" without a provider call; wait — one
// Limiter.Wait bounded by the TTL when the gate had no token; send-viber with
// validity_period = what remains of the TTL, Classify; and record, before the handler
// returns (so before asynq acknowledges the task). On success one script writes the
// message_id and makes the first poll due (duepolls.go; the dispatcher schedules it),
// retrying until Redis answers or the task's time runs out, then held by the process
// and retried in the background (accepted.go). The handler returns what its attempt
// logs; the middleware writes the one line.
//
// A poll task (tasks.PollArgs) ends without a provider call when the record is already
// final and records "expired" past the polling deadline; otherwise it takes a token
// from the global status bucket, calls receive-viber, applies the answer with
// tasks.Store.ApplyStatus (the one rule for poll and callback answers) and either
// settles the message or schedules the next poll (scheduler.Policy). A confirming
// poll (PollArgs.Confirm), queued by `viberq api` for a status callback whose
// statuses a poll would call final, settles the same way (settled_by "callback") but
// schedules nothing: the scheduled polls go on beside it.
//
// # Reconciler
//
// Run also starts a Reconciler: one leader among the workers (a Redis lease with a
// fencing token) sweeps, every ReconcileConfig.Period, the non-final records not
// checked for a period (the store's non-final index) and moves each one that nothing
// will finish to what is true — cancelled, expired, unknown, or a poll scheduled —
// with an event, a metric and a log line (README, "The reconciler").
//
// # Error policy
//
// Classify is the only place mapping an error to an Action, with a reason for the log
// line. 429s are retried after the provider's hint and pause the global bucket for
// every process; they never use the retry budget (IsFailure false). The hint is capped
// by Config.MaxRetryAfter (VIBERQ_MAX_RETRY_AFTER, default 1 minute): a longer one
// raises AlertRateLimitHint (once per alert window, all pods) and an error-level log
// line naming it, and a message whose capped retry, or whose next token of a paused
// bucket, would come after its TTL is recorded "expired" at once. 5xx and failed
// connections are retried with exponential backoff and jitter, bounded by the TTL. 400
// is rejected and archived; 402 is dropped, archived (re-runnable after a top-up), one
// alert per window for all pods, and the send queues paused; 401/403 alerts, pauses
// and archives. An ambiguous send (the request went out, no usable answer came back)
// is recorded "unknown" and counted, not resent unless Config.ResendUnknown. An
// undecodable payload is archived at once.
//
// # Slots and priority
//
// A process runs asynq servers on the same handler and policy: Config.Fetchers of them
// share the send queues (critical and default, Config.Concurrency slots between them,
// weighted by Config.Queues; each has its own fetch loop, since an asynq server
// dequeues one task at a time), and one serves the status queue
// (Config.PollConcurrency slots). A send waiting for the
// send bucket holds a send slot (see Limiter on why it waits rather than retries),
// never a poll slot, so polls run on time behind any send backlog. Within the send
// bucket, transactional sends (the critical queue) reserve up to a second ahead and
// promotional ones only a quarter of that (Limiter.WaitBulk), so a transactional send
// never finds more than a quarter second of promotional reservations ahead of it. Polls
// do the same in the status bucket (by the record's queue).
//
// # Logging
//
// The middleware writes ONE zerolog line per task attempt with stable snake_case
// fields (task_id, task_type, queue, retry, max_retry, msg_id, provider_msg_id,
// status, http_status, vendor_code, action, reason, outcome, retry_in, expires_at,
// dest, duration_ms, error); phone numbers are masked, and neither the access key, the
// Authorization header nor the message text is ever logged. Repeated warn/error lines
// with the same action and reason are rate-limited (Config.LogBurst per LogPeriod).
//
// The package imports provider, tasks and scheduler; nothing imports it but cmd.
package worker
