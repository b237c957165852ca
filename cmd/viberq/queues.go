package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/worker"
)

// allQueues are viberq's queues, the send queues first.
var allQueues = []string{tasks.QueueCritical, tasks.QueueDefault, tasks.QueueStatus}

// sendQueues are the queues a 402 or 401 pauses, and `viberq resume` unpauses (it
// also lifts a 429's pause of the global buckets).
var sendQueues = []string{tasks.QueueCritical, tasks.QueueDefault}

type queueRow struct {
	Queue     string `json:"queue"`
	Paused    bool   `json:"paused"`
	Size      int    `json:"size"`
	Pending   int    `json:"pending"`
	Active    int    `json:"active"`
	Scheduled int    `json:"scheduled"`
	Retry     int    `json:"retry"`
	Archived  int    `json:"archived"`
	Completed int    `json:"completed"`
}

func runQueues(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("queues", stdout, "[--json]")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	_, rdb, err := connect(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	rows, err := queueRows(ctx, rdb, asynq.NewInspectorFromRedisClient(rdb))
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "queue\tpaused\tsize\tpending\tactive\tscheduled\tretry\tarchived\tcompleted\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%v\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", r.Queue, r.Paused, r.Size, r.Pending, r.Active, r.Scheduled, r.Retry, r.Archived, r.Completed)
	}
	return tw.Flush()
}

// queueRows reads the state of viberq's queues. A queue that never held a task is not
// in asynq's queue set, and the Inspector answers "queue does not exist" for it (an
// error that is not asynq.ErrQueueNotFound); it shows as empty, paused when its
// paused key is set (a worker pauses both send queues on a 402, used or not).
func queueRows(ctx context.Context, rdb redis.UniversalClient, insp *asynq.Inspector) ([]queueRow, error) {
	known, err := knownQueues(insp)
	if err != nil {
		return nil, err
	}
	rows := make([]queueRow, 0, len(allQueues))
	for _, q := range allQueues {
		if !known[q] {
			paused, err := pausedKeySet(ctx, rdb, q)
			if err != nil {
				return nil, err
			}
			rows = append(rows, queueRow{Queue: q, Paused: paused})
			continue
		}
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", q, err)
		}
		rows = append(rows, queueRow{Queue: q, Paused: info.Paused, Size: info.Size, Pending: info.Pending,
			Active: info.Active, Scheduled: info.Scheduled, Retry: info.Retry, Archived: info.Archived, Completed: info.Completed})
	}
	return rows, nil
}

// knownQueues is asynq's set of queues that have held a task.
func knownQueues(insp *asynq.Inspector) (map[string]bool, error) {
	names, err := insp.Queues()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	known := make(map[string]bool, len(names))
	for _, n := range names {
		known[n] = true
	}
	return known, nil
}

// pausedKeySet reports whether queue q is paused, read from asynq's own key
// (base.PausedKey in asynq v0.26: "asynq:{q}:paused", what Inspector.PauseQueue sets
// and UnpauseQueue deletes), for queues the Inspector cannot report on.
func pausedKeySet(ctx context.Context, rdb redis.UniversalClient, q string) (bool, error) {
	n, err := rdb.Exists(ctx, "asynq:{"+q+"}:paused").Result()
	if err != nil {
		return false, fmt.Errorf("queue %s: %w", q, err)
	}
	return n > 0, nil
}

func runResume(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("resume", stdout, "[--rerun-archived]")
	rerun := fs.Bool("rerun-archived", false, "also re-run the archived send tasks (e.g. the ones dropped on a 402, after a top-up)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	_, rdb, err := connect(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	cleared, err := worker.ClearLimiterPauses(ctx, rdb, tasks.DefaultPrefix)
	if err != nil {
		return err
	}
	for _, b := range []string{worker.BucketSend, worker.BucketStatus} {
		if left, ok := cleared[b]; ok {
			fmt.Fprintf(stdout, "limiter %s: running (was paused by a 429 for %s more)\n", b, left.Round(time.Second))
		}
	}
	rows, err := queueRows(ctx, rdb, insp)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if !slices.Contains(sendQueues, r.Queue) {
			continue
		}
		q := r.Queue
		if r.Paused {
			// A concurrent resume may have won: then the queue is running all the same.
			if err := insp.UnpauseQueue(q); err != nil {
				if still, perr := pausedKeySet(ctx, rdb, q); perr != nil || still {
					return fmt.Errorf("unpause %s: %w", q, err)
				}
			}
		}
		fmt.Fprintf(stdout, "queue %s: running (was paused: %v)\n", q, r.Paused)
		if *rerun {
			n := 0
			if r.Archived > 0 {
				n, err = insp.RunAllArchivedTasks(q)
				if err != nil {
					return fmt.Errorf("re-run archived tasks of %s: %w", q, err)
				}
			}
			fmt.Fprintf(stdout, "queue %s: %d archived tasks re-run\n", q, n)
		}
	}
	return nil
}
