package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/viberq/viberq/tasks"
)

// runBatch is `viberq batch status|cancel ID [--json]`: the counts of a batch by state
// and channel, or cancel every message of it not yet sent.
func runBatch(ctx context.Context, args []string, stdout io.Writer) error {
	const synopsis = "status|cancel ID [--json]"
	if len(args) == 0 || (args[0] != "status" && args[0] != "cancel") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fs := newFlagSet("batch", stdout, synopsis)
			return parseFlags(fs, args)
		}
		return usagef("viberq batch %s", synopsis)
	}
	verb := args[0]
	id, asJSON, err := idAndJSON("batch "+verb, stdout, args[1:], "a batch ID is required: viberq batch "+verb+" ID [--json]")
	if err != nil {
		return err
	}
	cfg, err := clientConfig()
	if err != nil {
		return err
	}
	p, err := newProducer(ctx, cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	if verb == "status" {
		c, err := p.store.BatchCounts(ctx, id)
		if errors.Is(err, tasks.ErrNotFound) {
			return fmt.Errorf("batch %q not found (no message, or older than %s)", id, cfg.Tasks.RecordRetention)
		}
		if err != nil {
			return err
		}
		if asJSON {
			return json.NewEncoder(stdout).Encode(c)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "batch\t%s\ntotal\t%d\n", c.BatchID, c.Total)
		for _, st := range tasks.States {
			if n := c.States[st]; n > 0 {
				fmt.Fprintf(tw, "%s\t%d\n", st, n)
			}
		}
		fmt.Fprintf(tw, "delivered by viber\t%d\ndelivered by sms\t%d\n", c.Delivered[tasks.ChannelViber], c.Delivered[tasks.ChannelSMS])
		return tw.Flush()
	}
	res, err := p.enqueuer.CancelBatch(ctx, id)
	if errors.Is(err, tasks.ErrNotFound) {
		return fmt.Errorf("batch %q not found (no message, or older than %s)", id, cfg.Tasks.RecordRetention)
	}
	if err != nil {
		return fmt.Errorf("cancel batch %s (%d cancelled before the error; run it again): %w", id, res.Cancelled, err)
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(struct {
			BatchID string `json:"batch_id"`
			tasks.CancelResult
		}{id, res})
	}
	fmt.Fprintf(stdout, "batch %s: cancelled %d, not cancelled %d (already sending, sent or final)\n", id, res.Cancelled, res.NotCancelled)
	return nil
}

// runCancel is `viberq cancel ID [--json]`: stop one message that has not been sent.
func runCancel(ctx context.Context, args []string, stdout io.Writer) error {
	id, asJSON, err := idAndJSON("cancel", stdout, args, "a message ID is required: viberq cancel ID [--json]")
	if err != nil {
		return err
	}
	cfg, err := clientConfig()
	if err != nil {
		return err
	}
	p, err := newProducer(ctx, cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	ok, state, err := p.enqueuer.Cancel(ctx, id)
	if errors.Is(err, tasks.ErrNotFound) {
		return fmt.Errorf("message %q not found (records are kept %s)", id, cfg.Tasks.RecordRetention)
	}
	if err != nil {
		return err
	}
	if ok {
		state = tasks.StateCancelled
	}
	if asJSON {
		if err := json.NewEncoder(stdout).Encode(map[string]any{"id": id, "cancelled": ok, "state": state}); err != nil {
			return err
		}
	}
	if !ok {
		// Exit 1 with --json too: the answer is on stdout, the failure in the code.
		return fmt.Errorf("message %s not cancelled: it is %s (a message being sent or sent cannot be cancelled)", id, state)
	}
	if asJSON {
		return nil
	}
	fmt.Fprintf(stdout, "%s cancelled\n", id)
	return nil
}

// idAndJSON reads "ID [--json]" (the flag before or after the ID).
func idAndJSON(name string, stdout io.Writer, args []string, missing string) (string, bool, error) {
	fs := newFlagSet(name, stdout, "ID [--json]")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	var id string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		id, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return "", false, err
	}
	rest := fs.Args()
	if id == "" && len(rest) > 0 {
		id, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		return "", false, usagef("unexpected argument %q", rest[0])
	}
	if id == "" {
		return "", false, usagef("%s", missing)
	}
	return id, *asJSON, nil
}
