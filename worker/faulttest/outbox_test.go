package faulttest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/outbox"
)

// TestOutboxThroughWorker: a producer in any language XADDs to viberq:outbox and the
// real `viberq worker` (README: "consume send and poll tasks (and the outbox
// stream)") turns good entries into delivered messages and copies bad ones, with
// their reasons, to viberq:outbox:rejected.
func TestOutboxThroughWorker(t *testing.T) {
	needRedis(t)
	t.Parallel()
	h := newHarness(t, "outbox", "")
	f := Figures{Title: "outbox stream through the worker", Fault: "none: 20 good and 2 bad XADD entries, 1 worker, instant simulator"}
	defer h.finish(&f)
	sim := startSimProc(t, h.dir, testKey, "instant")
	h.track(sim.p)
	h.sim = sim
	h.setSpecs(genSpecs("outbox", 23, 20, 30*time.Minute))
	ctx := context.Background()
	for _, s := range h.specs {
		vals := map[string]any{
			"id": s.ID, "source_addr": "FaultShop", "destination_addr": s.Dest, "message_type": "106",
			"source_type": strconv.Itoa(int(s.Source)), "text": s.Text, "ttl": "1800",
		}
		if s.SMSText != "" {
			vals["text_sms"] = s.SMSText
		}
		if err := h.rdb.XAdd(ctx, &redis.XAddArgs{Stream: outbox.DefaultStream, Values: vals}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []map[string]any{
		{"message": `{"source_addr":`},
		{"source_addr": "FaultShop", "destination_addr": "+380990000000", "message_type": "106", "source_type": "2", "text": "x"},
	} {
		if err := h.rdb.XAdd(ctx, &redis.XAddArgs{Stream: outbox.DefaultStream, Values: bad}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	h.startWorkers(1)
	h.waitFinal(pick(45*time.Second, 2*time.Minute))
	rejected := outbox.DefaultStream + outbox.DefaultRejectedSuffix
	deadline := time.Now().Add(10 * time.Second)
	var n int64
	for time.Now().Before(deadline) {
		if n, _ = h.rdb.XLen(ctx, rejected).Result(); n >= 2 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n != 2 {
		t.Errorf("rejected stream holds %d entries, want 2", n)
	}
	h.conclude(&f, verifyOpts{allowed: []tasks.State{tasks.StateDelivered}, maxUnknown: 0}, nil)
}
