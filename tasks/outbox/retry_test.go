package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/config"
	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/outbox"
)

// stuckEnqueuer fails transiently for the requests whose ID is in fail, and passes
// the others to the real Enqueuer; it counts the calls per ID.
type stuckEnqueuer struct {
	next outbox.Enqueuer
	fail map[string]bool
	mu   sync.Mutex
	n    map[string]int
}

func (s *stuckEnqueuer) Enqueue(ctx context.Context, req tasks.EnqueueRequest) (tasks.EnqueueResult, error) {
	s.mu.Lock()
	s.n[req.ID]++
	s.mu.Unlock()
	if s.fail[req.ID] {
		return tasks.EnqueueResult{}, errors.New("OOM command not allowed when used memory > 'maxmemory'")
	}
	return s.next.Enqueue(ctx, req)
}

func (s *stuckEnqueuer) calls(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[id]
}

func doc(id, dest string) string {
	return strings.Replace(strings.Replace(docJSON, "380501234567", dest, 1), `{`, `{"id":"`+id+`",`, 1)
}

// TestConsumerFailingEntryDoesNotStallOthers reproduces "an entry that fails
// transiently stalls the consumer 1 s each time": with a retry delay of an hour, the
// consumer used to sleep that hour after the failure, before the good entries behind
// it. Now the failing entry waits in the pending list and the others go on.
func TestConsumerFailingEntryDoesNotStallOthers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := &stuckEnqueuer{next: b.enq, fail: map[string]bool{"stuck-1": true}, n: map[string]int{}}
	stuck := b.xadd(t, "message", doc("stuck-1", "380501110000"))
	var good []string
	for i, dest := range []string{"380501110001", "380501110002", "380501110003"} {
		good = append(good, b.xadd(t, "message", doc("good-"+string(rune('1'+i)), dest)))
	}
	b.start(t, f, outbox.Options{RetryDelay: time.Hour, Count: 1})
	require.Eventually(t, func() bool {
		for _, e := range good {
			if _, ok := b.log.enqueuedResult(e); !ok {
				return false
			}
		}
		return true
	}, 5*time.Second, 10*time.Millisecond, "the good entries behind a failing one are enqueued")
	require.Equal(t, 1, f.calls("stuck-1"), "the failing entry waits its backoff (an hour here)")
	require.EqualValues(t, 1, b.pending(t), "and stays pending")
	_, ok := b.log.enqueuedResult(stuck)
	require.False(t, ok)
}

// TestConsumerDeadLettersAfterMaxAttempts reproduces "retried forever": an entry that
// always fails transiently is tried MaxAttempts times with backoff, then copied to
// the rejected stream with the last error and acknowledged.
func TestConsumerDeadLettersAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := &stuckEnqueuer{next: b.enq, fail: map[string]bool{"stuck-2": true}, n: map[string]int{}}
	stuck := b.xadd(t, "message", doc("stuck-2", "380501110010"))
	b.start(t, f, outbox.Options{RetryDelay: 20 * time.Millisecond, RetryMaxDelay: 40 * time.Millisecond, MaxAttempts: 4})
	require.Eventually(t, func() bool { _, ok := b.log.rejectedReasons(stuck); return ok }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, 4, f.calls("stuck-2"), "exactly MaxAttempts attempts")
	require.Zero(t, b.pending(t), "dead-lettered entries are acknowledged")
	rs, _ := b.log.rejectedReasons(stuck)
	require.Len(t, rs, 1)
	require.Equal(t, "entry", rs[0].Field)
	require.Contains(t, rs[0].Rule, "not enqueued after 4 attempts")
	require.Contains(t, rs[0].Rule, "OOM")
	msgs, err := b.rdb.XRange(context.Background(), stream+":rejected", "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.Equal(t, stuck, msgs[0].Values["entry_id"])
	require.NotContains(t, msgs[0].Values["message"], "380501110010")
	// Attempts 1-3 are reported as transient failures of this entry, with the
	// enqueuer's error; the fourth dead-letters it (Rejected) instead.
	failures := b.log.failures()
	require.Len(t, failures, 3, "three failures reported, the fourth attempt dead-letters")
	for _, f := range failures {
		require.True(t, strings.HasPrefix(f, stuck+": "), f)
		require.Contains(t, f, "OOM")
	}
	_, ok := b.log.enqueuedResult(stuck)
	require.False(t, ok, "never reported enqueued")
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	c := outbox.New(nil, nil, outbox.Options{RetryDelay: time.Second, RetryMaxDelay: 10 * time.Second})
	var got []time.Duration
	for n := int64(1); n <= 6; n++ {
		got = append(got, c.RetryAfter(n))
	}
	require.Equal(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}, got)
	d := outbox.New(nil, nil, outbox.Options{})
	require.Equal(t, outbox.DefaultRetryDelay, d.RetryAfter(1))
	require.Equal(t, outbox.DefaultRetryMaxDelay, d.RetryAfter(outbox.DefaultMaxAttempts))
	require.EqualValues(t, outbox.DefaultMaxAttempts, d.Options().MaxAttempts)
	// The setting's default and its description (config) say the same.
	require.Equal(t, config.DefaultOutboxMaxAttempts, outbox.DefaultMaxAttempts)
	require.Equal(t, time.Second, outbox.DefaultRetryDelay)
	require.Equal(t, time.Minute, outbox.DefaultRetryMaxDelay)
}

