package faulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/viberq/viberq/tasks"
)

// reconcilePeriod is the workers' VIBERQ_RECONCILE_PERIOD in these scenarios (30 s by
// default; shorter here so that a run takes seconds).
const reconcilePeriod = 2 * time.Second

// allRecords counts the state of every message record in the scenario's database
// (the producers' IDs are not known in advance: an HTTP producer without an
// idempotency key retries a failed request under a new ID).
func (h *harness) allRecords() (map[string]int, int, error) {
	ctx := context.Background()
	counts := map[string]int{}
	notFinal := 0
	iter := h.rdb.Scan(ctx, 0, h.store.Key("*"), 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return nil, 0, err
	}
	pipe := h.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.HGet(ctx, k, "state")
	}
	if len(keys) > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, 0, err
		}
	}
	for _, c := range cmds {
		st, _ := c.Result()
		counts[st]++
		if !tasks.State(st).Final() {
			notFinal++
		}
	}
	return counts, notFinal, nil
}

// startAPI starts `viberq api` (log name name) on the scenario's Redis and waits
// until it listens.
func (h *harness) startAPI(port int, token, monPass, name string) *proc {
	env := baseEnv("VIBERQ_REDIS_URL="+h.redisURL, "VIBERQ_LOG_FORMAT=json", "VIBERQ_HTTP_ADDR="+hostPort(port),
		"VIBERQ_API_TOKENS="+token, "VIBERQ_MONITORING_PASSWORD="+monPass, "VIBERQ_DT_API_KEY="+testKey)
	p := startProc(h.t, h.dir, name, env, viberqBin(h.t), "api")
	h.track(p)
	if err := p.waitLog(`"api listening"`, 30*time.Second); err != nil {
		h.t.Fatal(err)
	}
	return p
}

