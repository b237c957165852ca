package outbox

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

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
	DefaultHandleTimeout   = 15 * time.Second
	maxClaimPagesPerRound  = 10
	idPrefix               = "outbox:"
	rejectedReservedPrefix = "original_"
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
	// the stream itself) stays pending and is retried after ClaimIdle.
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
	// RetryDelay is the pause after a transient failure (DefaultRetryDelay).
	RetryDelay time.Duration
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
	opts.HandleTimeout = cmp.Or(opts.HandleTimeout, DefaultHandleTimeout)
	return &Consumer{rdb: rdb, enq: enq, opts: opts}
}

// Options returns the effective options.
func (c *Consumer) Options() Options { return c.opts }

// Run consumes the stream until ctx is cancelled, then returns nil after finishing
// the entries in hand. Transient Redis failures are reported to Hooks.Failed and
// retried after RetryDelay; Run does not give up on them.
//
// Each round it reads new entries (XREADGROUP ">"), and every ClaimInterval it claims
// entries pending longer than ClaimIdle (XAUTOCLAIM), from dead consumers or from its
// own transient failures. An entry is acknowledged only after it was enqueued (or
// rejected), so a crash in between leaves it pending for another consumer; the
// enqueue is idempotent by ID, so the redelivery never makes a second task.
func (c *Consumer) Run(ctx context.Context) error {
	for !c.ensureGroup(ctx) {
		if !sleep(ctx, c.opts.RetryDelay) {
			return nil
		}
	}
	var lastClaim time.Time
	for ctx.Err() == nil {
		if time.Since(lastClaim) >= c.opts.ClaimInterval {
			c.claim(ctx)
			lastClaim = time.Now()
			if ctx.Err() != nil {
				break
			}
		}
		msgs, err := c.read(ctx)
		// Entries returned even as ctx ends are ours now: finish them.
		for _, m := range msgs {
			c.handle(ctx, m)
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

// read returns the next new entries; none (and no error) when Block passed quietly.
func (c *Consumer) read(ctx context.Context) ([]redis.XMessage, error) {
	streams, err := c.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group:    c.opts.Group,
		Consumer: c.opts.Consumer,
		Streams:  []string{c.opts.Stream, ">"},
		Count:    c.opts.Count,
		Block:    c.opts.Block,
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

// claim processes the entries pending longer than ClaimIdle, a bounded number of pages
// per round.
func (c *Consumer) claim(ctx context.Context) {
	start := "0-0"
	for range maxClaimPagesPerRound {
		msgs, next, err := c.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream:   c.opts.Stream,
			Group:    c.opts.Group,
			Consumer: c.opts.Consumer,
			MinIdle:  c.opts.ClaimIdle,
			Start:    start,
			Count:    c.opts.Count,
		}).Result()
		if err != nil {
			if ctx.Err() == nil {
				c.failed("", fmt.Errorf("outbox: claim pending entries of %s: %w", c.opts.Stream, err))
				if isNoGroup(err) {
					c.ensureGroup(ctx)
				}
			}
			return
		}
		for _, m := range msgs {
			c.handle(ctx, m)
		}
		if next == "" || next == "0-0" || ctx.Err() != nil {
			return
		}
		start = next
	}
}

// handle processes one entry to the end (enqueue and acknowledge, or reject and
// acknowledge, or leave it pending after a transient failure), even when ctx is
// cancelled meanwhile.
func (c *Consumer) handle(ctx context.Context, m redis.XMessage) {
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.HandleTimeout)
	defer cancel()
	if len(m.Values) == 0 {
		// Deleted from the stream while pending (Redis < 7 claims it with no fields):
		// nothing to send; drop it from the pending list.
		_ = c.ack(hctx, m.ID)
		return
	}
	req, err := DecodeFields(m.Values)
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
				c.failed(m.ID, aerr)
				return
			}
			if c.opts.Hooks.Enqueued != nil {
				c.opts.Hooks.Enqueued(m.ID, res)
			}
			return
		}
	}
	if !Permanent(err) {
		c.failed(m.ID, err)
		sleep(ctx, c.opts.RetryDelay)
		return
	}
	reasons := Reasons(err)
	var de *DecodeError
	if errors.As(err, &de) && de.Problem == "" {
		// Unknown fields: list what else is wrong too, so one rejection says it all.
		var ve *provider.ValidationError
		if errors.As(req.Message.Validate(), &ve) {
			reasons = append(reasons, ve.Fields...)
		}
	}
	if rerr := c.reject(hctx, m, reasons); rerr != nil {
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
// (RFC 3339), then m's own fields sorted by name with destination_addr masked (also
// inside a "message" JSON document; in a document that is not valid JSON every run of
// 7 or more digits is masked, and so are the values of unknown fields). Own fields
// named like the first three get the prefix "original_".
func RejectedValues(m redis.XMessage, reasons []provider.FieldError, now time.Time) []any {
	rs := make([]Reason, len(reasons))
	for i, r := range reasons {
		rs[i] = Reason{Field: r.Field, Rule: r.Rule}
	}
	rb, _ := json.Marshal(rs) // strings only: cannot fail
	out := []any{"entry_id", m.ID, "reasons", string(rb), "rejected_at", now.UTC().Format(time.RFC3339)}
	names := make([]string, 0, len(m.Values))
	for k := range m.Values {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v := str(m.Values[k])
		switch _, known := fieldKinds[k]; {
		case k == "destination_addr":
			v = provider.MaskPhone(v)
		case k == FieldMessage:
			v = maskDocument(v)
		case !known:
			v = maskDigitRuns(v)
		}
		name := k
		if k == "entry_id" || k == "reasons" || k == "rejected_at" {
			name = rejectedReservedPrefix + k
		}
		out = append(out, name, v)
	}
	return out
}

// maskDocument masks destination_addr in a JSON object, or every long digit run when
// the document is not a JSON object.
func maskDocument(doc string) string {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(doc), &obj); err != nil || obj == nil {
		return maskDigitRuns(doc)
	}
	raw, ok := obj["destination_addr"]
	if !ok {
		return doc
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		s = string(raw)
	}
	b, _ := json.Marshal(provider.MaskPhone(s))
	obj["destination_addr"] = b
	out, err := json.Marshal(obj)
	if err != nil {
		return maskDigitRuns(doc)
	}
	return string(out)
}

var digitRunRe = regexp.MustCompile(`[0-9]{7,}`)

// maskDigitRuns masks every run of 7 or more digits with provider.MaskPhone.
func maskDigitRuns(s string) string {
	return digitRunRe.ReplaceAllStringFunc(s, provider.MaskPhone)
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
