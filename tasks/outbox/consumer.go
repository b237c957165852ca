package outbox

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v4"
	"github.com/redis/go-redis/v9"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

// Defaults of Options.
const (
	DefaultStream          = "viberq:outbox"
	DefaultGroup           = "viberq"
	DefaultRejectedSuffix  = ":rejected"
	DefaultRejectedMaxLen  = 100_000
	DefaultClaimIdle       = time.Minute
	DefaultBlock           = 2 * time.Second
	DefaultCount           = 32
	DefaultRetryDelay      = time.Second
	DefaultRetryMaxDelay   = time.Minute
	DefaultMaxAttempts     = 10
	DefaultHandleTimeout   = 15 * time.Second
	maxClaimPagesPerRound  = 10
	idPrefix               = "outbox:"
	rejectedReservedPrefix = "original_"
	// rejectedValueMax caps each value copied to the rejected stream (bytes), and
	// rejectedFieldsMax the number of an entry's own fields copied: a 20 MB entry
	// costs about rejectedValueMax per field there, not 20 MB again.
	rejectedValueMax  = 1024
	rejectedNameMax   = 64
	rejectedFieldsMax = 64
)

// Enqueuer is what the consumer hands requests to: *tasks.Enqueuer.
type Enqueuer interface {
	Enqueue(ctx context.Context, req tasks.EnqueueRequest) (tasks.EnqueueResult, error)
}

// Hooks are called from Run's goroutine, one entry at a time, so that the caller can
// log and count (the package itself does not log). Each may be nil. Errors and
// reasons never hold a phone number or a message text.
type Hooks struct {
	// Enqueued is called after an entry was enqueued (or found to be a duplicate) and
	// acknowledged.
	Enqueued func(entryID string, res tasks.EnqueueResult)
	// Rejected is called after an invalid entry was copied to the rejected stream and
	// acknowledged.
	Rejected func(entryID string, reasons []provider.FieldError)
	// Failed is called on a transient failure: the entry (entryID, "" for a failure of
	// the stream itself) stays pending and is retried with backoff (Options.RetryDelay
	// doubling up to RetryMaxDelay), until MaxAttempts: then it is dead-lettered to
	// the rejected stream and reported to Rejected.
	Failed func(entryID string, err error)
}

// Options configures a Consumer. Zero values mean the defaults.
type Options struct {
	// Stream is the outbox stream (DefaultStream).
	Stream string
	// Group is the consumer group (DefaultGroup), created at the start of the stream
	// when missing, so that entries written before the first worker are consumed.
	Group string
	// Consumer is this consumer's name, unique per process (DefaultConsumerName).
	Consumer string
	// RejectedStream receives invalid entries (Stream + ":rejected"), capped near
	// RejectedMaxLen (DefaultRejectedMaxLen).
	RejectedStream string
	RejectedMaxLen int64
	// ClaimIdle: entries pending this long in any consumer (a dead one, or this one
	// after a transient failure) are claimed and processed again (DefaultClaimIdle).
	ClaimIdle time.Duration
	// ClaimInterval is how often pending entries are looked for (ClaimIdle/2, at most
	// 30s, at least 10ms).
	ClaimInterval time.Duration
	// Block is the XREADGROUP BLOCK time (DefaultBlock); it bounds how long Run takes to
	// notice a cancelled context.
	Block time.Duration
	// Count is the most entries read at once (DefaultCount).
	Count int64
	// RetryDelay is the first delay before an entry that failed transiently is tried
	// again (it doubles with each attempt, up to RetryMaxDelay), and the pause after a
	// failure of the stream itself (DefaultRetryDelay). A failing entry never holds up
	// the others: it waits in the pending list while new entries are read.
	RetryDelay time.Duration
	// RetryMaxDelay caps the delay between attempts of one entry
	// (DefaultRetryMaxDelay).
	RetryMaxDelay time.Duration
	// MaxAttempts bounds the deliveries of one entry (DefaultMaxAttempts): an entry
	// whose last attempt still fails transiently is dead-lettered, copied to the
	// rejected stream with the reason {"field":"entry","rule":"not enqueued after N
	// attempts: <last error>"}, and acknowledged.
	MaxAttempts int64
	// HandleTimeout bounds the processing of one entry (DefaultHandleTimeout). An entry
	// in hand is finished even after Run's context is cancelled.
	HandleTimeout time.Duration
	// KeepAcked keeps acknowledged entries in the stream. By default each entry is
	// deleted (XDEL) together with its acknowledgement, so the stream, which holds
	// phone numbers, does not grow without bound. Set it when other consumer groups
	// read the same stream.
	KeepAcked bool
	// Hooks observe what happens to each entry.
	Hooks Hooks
}

