package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/hibiken/asynq"

	"github.com/viberq/viberq/tasks"
)

// allQueues are viberq's queues, the send queues first.
var allQueues = []string{tasks.QueueCritical, tasks.QueueDefault, tasks.QueueStatus}

// sendQueues are the queues a 402 or 401 pauses, and `viberq resume` unpauses.
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
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	rdb, err := newRedis(ctx, cfg.Redis)
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

// queueRows reads the state of viberq's queues; a queue that never held a task shows
// as empty.
func queueRows(insp *asynq.Inspector) ([]queueRow, error) {
	rows := make([]queueRow, 0, len(allQueues))
	for _, q := range allQueues {
		info, err := insp.GetQueueInfo(q)
		if errors.Is(err, asynq.ErrQueueNotFound) {
			rows = append(rows, queueRow{Queue: q})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", q, err)
		}
		rows = append(rows, queueRow{Queue: q, Paused: info.Paused, Size: info.Size, Pending: info.Pending,
			Active: info.Active, Scheduled: info.Scheduled, Retry: info.Retry, Archived: info.Archived, Completed: info.Completed})
	}
	return rows, nil
}

func runResume(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("resume", stdout, "[--rerun-archived]")
	rerun := fs.Bool("rerun-archived", false, "also re-run the archived send tasks (e.g. the ones dropped on a 402, after a top-up)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	rdb, err := newRedis(ctx, cfg.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	for _, q := range sendQueues {
		info, err := insp.GetQueueInfo(q)
		if errors.Is(err, asynq.ErrQueueNotFound) {
			fmt.Fprintf(stdout, "queue %s: empty\n", q)
			continue
		}
		if err != nil {
			return fmt.Errorf("queue %s: %w", q, err)
		}
		if info.Paused {
			if err := insp.UnpauseQueue(q); err != nil {
				return fmt.Errorf("unpause %s: %w", q, err)
			}
		}
		fmt.Fprintf(stdout, "queue %s: running (was paused: %v)\n", q, info.Paused)
		if *rerun {
			n, err := insp.RunAllArchivedTasks(q)
			if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
				return fmt.Errorf("re-run archived tasks of %s: %w", q, err)
			}
			fmt.Fprintf(stdout, "queue %s: %d archived tasks re-run\n", q, n)
		}
	}
	return nil
}
