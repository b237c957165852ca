package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
)

// runVersion is `viberq version`: the module version (a tag with `go install
// ...@v0.1.0`, "(devel)" in a checkout), the commit and its time, whether the tree
// had local changes, and the Go version, all read from the binary's build info.
func runVersion(_ context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("version", stdout, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	fmt.Fprintln(stdout, versionLine())
	return nil
}

// versionLine is e.g. "viberq v0.1.0 (commit 1a2b3c4d5e6f, 2026-12-02T14:00:00Z) go1.26.8".
func versionLine() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "viberq (no build info)"
	}
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	var rev, at string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	line := "viberq " + version
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if dirty {
			rev += "-dirty"
		}
		line += " (commit " + rev
		if at != "" {
			line += ", " + at
		}
		line += ")"
	}
	return line + " " + bi.GoVersion
}