// DefaultConsumerName returns "hostname-pid".
func DefaultConsumerName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "viberq"
	}
	return h + "-" + strconv.Itoa(os.Getpid())
}

// Consumer turns outbox stream entries into send tasks through an Enqueuer: the same
// validation and idempotency as every other producer. See the package doc.
type Consumer struct {
	rdb  redis.UniversalClient
	enq  Enqueuer
	opts Options
	// retrying: this consumer left entries pending after a transient failure, so
	// the pending list is looked at every RetryDelay rather than every ClaimInterval.
	// Only Run's goroutine uses it.
	retrying bool
}

// New returns a Consumer of opts.Stream on rdb.
func New(rdb redis.UniversalClient, enq Enqueuer, opts Options) *Consumer {
	opts.Stream = cmp.Or(opts.Stream, DefaultStream)
	opts.Group = cmp.Or(opts.Group, DefaultGroup)
	opts.Consumer = cmp.Or(opts.Consumer, DefaultConsumerName())
	opts.RejectedStream = cmp.Or(opts.RejectedStream, opts.Stream+DefaultRejectedSuffix)
	opts.RejectedMaxLen = cmp.Or(opts.RejectedMaxLen, DefaultRejectedMaxLen)
	opts.ClaimIdle = cmp.Or(opts.ClaimIdle, DefaultClaimIdle)
	if opts.ClaimInterval <= 0 {
		opts.ClaimInterval = min(max(opts.ClaimIdle/2, 10*time.Millisecond), 30*time.Second)
	}
	if opts.Block <= 0 {
		opts.Block = DefaultBlock // never 0: BLOCK 0 waits forever
	}
	opts.Count = cmp.Or(opts.Count, DefaultCount)
	opts.RetryDelay = cmp.Or(opts.RetryDelay, DefaultRetryDelay)
	opts.RetryMaxDelay = max(cmp.Or(opts.RetryMaxDelay, DefaultRetryMaxDelay), opts.RetryDelay)
	opts.MaxAttempts = cmp.Or(opts.MaxAttempts, DefaultMaxAttempts)
	opts.HandleTimeout = cmp.Or(opts.HandleTimeout, DefaultHandleTimeout)
	return &Consumer{rdb: rdb, enq: enq, opts: opts}
}

// Options returns the effective options.
func (c *Consumer) Options() Options { return c.opts }

// Run consumes the stream until ctx is cancelled, then returns nil after finishing
// the entries in hand. Failures of the stream itself are reported to Hooks.Failed and
// retried after RetryDelay; Run does not give up on them.
//
// Each round it reads new entries (XREADGROUP ">") and handles them one by one. An
// entry is acknowledged only after it was enqueued (or rejected), so a crash in
// between leaves it pending for another consumer; the enqueue is idempotent by ID, so
// the redelivery never makes a second task. An entry that fails transiently stays
// pending and Run goes on with the next one; the pending list is looked at every
// ClaimInterval (every RetryDelay while this consumer has failed entries), and an
// entry is claimed again (XCLAIM) once it has waited its backoff, or ClaimIdle for an
// entry of another consumer (a dead one, or a live one that retries its own).
func (c *Consumer) Run(ctx context.Context) error {
	for !c.ensureGroup(ctx) {
		if !sleep(ctx, c.opts.RetryDelay) {
			return nil
		}
	}
	var lastClaim time.Time
	for ctx.Err() == nil {
		every := c.opts.ClaimInterval
		if c.retrying {
			every = min(every, c.opts.RetryDelay)
		}
		if time.Since(lastClaim) >= every {
			c.claim(ctx)
			lastClaim = time.Now()
			if ctx.Err() != nil {
				break
			}
		}
		block := c.opts.Block
		if c.retrying {
			block = min(block, c.opts.RetryDelay)
		}
		msgs, err := c.read(ctx, block)
		// Entries returned even as ctx ends are ours now: finish them.
		for _, m := range msgs {
			c.handle(ctx, m, 1)
		}
		if err != nil && ctx.Err() == nil {
			c.failed("", err)
			if isNoGroup(err) {
				c.ensureGroup(ctx)
			}
			sleep(ctx, c.opts.RetryDelay)
		}
	}
	return nil
}

