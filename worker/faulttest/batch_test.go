package faulttest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/tasks"
)

// The producer contract end to end (README, "Batches: BatchID and EnqueueBatch" and
// "Scheduled sends: send_at"): real worker processes, the real Redis, the simulator's
// ledger as the judge of what was sent.

// ledgerCounts maps the simulator's ledger to the specs: how many times each was
// accepted, and when it was first.
func (h *harness) ledgerCounts() ([]int, []time.Time) {
	h.t.Helper()
	led, ok := h.sim.ledger()
	if !ok {
		h.t.Fatal("this scenario needs the in-process simulator's ledger")
	}
	n := make([]int, len(h.specs))
	first := make([]time.Time, len(h.specs))
	for _, e := range led {
		i, ok := h.byText[e.TextHash]
		if !ok {
			continue // verify reports it
		}
		if n[i] == 0 || e.At.Before(first[i]) {
			first[i] = e.At
		}
		n[i]++
	}
	return n, first
}

// checkBatchCounts compares Store.BatchCounts of batch with the records of the specs
// whose index is in idx.
func (h *harness) checkBatchCounts(batch string, idx []int) tasks.BatchCounts {
	h.t.Helper()
	ctx := context.Background()
	got, err := h.store.BatchCounts(ctx, batch)
	if err != nil {
		h.t.Fatalf("batch counts %s: %v", batch, err)
	}
	want := map[tasks.State]int{}
	delivered := map[string]int{tasks.ChannelViber: 0, tasks.ChannelSMS: 0}
	for _, i := range idx {
		rec, err := h.store.Get(ctx, h.specs[i].ID)
		if err != nil {
			h.t.Fatalf("record %s: %v", h.specs[i].ID, err)
		}
		if rec.BatchID != batch {
			h.t.Errorf("record %s: batch %q, want %q", rec.ID, rec.BatchID, batch)
		}
		want[rec.State]++
		if rec.State == tasks.StateDelivered {
			delivered[rec.Channel]++
		}
	}
	if got.Total != len(idx) {
		h.t.Errorf("batch %s: total %d, records %d", batch, got.Total, len(idx))
	}
	for _, st := range tasks.States {
		if got.States[st] != want[st] {
			h.t.Errorf("batch %s: counts say %d %s, records %d", batch, got.States[st], st, want[st])
		}
	}
	for ch, n := range delivered {
		if got.Delivered[ch] != n {
			h.t.Errorf("batch %s: counts say %d delivered by %s, records %d", batch, got.Delivered[ch], ch, n)
		}
	}
	return got
}

// enqueueBatch enqueues reqs (one per spec, in order) with one EnqueueBatch call and
// fails on any answer other than accepted.
func (h *harness) enqueueBatch(reqs []tasks.EnqueueRequest) time.Duration {
	h.t.Helper()
	start := time.Now()
	res, err := h.enq.EnqueueBatch(context.Background(), reqs)
	took := time.Since(start)
	if err != nil {
		h.t.Fatalf("enqueue batch: %v", err)
	}
	for i, r := range res {
		if r.Err != nil || r.Duplicate || r.ID != reqs[i].ID {
			h.t.Fatalf("enqueue batch item %d (%s): %+v", i, reqs[i].ID, r)
		}
	}
	return took
}

