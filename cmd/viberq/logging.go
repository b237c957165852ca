package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
// plain text. go-redis's own lines go to it too (redisLog). The VIBERQ_* variables of
// the environment that are not settings (typos) are warned about here, once, naming
// the closest setting.
func newLogger(cfg config.Log) zerolog.Logger {
	log := newLoggerTo(os.Stderr, isTerminal(os.Stderr), cfg, os.Environ())
	redisLog.use(log) // go-redis's lines follow the process log's format and level
	return log
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

// go-redis has one logger for the whole process (redis.SetLogger stores a global), and
// by default it prints raw lines on stderr: "redis: <date> pool.go:770: redis:
// connection pool: failed to dial after 5 attempts: dial tcp ...", one per pool
// attempt, before the command's own line about an unreachable Redis. realMain
// therefore sets it once, before any command runs, to redisLog, which writes each
// line as a log line of the process (component=redis):
//
//   - dial failures at debug: the command's error, or the worker's and the API's own
//     lines about Redis, say the same once, so at the default level they are dropped;
//   - anything else go-redis reports (a Sentinel switching masters, a recovered panic
//     in its pipeline) at warn, because an operator needs those;
//   - with every Redis password the process knows (registered by the code that opens
//     Redis) and the password of any URL in the line replaced by [REDACTED].
//
// Until a command builds its logger (newLogger), the lines go to the stderr given to
// realMain as JSON at warn level.
var (
	redisLog         = &redisLogger{}
	redisLogSetOnce  sync.Once
	urlPasswordRegex = regexp.MustCompile(`(://[^:@/\s]*:)[^/\s?#]*@`) // to the last @ of the authority
)

// routeRedisLog makes redisLog go-redis's logger (once per process) and points it at
// stderr until a command's logger takes over.
func routeRedisLog(stderr io.Writer) {
	l := zerolog.New(stderr).Level(zerolog.WarnLevel).With().Timestamp().Str("component", "redis").Logger()
	redisLog.to.Store(&l)
	redisLogSetOnce.Do(func() { redis.SetLogger(redisLog) })
}

// redisLogger is go-redis's internal.Logging on zerolog.
type redisLogger struct {
	to      atomic.Pointer[zerolog.Logger]
	mu      sync.Mutex
	secrets []string
}

// use sends go-redis's lines to the process logger l from now on.
func (r *redisLogger) use(l zerolog.Logger) {
	l = l.With().Str("component", "redis").Logger()
	r.to.Store(&l)
}

// hide registers passwords that must never appear in a go-redis line.
func (r *redisLogger) hide(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range secrets {
		if s != "" && !slices.Contains(r.secrets, s) {
			r.secrets = append(r.secrets, s)
		}
	}
	// Longest first: a password that holds another is replaced whole.
	slices.SortFunc(r.secrets, func(a, b string) int { return len(b) - len(a) })
}

// hideURL registers the password of a Redis URL given as a flag.
func (r *redisLogger) hideURL(raw string) {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		p, _ := u.User.Password()
		r.hide(p)
	}
}

// redact replaces the registered passwords (first: a URL's redaction could cut one
// that holds an @ and leave its tail) and then any URL's password in msg.
func (r *redisLogger) redact(msg string) string {
	r.mu.Lock()
	for _, s := range r.secrets {
		msg = strings.ReplaceAll(msg, s, "[REDACTED]")
	}
	r.mu.Unlock()
	return urlPasswordRegex.ReplaceAllString(msg, "${1}[REDACTED]@")
}

// Printf is internal.Logging's one method.
func (r *redisLogger) Printf(_ context.Context, format string, v ...any) {
	l := r.to.Load()
	if l == nil {
		return
	}
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	level := zerolog.WarnLevel
	if strings.Contains(msg, "failed to dial") || strings.Contains(msg, "dial tcp") || strings.Contains(msg, "connection refused") {
		level = zerolog.DebugLevel
	}
	l.WithLevel(level).Msg(r.redact(msg))
}