// ensureGroup creates the consumer group (and the stream) unless it exists.
func (c *Consumer) ensureGroup(ctx context.Context) bool {
	err := c.rdb.XGroupCreateMkStream(ctx, c.opts.Stream, c.opts.Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		if ctx.Err() == nil {
			c.failed("", fmt.Errorf("outbox: create group %s on %s: %w", c.opts.Group, c.opts.Stream, err))
		}
		return false
	}
	return true
}

// isNoGroup reports a missing stream or group (deleted, or a new empty Redis).
func isNoGroup(err error) bool { return err != nil && strings.Contains(err.Error(), "NOGROUP") }

// read returns the next new entries; none (and no error) when block passed quietly.
func (c *Consumer) read(ctx context.Context, block time.Duration) ([]redis.XMessage, error) {
	streams, err := c.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group:    c.opts.Group,
		Consumer: c.opts.Consumer,
		Streams:  []string{c.opts.Stream, ">"},
		Count:    c.opts.Count,
		Block:    block,
	}).Result()
	var msgs []redis.XMessage
	for _, s := range streams {
		msgs = append(msgs, s.Messages...)
	}
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	if err != nil {
		err = fmt.Errorf("outbox: read %s: %w", c.opts.Stream, err)
	}
	return msgs, err
}

// claim looks through the pending list, a bounded number of pages per round, and
// handles again each entry that is due: this consumer's own once it waited its
// backoff (RetryAfter of its deliveries so far), another consumer's once it was idle
// for ClaimIdle too. XCLAIM with the same idle bound lets one consumer only take an
// entry that several find due.
func (c *Consumer) claim(ctx context.Context) {
	c.retrying = false
	start := "-"
	for range maxClaimPagesPerRound {
		ps, err := c.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: c.opts.Stream,
			Group:  c.opts.Group,
			Start:  start,
			End:    "+",
			Count:  c.opts.Count,
		}).Result()
		if err != nil {
			if ctx.Err() == nil {
				c.failed("", fmt.Errorf("outbox: list pending entries of %s: %w", c.opts.Stream, err))
				if isNoGroup(err) {
					c.ensureGroup(ctx)
				}
			}
			return
		}
		for _, p := range ps {
			own := p.Consumer == c.opts.Consumer
			due := c.RetryAfter(p.RetryCount)
			if !own {
				due = max(due, c.opts.ClaimIdle)
			}
			if p.Idle < due {
				c.retrying = c.retrying || own
				continue
			}
			msgs, err := c.rdb.XClaim(ctx, &redis.XClaimArgs{
				Stream:   c.opts.Stream,
				Group:    c.opts.Group,
				Consumer: c.opts.Consumer,
				MinIdle:  due,
				Messages: []string{p.ID},
			}).Result()
			if err != nil {
				if ctx.Err() == nil {
					c.failed(p.ID, fmt.Errorf("outbox: claim %s: %w", p.ID, err))
				}
				return
			}
			// XCLAIM counts a delivery: this is attempt RetryCount+1.
			for _, m := range msgs {
				c.handle(ctx, m, p.RetryCount+1)
			}
			if ctx.Err() != nil {
				return
			}
		}
		if int64(len(ps)) < c.opts.Count {
			return
		}
		start = "(" + ps[len(ps)-1].ID
	}
}

