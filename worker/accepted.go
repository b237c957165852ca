package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

// What the provider accepted is never forgotten (README, "Exactly once, as far as it
// can be"): once send-viber returned a message_id, the worker writes it to the record
// (sending → accepted) retrying until Redis answers or the task's time runs out; if
// Redis is still unreachable then, the process holds the ID and keeps retrying in the
// background (heldAccepts) while the task is handed back to asynq for after
// HeldRetryDelay, so the next attempt finds the ID written and only ensures polling.
// The record stays "sending" meanwhile — not unknown — and the reconciler leaves a
// sending record alone while its send task is waiting to run again.
//
// Left out: the held ID lives in this process only. A worker killed while Redis is
// unreachable loses it (it is in the attempt's error log line, provider_msg_id), and
// the record then ends unknown, as for any crash between the request and the record.

// Retry shape of the accepted write.
const (
	acceptRetryInitial = 50 * time.Millisecond
	acceptRetryMax     = 500 * time.Millisecond
	acceptTryTimeout   = 2 * time.Second
	// HeldRetryDelay is when a task whose accepted message_id could not be written is
	// run again: the background retries (every ≤ acceptRetryMax) write the ID within a
	// second of Redis answering, long before.
	HeldRetryDelay = 30 * time.Second
)

// heldAccepts are the accepted message_ids this process could not write yet. The zero
// value is ready to use.
type heldAccepts struct {
	mu      sync.Mutex
	ids     map[string]provider.MessageID
	wg      sync.WaitGroup
	stopped chan struct{}
	once    sync.Once
}

func (h *heldAccepts) stopCh() chan struct{} {
	h.once.Do(func() { h.stopped = make(chan struct{}) })
	return h.stopped
}

// has reports whether this process holds an unwritten message_id for message id.
func (h *heldAccepts) has(id string) bool {
	_, ok := h.get(id)
	return ok
}

// get returns the unwritten message_id this process holds for message id.
func (h *heldAccepts) get(id string) (provider.MessageID, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	pid, ok := h.ids[id]
	return pid, ok
}

// add starts holding pid for id; false if it is held already.
func (h *heldAccepts) add(id string, pid provider.MessageID) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.ids[id]; ok {
		return false
	}
	if h.ids == nil {
		h.ids = map[string]provider.MessageID{}
	}
	h.ids[id] = pid
	return true
}

func (h *heldAccepts) remove(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.ids, id)
}

// stop ends the background retries after one last attempt each, waiting at most
// timeout for them.
func (h *heldAccepts) stop(timeout time.Duration) {
	close(h.stopCh())
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
	}
}

// writeAccepted moves the record of message a from sending to accepted with the
// provider's message_id, making its first poll due in the same script
// (transitionAccepted), retrying until Redis answers or until deadline. A refused
// compare-and-set (ok=false) and a missing record are answers, not retried.
func (w *Worker) writeAccepted(ctx context.Context, a tasks.SendArgs, pid provider.MessageID, deadline time.Time) (tasks.Record, bool, error) {
	wctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(acceptRetryInitial),
		backoff.WithMaxInterval(acceptRetryMax),
		backoff.WithMaxElapsedTime(0),
	)
	var (
		rec tasks.Record
		ok  bool
	)
	err := backoff.Retry(func() error {
		tctx, tcancel := context.WithTimeout(wctx, acceptTryTimeout)
		defer tcancel()
		var err error
		rec, ok, err = w.transitionAccepted(tctx, a, pid)
		if errors.Is(err, tasks.ErrNotFound) || errors.Is(err, tasks.ErrIllegalTransition) {
			return backoff.Permanent(err)
		}
		return err
	}, backoff.WithContext(b, wctx))
	return rec, ok, err
}

// acceptDeadline is how long the handler itself retries the accepted write: until
// the task's own deadline, and at least writeTimeout.
func acceptDeadline(ctx context.Context) time.Time {
	floor := time.Now().Add(writeTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.After(floor) {
		return dl
	}
	return floor
}

// holdAccepted keeps retrying, in the background, the accepted write of a message
// whose handler gave up waiting for Redis (the write makes the first poll due and
// indexes a two-way message, as in the handler). It runs until the write is answered or the worker stops
// (one last attempt, bounded by writeTimeout).
func (w *Worker) holdAccepted(a tasks.SendArgs, pid provider.MessageID) {
	if !w.held.add(a.ID, pid) {
		return
	}
	w.metrics.addHeld(1)
	stop := w.held.stopCh()
	w.held.wg.Add(1)
	go func() {
		defer w.held.wg.Done()
		defer w.metrics.addHeld(-1)
		defer w.held.remove(a.ID)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-stop:
				time.Sleep(writeTimeout) // the last attempt
				cancel()
			case <-ctx.Done():
			}
		}()
		lg := w.log.With().Str("msg_id", provider.MaskID(a.ID)).Int64("provider_msg_id", int64(pid)).Logger()
		rec, ok, err := w.writeAccepted(ctx, a, pid, time.Now().Add(w.store.Retention()))
		switch {
		case err != nil:
			lg.Error().Err(err).Msg("worker stopped holding an accepted message_id it could not write; the record will end unknown")
			return
		case !ok:
			lg.Error().Str("status", string(rec.State)).Msg("held accepted message_id written too late: the record had moved on")
			return
		}
		lg.Info().Msg("held accepted message_id written after Redis came back")
	}()
}

// errHeld is returned (as a RetryAfterError) by a send whose accepted message_id is
// held by this process.
func errHeld(id string, pid provider.MessageID, err error) error {
	return &RetryAfterError{Delay: HeldRetryDelay,
		Err: fmt.Errorf("send %s: accepted as %d; the record is not written yet (Redis unreachable), the ID is held and retried: %w", provider.MaskID(id), pid, err)}
}
