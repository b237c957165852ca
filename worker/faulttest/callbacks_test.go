package faulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/tasks"
)

// TestFaultForgedCallbacks: status callbacks decide nothing the provider has not
// said. The simulator POSTs its own callbacks (every intermediate status too) to a
// real `viberq api`; besides them, someone holding the valid token forges callbacks
// for every message: early (right after the provider accepted it, before any
// delivery) and claiming a final state chosen to be wrong as often as possible
// (delivered for some, undelivered on every leg for the others), again after the
// record is final, and with another message_id. The accounting then requires every
// final state to equal the simulator's own outcome (harness.checkLedger), and the
// records to say what settled them.
func TestFaultForgedCallbacks(t *testing.T) {
	needRedis(t)
	t.Parallel()
	h := newHarness(t, "forged-callbacks", "")
	f := Figures{Title: "forged or early callbacks"}
	defer h.finish(&f)

	cfg, err := dtsim.ProfileConfig(dtsim.ProfileRealistic)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Key, cfg.Seed = testKey, 11
	cfg.CallbackIntermediate = true
	sim := startInProcSim(t, cfg)
	h.sim = sim

	const token, monPass, cbTok = "api-token-0123456789abcdef", "monitor-pass-9876", "cb-token-forged-0123456789"
	port := freePort(t)
	base := "http://" + hostPort(port)
	cbURL := base + "/callbacks/status"
	env := baseEnv("VIBERQ_REDIS_URL="+h.redisURL, "VIBERQ_LOG_FORMAT=json", "VIBERQ_HTTP_ADDR="+hostPort(port),
		"VIBERQ_API_TOKENS="+token, "VIBERQ_MONITORING_PASSWORD="+monPass, "VIBERQ_DT_API_KEY="+testKey,
		"VIBERQ_CALLBACK_URL="+cbURL, "VIBERQ_CALLBACK_TOKEN="+cbTok)
	api := startProc(t, h.dir, "api", env, viberqBin(t), "api")
	h.track(api)
	if err := api.waitLog(`"api listening"`, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	h.secrets = append(h.secrets, cbTok, token, monPass)
	h.env = append(h.env, "VIBERQ_CALLBACK_URL="+cbURL, "VIBERQ_CALLBACK_TOKEN="+cbTok,
		"VIBERQ_POLL_FIRST_WITH_CALLBACK=20s")

	n := pick(150, 1500)
	h.setSpecs(genSpecs("forged", 19, n, pick(time.Minute, 2*time.Minute)))
	h.startWorkers(2)
	start := time.Now()
	h.enqueue(h.specs)

	// The forger: for each message, as soon as the provider accepted it, two forged
	// final callbacks (the wrong one first), one with another message_id; and one
	// more after the record is final.
	c := &http.Client{Timeout: 10 * time.Second}
	var (
		mu      sync.Mutex
		results = map[string]int{}
		forged  int
	)
	post := func(id string, body map[string]any) {
		b, _ := json.Marshal(body)
		resp, err := c.Post(base+"/callbacks/"+cbTok+"/status?id="+id, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Errorf("forged callback for %s: %v", id, err)
			return
		}
		defer resp.Body.Close()
		var ans struct{ Result string }
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &ans) != nil {
			t.Errorf("forged callback for %s: %d %s", id, resp.StatusCode, raw)
			return
		}
		mu.Lock()
		results[ans.Result]++
		forged++
		mu.Unlock()
	}
	undelivered := func(pid provider.MessageID, hasSMS bool) map[string]any {
		if hasSMS {
			return map[string]any{"message_id": pid, "status": 4, "sms_message_id": pid + 1, "sms_message_status": 5}
		}
		return map[string]any{"message_id": pid, "status": 2}
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				s := h.specs[i]
				var rec tasks.Record
				for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
					r, err := h.store.Get(ctx, s.ID)
					if err == nil && (r.ProviderMessageID != 0 || r.State.Final()) {
						rec = r
						break
					}
				}
				if rec.ProviderMessageID == 0 {
					continue // never accepted: nothing a callback could name
				}
				pid, hasSMS := rec.ProviderMessageID, s.SMSText != ""
				if i%2 == 0 {
					post(s.ID, undelivered(pid, hasSMS))
					post(s.ID, map[string]any{"message_id": pid, "status": 1})
				} else {
					post(s.ID, map[string]any{"message_id": pid, "status": 1})
					post(s.ID, undelivered(pid, hasSMS))
				}
				post(s.ID, map[string]any{"message_id": pid + 1_000_000, "status": 1})
			}
		}()
	}
	for i := range h.specs {
		next <- i
	}
	close(next)
	wg.Wait()
	if !h.waitFinal(pick(3*time.Minute, 6*time.Minute)) {
		t.Log("not every message final in time")
	}
	// Late forgeries against final records.
	for i, s := range h.specs {
		if rec, err := h.store.Get(ctx, s.ID); err == nil && rec.State.Final() && rec.ProviderMessageID != 0 {
			if rec.State == tasks.StateDelivered {
				post(s.ID, undelivered(rec.ProviderMessageID, s.SMSText != ""))
			} else {
				post(s.ID, map[string]any{"message_id": rec.ProviderMessageID, "status": 1})
			}
		}
		_ = i
	}
	took := time.Since(start)

	settled := map[string]int{}
	for _, s := range h.specs {
		if rec, err := h.store.Get(ctx, s.ID); err == nil {
			settled[rec.SettledBy]++
		}
	}
	st := sim.stats(t)
	f.Fault = fmt.Sprintf("%d forged callbacks with the valid token (2 wrong-or-right final claims per message as soon as it is accepted, 1 with another message_id, 1 against the final record), besides the simulator's own callbacks (every intermediate status); 2 workers, first poll 20 s with callbacks", forged)
	f.Notes = fmt.Sprintf("forged answered %s; simulator callbacks sent %d; settled_by %s; receive-viber calls %d (%.2f per message); run %s",
		countsString(results), st.Callbacks.Sent, countsString(settled), st.Requests[string(dtsim.EndpointStatus)],
		float64(st.Requests[string(dtsim.EndpointStatus)])/float64(n), took.Round(time.Second))
	h.conclude(&f, verifyOpts{allowed: providerFinals, maxUnknown: 0}, nil)

	if results["final"] == 0 || results["confirming"] == 0 || results["ignored"] == 0 {
		t.Errorf("forged callbacks answered %v: want confirming, ignored and final answers", results)
	}
	if settled[tasks.SettledByCallback] == 0 {
		t.Errorf("settled_by %v: the confirming polls should settle most messages", settled)
	}
	for by := range settled {
		if by != tasks.SettledByCallback && by != tasks.SettledByPoll {
			t.Errorf("settled_by %q: only polls and confirmed callbacks settle here (%v)", by, settled)
		}
	}
}

// countsString prints a map of counts sorted by key: "a 1, b 2".
func countsString(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		name := k
		if name == "" {
			name = "(none)"
		}
		parts[i] = fmt.Sprintf("%s %d", name, m[k])
	}
	return strings.Join(parts, ", ")
}
