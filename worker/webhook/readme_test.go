package webhook_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/worker/webhook"
)

// The README's verification snippets (shell + openssl, Python) accept a signature
// this package makes and refuse a tampered body. Skipped where bash/openssl or
// python3 are missing.
func TestREADMEVerificationSnippets(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	section := string(readme)
	i := strings.Index(section, "## Status webhooks")
	require.GreaterOrEqual(t, i, 0)
	section = section[i:]
	sh := regexp.MustCompile("(?s)```sh\\n(# SIG holds.*?)```").FindStringSubmatch(section)
	py := regexp.MustCompile("(?s)```python\\n(.*?def verify.*?)```").FindStringSubmatch(section)
	require.Len(t, sh, 2, "shell snippet")
	require.Len(t, py, 2, "python snippet")

	body := []byte(`{"event_id":"1764669604512-0","to":"delivered"}`)
	now := time.Now()
	sig := webhook.SignatureValue([]string{"old-secret-0123456789", testSecret}, now, body)
	dir := t.TempDir()

	run := func(t *testing.T, name string, args []string, env []string, body []byte) string {
		t.Helper()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "body.json"), body, 0o600))
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return strings.TrimSpace(string(out))
	}

	t.Run("Shell", func(t *testing.T) {
		for _, tool := range []string{"bash", "openssl", "awk"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("%s not installed", tool)
			}
		}
		env := []string{"SIG=" + sig, "SECRET=" + testSecret}
		require.Equal(t, "valid", run(t, "bash", []string{"-c", sh[1]}, env, body))
		require.Equal(t, "INVALID", run(t, "bash", []string{"-c", sh[1]}, env, append(body, ' ')))
		// A signature made an hour ago (or ahead) is stale, however right its mac.
		for _, at := range []time.Time{now.Add(-time.Hour), now.Add(time.Hour)} {
			old := webhook.SignatureValue([]string{testSecret}, at, body)
			require.Equal(t, "STALE", run(t, "bash", []string{"-c", sh[1]}, []string{"SIG=" + old, "SECRET=" + testSecret}, body), at)
		}
	})
	t.Run("Python", func(t *testing.T) {
		if _, err := exec.LookPath("python3"); err != nil {
			t.Skip("python3 not installed")
		}
		script := py[1] + "\nimport sys\nprint(verify(sys.argv[1], open('body.json','rb').read(), sys.argv[2]))\n"
		require.Equal(t, "True", run(t, "python3", []string{"-c", script, sig, testSecret}, nil, body))
		require.Equal(t, "False", run(t, "python3", []string{"-c", script, sig, testSecret}, nil, append(body, ' ')))
		old := "t=" + strconv.FormatInt(now.Add(-time.Hour).Unix(), 10) + sig[strings.Index(sig, ","):]
		require.Equal(t, "False", run(t, "python3", []string{"-c", script, old, testSecret}, nil, body), "an old timestamp")
	})
}