// RetryAfter returns how long an entry delivered n times waits after its last
// attempt before the next: RetryDelay, doubling with each attempt, capped at
// RetryMaxDelay (cenkalti/backoff, without randomization: the claim passes spread
// the retries already).
func (c *Consumer) RetryAfter(n int64) time.Duration {
	b := &backoff.ExponentialBackOff{
		InitialInterval: c.opts.RetryDelay,
		Multiplier:      2,
		MaxInterval:     c.opts.RetryMaxDelay,
		Clock:           backoff.SystemClock,
	}
	b.Reset()
	d := b.NextBackOff()
	for i := int64(1); i < n && d < c.opts.RetryMaxDelay; i++ {
		d = b.NextBackOff()
	}
	return d
}

// handle processes one entry, delivered for the attempt-th time, to the end
// (enqueue and acknowledge, or reject and acknowledge, or leave it pending after a
// transient failure, or dead-letter it after the last attempt), even when ctx is
// cancelled meanwhile. It never waits: a failing entry holds up no other.
func (c *Consumer) handle(ctx context.Context, m redis.XMessage, attempt int64) {
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.HandleTimeout)
	defer cancel()
	if len(m.Values) == 0 {
		// Deleted from the stream while pending (Redis < 7 claims it with no fields):
		// nothing to send; drop it from the pending list.
		_ = c.ack(hctx, m.ID)
		return
	}
	req, err := tasks.DecodeFields(m.Values)
	if err == nil {
		if req.ID == "" {
			// Redelivery of the same entry gets the same key: never a second task.
			req.ID = idPrefix + m.ID
		}
		var res tasks.EnqueueResult
		res, err = c.enq.Enqueue(hctx, req)
		if err == nil {
			if aerr := c.ack(hctx, m.ID); aerr != nil {
				// Enqueued but still pending: the redelivery is a duplicate, then acked.
				c.retrying = true
				c.failed(m.ID, aerr)
				return
			}
			if c.opts.Hooks.Enqueued != nil {
				c.opts.Hooks.Enqueued(m.ID, res)
			}
			return
		}
	}
	var reasons []provider.FieldError
	switch {
	case !tasks.Permanent(err) && attempt < c.opts.MaxAttempts:
		c.retrying = true
		c.failed(m.ID, err)
		return
	case !tasks.Permanent(err):
		// The error may quote anything from below: masked like a rule.
		reasons = []provider.FieldError{{Field: "entry", Rule: provider.MaskPhones(fmt.Sprintf("not enqueued after %d attempts: %v", attempt, err))}}
	default:
		reasons = tasks.Reasons(err)
		var de *tasks.DecodeError
		if errors.As(err, &de) && de.Problem == "" {
			// Unknown fields: list what else is wrong too, so one rejection says it all.
			var ve *provider.ValidationError
			if errors.As(req.Message.Validate(), &ve) {
				reasons = append(reasons, ve.Fields...)
			}
		}
	}
	if rerr := c.reject(hctx, m, reasons); rerr != nil {
		c.retrying = true
		c.failed(m.ID, rerr)
		return
	}
	if c.opts.Hooks.Rejected != nil {
		c.opts.Hooks.Rejected(m.ID, reasons)
	}
}

// ack acknowledges (and unless KeepAcked deletes) entry id in one transaction.
func (c *Consumer) ack(ctx context.Context, id string) error {
	_, err := c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAck(ctx, c.opts.Stream, c.opts.Group, id)
		if !c.opts.KeepAcked {
			p.XDel(ctx, c.opts.Stream, id)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("outbox: ack %s: %w", id, err)
	}
	return nil
}

