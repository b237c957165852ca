package main

import (
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

// sendFlags are the message flags of `viberq send` (README, Commands); the CSV columns of
// --csv carry the same names.
type sendFlags struct {
	id, from, to, text, smsText, image, caption, action, callback string
	typ, source                                                   int
	ttl                                                           time.Duration
	sendAt                                                        time.Time
	batch, webhookURL, webhookEvents                              string
}

func (f sendFlags) request() tasks.EnqueueRequest {
	return tasks.EnqueueRequest{
		ID: f.id,
		Message: provider.Message{
			SourceAddr:      f.from,
			DestinationAddr: f.to,
			MessageType:     provider.MessageType(f.typ),
			Text:            f.text,
			TextSMS:         f.smsText,
			Image:           f.image,
			ButtonCaption:   f.caption,
			ButtonAction:    f.action,
			SourceType:      provider.SourceType(f.source),
			CallbackURL:     f.callback,
		},
		TTL:           f.ttl,
		SendAt:        f.sendAt,
		BatchID:       f.batch,
		WebhookURL:    f.webhookURL,
		WebhookEvents: f.webhookEvents,
	}
}

// parseSendAt reads --send-at and the send_at column: RFC 3339 ("2026-12-24T10:00:00+02:00").
func parseSendAt(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("must be an RFC 3339 time like 2026-12-24T10:00:00Z, got %q", provider.MaskPhones(v))
	}
	return t, nil
}

// csvFlags are the flags send --csv takes: its own, and the row defaults.
var csvFlags = map[string]bool{"csv": true, "out": true, "json": true, "batch": true, "send-at": true, "webhook-url": true, "webhook-events": true}

