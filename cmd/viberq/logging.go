package main

import (
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/viberq/viberq/config"
)

// newLogger builds the process logger from VIBERQ_LOG_LEVEL and VIBERQ_LOG_FORMAT.
// Logs go to stderr; stdout is for command output (IDs, tables, JSON).
func newLogger(cfg config.Log) zerolog.Logger {
	var w io.Writer = os.Stderr
	if cfg.Format == "console" {
		w = zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly}
	}
	lvl, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}