var (
	sevenDigits = regexp.MustCompile(`[0-9]{7}`)
	cutNote     = regexp.MustCompile(`…\[cut: [0-9]+ bytes\]$`)
)

// TestRejectedEntryCappedAndMasked reproduces "the rejected stream copies whole
// entries (a 20 MB entry costs 20 MB again) and keeps a phone number found under an
// unknown JSON key unmasked", at the real Redis when VIBERQ_TEST_REDIS_URL is set.
func TestRejectedEntryCappedAndMasked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	huge := strings.Repeat("sale! ", 20<<20/6)
	hidden := `{"source_addr":"Shop","destination_addr":"380501234567","message_type":106,"source_type":2,` +
		`"text":"hi","contact":{"mobile":"+380 67 111 22 33","home":380441234567}}`
	bigEntry := b.xadd(t, "id", "big-1", "source_addr", "Shop", "destination_addr", "380501234567",
		"message_type", "106", "source_type", "2", "text", huge)
	hiddenEntry := b.xadd(t, "message", hidden)
	flatEntry := b.xadd(t, "id", "flat-1", "source_addr", "Shop", "destination_addr", "380501234567",
		"message_type", "106", "source_type", "2", "text", "hi", "backup_phone", "call 380 67 111 22 33 after 5")
	b.start(t, b.enq, outbox.Options{})
	for _, e := range []string{bigEntry, hiddenEntry, flatEntry} {
		require.Eventually(t, func() bool { _, ok := b.log.rejectedReasons(e); return ok }, 10*time.Second, 10*time.Millisecond)
	}
	msgs, err := b.rdb.XRange(ctx, stream+":rejected", "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, 3)
	for _, m := range msgs {
		size := 0
		for k, v := range m.Values {
			s := v.(string)
			size += len(k) + len(s)
			if k != "rejected_at" && k != "entry_id" && k != "reasons" { // reasons hold sizes
				require.False(t, sevenDigits.MatchString(cutNote.ReplaceAllString(s, "")), "%s of %s shows a number: %q", k, m.ID, s)
			}
		}
		require.Less(t, size, 8<<10, "entry %s is capped", m.ID)
	}
	require.Contains(t, msgs[0].Values["text"], "…[cut: ")
	var reasons []outbox.Reason
	require.NoError(t, json.Unmarshal([]byte(msgs[1].Values["reasons"].(string)), &reasons))
	require.Equal(t, "contact", reasons[0].Field)
	require.Contains(t, msgs[1].Values["message"], `"mobile":"+38*`)
	require.Equal(t, "call 380*********2 33 after 5", msgs[2].Values["backup_phone"])
}

func TestRejectedValuesCaps(t *testing.T) {
	t.Parallel()
	values := map[string]any{}
	for i := range 100 {
		values["f"+strings.Repeat("x", i)] = "v"
	}
	values[strings.Repeat("n", 200)+"380501234567"] = "é" + strings.Repeat("é", 600) // 1202 bytes of 2-byte runes
	v := outbox.RejectedValues(redis.XMessage{ID: "1-0", Values: values}, []provider.FieldError{{Field: "x", Rule: "unknown field"}}, time.Unix(0, 0))
	m := map[string]string{}
	for i := 0; i < len(v); i += 2 {
		m[v[i].(string)] = v[i+1].(string)
	}
	require.Equal(t, "37 fields", m["left_out"], "64 of 101 own fields copied")
	require.Len(t, m, 3+1+64)
	for k, val := range m {
		require.LessOrEqual(t, len(k), 64)
		require.True(t, strings.HasSuffix(val, "…[cut: 1202 bytes]") || len(val) <= 1024, k)
		require.True(t, strings.ToValidUTF8(val, "") == val, "valid UTF-8 after the cut")
	}
}

// FuzzRejectedValues: whatever an entry holds, what the rejected stream gets is
// capped, valid UTF-8 and shows no 7 digits of a number.
func FuzzRejectedValues(f *testing.F) {
	f.Add("message", `{"x":{"y":"+380 50 123 45 67"}}`)
	f.Add("destination_addr", "380501234567")
	f.Add("note", strings.Repeat("9", 3000))
	f.Fuzz(func(t *testing.T, k, v string) {
		out := outbox.RejectedValues(redis.XMessage{ID: "1-0", Values: map[string]any{k: v}}, nil, time.Unix(0, 0))
		for i := 6; i < len(out); i += 2 {
			name, val := out[i].(string), out[i+1].(string)
			if len(name) > 64 || len(val) > 1024+len("…[cut: 99999999999 bytes]") {
				t.Fatalf("not capped: %d/%d bytes", len(name), len(val))
			}
			if !utf8.ValidString(name) || !utf8.ValidString(val) {
				t.Fatalf("invalid UTF-8: %q=%q", name, val)
			}
			if sevenDigits.MatchString(name) || sevenDigits.MatchString(cutNote.ReplaceAllString(val, "")) {
				t.Fatalf("a number shows: %q=%q (from %q=%q)", name, val, k, v)
			}
		}
	})
}
