package worker

import (
	"fmt"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/viberq/viberq/provider"
)

// asynqLogger adapts zerolog to asynq.Logger. Asynq's own lines carry
// component=asynq; they hold task IDs and queue names, never payloads. A task ID is
// a message ID (or poll:{id}:n), which a producer chose and which may hold a phone
// number, so every line is shown through provider.MaskPhones (provider.MaskID): a
// long number inside one (an IP address of 7 or more digits) is masked too.
type asynqLogger struct{ l zerolog.Logger }

// NewAsynqLogger returns an asynq.Logger writing to l.
func NewAsynqLogger(l zerolog.Logger) asynq.Logger {
	return asynqLogger{l: l.With().Str("component", "asynq").Logger()}
}

func (a asynqLogger) Debug(args ...any) { a.l.Debug().Msg(shown(args)) }
func (a asynqLogger) Info(args ...any)  { a.l.Info().Msg(shown(args)) }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn().Msg(shown(args)) }
func (a asynqLogger) Error(args ...any) { a.l.Error().Msg(shown(args)) }

// Fatal logs and exits the process, as asynq.Logger requires (asynq v0.26 never calls it).
func (a asynqLogger) Fatal(args ...any) { a.l.Fatal().Msg(shown(args)) }

// shown is one asynq line as logged: task IDs in it masked.
func shown(args []any) string { return provider.MaskID(fmt.Sprint(args...)) }

// asynqLogLevel maps zerolog's level to asynq's.
func asynqLogLevel(l zerolog.Level) asynq.LogLevel {
	switch {
	case l <= zerolog.DebugLevel:
		return asynq.DebugLevel
	case l == zerolog.InfoLevel:
		return asynq.InfoLevel
	case l == zerolog.WarnLevel:
		return asynq.WarnLevel
	case l == zerolog.ErrorLevel:
		return asynq.ErrorLevel
	default:
		return asynq.FatalLevel
	}
}
