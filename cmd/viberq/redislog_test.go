package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// cliChildEnv makes the test binary run realMain with the arguments it holds
// (separated by \x1f) as the whole process, so that a test sees the process's real
// stderr: go-redis's default logger writes to os.Stderr, not to realMain's writer.
const cliChildEnv = "VQTEST_CLI_CHILD_ARGS"

func TestDemoUnreachableRedisIsOneLine(t *testing.T) {
	if args, ok := os.LookupEnv(cliChildEnv); ok {
		os.Exit(realMain(context.Background(), strings.Split(args, "\x1f"), os.Stdout, os.Stderr))
	}
	t.Parallel()
	const password = "pw-Zq81-not-a-real-one"
	// Port 1: nothing listens there, so every dial is refused at once.
	cmd := exec.Command(os.Args[0], "-test.run=^TestDemoUnreachableRedisIsOneLine$")
	cmd.Env = append(os.Environ(), cliChildEnv+"="+strings.Join([]string{"demo", "--redis", "redis://:" + password + "@127.0.0.1:1/15"}, "\x1f"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("demo: %v, want exit 1\nstderr: %s", err, stderr.String())
	}
	got := stderr.String()
	if strings.Count(got, "\n") != 1 || !strings.HasPrefix(got, "viberq demo: ") {
		t.Errorf("stderr is not viberq's one line (go-redis's own lines leak?):\n%s", got)
	}
	if !strings.Contains(got, "127.0.0.1:1") {
		t.Errorf("stderr does not name the Redis it could not reach:\n%s", got)
	}
	if strings.Contains(stdout.String()+got, password) {
		t.Errorf("the Redis password was printed:\n%s%s", stdout.String(), got)
	}
}

// go-redis's lines become log lines of the process: dial failures at debug, the rest
// at warn, never with a password (registered, or in a URL of the line).
func TestRedisLogLevelsAndRedaction(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	r := &redisLogger{}
	r.use(zerolog.New(&buf).Level(zerolog.InfoLevel))
	r.hide("", "hunter2-sentinel")
	r.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %v", 5, "dial tcp 10.0.0.1:6379: connect: connection refused")
	if buf.Len() != 0 {
		t.Errorf("a dial failure was logged at info level: %s", buf.String())
	}
	r.Printf(context.Background(), "sentinel: GetMasterAddrByName name=%q failed: %s", "mymaster",
		"auth hunter2-sentinel refused; dialled redis://admin:url-pass-7@h:26379/0 and rediss://:p2@h2")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON log line: %q: %v", buf.String(), err)
	}
	msg, _ := line["message"].(string)
	if line["level"] != "warn" || line["component"] != "redis" || !strings.HasPrefix(msg, `sentinel: GetMasterAddrByName name="mymaster" failed`) {
		t.Errorf("line = %v, want a warn line of component redis with go-redis's text", line)
	}
	for _, secret := range []string{"hunter2-sentinel", "url-pass-7", ":p2@"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("%q is in the line: %s", secret, buf.String())
		}
	}
	if !strings.Contains(msg, "redis://admin:[REDACTED]@h:26379/0") || !strings.Contains(msg, "auth [REDACTED] refused") {
		t.Errorf("message = %q, want the passwords replaced by [REDACTED] and the rest kept", msg)
	}

	// A password with an @ (url.Parse splits at the last one) and a password that
	// holds another are redacted whole.
	buf.Reset()
	r.hide("p@ss", "abc", "abcdef")
	r.Printf(context.Background(), "dial redis://u:p@ss@h:6379/0 and redis://:x@y@h2:6379?db=1; auth abcdef, then abc")
	for _, tail := range []string{"ss@h", "@y@", "def", "abc"} {
		if strings.Contains(buf.String(), tail) {
			t.Errorf("%q of a password is in the line: %s", tail, buf.String())
		}
	}
	if !strings.Contains(buf.String(), "redis://u:[REDACTED]@h:6379/0") || !strings.Contains(buf.String(), "redis://:[REDACTED]@h2:6379?db=1") {
		t.Errorf("want each URL's host kept after its redacted password: %s", buf.String())
	}

	buf.Reset()
	r.use(zerolog.New(&buf).Level(zerolog.DebugLevel))
	r.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %v", 5, "dial tcp 10.0.0.1:6379: i/o timeout")
	if !strings.Contains(buf.String(), `"level":"debug"`) {
		t.Errorf("a dial failure at debug level: %q, want it logged at debug", buf.String())
	}
}
