// Package config reads, defaults and validates viberq's settings from the environment
// (all names start with VIBERQ_, see Describe for the full list).
//
// Load takes the environment lookup as a parameter (tests pass a map; main passes
// os.Getenv through FromEnv): there are no globals and nothing is read in init. A bad
// setting is reported as one line naming the variable and the rule; several bad
// settings are reported together on that one line.
//
// Credentials are held as Secret, which prints "[REDACTED]" through fmt, JSON, text
// and slog (zerolog uses String and MarshalJSON), so the whole Config, its Summary and
// its LogFields are safe to log. The raw value is read explicitly with Reveal.
//
// Secrets are checked too: a value that is a known placeholder (the example
// manifests' "replace-me-..." or a well-known password) is refused at start, and the
// /monitoring password must be at least 16 characters. LoadFor adds the settings a
// command requires, so that one error names every missing and every bad setting.
// Unknown and UnknownWarnings report VIBERQ_* variables the program does not read,
// naming the closest known one (Closest).
//
// Each default is declared by the package that uses the value (scheduler.DefaultFirst,
// worker.DefaultConcurrency, tasks.DefaultTTL, ...) and config refers to it, so config
// imports those packages and none of them imports config. It does not build Redis or
// HTTP clients; it exposes the parsed fields (see Redis) and the callers (package
// cmd/viberq/internal/app) build them.
package config
