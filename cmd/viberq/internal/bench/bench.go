// Package bench is `viberq bench`: the benchmarks against a real Redis and an
// in-process simulator, printed as one table (BENCHMARKS.md records runs). Every figure
// is a ratio against a baseline measured in the same run, or a count. Its workers are
// built by app.NewWorker, as `viberq worker` builds them; the rows that need worker
// processes re-execute the binary (see Run and IsChild).
package bench

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/viberq/viberq/cmd/viberq/internal/cmdline"
)

// Options are the settings of one bench run (the flags of `viberq bench`).
type Options struct {
	// RedisURL is the Redis the bench uses (its database number is ignored: see DB).
	RedisURL string
	// DB is the Redis database the bench flushes and fills, 1..15 (never 0).
	DB int
	// Only lists the rows to run (RowIDs); empty runs all.
	Only []string
	// Quick is the short CI-size run: smaller counts, shorter windows.
	Quick bool
	// JSON prints the table as JSON.
	JSON bool
	// CPUProfile, when set, is the prefix of a CPU profile per row (PREFIX.rowN.pprof).
	CPUProfile string
	// Command is the command line as given, printed in the report (RedactedCommand).
	Command string
}

// RowIDs are the rows of the table, in order.
func RowIDs() []string {
	var ids []string
	for _, r := range benchRows() {
		ids = append(ids, r.id)
	}
	return ids
}

// Run runs the benchmarks against a real Redis and an in-process simulator and prints
// one table to stdout (BENCHMARKS.md records a run), progress to stderr. Every figure
// is a ratio against a baseline measured in the same run, or a count; the machine is
// shared and noisy, so absolute rates are context only.
//
// The bench owns one Redis database (Options.DB, never 0): it takes the
// tasks/redistest lock of that database, FLUSHes it before every row and at the end,
// and re-executes this binary for the rows that need worker processes: as
// `viberq worker`, and as `viberq bench` with VIBERQ_BENCH_CHILD set for the bare-asynq
// baseline server (see IsChild).
func Run(ctx context.Context, opts Options, stdout io.Writer) error {
	if opts.DB < 1 || opts.DB > 15 {
		return cmdline.Usagef("--db must be 1..15 (the bench flushes it; database 0 is never touched), got %d", opts.DB)
	}
	rows := benchRows()
	sel := map[string]bool{}
	for _, r := range opts.Only {
		if !slices.ContainsFunc(rows, func(x benchRowSpec) bool { return x.id == r }) {
			return cmdline.Usagef("--only: unknown row %q (want one of %s)", r, strings.Join(RowIDs(), ","))
		}
		sel[r] = true
	}

	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: cannot find this binary to run worker processes: %w", err)
	}
	progress := os.Stderr
	br, err := openBenchRedis(ctx, opts.RedisURL, opts.DB, progress)
	if err != nil {
		return err
	}
	defer br.close()
	var kb [12]byte
	_, _ = crand.Read(kb[:])
	b := &bench{
		redis:    br,
		key:      "bench-" + hex.EncodeToString(kb[:]),
		exe:      exe,
		quick:    opts.Quick,
		progress: progress,
	}

	rep := benchReport{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Command: opts.Command,
		Quick:   opts.Quick,
		Machine: machineInfo(ctx, br),
	}
	for _, r := range rows {
		if len(sel) > 0 && !sel[r.id] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		b.logf("row %s: %s", r.id, r.name)
		if err := br.flush(ctx); err != nil {
			return err
		}
		stopProf, err := startRowProfile(opts.CPUProfile, r.id)
		if err != nil {
			return err
		}
		start := time.Now()
		cpu0, cpuOK := readCPUTimes()
		res, err := r.run(ctx, b)
		stopProf()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			res = append(res, benchResult{Row: r.id, What: r.name, Result: "error", How: err.Error()})
		}
		took, stolen := time.Since(start).Round(100*time.Millisecond), ""
		if cpu1, ok := readCPUTimes(); ok && cpuOK {
			if share, ok := stealShare(cpu0, cpu1); ok {
				for i := range res {
					res[i].Steal = &share
				}
				stolen = fmt.Sprintf(", CPU stolen by the host %.0f%%", 100*share)
			}
		}
		b.logf("row %s: done in %s%s", r.id, took, stolen)
		rep.Rows = append(rep.Rows, res...)
	}
	if err := br.flush(ctx); err != nil {
		return err
	}

	if opts.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := printBenchTable(stdout, rep); err != nil {
		return err
	}
	for _, r := range rep.Rows {
		if r.Result == "error" {
			return fmt.Errorf("row %s failed to run: %s", r.Row, r.How)
		}
	}
	return nil
}

// RedactedCommand is the command line of fs as given, with a password in --redis
// redacted (for Options.Command).
func RedactedCommand(fs *flag.FlagSet) string {
	parts := []string{"viberq bench"}
	fs.Visit(func(f *flag.Flag) {
		v := f.Value.String()
		if f.Name == "redis" {
			if u, err := url.Parse(v); err == nil {
				v = u.Redacted()
			} else {
				v = "(unparsable)"
			}
		}
		parts = append(parts, "--"+f.Name+"="+v)
	})
	return strings.Join(parts, " ")
}