func runSend(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("send", stdout, "--from NAME --to PHONE --text TEXT [flags] | --csv FILE")
	var f sendFlags
	fs.StringVar(&f.id, "id", "", "idempotency key (message ID); generated when empty")
	fs.StringVar(&f.from, "from", "", "source_addr: the Viber sender name (≤ 20 characters)")
	fs.StringVar(&f.to, "to", "", "destination_addr: digits, international format, no '+'")
	fs.StringVar(&f.text, "text", "", "text (≤ 1000 characters)")
	fs.IntVar(&f.typ, "type", int(provider.TypeText), "message_type: 106 text, 108 text+image+button, 206/208 two-way")
	fs.IntVar(&f.source, "source", int(provider.SourceTransactional), "source_type: 1 promotional, 2 transactional")
	fs.StringVar(&f.smsText, "sms-text", "", "text_sms: SMS fallback text, one segment (106 transactional only)")
	fs.StringVar(&f.image, "image", "", "image URL (.jpg, .jpeg, .png) for 108/208")
	fs.StringVar(&f.caption, "button-caption", "", "button caption (≤ 30 characters) for 108/208")
	fs.StringVar(&f.action, "button-action", "", "button URL for 108/208")
	fs.StringVar(&f.callback, "callback-url", "", "status callback URL (default VIBERQ_CALLBACK_URL)")
	fs.DurationVar(&f.ttl, "ttl", 0, "time to live (default VIBERQ_SMS_TTL with --sms-text, else VIBERQ_DEFAULT_TTL)")
	sendAt := fs.String("send-at", "", "send no earlier than this RFC 3339 time (at most 7 days ahead; the TTL counts from it)")
	fs.StringVar(&f.batch, "batch", "", "batch (campaign) ID: follow and cancel the messages together (viberq batch)")
	fs.StringVar(&f.webhookURL, "webhook-url", "", "status webhook URL of this message (default VIBERQ_WEBHOOK_URL)")
	fs.StringVar(&f.webhookEvents, "webhook-events", "", "final|all: which state changes the webhook gets (default VIBERQ_WEBHOOK_EVENTS)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	csvFile := fs.String("csv", "", "enqueue every row of this CSV file (header: id,from,to,text,type,source,sms_text,image,button_caption,button_action,callback_url,ttl,send_at,batch_id,webhook_url,webhook_events); - for stdin; --batch and --send-at apply to rows without their own")
	outFile := fs.String("out", "", "with --csv: write each row's line, message ID, result (accepted|duplicate|refused) and reason to this file, as CSV, or as JSON lines when it ends in .jsonl; - for stdout")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	at, err := parseSendAt(*sendAt)
	if err != nil {
		return usagef("--send-at: %v", err)
	}
	f.sendAt = at
	if *outFile != "" && *csvFile == "" {
		return usagef("--out needs --csv")
	}
	if *csvFile != "" {
		// A message flag beside --csv would be silently dropped (a campaign sent as
		// transactional, say): refused, naming it.
		var dropped []string
		fs.Visit(func(fl *flag.Flag) {
			if !csvFlags[fl.Name] {
				dropped = append(dropped, "--"+fl.Name)
			}
		})
		if len(dropped) > 0 {
			return usagef("%s: with --csv, a message's fields are columns of the file (only --batch, --send-at, --webhook-url and --webhook-events apply to rows without their own)", strings.Join(dropped, ", "))
		}
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
	if *csvFile != "" {
		return sendCSV(ctx, p.enqueuer, csvOptions{path: *csvFile, out: *outFile, asJSON: *asJSON, defaults: f}, stdout, os.Stderr)
	}
	res, err := p.enqueuer.Enqueue(ctx, f.request())
	if err != nil {
		return enqueueError(err)
	}
	if res.Duplicate {
		// stdout stays the bare ID (scripts read it); the note goes to stderr.
		fmt.Fprintf(os.Stderr, "viberq send: %s is a duplicate: that ID was already enqueued (now %s), nothing new was queued\n", res.ID, res.State)
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(resultJSON(res))
	}
	fmt.Fprintln(stdout, res.ID)
	return nil
}

type enqueueResultJSON struct {
	ID        string    `json:"id"`
	Duplicate bool      `json:"duplicate"`
	Queue     string    `json:"queue"`
	State     string    `json:"state"`
	ExpiresAt time.Time `json:"expires_at"`
	SendAt    time.Time `json:"send_at,omitzero"`
}

func resultJSON(r tasks.EnqueueResult) enqueueResultJSON {
	return enqueueResultJSON{ID: r.ID, Duplicate: r.Duplicate, Queue: r.Queue, State: string(r.State), ExpiresAt: r.ExpiresAt, SendAt: r.SendAt}
}

// enqueueError turns a validation error into a usage error naming every bad field
// with its rule on one line, "field: rule" joined by "; " as config errors and the
// CSV reasons are: README promises one line per error, and stderr piped into a log
// must not split one refusal over several entries.
func enqueueError(err error) error {
	var ve *provider.ValidationError
	if errors.As(err, &ve) {
		reasons := make([]string, len(ve.Fields))
		for i, fe := range ve.Fields {
			reasons[i] = fe.Error()
		}
		return usagef("message refused: %s", strings.Join(reasons, "; "))
	}
	return err
}

// csvColumns maps accepted header names (the flag names and the vendor's field
// names) to the setter of a column.
var csvColumns = map[string]func(f *sendFlags, v string) error{
	"id":               func(f *sendFlags, v string) error { f.id = v; return nil },
	"from":             func(f *sendFlags, v string) error { f.from = v; return nil },
	"source_addr":      func(f *sendFlags, v string) error { f.from = v; return nil },
	"to":               func(f *sendFlags, v string) error { f.to = v; return nil },
	"destination_addr": func(f *sendFlags, v string) error { f.to = v; return nil },
	"text":             func(f *sendFlags, v string) error { f.text = v; return nil },
	"sms_text":         func(f *sendFlags, v string) error { f.smsText = v; return nil },
	"text_sms":         func(f *sendFlags, v string) error { f.smsText = v; return nil },
	"image":            func(f *sendFlags, v string) error { f.image = v; return nil },
	"button_caption":   func(f *sendFlags, v string) error { f.caption = v; return nil },
	"button_action":    func(f *sendFlags, v string) error { f.action = v; return nil },
	"callback_url":     func(f *sendFlags, v string) error { f.callback = v; return nil },
	"batch_id":         func(f *sendFlags, v string) error { f.batch = cmp.Or(v, f.batch); return nil },
	"batch":            func(f *sendFlags, v string) error { f.batch = cmp.Or(v, f.batch); return nil },
	"webhook_url":      func(f *sendFlags, v string) error { f.webhookURL = cmp.Or(v, f.webhookURL); return nil },
	"webhook_events":   func(f *sendFlags, v string) error { f.webhookEvents = cmp.Or(v, f.webhookEvents); return nil },
	"send_at": func(f *sendFlags, v string) error {
		t, err := parseSendAt(v)
		if err != nil {
			return fmt.Errorf("send_at: %w", err)
		}
		if !t.IsZero() {
			f.sendAt = t
		}
		return nil
	},
	"type":         intColumn("type", func(f *sendFlags) *int { return &f.typ }),
	"message_type": intColumn("message_type", func(f *sendFlags) *int { return &f.typ }),
	"source":       intColumn("source", func(f *sendFlags) *int { return &f.source }),
	"source_type":  intColumn("source_type", func(f *sendFlags) *int { return &f.source }),
	"ttl": func(f *sendFlags, v string) error {
		if v == "" {
			return nil
		}
		// Read as the API and the outbox read it (seconds or a Go duration, 0 refused).
		d, rule := tasks.ParseTTL(v)
		if rule != "" {
			return fmt.Errorf("ttl: %s, got %q", rule, provider.MaskPhones(v))
		}
		f.ttl = d
		return nil
	},
}

func intColumn(name string, field func(*sendFlags) *int) func(*sendFlags, string) error {
	return func(f *sendFlags, v string) error {
		if v == "" {
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%s: must be an integer, got %q", name, provider.MaskPhones(v))
		}
		*field(f) = n
		return nil
	}
}

// csvSummary is the outcome of a bulk send.
type csvSummary struct {
	Rows       int         `json:"rows"`
	Enqueued   int         `json:"enqueued"`
	Duplicates int         `json:"duplicates"`
	Refused    int         `json:"refused"`
	Problems   []csvReject `json:"problems,omitempty"`
}

type csvReject struct {
	Line   int    `json:"line"`
	ID     string `json:"id,omitempty"`
	Reason string `json:"reason"`
}

// csvOptions are the --csv flags: the file, the per-row output (--out), the summary
// format and the flags that apply to rows without their own column (--batch,
// --send-at, --webhook-url, --webhook-events).
type csvOptions struct {
	path, out string
	asJSON    bool
	defaults  sendFlags
}

// csvRow is one data row waiting for its answer.
type csvRow struct {
	line int
	f    sendFlags
	errs []string
}

// csvOutcome is one line of --out.
type csvOutcome struct {
	Line   int    `json:"line"`
	ID     string `json:"id"`
	Result string `json:"result"` // accepted, duplicate, refused
	Reason string `json:"reason,omitempty"`
}

// sendCSV enqueues every row of a CSV file, tasks.BatchPipeline rows per
// Enqueuer.EnqueueBatch (pipelined round trips). A bad row is reported with its line
// and every bad field and does not stop the others: rows already enqueued stay
// enqueued. With --out, every row's message ID (generated ones included) and result
// are written, so that rows without an id can be looked up afterwards. It fails
// (exit 1) when any row was refused, after processing all of them.
func sendCSV(ctx context.Context, enq *tasks.Enqueuer, o csvOptions, stdout, progress io.Writer) error {
	path := o.path
	var in io.Reader = os.Stdin
	total := -1
	if path != "-" {
		fh, err := os.Open(path)
		if err != nil {
			return err
		}
		defer fh.Close()
		in = fh
		if n, err := countLines(path); err == nil {
			total = n - 1
		}
	}
	r := csv.NewReader(in)
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return fmt.Errorf("csv %s: reading the header: %w", path, err)
	}
	if len(header) > 0 { // a spreadsheet's UTF-8 byte order mark is not part of the name
		header[0] = strings.TrimPrefix(header[0], "\ufeff")
	}
	setters := make([]func(*sendFlags, string) error, len(header))
	for i, h := range header {
		set, ok := csvColumns[strings.TrimSpace(strings.ToLower(h))]
		if !ok {
			return usagef("csv %s: unknown column %q (known: id, from, to, text, type, source, sms_text, image, button_caption, button_action, callback_url, ttl, send_at, batch_id, webhook_url, webhook_events)", path, provider.MaskPhones(h))
		}
		setters[i] = set
	}
	summary, results := stdout, io.Writer(nil)
	if o.out != "" {
		w, closeOut, err := openOut(o.out, stdout)
		if err != nil {
			return err
		}
		defer closeOut()
		results = w
		if o.out == "-" {
			summary = progress
		}
	}
	rw := newOutcomeWriter(results, strings.HasSuffix(o.out, ".jsonl") || strings.HasSuffix(o.out, ".ndjson"))
	bar := progressbar.NewOptions(total,
		progressbar.OptionSetWriter(progress),
		progressbar.OptionSetDescription("enqueue"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("msg"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	var (
		sum     csvSummary
		pending []csvRow
	)
	refuse := func(line int, id, reason string) {
		sum.Refused++
		sum.Problems = append(sum.Problems, csvReject{Line: line, ID: id, Reason: reason})
		rw.write(csvOutcome{Line: line, ID: id, Result: "refused", Reason: reason})
	}
	// flush enqueues the pending rows in one EnqueueBatch; a Redis error stops the run
	// (rows answered before it are enqueued and written to --out).
	flush := func() error {
		defer func() { pending = pending[:0] }()
		var reqs []tasks.EnqueueRequest
		for _, row := range pending {
			if len(row.errs) == 0 {
				reqs = append(reqs, row.f.request())
			}
		}
		var (
			res  []tasks.BatchResult
			berr error
		)
		if len(reqs) > 0 {
			res, berr = enq.EnqueueBatch(ctx, reqs)
		}
		k := 0
		for _, row := range pending { // answers in row order
			if len(row.errs) > 0 {
				refuse(row.line, row.f.id, strings.Join(row.errs, "; "))
				continue
			}
			br := res[k]
			k++
			switch {
			case br.Err == nil && br.Duplicate:
				sum.Duplicates++
				rw.write(csvOutcome{Line: row.line, ID: br.ID, Result: "duplicate"})
			case br.Err == nil:
				sum.Enqueued++
				rw.write(csvOutcome{Line: row.line, ID: br.ID, Result: "accepted"})
			case br.Refused():
				var ve *provider.ValidationError
				var reasons []string
				if errors.As(br.Err, &ve) {
					for _, fe := range ve.Fields {
						reasons = append(reasons, fe.Field+": "+fe.Rule)
					}
				} else {
					reasons = append(reasons, "id: "+tasks.ConflictText(br.Err))
				}
				refuse(row.line, cmp.Or(br.ID, row.f.id), strings.Join(reasons, "; "))
			default:
				return fmt.Errorf("csv %s line %d: %w (rows answered before it are enqueued)", path, row.line, cmp.Or(berr, br.Err))
			}
		}
		return berr
	}
	for {
		row, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				sum.Rows++
				pending = append(pending, csvRow{line: pe.Line, errs: []string{pe.Err.Error()}})
				_ = bar.Add(1)
				continue
			}
			return err
		}
		// After the error check: FieldPos panics when the read failed (an unterminated
		// quote leaves no fields).
		line, _ := r.FieldPos(0)
		if ctx.Err() != nil {
			break
		}
		sum.Rows++
		f := sendFlags{typ: int(provider.TypeText), source: int(provider.SourceTransactional),
			sendAt: o.defaults.sendAt, batch: o.defaults.batch,
			webhookURL: o.defaults.webhookURL, webhookEvents: o.defaults.webhookEvents}
		var rowErrs []string
		for i, v := range row {
			if i >= len(setters) {
				rowErrs = append(rowErrs, fmt.Sprintf("column %d: no header for it", i+1))
				continue
			}
			if err := setters[i](&f, strings.TrimSpace(v)); err != nil {
				rowErrs = append(rowErrs, err.Error())
			}
		}
		pending = append(pending, csvRow{line: line, f: f, errs: rowErrs})
		if len(pending) >= tasks.BatchPipeline {
			if err := flush(); err != nil {
				_ = bar.Finish()
				return err
			}
		}
		_ = bar.Add(1)
	}
	if err := flush(); err != nil {
		_ = bar.Finish()
		return err
	}
	_ = bar.Finish()
	if err := rw.err; err != nil {
		return fmt.Errorf("--out %s: %w", o.out, err)
	}
	if o.asJSON {
		if err := json.NewEncoder(summary).Encode(sum); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(summary, "rows %d: enqueued %d, duplicates %d, refused %d\n", sum.Rows, sum.Enqueued, sum.Duplicates, sum.Refused)
		for _, p := range sum.Problems {
			fmt.Fprintf(summary, "  line %d: %s\n", p.Line, p.Reason)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted after %d rows (the rows above are enqueued): %w", sum.Rows, err)
	}
	if sum.Refused > 0 {
		return fmt.Errorf("%d of %d rows refused", sum.Refused, sum.Rows)
	}
	return nil
}

// openOut opens --out: "-" is stdout.
func openOut(path string, stdout io.Writer) (io.Writer, func(), error) {
	if path == "-" {
		return stdout, func() {}, nil
	}
	fh, err := os.Create(path)
	if err != nil {
		return nil, nil, fmt.Errorf("--out: %w", err)
	}
	return fh, func() { _ = fh.Close() }, nil
}

// outcomeWriter writes --out as CSV (line,id,result,reason) or JSON lines; a nil
// writer writes nothing. The first write error is kept in err.
type outcomeWriter struct {
	csv  *csv.Writer
	json *json.Encoder
	err  error
}

func newOutcomeWriter(w io.Writer, jsonLines bool) *outcomeWriter {
	ow := &outcomeWriter{}
	switch {
	case w == nil:
	case jsonLines:
		ow.json = json.NewEncoder(w)
	default:
		ow.csv = csv.NewWriter(w)
		ow.err = ow.csv.Write([]string{"line", "id", "result", "reason"})
	}
	return ow
}

func (ow *outcomeWriter) write(o csvOutcome) {
	if ow.err != nil {
		return
	}
	switch {
	case ow.json != nil:
		ow.err = ow.json.Encode(o)
	case ow.csv != nil:
		ow.err = ow.csv.Write([]string{strconv.Itoa(o.Line), o.ID, o.Result, o.Reason})
		ow.csv.Flush()
		if ow.err == nil {
			ow.err = ow.csv.Error()
		}
	}
}

func countLines(path string) (int, error) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	r := csv.NewReader(fh)
	r.FieldsPerRecord = -1
	n := 0
	for {
		_, err := r.Read()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		n++
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return n, err
			}
		}
	}
}
