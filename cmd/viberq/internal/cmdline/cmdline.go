// Package cmdline holds what the viberq commands and the packages behind them (bench, demo)
// share about the command line: the usage error that makes the binary exit with 2.
package cmdline

import "fmt"

// UsageError marks a bad invocation: the binary prints it and exits with code 2.
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError with a formatted message.
func Usagef(format string, args ...any) error { return UsageError{fmt.Sprintf(format, args...)} }