// (h1) A batch enqueued with EnqueueBatch, half of it (a second batch ID, every other
// message) cancelled with CancelBatch while the workers send: no cancelled message
// reaches the provider, every message not cancelled is sent once, every message ends
// final, and the batch counts equal the records.
func TestFaultBatchCancel(t *testing.T) {
	needRedis(t)
	t.Parallel()
	h := newHarness(t, "batch-cancel", "")
	f := Figures{Title: "batch with half of it cancelled mid-run"}
	defer h.finish(&f)

	cfg, err := dtsim.ProfileConfig(dtsim.ProfileInstant)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Key, cfg.Seed = testKey, 31
	h.sim = startInProcSim(t, cfg)
	n, rate := pick(1000, 10000), 100
	h.setRate(rate)
	h.setSpecs(genSpecs("batch", 31, n, 30*time.Minute))
	const keep, stop = "spring-keep", "spring-stop"
	var keepIdx, stopIdx []int
	reqs := make([]tasks.EnqueueRequest, n)
	for i, s := range h.specs {
		b := keep
		if i%2 == 1 {
			b = stop
			stopIdx = append(stopIdx, i)
		} else {
			keepIdx = append(keepIdx, i)
		}
		reqs[i] = tasks.EnqueueRequest{ID: s.ID, Message: s.message(), TTL: s.TTL, BatchID: b}
	}
	h.startWorkers(2)
	enqTook := h.enqueueBatch(reqs)

	// Mid-run: a tenth of the messages is at the provider.
	h.waitAccepted(int64(n/10), 2*time.Minute)
	before := h.sim.stats(t).Accepted
	cstart := time.Now()
	cr, err := h.enq.CancelBatch(context.Background(), stop)
	cancelTook := time.Since(cstart)
	if err != nil {
		t.Fatalf("cancel batch: %v", err)
	}
	after := h.sim.stats(t).Accepted
	t.Logf("cancel batch %s at %d..%d accepted: %+v in %s", stop, before, after, cr, cancelTook)
	if cr.Cancelled+cr.NotCancelled != len(stopIdx) {
		t.Errorf("cancel batch answered %d + %d, the batch has %d", cr.Cancelled, cr.NotCancelled, len(stopIdx))
	}
	if cr.Cancelled == 0 || after >= int64(n) {
		t.Fatalf("the cancel did not come mid-run (%d cancelled, %d of %d accepted)", cr.Cancelled, after, n)
	}
	// Cancelling again changes nothing.
	if again, err := h.enq.CancelBatch(context.Background(), stop); err != nil || again.Cancelled != 0 {
		t.Errorf("second cancel: %+v %v, want nothing cancelled", again, err)
	}

	h.waitFinal(pick(3*time.Minute, 10*time.Minute))
	h.conclude(&f, verifyOpts{allowed: append(slices.Clone(providerFinals), tasks.StateCancelled), maxUnknown: 0}, nil)

	// The ledger against the cancel: cancelled ⇔ never at the provider.
	sent, _ := h.ledgerCounts()
	ctx := context.Background()
	cancelled, sentStop := 0, 0
	for _, i := range stopIdx {
		rec, err := h.store.Get(ctx, h.specs[i].ID)
		if err != nil {
			t.Fatalf("record %s: %v", h.specs[i].ID, err)
		}
		switch {
		case rec.State == tasks.StateCancelled && sent[i] != 0:
			t.Errorf("message %s cancelled but sent %d time(s)", rec.ID, sent[i])
		case rec.State == tasks.StateCancelled:
			cancelled++
		case sent[i] != 1:
			t.Errorf("message %s of the cancelled batch not cancelled (%s) but sent %d time(s)", rec.ID, rec.State, sent[i])
		default:
			sentStop++
		}
	}
	if cancelled != cr.Cancelled {
		t.Errorf("%d records cancelled, CancelBatch said %d", cancelled, cr.Cancelled)
	}
	for _, i := range keepIdx {
		if sent[i] != 1 {
			t.Errorf("message %s of the kept batch sent %d time(s), want 1", h.specs[i].ID, sent[i])
		}
	}
	kc := h.checkBatchCounts(keep, keepIdx)
	sc := h.checkBatchCounts(stop, stopIdx)
	if kc.States[tasks.StateCancelled] != 0 {
		t.Errorf("the kept batch has %d cancelled", kc.States[tasks.StateCancelled])
	}

	f.Fault = fmt.Sprintf("one EnqueueBatch of %d (two batch IDs, alternating) in %.2f s; CancelBatch of one half once %d were at the provider, in %.2f s; 2 workers, %d msg/s, instant simulator",
		n, enqTook.Seconds(), before, cancelTook.Seconds(), rate)
	f.Notes = fmt.Sprintf("cancelled batch: %d cancelled, %d sent before the cancel reached them, none both; kept batch: %d sent once each; batch counts equal the records (%v / %v)",
		cancelled, sentStop, len(keepIdx), compactCounts(kc), compactCounts(sc))
}

// compactCounts is the non-zero states of a batch's counts.
func compactCounts(c tasks.BatchCounts) string {
	s := ""
	for _, st := range tasks.States {
		if c.States[st] != 0 {
			s += fmt.Sprintf("%s %d ", st, c.States[st])
		}
	}
	return fmt.Sprintf("%s: %stotal %d", c.BatchID, s, c.Total)
}

