package dtsim

import (
	"bytes"
	"container/heap"
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

// jobKind tells status callbacks from two-way replies.
type jobKind uint8

const (
	jobStatus jobKind = iota
	jobReply
)

// job is one POST to make at due (simulator clock).
type job struct {
	due     time.Time
	seq     uint64 // FIFO among equal due times
	kind    jobKind
	url     string
	body    []byte
	attempt int
}

type jobHeap []*job

func (h jobHeap) Len() int { return len(h) }
func (h jobHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].seq < h[j].seq
}
func (h jobHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *jobHeap) Push(x any)   { *h = append(*h, x.(*job)) }
func (h *jobHeap) Pop() any {
	old := *h
	n := len(old)
	j := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return j
}

// PushStats counts the POSTs of one kind (status callbacks or replies).
type PushStats struct {
	Scheduled int64 `json:"scheduled"`
	Sent      int64 `json:"sent"`    // answered 2xx
	Retried   int64 `json:"retried"` // attempts that failed and were rescheduled
	Failed    int64 `json:"failed"`  // gave up after the last retry
	Dropped   int64 `json:"dropped"` // not scheduled: too many pending
	Pending   int64 `json:"pending"` // scheduled, not yet sent or failed
}

// maxDispatchWait bounds how long the dispatcher sleeps, so a Config.Now that jumps
// ahead (a test clock) is noticed.
const maxDispatchWait = 250 * time.Millisecond

// dispatcher holds due POSTs in a heap and hands them to a fixed pool of workers. It
// starts on the first job, so a Sim without callbacks runs no goroutine.
//
// Memory is bounded by limit jobs in the heap plus one per worker.
type dispatcher struct {
	now     func() time.Time
	client  Doer
	ownTr   *http.Transport // closed on stop when the client is ours
	workers int
	retries int
	delay   time.Duration
	timeout time.Duration
	limit   int

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}
	work   chan *job

	mu      sync.Mutex
	h       jobHeap
	seq     uint64
	started bool
	stopped bool
	stats   [2]PushStats
}

func newDispatcher(c Config) *dispatcher {
	d := &dispatcher{
		now:     c.Now,
		client:  c.HTTPClient,
		workers: c.CallbackWorkers,
		retries: c.CallbackRetries,
		delay:   c.CallbackRetryDelay,
		timeout: c.CallbackTimeout,
		limit:   c.MaxPendingCallbacks,
		wake:    make(chan struct{}, 1),
		work:    make(chan *job),
	}
	if d.client == nil {
		d.ownTr = http.DefaultTransport.(*http.Transport).Clone()
		d.client = &http.Client{Transport: d.ownTr, Timeout: c.CallbackTimeout}
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	return d
}

// schedule queues jobs; over the pending limit they are dropped and counted.
func (d *dispatcher) schedule(jobs ...*job) {
	if len(jobs) == 0 {
		return
	}
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return
	}
	for _, j := range jobs {
		st := &d.stats[j.kind]
		if len(d.h) >= d.limit {
			st.Dropped++
			continue
		}
		st.Scheduled++
		st.Pending++
		d.seq++
		j.seq = d.seq
		heap.Push(&d.h, j)
	}
	if !d.started {
		// Under mu, so that stop (which sets stopped under mu, then waits) sees the Add.
		d.started = true
		d.start()
	}
	d.mu.Unlock()
	d.poke()
}

func (d *dispatcher) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *dispatcher) start() {
	d.wg.Add(1 + d.workers)
	go d.loop()
	for range d.workers {
		go d.worker()
	}
}

func (d *dispatcher) loop() {
	defer d.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.mu.Lock()
		now := d.now()
		var due []*job
		for len(d.h) > 0 && !d.h[0].due.After(now) {
			due = append(due, heap.Pop(&d.h).(*job))
		}
		wait := time.Duration(-1)
		if len(d.h) > 0 {
			wait = min(d.h[0].due.Sub(now), maxDispatchWait)
		}
		d.mu.Unlock()

		for _, j := range due {
			select {
			case d.work <- j:
			case <-d.ctx.Done():
				return
			}
		}
		if len(due) > 0 {
			continue
		}
		var tc <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			tc = timer.C
		}
		select {
		case <-tc:
		case <-d.wake:
		case <-d.ctx.Done():
			return
		}
		timer.Stop() // Go ≥ 1.23 timers: no stale tick after Stop or Reset
	}
}

func (d *dispatcher) worker() {
	defer d.wg.Done()
	for {
		select {
		case j := <-d.work:
			d.post(j)
		case <-d.ctx.Done():
			return
		}
	}
}

func (d *dispatcher) post(j *job) {
	ok := d.send(j)
	d.mu.Lock()
	defer d.mu.Unlock()
	st := &d.stats[j.kind]
	switch {
	case ok:
		st.Sent++
		st.Pending--
	case j.attempt < d.retries && !d.stopped:
		st.Retried++
		j.due = d.now().Add(d.delay << min(j.attempt, 16))
		j.attempt++
		d.seq++
		j.seq = d.seq
		heap.Push(&d.h, j)
		d.poke()
	default:
		st.Failed++
		st.Pending--
	}
}

func (d *dispatcher) send(j *job) bool {
	ctx, cancel := context.WithTimeout(d.ctx, d.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.url, bytes.NewReader(j.body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "viberq-dtsim")
	resp, err := d.client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode <= 299
}

// clear forgets every waiting job (Reset); posts in flight finish.
func (d *dispatcher) clear() {
	d.mu.Lock()
	for _, j := range d.h {
		d.stats[j.kind].Pending--
	}
	d.h = nil
	for k := range d.stats {
		p := d.stats[k].Pending
		d.stats[k] = PushStats{Pending: p}
	}
	d.mu.Unlock()
}

func (d *dispatcher) snapshot() (status, reply PushStats) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats[jobStatus], d.stats[jobReply]
}

func (d *dispatcher) stop() {
	d.mu.Lock()
	d.stopped = true
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
	if d.ownTr != nil {
		d.ownTr.CloseIdleConnections()
	}
}