// reject copies the entry, destination masked, with its reasons to the rejected
// stream and acknowledges it, in one transaction.
func (c *Consumer) reject(ctx context.Context, m redis.XMessage, reasons []provider.FieldError) error {
	values := RejectedValues(m, reasons, time.Now())
	_, err := c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAdd(ctx, &redis.XAddArgs{
			Stream: c.opts.RejectedStream,
			MaxLen: c.opts.RejectedMaxLen,
			Approx: true,
			Values: values,
		})
		p.XAck(ctx, c.opts.Stream, c.opts.Group, m.ID)
		if !c.opts.KeepAcked {
			p.XDel(ctx, c.opts.Stream, m.ID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("outbox: reject %s: %w", m.ID, err)
	}
	return nil
}

// Reason is one entry of the "reasons" field of a rejected entry.
type Reason struct {
	Field string `json:"field"`
	Rule  string `json:"rule"`
}

// RejectedValues returns the fields of the rejected-stream entry of m, as XADD
// field/value pairs: entry_id, reasons (a JSON list of {"field","rule"}), rejected_at
// (RFC 3339), then m's own fields sorted by name, each masked and capped:
// destination_addr with provider.MaskPhone, every other name and value (a "message"
// JSON document, an unknown field, free text) with provider.MaskPhones, which masks
// every phone-like run wherever it stands. A value longer than 1 KiB is cut there and
// ends with "…[cut: N bytes]"; names are cut at 64 bytes; at most 64 own fields are
// copied, and "left_out" then says how many were not. Own fields named like the
// entry's own (entry_id, reasons, rejected_at, left_out) get the prefix "original_".
func RejectedValues(m redis.XMessage, reasons []provider.FieldError, now time.Time) []any {
	rs := make([]Reason, len(reasons))
	for i, r := range reasons {
		// Reasons are ours, and a rule shows a producer's value only masked; masked
		// here again all the same, since a reason may quote an error from below (a
		// Redis error, say) and a dead-letter stream never holds a number.
		rs[i] = Reason{Field: capValue(r.Field, rejectedNameMax, provider.MaskPhones), Rule: capValue(r.Rule, rejectedValueMax, provider.MaskPhones)}
	}
	rb, _ := json.Marshal(rs) // strings only: cannot fail
	out := []any{"entry_id", m.ID, "reasons", string(rb), "rejected_at", now.UTC().Format(time.RFC3339)}
	names := make([]string, 0, len(m.Values))
	for k := range m.Values {
		names = append(names, k)
	}
	sort.Strings(names)
	if len(names) > rejectedFieldsMax {
		out = append(out, "left_out", strconv.Itoa(len(names)-rejectedFieldsMax)+" fields")
		names = names[:rejectedFieldsMax]
	}
	for _, k := range names {
		mask := provider.MaskPhones
		if k == "destination_addr" {
			mask = provider.MaskPhone
		}
		v := capValue(streamValue(m.Values[k]), rejectedValueMax, mask)
		name := capValue(k, rejectedNameMax, provider.MaskPhones)
		switch name {
		case "entry_id", "reasons", "rejected_at", "left_out":
			name = rejectedReservedPrefix + name
		}
		out = append(out, name, v)
	}
	return out
}

// streamValue is a stream entry's value as text (go-redis reads them as strings).
func streamValue(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// capValue masks v and cuts it to at most limit bytes (on a rune boundary, with a
// note of the original size). The mask runs over a little more than what is kept,
// so a number that crosses the cut is masked whole: the part kept shows no more of
// it than the mask does. Only the kept part and its margin are ever copied.
func capValue(v string, limit int, mask func(string) string) string {
	if len(v) <= limit {
		return strings.ToValidUTF8(mask(v), "?")
	}
	const margin = 64
	note := "…[cut: " + strconv.Itoa(len(v)) + " bytes]"
	head := mask(strings.ToValidUTF8(v[:min(len(v), limit+margin)], "?"))
	// The note counts in the limit: what is stored is never longer than limit.
	cut := max(min(limit-len(note), len(head)), 0)
	for cut > 0 && cut < len(head) && !utf8.RuneStart(head[cut]) {
		cut--
	}
	return head[:cut] + note
}

func (c *Consumer) failed(id string, err error) {
	if c.opts.Hooks.Failed != nil {
		c.opts.Hooks.Failed(id, err)
	}
}

// sleep waits d or until ctx is done; it reports whether the full d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