// (h2) Scheduled messages (send_at spread over the next seconds, at odd milliseconds)
// are sent no earlier than send_at, by the simulator's ledger; a tenth of them is
// "run now" from the Asynq UI's API (Inspector.RunTask) right after enqueueing and
// must wait for send_at all the same; a tenth is cancelled before send_at and never
// sent.
func TestFaultSendAt(t *testing.T) {
	needRedis(t)
	t.Parallel()
	h := newHarness(t, "send-at", "")
	f := Figures{Title: "scheduled messages (send_at)"}
	defer h.finish(&f)

	cfg, err := dtsim.ProfileConfig(dtsim.ProfileInstant)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Key, cfg.Seed = testKey, 32
	h.sim = startInProcSim(t, cfg)
	n, spread, rate := pick(100, 1000), pick(5*time.Second, 20*time.Second), 100
	h.setRate(rate)
	h.setSpecs(genSpecs("sched", 32, n, 30*time.Minute))
	h.startWorkers(2)

	base := time.Now().Add(3 * time.Second)
	sendAt := make([]time.Time, n)
	reqs := make([]tasks.EnqueueRequest, n)
	for i, s := range h.specs {
		sendAt[i] = base.Add(time.Duration(i) * spread / time.Duration(n)).Add(time.Duration(i%997) * time.Millisecond)
		reqs[i] = tasks.EnqueueRequest{ID: s.ID, Message: s.message(), TTL: s.TTL, SendAt: sendAt[i], BatchID: "sched"}
	}
	h.enqueueBatch(reqs)
	ctx := context.Background()
	runNow, cancelIdx := map[int]bool{}, map[int]bool{}
	for i, s := range h.specs {
		switch i % 10 {
		case 3:
			if err := h.insp.RunTask(tasks.QueueFor(s.message()), s.ID); err != nil {
				t.Fatalf("run %s now: %v", s.ID, err)
			}
			runNow[i] = true
		case 7:
			ok, st, err := h.enq.Cancel(ctx, s.ID)
			if err != nil || !ok {
				t.Fatalf("cancel scheduled %s: %v %v %v", s.ID, ok, st, err)
			}
			cancelIdx[i] = true
		}
	}
	if time.Now().After(base) {
		t.Fatalf("the setup took past the first send_at: the scenario proves nothing")
	}

	h.waitFinal(spread + pick(2*time.Minute, 5*time.Minute))
	h.conclude(&f, verifyOpts{allowed: append(slices.Clone(providerFinals), tasks.StateCancelled), maxUnknown: 0}, nil)

	sent, first := h.ledgerCounts()
	var late, lateRun []time.Duration
	early := 0
	for i, s := range h.specs {
		switch {
		case cancelIdx[i]:
			if sent[i] != 0 {
				t.Errorf("message %s cancelled before its send_at but sent", s.ID)
			}
			continue
		case sent[i] != 1:
			t.Errorf("message %s sent %d time(s), want 1", s.ID, sent[i])
			continue
		}
		d := first[i].Sub(sendAt[i])
		if d < 0 {
			early++
			t.Errorf("message %s sent %s before its send_at (run now: %v)", s.ID, -d, runNow[i])
		}
		late = append(late, d)
		if runNow[i] {
			lateRun = append(lateRun, d)
		}
	}
	bc := h.checkBatchCounts("sched", func() []int {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}())
	slices.Sort(late)
	slices.Sort(lateRun)
	f.Fault = fmt.Sprintf("%d messages with send_at spread over %s from 3 s ahead (odd milliseconds), one EnqueueBatch; %d run at once from the Asynq UI's API (RunTask) right after, %d cancelled before send_at; 2 workers, %d msg/s, instant simulator",
		n, spread, len(runNow), len(cancelIdx), rate)
	f.Notes = fmt.Sprintf("ledger receive time − send_at: min %s, p50 %s, p99 %s, max %s; of the tasks run early: min %s, max %s; %d sent early; batch counts equal the records (%s)",
		ms(late[0]), ms(late[len(late)/2]), ms(late[len(late)*99/100]), ms(late[len(late)-1]),
		ms(lateRun[0]), ms(lateRun[len(lateRun)-1]), early, compactCounts(bc))
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }
