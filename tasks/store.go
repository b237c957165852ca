package tasks

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/viberq/viberq/provider"
)

// Store defaults.
const (
	// DefaultPrefix prefixes every key the Store writes.
	DefaultPrefix = "viberq:"
	// DefaultRetention is how long a record is kept after its last write (a queued
	// record, not yet changed, has no expiry: see createLua).
	DefaultRetention = 7 * 24 * time.Hour
	// DefaultEventsMaxLen is the approximate cap of the events stream.
	DefaultEventsMaxLen = 100_000
)

// ErrNotFound is returned for a message ID without a record (never created, or
// expired after Retention).
var ErrNotFound = errors.New("message record not found")

// StoreOptions configures a Store. Zero values mean the defaults.
type StoreOptions struct {
	// Prefix of the keys "{prefix}msg:{id}" and "{prefix}events". Defaults to
	// DefaultPrefix.
	Prefix string
	// Retention is the expiry of a record, set on every write after its creation (a
	// queued record has none). Defaults to DefaultRetention.
	Retention time.Duration
	// EventsMaxLen caps the events stream (XADD MAXLEN ~). Defaults to
	// DefaultEventsMaxLen.
	EventsMaxLen int64
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

// Store reads and writes message records and appends to the events stream. It is
// safe for concurrent use; every write is one atomic Lua script.
//
// The record and the stream are two keys: on Redis Cluster they would need one hash
// slot, which Asynq does not support either; use a single node or Sentinel.
type Store struct {
	rdb       redis.UniversalClient
	prefix    string
	retention time.Duration
	maxLen    int64
	now       func() time.Time
}

// NewStore returns a Store on rdb.
func NewStore(rdb redis.UniversalClient, opts StoreOptions) *Store {
	s := &Store{
		rdb:       rdb,
		prefix:    cmp.Or(opts.Prefix, DefaultPrefix),
		retention: cmp.Or(opts.Retention, DefaultRetention),
		maxLen:    cmp.Or(opts.EventsMaxLen, DefaultEventsMaxLen),
		now:       opts.Now,
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Key returns the record key of message id.
func (s *Store) Key(id string) string { return s.prefix + "msg:" + id }

// EventsKey returns the key of the events stream.
func (s *Store) EventsKey() string { return s.prefix + "events" }

// Retention returns the record expiry.
func (s *Store) Retention() time.Duration { return s.retention }

// Get returns the record of message id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (Record, error) {
	h, err := s.rdb.HGetAll(ctx, s.Key(id)).Result()
	if err != nil {
		return Record{}, fmt.Errorf("get record %s: %w", provider.MaskID(id), err)
	}
	if len(h) == 0 {
		return Record{}, fmt.Errorf("get record %s: %w", provider.MaskID(id), ErrNotFound)
	}
	return recordFromHash(id, h)
}

// createLua writes a record unless one exists, appends its "queued" event, adds it to
// its batch, and (for the Enqueuer) writes its asynq send task in the same step.
//
// The record gets no expiry: its first change (the worker's move to sending, a cancel,
// the reconciler's repair) gives it the retention, as every later write does. A
// queued record thus never expires under a message still waiting (a week's send_at,
// workers down for longer than the retention), and it is never left queued for
// good: it is on the non-final index's list of new records from this step on (a
// reconciler sweep sorts it into the index if it is still not final then), and the
// reconciler ends a record whose task is gone. That saves the PEXPIRE of every enqueue
// (BENCHMARKS.md, row 3).
//
// KEYS[1] record, KEYS[2] events stream, KEYS[3] batch ID list, KEYS[4] batch counts,
// KEYS[5] asynq task key, KEYS[6] asynq pending list or scheduled set, KEYS[7]
// asynq's set of queues (KEYS[3..7] are not touched when unused), KEYS[8] the
// non-final index's list of new records (nonfinal.go)
// ARGV[1] batch keys' expiry ms, ARGV[2] stream cap, ARGV[3] id, ARGV[4] now ms, ARGV[5]
// batch ID ("" none), ARGV[6] task: "" none, "pending" or "scheduled", ARGV[7] task
// message, ARGV[8] pending_since (Unix ns) or score (Unix s), ARGV[9] queue to add
// to asynq's set of queues ("" when this process has added it already),
// ARGV[10..] record field/value pairs but the state (the script writes it).
//
// Returns 1 when created (with the task, if asked), 2 when created but the task ID is
// taken by a live task (pending, scheduled, retry, active: a raw producer's task of
// the message, which will run; it is left alone), 3 or 4 when nothing is written
// because a finished task holds the ID (3 completed, 4 archived: asynq keeps it for
// its retention, and a record beside it would wait for a task that never runs), else,
// with nothing written, {the existing record (HGETALL), its task}: the task is 0
// unless a task was asked for and the record is queued, then 1 when the task key is
// missing (the caller puts it back: Enqueuer.finish) and 2 when it exists, so that a
// duplicate of a queued message costs a second round trip only when its task is
// really gone (a resubmitted campaign, say, whose messages still wait in the queue).
// A new message costs one EXISTS of both keys (KEYS[5] is KEYS[1] when no task is
// asked); only when one of them exists does the script look closer. Every asynq task
// hash has a state (asynq writes it with the task), so the HGET of it is the EXISTS
// of asynq's enqueueCmd. The task part mirrors asynq v0.26.0's enqueueCmd and
// scheduleCmd (internal/rdb/rdb.go) with the SADD its client makes before them (once
// per queue and process, as asynq's RDB.queuesPublished does).
const createLua = `
-- One EXISTS of the record and the task key is the check of a new message; only a
-- message seen before reads more.
local taken = false
if redis.call('EXISTS', KEYS[1], KEYS[5]) > 0 then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    local task = 0
    if ARGV[6] ~= '' and redis.call('HGET', KEYS[1], 'state') == 'queued' then
      task = 1 + redis.call('EXISTS', KEYS[5])
    end
    return {redis.call('HGETALL', KEYS[1]), task}
  end
  -- No record, and the task ID is taken (ARGV[6] is not '': KEYS[5] is the task key).
  local ts = redis.call('HGET', KEYS[5], 'state')
  if ts == 'completed' then return 3 end
  if ts == 'archived' then return 4 end
  taken = ts ~= false
end
redis.call('HSET', KEYS[1], 'state', 'queued', unpack(ARGV, 10))
redis.call('RPUSH', KEYS[8], ARGV[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
  'id', ARGV[3], 'from', '', 'to', 'queued', 'channel', '', 'provider_message_id', '', 'error', '', 'at', ARGV[4])
if ARGV[5] ~= '' then
  local ms = tonumber(ARGV[1])
  redis.call('RPUSH', KEYS[3], ARGV[3])
  redis.call('HINCRBY', KEYS[4], 'total', 1)
  redis.call('HINCRBY', KEYS[4], 'queued', 1)
  if redis.call('PTTL', KEYS[4]) < ms then -- the two keys always share one expiry
    redis.call('PEXPIRE', KEYS[3], ms)
    redis.call('PEXPIRE', KEYS[4], ms)
  end
end
if ARGV[6] == '' then return 1 end
if taken then return 2 end
` + taskWriteLua

// taskLua writes the asynq task of createLua's KEYS and ARGV: returns 2 when the task
// ID is taken, else writes it and returns 1. With taskWriteLua, the two branches are
// asynq v0.26.0's enqueueCmd and scheduleCmd.
const taskLua = `
if redis.call('EXISTS', KEYS[5]) == 1 then return 2 end
` + taskWriteLua

// taskWriteLua writes the asynq task of createLua's KEYS and ARGV, whose ID is free,
// and returns 1.
const taskWriteLua = `
if ARGV[6] == 'pending' then
  redis.call('HSET', KEYS[5], 'msg', ARGV[7], 'state', 'pending', 'pending_since', ARGV[8])
  redis.call('LPUSH', KEYS[6], ARGV[3])
else
  redis.call('HSET', KEYS[5], 'msg', ARGV[7], 'state', 'scheduled')
  redis.call('ZADD', KEYS[6], ARGV[8], ARGV[3])
end
if ARGV[9] ~= '' then redis.call('SADD', KEYS[7], ARGV[9]) end
return 1
`

var createScript = redis.NewScript(createLua)

// taskWrite is the asynq send task written with a record (see createLua).
type taskWrite struct {
	queue     string
	msg       []byte    // asynqMessage.encode
	at        time.Time // zero: pending now; else scheduled at (never before) at
	published bool      // queue is known to be in asynq's set of queues: no SADD
}

// appendTo sets the task keys of createLua (KEYS[5..7]) in keys and appends its task
// arguments (ARGV[6..9]) to args.
func (tw taskWrite) appendTo(keys []string, args []any, id string, now time.Time) []any {
	keys[4], keys[6] = asynqTaskKey(tw.queue, id), asynqAllQueues
	publish := tw.queue
	if tw.published {
		publish = ""
	}
	if tw.at.IsZero() {
		keys[5] = asynqPendingKey(tw.queue)
		return append(args, "pending", tw.msg, now.UnixNano(), publish)
	}
	keys[5] = asynqScheduledKey(tw.queue)
	return append(args, "scheduled", tw.msg, scheduleScore(tw.at), publish)
}

// Create writes rec in state queued with payloadHash, and appends its "queued" event,
// unless a record with rec.ID exists; one atomic step. It returns created=true and
// the record as written, or created=false and the existing record untouched.
// Zero CreatedAt and UpdatedAt are set to the Store's clock. A record with a BatchID
// joins that batch (BatchCounts, Enqueuer.CancelBatch).
func (s *Store) Create(ctx context.Context, rec Record, payloadHash string) (created bool, existing Record, err error) {
	if rec.ID == "" {
		return false, Record{}, errors.New("create record: empty id")
	}
	c := s.createCall(rec, payloadHash, nil)
	res, err := createScript.Run(ctx, s.rdb, c.keys, c.args...).Result()
	r, err := c.result(res, err)
	return r.created, r.rec, err
}

// createCall is one prepared run of createScript.
type createCall struct {
	id      string
	keys    []string
	args    []any
	written Record // the record as a read of it returns it
}

// createCall prepares the createScript run of rec (state queued, payloadHash) and, when
// tw is not nil, its task.
func (s *Store) createCall(rec Record, payloadHash string, tw *taskWrite) createCall {
	now := s.now()
	rec.State = StateQueued
	rec.PayloadHash = payloadHash
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = now
	}
	if rec.UpdatedAt.IsZero() {
		rec.UpdatedAt = now
	}
	// The batch keys outlive a scheduled message's wait and then the retention.
	expiry := s.retention
	if wait := rec.SendAt.Sub(now); wait > 0 {
		expiry += wait
	}
	rk := s.Key(rec.ID)
	keys := make([]string, 8)
	keys[0], keys[1], keys[2], keys[3], keys[7] = rk, s.EventsKey(), rk, rk, s.NonFinalNewKey() // KEYS[3..4]: not touched without a batch
	if rec.BatchID != "" {
		keys[2], keys[3] = s.batchIDsKey(rec.BatchID), s.BatchKey(rec.BatchID)
	}
	args := make([]any, 0, 9+40)
	args = append(args, expiry.Milliseconds(), s.maxLen, rec.ID, now.UnixMilli(), rec.BatchID)
	if tw == nil {
		keys[4], keys[5], keys[6] = rk, rk, rk // not touched
		args = append(args, "", "", "", "")
	} else {
		args = tw.appendTo(keys, args, rec.ID, now)
	}
	written := rec.asWritten()
	rec.State = "" // the script writes it first in the HSET
	args = rec.appendHashFields(args)
	return createCall{id: rec.ID, keys: keys, args: args, written: written}
}

// createReply is the decoded reply of a createScript run.
type createReply struct {
	// created: the record was written (rec is it as written); otherwise rec is the
	// existing one.
	created bool
	rec     Record
	// taskTaken: created, but the task ID was already taken by a live task.
	taskTaken bool
	// taskGone: not created, the existing record is queued, a task was asked for and
	// its key is missing.
	taskGone bool
}

// result decodes the reply of c.
func (c createCall) result(res any, err error) (createReply, error) {
	if err != nil {
		return createReply{}, fmt.Errorf("create record %s: %w", provider.MaskID(c.id), err)
	}
	if n, ok := res.(int64); ok {
		switch n {
		case 1, 2:
			return createReply{created: true, rec: c.written, taskTaken: n == 2}, nil
		case 3:
			return createReply{}, fmt.Errorf("create record %s: %w", provider.MaskID(c.id), idHeldError{state: "completed"})
		case 4:
			return createReply{}, fmt.Errorf("create record %s: %w", provider.MaskID(c.id), idHeldError{state: "archived"})
		}
	}
	arr, ok := res.([]any)
	if !ok || len(arr) != 2 {
		return createReply{}, fmt.Errorf("create record %s: unexpected reply %T", provider.MaskID(c.id), res)
	}
	task, ok := arr[1].(int64)
	if !ok {
		return createReply{}, fmt.Errorf("create record %s: unexpected task reply %T", provider.MaskID(c.id), arr[1])
	}
	h, err := hashReply(arr[0])
	if err != nil {
		return createReply{}, fmt.Errorf("create record %s: %w", provider.MaskID(c.id), err)
	}
	rec, err := recordFromHash(c.id, h)
	return createReply{rec: rec, taskGone: task == 1}, err
}

// Update lists the fields a Transition or an Update changes besides the state. Zero
// values leave a field unchanged.
type Update struct {
	// Channel sets the delivery channel (ChannelViber, ChannelSMS).
	Channel string
	// ProviderMessageID sets the provider's message_id.
	ProviderMessageID provider.MessageID
	// ViberStatus, SMSMessageID and SMSStatus set the last statuses seen.
	ViberStatus  *provider.ViberStatus
	SMSMessageID *provider.MessageID
	SMSStatus    *provider.SMSStatus
	// Error sets the last error; a pointer to "" clears it. Keep it short.
	Error *string
	// IncAttempts adds one to attempts.
	IncAttempts bool
	// Polled, when above 0, raises polls (the scheduled polls made) to at least
	// Polled: the poll number of the poll that makes this update, plus one. A poll
	// retried after it wrote (its next schedule failed) thus counts once, and polls
	// stays next to the live poll's number, where the reconciler looks for it.
	Polled int
	// Rerun allows dropped → queued or sending: an operator re-ran the archived task
	// after a balance top-up (README "Error policy", 402 row). Nothing else leaves a
	// final state.
	Rerun bool
	// SettledBy is written with a move to a final state (one of the SettledBy
	// constants). Empty: Transition derives it from the states (see
	// DefaultSettledBy).
	SettledBy string
}

func (u Update) pairs() []any {
	var p []any
	if u.Channel != "" {
		p = append(p, fChannel, u.Channel)
	}
	if u.ProviderMessageID != 0 {
		p = append(p, fProviderID, strconv.FormatInt(int64(u.ProviderMessageID), 10))
	}
	if u.ViberStatus != nil {
		p = append(p, fViberStatus, strconv.Itoa(int(*u.ViberStatus)))
	}
	if u.SMSMessageID != nil {
		p = append(p, fSMSID, strconv.FormatInt(int64(*u.SMSMessageID), 10))
	}
	if u.SMSStatus != nil {
		p = append(p, fSMSStatus, strconv.Itoa(int(*u.SMSStatus)))
	}
	if u.Error != nil {
		p = append(p, fError, *u.Error) // "" deletes the field
	}
	return p
}

// transitionScript is the compare-and-set of a record's state.
//
// KEYS[1] record, KEYS[2] events stream, KEYS[3] non-final index (nonfinal.go)
// ARGV[1] retention ms, ARGV[2] stream cap, ARGV[3] id, ARGV[4] now ms,
// ARGV[5] target state ("" = keep the current one), ARGV[6] "1" = HINCRBY attempts,
// ARGV[7] polls at least this ("0": untouched), ARGV[8] n from states, ARGV[9] n field pairs always
// set, ARGV[10] n field pairs set only when the state changes, ARGV[11] the batch
// key base (batchKeyBase), then the from states, then the
// pairs. An empty value deletes its field.
//
// Returns -1 when there is no record, {0, record} when the current state is not one
// of the from states (nothing written), {1, record after} otherwise: the whole record
// (HGETALL), or, when the enclosing script sets partial (a hooked transition:
// hook.go), only the fields the script read or wrote, which spares Redis the HGETALL
// and the caller its decoding on the send path (BENCHMARKS.md, "4 December 2026,
// evening: where a lone enqueue's time goes, and a cheaper index entry"). The event is
// appended, and the counts of the record's batch moved, only when the state actually
// changes; a state change to a final state (final_at set) also leaves the non-final
// index, and one from a final state (a re-run, which clears final_at) joins it. Other
// state changes leave the index alone: a record is on its list of new records or in
// it from its creation on (nonfinal.go).
//
// The body is also the function transition() of the scripts built by NewHook
// (hook.go): KEYS[1..3] and ARGV as above, hook arguments after them.
const transitionLua = `
-- The fields read (r[k] is the value of names[k]).
local names = {'state', 'final_at', 'channel', 'provider_message_id', 'error', 'batch', 'polls', 'source_type'}
local r = redis.call('HMGET', KEYS[1], unpack(names))
local cur = r[1]
if not cur then return -1 end
local nfrom, nset, nchg = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local i = 12
local allowed = false
for _ = 1, nfrom do
  if ARGV[i] == cur then allowed = true end
  i = i + 1
end
if not allowed then
  return {0, redis.call('HGETALL', KEYS[1])}
end
-- Every field's last value wins, as if each were written in turn; they are written
-- with one HSET and one HDEL.
local order, last = {}, {}
local function put(f, v)
  if last[f] == nil then order[#order+1] = f end
  last[f] = v
end
for _ = 1, nset do put(ARGV[i], ARGV[i+1]); i = i + 2 end
local to = ARGV[5]
if to == '' then to = cur end
if to ~= cur then
  for _ = 1, nchg do put(ARGV[i], ARGV[i+1]); i = i + 2 end
  put('state', to)
end
if ARGV[7] ~= '0' and (tonumber(r[7]) or 0) < tonumber(ARGV[7]) then put('polls', ARGV[7]) end
put('updated_at', ARGV[4])
local sets, dels = {}, {}
for _, f in ipairs(order) do
  if last[f] == '' then dels[#dels+1] = f else sets[#sets+1] = f; sets[#sets+1] = last[f] end
end
redis.call('HSET', KEYS[1], unpack(sets))
if #dels > 0 then redis.call('HDEL', KEYS[1], unpack(dels)) end
local attempts = nil
if ARGV[6] == '1' then attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if to ~= cur then
  -- A field's value after this update: the one written, else the one read ('' and a
  -- missing field alike read as false).
  local function now(f, read)
    local v = last[f]
    if v == nil then v = read end
    if v == '' then return false end
    return v
  end
  if now('final_at', r[2]) then
    redis.call('ZREM', KEYS[3], ARGV[3])
  elseif r[2] then
    redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[3])
  end
  local ch, pid, err = now('channel', r[3]), now('provider_message_id', r[4]), now('error', r[5])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
    'id', ARGV[3], 'from', cur, 'to', to, 'channel', ch or '',
    'provider_message_id', pid or '', 'error', err or '', 'at', ARGV[4])
  local batch = now('batch', r[6])
  if batch then
    local ck = ARGV[11] .. 'n:' .. batch
    redis.call('HINCRBY', ck, cur, -1)
    redis.call('HINCRBY', ck, to, 1)
    if to == 'delivered' and ch then redis.call('HINCRBY', ck, 'delivered:' .. ch, 1) end
    if redis.call('PTTL', ck) < tonumber(ARGV[1]) then -- the batch keys share one expiry
      redis.call('PEXPIRE', ck, ARGV[1])
      redis.call('PEXPIRE', ARGV[11] .. 'ids:' .. batch, ARGV[1])
    end
  end
end
if not partial then return {1, redis.call('HGETALL', KEYS[1])} end
-- The partial answer: the fields written (except those deleted), the fields read and
-- not written, and the attempts counted.
local out, written = {}, {}
for _, f in ipairs(order) do
  written[f] = true
  if last[f] ~= '' then out[#out+1] = f; out[#out+1] = last[f] end
end
for k, f in ipairs(names) do
  if not written[f] and r[k] then out[#out+1] = f; out[#out+1] = r[k] end
end
if attempts then out[#out+1] = 'attempts'; out[#out+1] = tostring(attempts) end
return {1, out}
`

// transitionScript runs transitionLua alone, answering with the whole record.
var transitionScript = redis.NewScript("local partial = false\n" + transitionLua)

// Transition atomically moves the record of id from one of the states in from to
// state to, applying upd, refreshing the expiry and appending one event when the
// state changes. It stamps sent_at on every Transition to sending (a new attempt),
// accepted_at on a move to accepted, final_at and settled_by on a move to a final
// state, and clears both on a rerun.
//
// It returns ok=false and the current record, writing nothing, when the current
// state is not in from; ErrNotFound when there is no record; and
// ErrIllegalTransition when some state in from can never reach to (see
// CanTransition): a final record is never changed, except by a rerun of a dropped one.
// Staying in the same non-final state (to in from) updates fields without an event.
func (s *Store) Transition(ctx context.Context, id string, from []State, to State, upd Update) (rec Record, ok bool, err error) {
	if err := checkTransition(from, to, upd.Rerun); err != nil {
		return Record{}, false, fmt.Errorf("transition %s: %w", provider.MaskID(id), err)
	}
	now := s.now()
	set, chg := stamps(from, to, upd, now)
	return s.run(ctx, id, from, to, upd, set, chg, now)
}

// stamps are the time fields a Transition to `to` writes: set always, chg only when
// the state changes.
func stamps(from []State, to State, upd Update, now time.Time) (set, chg []any) {
	switch {
	case to == StateSending: // also sending → sending: a new attempt
		set = append(set, fSentAt, msString(now))
	case to == StateAccepted:
		chg = append(chg, fAcceptedAt, msString(now))
	case to.Final():
		by := upd.SettledBy
		if by == "" {
			by = DefaultSettledBy(from, to)
		}
		chg = append(chg, fFinalAt, msString(now), fSettledBy, settledCode(by))
	}
	if !to.Final() && upd.Rerun {
		chg = append(chg, fFinalAt, "", fSettledBy, "")
	}
	return set, chg
}

// Update applies upd to the record of id if it is not final (queued, sending or
// accepted), without changing its state and without an event. It returns ok=false
// and the record, writing nothing, when the record is final; ErrNotFound when there
// is none.
func (s *Store) Update(ctx context.Context, id string, upd Update) (Record, bool, error) {
	upd.Rerun = false
	return s.run(ctx, id, nonFinal, "", upd, nil, nil, s.now())
}

func (s *Store) run(ctx context.Context, id string, from []State, to State, upd Update, set, chg []any, now time.Time) (Record, bool, error) {
	args := s.transitionArgs(id, from, to, upd, set, chg, now)
	res, err := transitionScript.Run(ctx, s.rdb, s.transitionKeys(id), args...).Result()
	if err != nil {
		return Record{}, false, fmt.Errorf("transition %s: %w", provider.MaskID(id), err)
	}
	rec, applied, _, err := parseTransition(id, res)
	return rec, applied, err
}

// transitionKeys are KEYS[1..3] of transitionLua.
func (s *Store) transitionKeys(id string) []string {
	return []string{s.Key(id), s.EventsKey(), s.NonFinalKey()}
}

// transitionArgs are the ARGV of transitionLua.
func (s *Store) transitionArgs(id string, from []State, to State, upd Update, set, chg []any, now time.Time) []any {
	set = append(set, upd.pairs()...)
	args := make([]any, 0, 11+len(from)+len(set)+len(chg))
	args = append(args, s.retention.Milliseconds(), s.maxLen, id, now.UnixMilli(), string(to),
		boolArg(upd.IncAttempts), max(upd.Polled, 0), len(from), len(set)/2, len(chg)/2, s.batchKeyBase())
	for _, f := range from {
		args = append(args, string(f))
	}
	args = append(args, set...)
	return append(args, chg...)
}

// parseTransition reads the reply of transitionLua (or of a hooked script: a third
// element holds what the hook returns).
func parseTransition(id string, res any) (Record, bool, []any, error) {
	if n, isInt := res.(int64); isInt && n == -1 {
		return Record{}, false, nil, fmt.Errorf("transition %s: %w", provider.MaskID(id), ErrNotFound)
	}
	arr, isArr := res.([]any)
	if !isArr || len(arr) < 2 {
		return Record{}, false, nil, fmt.Errorf("transition %s: unexpected script reply %T", provider.MaskID(id), res)
	}
	h, err := hashReply(arr[1])
	if err != nil {
		return Record{}, false, nil, fmt.Errorf("transition %s: %w", provider.MaskID(id), err)
	}
	rec, err := recordFromHash(id, h)
	if err != nil {
		return Record{}, false, nil, err
	}
	applied, _ := arr[0].(int64)
	var extra []any
	if len(arr) > 2 {
		extra, _ = arr[2].([]any)
	}
	return rec, applied == 1, extra, nil
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// hashReply converts a Lua HGETALL reply to a map.
func hashReply(v any) (map[string]string, error) {
	arr, ok := v.([]any)
	if !ok || len(arr)%2 != 0 {
		return nil, fmt.Errorf("unexpected hash reply %T", v)
	}
	h := make(map[string]string, len(arr)/2)
	for i := 0; i < len(arr); i += 2 {
		k, ok1 := arr[i].(string)
		val, ok2 := arr[i+1].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("unexpected hash reply element %T", arr[i+1])
		}
		h[k] = val
	}
	return h, nil
}

// Event is one entry of the events stream: a state change of one message.
type Event struct {
	// StreamID is the Redis stream entry ID.
	StreamID string
	ID       string
	// From is "" for the creation event (To queued).
	From              State
	To                State
	Channel           string
	ProviderMessageID provider.MessageID
	Error             string
	At                time.Time
}

// Events returns up to count events of the stream from the entry ID start
// ("-" for the oldest) on, oldest first.
func (s *Store) Events(ctx context.Context, start string, count int64) ([]Event, error) {
	msgs, err := s.rdb.XRangeN(ctx, s.EventsKey(), start, "+", count).Result()
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	evs := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		ev, err := ParseEvent(m)
		if err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

// ProviderIndexKey returns the key of the index from a provider message_id to a
// message ID: "{prefix}pmid:{provider_message_id}".
func (s *Store) ProviderIndexKey(pid provider.MessageID) string {
	return s.prefix + "pmid:" + strconv.FormatInt(int64(pid), 10)
}

// IndexProvider records that provider message pid is message id, for the record's
// retention. Two-way replies name the message they answer by the provider's ID
// (tracking_id); only two-way messages are indexed, so the index costs nothing for
// the others.
func (s *Store) IndexProvider(ctx context.Context, pid provider.MessageID, id string) error {
	if err := s.rdb.Set(ctx, s.ProviderIndexKey(pid), id, s.retention).Err(); err != nil {
		return fmt.Errorf("index provider message %d: %w", pid, err)
	}
	return nil
}

// LookupProvider returns the message ID of provider message pid, ok=false when it is
// not indexed (not a two-way message, or older than the retention).
func (s *Store) LookupProvider(ctx context.Context, pid provider.MessageID) (id string, ok bool, err error) {
	id, err = s.rdb.Get(ctx, s.ProviderIndexKey(pid)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("look up provider message %d: %w", pid, err)
	}
	return id, true, nil
}
