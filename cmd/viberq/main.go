// Command viberq is the one binary of viberq: the worker, the HTTP API, the producer
// CLI, the provider simulator, the demo and the benchmarks. This package holds the
// commands only (one file each: flags, then a call): internal/app builds the parts from
// a config (the same wiring for worker, demo and bench), internal/bench and
// internal/demo are the benchmark and the demo, and the behaviour lives in the packages
// provider, tasks, scheduler, worker and config.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/viberq/viberq/cmd/viberq/internal/cmdline"
)

// command is one subcommand of the binary.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout io.Writer) error
}

// commands returns the table of subcommands. Deployments reference these names; a
// test in deployments checks that each name used there answers --help. (A function,
// not a variable: the commands' flag sets print their summaries from this table.)
func commands() map[string]command {
	return map[string]command{
		"worker":  {"run a worker: consume send and poll tasks (and the outbox stream)", runWorker},
		"api":     {"serve the HTTP API, provider callbacks, /monitoring and /metrics", runAPI},
		"send":    {"enqueue one message (flags) or many (--csv FILE); prints message IDs", runSend},
		"status":  {"show a message record: viberq status ID [--json]", runStatus},
		"cancel":  {"stop a message that has not been sent: viberq cancel ID [--json]", runCancel},
		"batch":   {"follow or stop a batch: viberq batch status|cancel ID [--json]", runBatch},
		"queues":  {"show queue sizes, paused and archived tasks", runQueues},
		"resume":  {"unpause the send queues (after a balance top-up) and lift a 429 pause of the rate limiters", runResume},
		"sim":     {"run the DecisionTelecom simulator", runSim},
		"demo":    {"run everything in-process (embedded Redis + simulator + worker) on a mixed batch", runDemo},
		"bench":   {"run the benchmarks against Redis and the simulator and print one table", runBench},
		"version": {"print the version, the commit and the Go version this binary was built from", runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// realMain dispatches to a subcommand and turns its error into an exit code: 0 on
// success or --help, 2 on a usage error, 1 otherwise.
func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	routeRedisLog(stderr)
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "viberq: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	err := cmd.run(ctx, args[1:], stdout)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "viberq %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "viberq %s: %v\n", args[0], err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: viberq <command> [flags]")
	fmt.Fprintln(w)
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Settings come from VIBERQ_* environment variables (see README); flags override them.")
}

// usageError marks a bad invocation (exit code 2). The bench and demo packages return
// the same type, so it lives in cmdline.
type usageError = cmdline.UsageError

func usagef(format string, args ...any) error { return cmdline.Usagef(format, args...) }

// newFlagSet returns a flag set that reports errors instead of exiting, and prints its
// usage to stdout for --help.
func newFlagSet(name string, stdout io.Writer, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("viberq "+name, flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: viberq %s %s\n\n%s\n\nflags:\n", name, synopsis, commands()[name].summary)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; a parse error becomes a usageError (printed once, by
// realMain, with a pointer to --help), --help prints the usage and gives flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string) error {
	out, usage := fs.Output(), fs.Usage
	// The flag package prints a parse error and the whole usage itself; silence it so
	// that the error is said once.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = usage
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.Usage()
			return err
		}
		return usagef("%s (%s --help lists the flags)", err.Error(), fs.Name())
	}
	return nil
}