// bench is what the rows share.
type bench struct {
	redis    *benchRedis
	key      string // the simulator's access key for this run
	exe      string
	quick    bool
	progress io.Writer

	// bareSendRate is row 1's baseline (tasks/s), reused as context by row 2.
	bareSendRate float64
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, "bench: "+format+"\n", args...)
}

// pick returns full, or quick with --quick.
func (b *bench) pick(full, quick int) int {
	if b.quick {
		return quick
	}
	return full
}

// benchRowSpec is one row of the table (it may print several lines).
type benchRowSpec struct {
	id   string
	name string
	run  func(ctx context.Context, b *bench) ([]benchResult, error)
}

func benchRows() []benchRowSpec {
	return []benchRowSpec{
		{"1", "send throughput", benchSendThroughput},
		{"2", "end to end", benchEndToEnd},
		{"3", "enqueue", benchEnqueue},
		{"4", "limiter accuracy", benchLimiter},
		{"5", "latency when idle", benchLatency},
		{"6", "memory", benchMemory},
		{"7", "polling cost", benchPolling},
		{"8", "promotional backlog", benchBacklog},
	}
}

// benchResult is one line of the table.
type benchResult struct {
	Row      string `json:"row"`
	What     string `json:"what"`
	Baseline string `json:"baseline"`
	Viberq   string `json:"viberq"`
	// Value is the figure compared with the target: a ratio viberq/baseline or a
	// count.
	Value  string `json:"value"`
	Target string `json:"target"`
	// Result is pass, FAIL (target missed), info (no target) or error.
	Result string `json:"result"`
	// How says how the figure was measured.
	How string `json:"how"`

	BaselineNum float64 `json:"baseline_num"`
	ViberqNum   float64 `json:"viberq_num"`
	ValueNum    float64 `json:"value_num"`
	// Steal is the share (0..1) of the machine's CPU time that the hypervisor gave to
	// other guests while the row ran (/proc/stat); nil where that cannot be read. On
	// a shared virtual machine it moves every figure: ratios from runs that saw very
	// different steal are not comparable.
	Steal *float64 `json:"steal,omitempty"`
}

// passFail is "pass" or "FAIL".
func passFail(ok bool) string {
	if ok {
		return "pass"
	}
	return "FAIL"
}

type benchMachine struct {
	CPUs    int    `json:"cpus"`
	Model   string `json:"cpu_model"`
	Go      string `json:"go"`
	Redis   string `json:"redis"`
	OS      string `json:"os"`
	NumProc int    `json:"gomaxprocs"`
}

type benchReport struct {
	Date    string        `json:"date"`
	Command string        `json:"command"`
	Quick   bool          `json:"quick"`
	Machine benchMachine  `json:"machine"`
	Rows    []benchResult `json:"rows"`
}

func machineInfo(ctx context.Context, br *benchRedis) benchMachine {
	m := benchMachine{CPUs: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH,
		NumProc: runtime.GOMAXPROCS(0), Redis: br.version(ctx), Model: "?"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

func printBenchTable(w io.Writer, rep benchReport) error {
	m := rep.Machine
	fmt.Fprintf(w, "viberq bench  %s  %d CPU (%s), %s, Redis %s%s\n\n", rep.Date, m.CPUs, m.Model, m.Go, m.Redis,
		map[bool]string{true: ", --quick", false: ""}[rep.Quick])
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "row\twhat\tbaseline\tviberq\tratio/value\ttarget\tresult\tsteal")
	for _, r := range rep.Rows {
		steal := ""
		if r.Steal != nil {
			steal = fmt.Sprintf("%.0f%%", 100**r.Steal)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Row, r.What, dash(r.Baseline), dash(r.Viberq), dash(r.Value), dash(r.Target), r.Result, dash(steal))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nsteal: the share of CPU time the hypervisor gave to other guests while the row ran (/proc/stat)")
	fmt.Fprintln(w, "\nhow each row was measured:")
	for _, r := range rep.Rows {
		if r.How != "" {
			fmt.Fprintf(w, "  %-3s %s\n", r.Row, r.How)
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// startRowProfile starts a CPU profile of the bench process for row id when prefix
// is set; the returned func stops it.
func startRowProfile(prefix, id string) (func(), error) {
	if prefix == "" {
		return func() {}, nil
	}
	f, err := os.Create(prefix + ".row" + id + ".pprof")
	if err != nil {
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// ---- number formatting ----

func fmtRate(r float64, unit string) string {
	switch {
	case math.IsNaN(r):
		return "n/a"
	case r >= 100:
		return fmt.Sprintf("%.0f %s", r, unit)
	default:
		return fmt.Sprintf("%.1f %s", r, unit)
	}
}

func fmtRatio(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", r)
}

func fmtRatios(rs []float64) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmtRatio(r)
	}
	return strings.Join(parts, " ")
}

func fmtBytes(n float64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", n/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.2f KiB", n/(1<<10))
	default:
		return fmt.Sprintf("%.0f B", n)
	}
}

func fmtMS(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}
