package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"

	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/worker"
)

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
	rows, err := queueRows(asynq.NewInspectorFromRedisClient(rdb))
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

// queueRows reads the state of viberq's queues (worker.QueueStates: a queue that never
// held a task shows as empty and not paused).
func queueRows(insp *asynq.Inspector) ([]queueRow, error) {
	states, err := worker.QueueStates(insp)
	if err != nil {
		return nil, err
	}
	rows := make([]queueRow, 0, len(states))
	for _, st := range states {
		rows = append(rows, queueRow{Queue: st.Queue, Paused: st.Paused, Size: st.Size, Pending: st.Pending,
			Active: st.Active, Scheduled: st.Scheduled, Retry: st.Retry, Archived: st.Archived, Completed: st.Completed})
	}
	return rows, nil
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
	// `viberq resume` also lifts a 429's pause of the global buckets.
	cleared, err := worker.ClearLimiterPauses(ctx, rdb, tasks.DefaultPrefix)
	if err != nil {
		return err
	}
	for _, b := range []string{worker.BucketSend, worker.BucketStatus} {
		if left, ok := cleared[b]; ok {
			fmt.Fprintf(stdout, "limiter %s: running (was paused by a 429 for %s more)\n", b, left.Round(time.Second))
		}
	}
	resumed, err := worker.ResumeSendQueues(insp)
	if err != nil {
		return err
	}
	archived := map[string]int{}
	if *rerun {
		states, err := worker.QueueStates(insp)
		if err != nil {
			return err
		}
		for _, st := range states {
			archived[st.Queue] = st.Archived
		}
	}
	for _, r := range resumed {
		q := r.Queue
		fmt.Fprintf(stdout, "queue %s: running (was paused: %v)\n", q, r.WasPaused)
		if *rerun {
			n := 0
			if archived[q] > 0 {
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
