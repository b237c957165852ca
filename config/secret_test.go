package config_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/viberq/viberq/config"
)

const rawSecret = "hunter2-very-secret"

func TestSecretFormatsRedacted(t *testing.T) {
	t.Parallel()
	s := config.Secret(rawSecret)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%20s", "%-20v", "%.3s", "%d", "%T"} {
		got := fmt.Sprintf(verb, s)
		if strings.Contains(got, rawSecret) || strings.Contains(strings.ToLower(got), hex.EncodeToString([]byte(rawSecret))) {
			t.Errorf("Sprintf(%s) = %q leaks the secret", verb, got)
		}
	}
	for verb, want := range map[string]string{
		"%v":   "[REDACTED]",
		"%+v":  "[REDACTED]",
		"%s":   "[REDACTED]",
		"%q":   `"[REDACTED]"`,
		"%#v":  `config.Secret("[REDACTED]")`,
		"%12s": "  [REDACTED]",
	} {
		if got := fmt.Sprintf(verb, s); got != want {
			t.Errorf("Sprintf(%s) = %q, want %q", verb, got, want)
		}
	}
	for name, got := range map[string]string{
		"String":   s.String(),
		"GoString": s.GoString(),
		"Sprint":   fmt.Sprint(s),
		"Sprintln": fmt.Sprintln(s),
		"pointer":  fmt.Sprintf("%v", &s),
	} {
		if !strings.Contains(got, config.Redacted) || strings.Contains(got, rawSecret) {
			t.Errorf("%s = %q, want redacted", name, got)
		}
	}
}

func TestSecretEmptyPrintsEmpty(t *testing.T) {
	t.Parallel()
	var s config.Secret
	for verb, want := range map[string]string{"%v": "", "%s": "", "%q": `""`, "%#v": `config.Secret("")`} {
		if got := fmt.Sprintf(verb, s); got != want {
			t.Errorf("Sprintf(%s) of empty = %q, want %q", verb, got, want)
		}
	}
	if b, _ := json.Marshal(s); string(b) != `""` {
		t.Errorf("json of empty = %s", b)
	}
	if s.IsSet() {
		t.Error("empty IsSet() = true")
	}
}

func TestSecretEncodings(t *testing.T) {
	t.Parallel()
	s := config.Secret(rawSecret)
	b, err := json.Marshal(s)
	if err != nil || string(b) != `"[REDACTED]"` {
		t.Errorf("json.Marshal = %s, %v", b, err)
	}
	txt, err := s.MarshalText()
	if err != nil || string(txt) != config.Redacted {
		t.Errorf("MarshalText = %s, %v", txt, err)
	}
	// As a map value, a slice element and through a pointer. (Not as a map key:
	// encoding/json writes string-kind keys as they are.)
	b, err = json.Marshal(struct {
		M map[string]config.Secret
		L []config.Secret
		P *config.Secret
	}{map[string]config.Secret{"k": s}, []config.Secret{s, s}, &s})
	if err != nil || bytes.Contains(b, []byte(rawSecret)) {
		t.Errorf("json of nested = %s, %v", b, err)
	}

	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "key", s, "group", slog.GroupValue(slog.Any("k", s)))
	if strings.Contains(buf.String(), rawSecret) || !strings.Contains(buf.String(), "key=[REDACTED]") {
		t.Errorf("slog = %q", buf.String())
	}
	buf.Reset()
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "key", s)
	if strings.Contains(buf.String(), rawSecret) || !strings.Contains(buf.String(), `"key":"[REDACTED]"`) {
		t.Errorf("slog json = %q", buf.String())
	}
}

func TestSecretInStructs(t *testing.T) {
	t.Parallel()
	type inner struct{ S []config.Secret }
	v := struct {
		A config.Secret
		B inner
		C map[string]config.Secret
		D *config.Secret
	}{A: rawSecret, B: inner{[]config.Secret{rawSecret}}, C: map[string]config.Secret{"k": rawSecret}}
	d := config.Secret(rawSecret)
	v.D = &d
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if got := fmt.Sprintf(verb, v); strings.Contains(got, rawSecret) {
			t.Errorf("Sprintf(%s) of struct = %q leaks", verb, got)
		}
	}
}

func TestSecretRevealAndEqual(t *testing.T) {
	t.Parallel()
	s := config.Secret(rawSecret)
	if s.Reveal() != rawSecret {
		t.Errorf("Reveal = %q", s.Reveal())
	}
	if !s.Equal(rawSecret) || s.Equal(rawSecret+"x") || s.Equal("") || s.Equal(rawSecret[:5]) {
		t.Error("Equal gives wrong answers")
	}
	if config.Secret("").Equal("") {
		t.Error(`empty secret must not equal ""`)
	}
}
