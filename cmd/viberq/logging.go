package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/viberq/viberq/config"
)

// Log fields are the same in every process: durations are integers named *_ms
// (duration_ms, window_ms), the time is "time" (RFC 3339), the command is "cmd".

// newLogger builds the process logger from VIBERQ_LOG_LEVEL and VIBERQ_LOG_FORMAT.
// Logs go to stderr; stdout is for command output (IDs, tables, JSON). The console
// format has colours only when stderr is a terminal, so a log file or a pipe gets
// plain text. The VIBERQ_* variables of the environment that are not settings
// (typos) are warned about here, once, naming the closest setting.
func newLogger(cfg config.Log) zerolog.Logger {
	return newLoggerTo(os.Stderr, isTerminal(os.Stderr), cfg, os.Environ())
}

func newLoggerTo(out io.Writer, terminal bool, cfg config.Log, environ []string) zerolog.Logger {
	w := out
	if cfg.Format == "console" {
		w = zerolog.ConsoleWriter{Out: out, TimeFormat: time.TimeOnly, NoColor: !terminal}
	}
	lvl, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	log := zerolog.New(w).Level(lvl).With().Timestamp().Logger()
	for _, line := range config.UnknownWarnings(environ) {
		log.Warn().Msg(line)
	}
	return log
}

// isTerminal reports whether f is a character device (a terminal), without a
// dependency: a file or a pipe is not.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

var quietRedisOnce sync.Once

// quietRedis replaces go-redis's own logger, which prints every failed dial of its
// pool ("redis: connection pool: failed to dial after 5 attempts ...") on stderr
// before the command's one clear line about an unreachable Redis. Dial failures are
// dropped (the command's error says the same once); anything else go-redis reports
// still reaches stderr.
func quietRedis() {
	quietRedisOnce.Do(func() { redis.SetLogger(redisLogger{os.Stderr}) })
}

type redisLogger struct{ w io.Writer }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.Contains(msg, "failed to dial") || strings.Contains(msg, "connect: connection refused") {
		return
	}
	fmt.Fprintln(l.w, "redis: "+strings.TrimSpace(msg))
}