// `kill -9` of `viberq api` ×5 under 16 parallel HTTP producers (no idempotency key):
// a kill between the record and its task leaves a queued record with no task, which
// nothing would ever finish. With the reconciler every record is final within the
// workers' drain time plus two reconciler periods: the orphans end cancelled.
func TestFaultAPIKill9(t *testing.T) {
	needRedis(t)
	t.Parallel()
	h := newHarness(t, "api-kill9", "")
	f := Figures{Title: "`kill -9` of `viberq api` ×5 under 16 parallel producers"}
	defer h.finish(&f)
	sim := startSimProc(t, h.dir, testKey, "instant")
	h.track(sim.p)
	h.sim = sim
	h.setRate(300)
	h.env = append(h.env, "VIBERQ_RECONCILE_PERIOD="+reconcilePeriod.String())
	h.startWorkers(2)

	const token, monPass = "api-token-0123456789abcdef", "monitor-pass-9876"
	port := freePort(t)
	base := "http://" + hostPort(port) + "/v1/messages"
	api := h.startAPI(port, token, monPass, "api-1")

	perProducer := pick(100, 320)
	var (
		accepted, failed atomic.Int64
		wg               sync.WaitGroup
		ids              sync.Map
	)
	client := &http.Client{Timeout: 5 * time.Second}
	for p := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, ok := 0, 0; ok < perProducer; i++ {
				body, _ := json.Marshal(map[string]any{
					"source_addr": "FaultShop", "destination_addr": fmt.Sprintf("38050%07d", p*100000+i), "message_type": 106,
					"source_type": 1, "text": fmt.Sprintf("api kill %d/%d", p, i), "ttl": "10m",
				})
				req, _ := http.NewRequest(http.MethodPost, base, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					time.Sleep(20 * time.Millisecond) // the API is restarting
					continue
				}
				var out struct {
					ID string `json:"id"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					failed.Add(1)
					continue
				}
				ids.Store(out.ID, true)
				accepted.Add(1)
				ok++
			}
		}()
	}
	total := int64(16 * perProducer)
	for k := 1; k <= 5; k++ {
		for accepted.Load() < total*int64(k)/6 {
			time.Sleep(5 * time.Millisecond)
		}
		api.kill()
		api = h.startAPI(port, token, monPass, fmt.Sprintf("api-%d", k+1))
	}
	lastKill := time.Now()
	wg.Wait()
	f.Fault = fmt.Sprintf("5 × kill -9 of `viberq api` (restarted) under 16 HTTP producers without idempotency keys, %d requests failed and were retried under new IDs; 2 workers, reconciler period %s", failed.Load(), reconcilePeriod)

	deadline := time.Now().Add(pick(2*time.Minute, 5*time.Minute))
	var (
		counts   map[string]int
		notFinal int
		err      error
	)
	for {
		counts, notFinal, err = h.allRecords()
		if err == nil && notFinal == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("records not final after %s: %v (err %v)", time.Since(lastKill).Round(time.Second), counts, err)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	f.RecoverSeconds = time.Since(lastKill).Seconds()
	f.States, f.NotFinal = counts, notFinal
	for _, n := range counts {
		f.Messages += n
	}
	f.Unknown = counts[string(tasks.StateUnknown)]
	f.UnknownAccepted, f.Bucket429 = -1, -1
	st := sim.stats(t)
	f.SimAccepted = st.Accepted

	// Every 202 answered has a record, and it is final.
	missing := 0
	ids.Range(func(k, _ any) bool {
		rec, err := h.store.Get(context.Background(), k.(string))
		if err != nil || !rec.State.Final() {
			missing++
		}
		return true
	})
	if missing > 0 {
		t.Errorf("%d messages answered 202 have no final record", missing)
	}
	if got := counts[string(tasks.StateDelivered)]; int64(got) < accepted.Load() {
		t.Errorf("%d delivered, want at least the %d answered 202", got, accepted.Load())
	}
	orphans := counts[string(tasks.StateCancelled)]
	f.Notes = fmt.Sprintf("%d records orphaned by the kills (queued, no task) ended cancelled by the reconciler; every record final %.1f s after the last kill", orphans, f.RecoverSeconds)
	t.Log(f.Notes)
	h.checkNoCrash()
	h.stopWorkers()
}

// A task deleted in the Asynq UI (Inspector.DeleteTask, as asynqmon does) ends its
// record cancelled within two reconciler periods; the others are delivered.
func TestFaultTaskDeletedInUI(t *testing.T) {
	needRedis(t)
	t.Parallel()
	h := newHarness(t, "task-deleted", "")
	f := Figures{Title: "send tasks deleted in the Asynq UI"}
	defer h.finish(&f)
	sim := startSimProc(t, h.dir, testKey, "instant")
	h.track(sim.p)
	h.sim = sim
	n := pick(200, 1000)
	h.setSpecs(genSpecs("deleted", 77, n, 30*time.Minute))
	// A backlog: the queues are paused while the tasks are deleted.
	ctx := context.Background()
	h.enqueue(h.specs)
	for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault} {
		if err := h.insp.PauseQueue(q); err != nil && !strings.Contains(err.Error(), "already paused") {
			t.Fatal(err)
		}
	}
	h.setRate(300)
	h.env = append(h.env, "VIBERQ_RECONCILE_PERIOD="+reconcilePeriod.String())
	h.startWorkers(2)
	deleted := map[string]bool{}
	for i, s := range h.specs {
		if i%10 != 0 {
			continue
		}
		if err := h.insp.DeleteTask(tasks.QueueFor(s.message()), s.ID); err != nil {
			t.Fatalf("delete %s: %v", s.ID, err)
		}
		deleted[s.ID] = true
	}
	deletedAt := time.Now()
	// The deleted messages end cancelled while the queues are still paused.
	var last time.Duration
	for id := range deleted {
		for {
			rec, err := h.store.Get(ctx, id)
			if err == nil && rec.State.Final() {
				if rec.State != tasks.StateCancelled {
					t.Errorf("%s: %s, want cancelled", id, rec.State)
				}
				break
			}
			if time.Since(deletedAt) > 2*reconcilePeriod+10*time.Second {
				t.Fatalf("%s still %s %s after its task was deleted", id, rec.State, time.Since(deletedAt))
			}
			time.Sleep(50 * time.Millisecond)
		}
		last = max(last, time.Since(deletedAt))
	}
	for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault} {
		_ = h.insp.UnpauseQueue(q)
	}
	f.Fault = fmt.Sprintf("%d of %d send tasks deleted from paused queues (as asynqmon does); 2 workers, reconciler period %s", len(deleted), n, reconcilePeriod)
	f.RecoverSeconds = last.Seconds()
	h.waitFinal(2 * time.Minute)
	f.Notes = fmt.Sprintf("the %d deleted messages were cancelled %.1f s after the deletion at the latest (bound: two periods, %s, plus a sweep); none was sent", len(deleted), last.Seconds(), 2*reconcilePeriod)
	t.Log(f.Notes)
	h.conclude(&f, verifyOpts{maxUnknown: 0}, nil)
	if got := f.States[string(tasks.StateCancelled)]; got != len(deleted) {
		t.Errorf("%d cancelled, want %d (the deleted ones)", got, len(deleted))
	}
}
