package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/viberq/viberq/config"
)

// A mistyped flag is reported once, on stderr, with exit code 2; stdout stays empty.
func TestMistypedFlagSaidOnce(t *testing.T) {
	t.Parallel()
	code, out, errOut := run(t, "api", "--adr", ":1")
	if code != 2 || out != "" {
		t.Errorf("exit %d, stdout %q; want 2 and nothing on stdout", code, out)
	}
	if n := strings.Count(errOut, "flag provided but not defined"); n != 1 || !strings.Contains(errOut, "--help") {
		t.Errorf("stderr %q: the error %d times, want once with a pointer to --help", errOut, n)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	code, out, _ := run(t, "version")
	if code != 0 || !strings.HasPrefix(out, "viberq ") || !strings.Contains(out, " go1.") {
		t.Errorf("viberq version: exit %d, %q", code, out)
	}
}

// Every required setting of `viberq api` is named in one error, with the bad ones.
func TestAPINamesEveryRequiredSetting(t *testing.T) {
	for _, k := range config.Names() {
		t.Setenv(k, "")
	}
	t.Setenv(config.EnvPollJitter, "2")
	code, _, errOut := run(t, "api")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (stderr %q)", code, errOut)
	}
	for _, name := range []string{config.EnvPollJitter, config.EnvAPITokens, config.EnvMonitoringPassword} {
		if !strings.Contains(errOut, name) {
			t.Errorf("stderr %q does not name %s", errOut, name)
		}
	}
	if strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("stderr is not one line: %q", errOut)
	}
}

// The console format writes colour codes only to a terminal; the unknown variables
// are warned about with the closest name.
func TestLoggerConsoleAndUnknownVars(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := newLoggerTo(&buf, false, config.Log{Level: "info", Format: "console"}, []string{"VIBERQ_RATE_LIMT=5", "HOME=/root"})
	log.Info().Msg("hello")
	got := buf.String()
	if strings.Contains(got, "\x1b[") {
		t.Errorf("console log to a non-terminal has colour codes: %q", got)
	}
	if !strings.Contains(got, "VIBERQ_RATE_LIMT is not a viberq setting (did you mean VIBERQ_RATE_LIMIT?)") || !strings.Contains(got, "WRN") {
		t.Errorf("no warning for the misspelt variable: %q", got)
	}
	buf.Reset()
	log = newLoggerTo(&buf, true, config.Log{Level: "info", Format: "console"}, nil)
	log.Info().Msg("hello")
	if !strings.Contains(buf.String(), "\x1b[") {
		t.Errorf("console log to a terminal has no colours: %q", buf.String())
	}
}
