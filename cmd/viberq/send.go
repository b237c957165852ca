package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
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

// sendFlags are the message flags of `viberq send` (DESIGN §7); the CSV columns of
// --csv carry the same names.
type sendFlags struct {
	id, from, to, text, smsText, image, caption, action, callback string
	typ, source                                                   int
	ttl                                                           time.Duration
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
		TTL: f.ttl,
	}
}

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
	asJSON := fs.Bool("json", false, "print the result as JSON")
	csvFile := fs.String("csv", "", "enqueue every row of this CSV file (header: id,from,to,text,type,source,sms_text,image,button_caption,button_action,callback_url,ttl); - for stdin")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	p, err := newProducer(ctx, cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	if *csvFile != "" {
		return sendCSV(ctx, p.enqueuer, *csvFile, *asJSON, stdout, os.Stderr)
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
}

func resultJSON(r tasks.EnqueueResult) enqueueResultJSON {
	return enqueueResultJSON{ID: r.ID, Duplicate: r.Duplicate, Queue: r.Queue, State: string(r.State), ExpiresAt: r.ExpiresAt}
}

// enqueueError turns a validation error into a usage error listing every bad field,
// one per line.
func enqueueError(err error) error {
	var ve *provider.ValidationError
	if errors.As(err, &ve) {
		var b strings.Builder
		b.WriteString("message refused:")
		for _, fe := range ve.Fields {
			fmt.Fprintf(&b, "\n  %s: %s", fe.Field, fe.Rule)
		}
		return usageError{b.String()}
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
	"type":             intColumn("type", func(f *sendFlags) *int { return &f.typ }),
	"message_type":     intColumn("message_type", func(f *sendFlags) *int { return &f.typ }),
	"source":           intColumn("source", func(f *sendFlags) *int { return &f.source }),
	"source_type":      intColumn("source_type", func(f *sendFlags) *int { return &f.source }),
	"ttl": func(f *sendFlags, v string) error {
		if v == "" {
			return nil
		}
		if n, err := strconv.Atoi(v); err == nil {
			f.ttl = time.Duration(n) * time.Second
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("ttl: must be seconds or a duration like 90s, got %q", v)
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
			return fmt.Errorf("%s: must be an integer, got %q", name, v)
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

// sendCSV enqueues every row of a CSV file. A bad row is reported with its line and
// every bad field and does not stop the others: rows already enqueued stay enqueued.
// It fails (exit 1) when any row was refused, after processing all of them.
func sendCSV(ctx context.Context, enq *tasks.Enqueuer, path string, asJSON bool, stdout, progress io.Writer) error {
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
			return usagef("csv %s: unknown column %q (known: id, from, to, text, type, source, sms_text, image, button_caption, button_action, callback_url, ttl)", path, h)
		}
		setters[i] = set
	}
	bar := progressbar.NewOptions(total,
		progressbar.OptionSetWriter(progress),
		progressbar.OptionSetDescription("enqueue"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("msg"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	var sum csvSummary
	for {
		row, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				sum.Rows++
				sum.Refused++
				sum.Problems = append(sum.Problems, csvReject{Line: pe.Line, Reason: pe.Err.Error()})
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
		f := sendFlags{typ: int(provider.TypeText), source: int(provider.SourceTransactional)}
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
		if len(rowErrs) == 0 {
			res, err := enq.Enqueue(ctx, f.request())
			switch {
			case err == nil && res.Duplicate:
				sum.Duplicates++
			case err == nil:
				sum.Enqueued++
			default:
				var ve *provider.ValidationError
				if errors.As(err, &ve) {
					for _, fe := range ve.Fields {
						rowErrs = append(rowErrs, fe.Field+": "+fe.Rule)
					}
				} else if errors.Is(err, tasks.ErrIdempotencyConflict) {
					rowErrs = append(rowErrs, "id: "+err.Error())
				} else {
					_ = bar.Finish()
					return fmt.Errorf("csv %s line %d: %w (rows before it are enqueued)", path, line, err)
				}
			}
		}
		if len(rowErrs) > 0 {
			sum.Refused++
			sum.Problems = append(sum.Problems, csvReject{Line: line, ID: f.id, Reason: strings.Join(rowErrs, "; ")})
		}
		_ = bar.Add(1)
	}
	_ = bar.Finish()
	if asJSON {
		if err := json.NewEncoder(stdout).Encode(sum); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "rows %d: enqueued %d, duplicates %d, refused %d\n", sum.Rows, sum.Enqueued, sum.Duplicates, sum.Refused)
		for _, p := range sum.Problems {
			fmt.Fprintf(stdout, "  line %d: %s\n", p.Line, p.Reason)
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
