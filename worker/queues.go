package worker

import (
	"errors"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/viberq/viberq/tasks"
)

// Queues are viberq's queues, the send queues first.
var Queues = []string{tasks.QueueCritical, tasks.QueueDefault, tasks.QueueStatus}

// SendQueues are the queues a 402 or a 401 pauses (polls go on: they cost nothing),
// and ResumeSendQueues unpauses.
var SendQueues = []string{tasks.QueueCritical, tasks.QueueDefault}

// Pausing is asynq's own queue pause, set and read through its Inspector only: it is
// shared through Redis, so every worker process stops taking sends, and the Asynq UI
// (/monitoring) shows and lifts it too.

// PauseSendQueues pauses the send queues that are not paused yet and returns those it
// paused. A queue paused meanwhile by another process counts as paused.
func PauseSendQueues(insp *asynq.Inspector) ([]string, error) {
	var (
		paused []string
		errs   []error
	)
	for _, q := range SendQueues {
		info, err := insp.GetQueueInfo(q)
		if err == nil && info.Paused {
			continue
		}
		if err := insp.PauseQueue(q); err != nil {
			if info2, err2 := insp.GetQueueInfo(q); err2 == nil && info2.Paused {
				continue // paused meanwhile by another pod
			}
			errs = append(errs, fmt.Errorf("pause queue %s: %w", q, err))
			continue
		}
		paused = append(paused, q)
	}
	return paused, errors.Join(errs...)
}

// QueueState is what asynq's Inspector reports of one queue. Known is false for a
// queue that never held a task: asynq keeps no statistics for it and its Inspector
// cannot report its pause, so it shows as empty and not paused (ResumeSendQueues
// unpauses it all the same, and once a task is enqueued its pause shows).
type QueueState struct {
	Queue string
	Known bool
	asynq.QueueInfo
}

// QueueStates reads the state of viberq's Queues.
func QueueStates(insp *asynq.Inspector) ([]QueueState, error) {
	names, err := insp.Queues()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	known := make(map[string]bool, len(names))
	for _, n := range names {
		known[n] = true
	}
	out := make([]QueueState, 0, len(Queues))
	for _, q := range Queues {
		st := QueueState{Queue: q, Known: known[q]}
		if st.Known {
			info, err := insp.GetQueueInfo(q)
			if err != nil {
				return nil, fmt.Errorf("queue %s: %w", q, err)
			}
			st.QueueInfo = *info
		}
		out = append(out, st)
	}
	return out, nil
}

// Resumed is the outcome of ResumeSendQueues for one send queue.
type Resumed struct {
	Queue     string
	WasPaused bool
}

// ResumeSendQueues unpauses the send queues (after a balance top-up or a key fix) and
// reports which were paused. asynq's UnpauseQueue answers an error for a queue that
// is not paused; that error is told from a Redis failure by asking the Inspector
// again (a concurrent resume that won counts as not paused here: the queue runs).
func ResumeSendQueues(insp *asynq.Inspector) ([]Resumed, error) {
	out := make([]Resumed, 0, len(SendQueues))
	for _, q := range SendQueues {
		if err := insp.UnpauseQueue(q); err != nil {
			// Not paused, or Redis failed: Redis answering the same question again
			// tells the two apart.
			if _, lerr := insp.Queues(); lerr != nil {
				return out, fmt.Errorf("unpause %s: %w", q, err)
			}
			if info, ierr := insp.GetQueueInfo(q); ierr == nil && info.Paused {
				return out, fmt.Errorf("unpause %s: %w", q, err)
			}
			out = append(out, Resumed{Queue: q})
			continue
		}
		out = append(out, Resumed{Queue: q, WasPaused: true})
	}
	return out, nil
}
