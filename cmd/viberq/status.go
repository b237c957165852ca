package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/viberq/viberq/cmd/viberq/internal/app"
	"github.com/viberq/viberq/tasks"
)

func runStatus(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("status", stdout, "ID [--json]")
	asJSON := fs.Bool("json", false, "print the record as JSON")
	// Accept the flag after the ID too (viberq status ID --json).
	var id string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		id, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rest := fs.Args()
	if id == "" && len(rest) > 0 {
		id, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		return usagef("unexpected argument %q: viberq status ID [--json]", rest[0])
	}
	if id == "" {
		return usagef("a message ID is required: viberq status ID [--json]")
	}
	cfg, rdb, err := connect(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	rec, err := app.NewStore(rdb, cfg).Get(ctx, id)
	if errors.Is(err, tasks.ErrNotFound) {
		return fmt.Errorf("message %q not found (records are kept %s)", id, cfg.Tasks.RecordRetention)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rec)
	}
	printRecord(stdout, rec)
	return nil
}

// printRecord writes a record as an aligned two-column table.
func printRecord(w io.Writer, r tasks.Record) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	opt := func(k string, v any, ok bool) {
		if ok {
			row(k, v)
		} else {
			row(k, "-")
		}
	}
	ts := func(k string, t time.Time) { opt(k, t.Format(time.RFC3339), !t.IsZero()) }
	row("id", r.ID)
	row("state", r.State)
	opt("channel", r.Channel, r.Channel != "")
	row("to", r.DestMasked)
	row("queue", r.Queue)
	opt("provider_message_id", r.ProviderMessageID, r.ProviderMessageID != 0)
	if r.ViberStatus != nil {
		row("viber_status", fmt.Sprintf("%d (%s)", int(*r.ViberStatus), *r.ViberStatus))
	} else {
		row("viber_status", "-")
	}
	opt("sms_message_id", derefOr(r.SMSMessageID), r.SMSMessageID != nil)
	if r.SMSStatus != nil {
		row("sms_status", fmt.Sprintf("%d (%s)", int(*r.SMSStatus), *r.SMSStatus))
	} else {
		row("sms_status", "-")
	}
	row("attempts", r.Attempts)
	row("polls", r.Polls)
	opt("error", r.Error, r.Error != "")
	ts("created_at", r.CreatedAt)
	ts("sent_at", r.SentAt)
	ts("accepted_at", r.AcceptedAt)
	ts("final_at", r.FinalAt)
	ts("expires_at", r.ExpiresAt)
	tw.Flush()
}

func derefOr[T any](p *T) any {
	if p == nil {
		return "-"
	}
	return *p
}
