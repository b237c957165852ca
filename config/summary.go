package config

import (
	"fmt"
	"strconv"
	"strings"
)

// LogFields returns the effective configuration as one field per setting, keyed by the
// variable's name without VIBERQ_ in lower case ("rate_limit", "redis_url"), for one
// start-up log line: log.Info().Fields(cfg.LogFields()).Msg("config"). Secrets show as
// "[REDACTED]" (or "" when unset), Redis URL without its password, durations as
// strings like "1m30s". Values are strings, bools, ints, int64s and float64s.
func (c Config) LogFields() map[string]any {
	m := make(map[string]any, len(settings))
	for _, s := range settings {
		m[fieldKey(s.Name)] = s.show(&c)
	}
	return m
}

// Summary returns the same as LogFields on one line, "key=value" pairs in Describe
// order, values quoted when empty or containing spaces, quotes or '='.
func (c Config) Summary() string {
	var b strings.Builder
	for i, s := range settings {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(fieldKey(s.Name))
		b.WriteByte('=')
		v := fmt.Sprint(s.show(&c))
		if v == "" || strings.ContainsAny(v, " \"=\t\n\\") {
			v = strconv.Quote(v)
		}
		b.WriteString(v)
	}
	return b.String()
}

func fieldKey(name string) string {
	return strings.ToLower(strings.TrimPrefix(name, Prefix))
}
