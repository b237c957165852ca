package faulttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// proc is one child process with its stdout and stderr in one log file. It is killed
// (SIGKILL) at the test's cleanup if still running.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	started time.Time
	exited  chan struct{}

	mu        sync.Mutex
	waitErr   error
	onPurpose bool // stopped or killed by the test
}

// startProc starts bin with args and env, logging to dir/name.log.
func startProc(t *testing.T, dir, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatalf("%s: log: %v", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout = f
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		t.Fatalf("%s: start: %v", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, started: time.Now(), exited: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		_ = f.Close()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(p.exited)
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

// running reports whether the process has not exited.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL (if still running) and waits for the exit.
func (p *proc) kill() {
	p.mu.Lock()
	p.onPurpose = true
	p.mu.Unlock()
	if p.running() {
		_ = p.cmd.Process.Kill()
	}
	<-p.exited
}

// stop sends SIGTERM and waits up to timeout for the exit (then SIGKILL). It returns
// the exit error (nil for exit code 0) and how long the exit took.
func (p *proc) stop(timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	p.mu.Lock()
	p.onPurpose = true
	p.mu.Unlock()
	if !p.running() {
		return 0, p.exitErr()
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return time.Since(start), p.exitErr()
	case <-time.After(timeout):
		p.kill()
		return time.Since(start), fmt.Errorf("%s: still running %s after SIGTERM; killed", p.name, timeout)
	}
}

// stoppedOnPurpose reports whether the test stopped or killed the process.
func (p *proc) stoppedOnPurpose() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.onPurpose
}

func (p *proc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// log returns what the process printed so far.
func (p *proc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// waitLog waits until the log contains substr, the process exits or timeout passes.
func (p *proc) waitLog(substr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(p.log(), substr) {
			return nil
		}
		if !p.running() {
			return fmt.Errorf("%s exited (%v) before logging %q:\n%s", p.name, p.exitErr(), substr, tail(p.log(), 2000))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not log %q within %s:\n%s", p.name, substr, timeout, tail(p.log(), 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// runCmd runs bin to completion (bounded by timeout) and returns its stdout, stderr
// and exit code.
func runCmd(t *testing.T, env []string, stdin []byte, timeout time.Duration, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %v: still running after %s", filepath.Base(bin), args, timeout)
	}
	return o.String(), e.String(), code
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func hostPort(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// baseEnv is the test's environment without any VIBERQ_ variable, plus kv.
func baseEnv(kv ...string) []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "VIBERQ_") {
			env = append(env, e)
		}
	}
	return append(env, kv...)
}

// redisServer is a private redis-server on a free port of 127.0.0.1, in its own
// directory, for the scenarios that restart Redis or configure it (password, TLS).
type redisServer struct {
	t    *testing.T
	bin  string
	dir  string
	port int
	args []string
	gen  int
	p    *proc
}

// startRedisServer starts redis-server with the extra args (e.g. "--appendonly",
// "yes"). tls makes the port a TLS port (the args must carry the certificates).
func startRedisServer(t *testing.T, logs string, tlsPort bool, args ...string) *redisServer {
	t.Helper()
	bin := needRedisServer(t)
	r := &redisServer{t: t, bin: bin, dir: t.TempDir(), port: freePort(t)}
	portArgs := []string{"--port", strconv.Itoa(r.port)}
	if tlsPort {
		portArgs = []string{"--port", "0", "--tls-port", strconv.Itoa(r.port)}
	}
	r.args = append(append([]string{"--bind", "127.0.0.1", "--dir", r.dir, "--save", "", "--daemonize", "no",
		"--protected-mode", "no"}, portArgs...), args...)
	r.start(logs)
	return r
}

func (r *redisServer) start(logs string) {
	r.t.Helper()
	r.gen++
	r.p = startProc(r.t, logs, fmt.Sprintf("redis-%d", r.gen), baseEnv(), r.bin, r.args...)
	if err := r.p.waitLog("Ready to accept connections", 15*time.Second); err != nil {
		r.t.Fatalf("redis-server: %v", err)
	}
}

// crash kills redis-server with SIGKILL.
func (r *redisServer) crash() { r.p.kill() }

// addr is host:port.
func (r *redisServer) addr() string { return hostPort(r.port) }

// waitPing waits until c answers PING.
func waitPing(c redis.UniversalClient, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
