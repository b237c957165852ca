package faulttest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/viberq/viberq/tasks/redistest"
)

// Environment of the fault tests.
const (
	// EnvScale is "short" (default) or "full".
	EnvScale = "VIBERQ_FAULT_SCALE"
	// EnvReport names a file the scenarios append their Figures to (JSON lines).
	EnvReport = "VIBERQ_FAULT_REPORT"
	// EnvLogDir keeps the processes' logs under this directory (default: a temporary
	// directory removed after the test).
	EnvLogDir = "VIBERQ_FAULT_LOGDIR"
	// EnvBin uses this viberq binary instead of building one.
	EnvBin = "VIBERQ_FAULT_BIN"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// TestMain removes the binary built for the tests (built once, on first use, by
// viberqBin: a test run that needs no process builds nothing).
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// viberqBin returns the path of a viberq binary built from this module once per test
// binary (or $VIBERQ_FAULT_BIN).
func viberqBin(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if p := os.Getenv(EnvBin); p != "" {
			binPath = p
			return
		}
		binDir, binErr = os.MkdirTemp("", "viberq-faulttest-")
		if binErr != nil {
			return
		}
		out := filepath.Join(binDir, "viberq")
		cmd := exec.Command("go", "build", "-o", out, "github.com/viberq/viberq/cmd/viberq")
		b, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build ./cmd/viberq: %v\n%s", err, b)
			return
		}
		binPath = out
	})
	if binErr != nil {
		t.Fatalf("viberq binary: %v", binErr)
	}
	return binPath
}

// full reports whether VIBERQ_FAULT_SCALE=full.
func full() bool { return strings.EqualFold(os.Getenv(EnvScale), "full") }

func scaleName() string {
	if full() {
		return "full"
	}
	return "short"
}

// pick returns short or full by the scale.
func pick[T any](short, fullV T) T {
	if full() {
		return fullV
	}
	return short
}

// needRedis skips t unless VIBERQ_TEST_REDIS_URL is set (the fault scenarios and
// everything that starts redis-server).
func needRedis(t *testing.T) {
	t.Helper()
	if !redistest.Enabled() {
		t.Skipf("fault scenario: set %s (e.g. redis://127.0.0.1:6379)", redistest.EnvURL)
	}
}

// needRedisServer skips t unless redis-server is installed.
func needRedisServer(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed")
	}
	return p
}

var reportMu sync.Mutex

// writeFigures appends f to $VIBERQ_FAULT_REPORT (if set) and logs it.
func writeFigures(t *testing.T, f Figures) {
	t.Helper()
	f.At = time.Now().UTC()
	f.Scale = scaleName()
	b, err := json.Marshal(f)
	if err != nil {
		t.Errorf("figures: %v", err)
		return
	}
	t.Logf("figures: %s", b)
	path := os.Getenv(EnvReport)
	if path == "" {
		return
	}
	reportMu.Lock()
	defer reportMu.Unlock()
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Errorf("report %s: %v", path, err)
		return
	}
	defer fh.Close()
	if _, err := fh.Write(append(b, '\n')); err != nil {
		t.Errorf("report %s: %v", path, err)
	}
}

// logDir returns the directory for the logs of scenario name: under
// $VIBERQ_FAULT_LOGDIR when set (kept), else a temporary one.
func logDir(t *testing.T, name string) string {
	t.Helper()
	base := os.Getenv(EnvLogDir)
	if base == "" {
		return t.TempDir()
	}
	d := filepath.Join(base, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatalf("log dir: %v", err)
	}
	return d
}
