package webhook_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/worker/webhook"
)

func TestPublicAddr(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"93.184.215.14":        true,
		"2606:2800:21f:cb07::": true,
		"127.0.0.1":            false,
		"::1":                  false,
		"10.1.2.3":             false,
		"172.16.0.1":           false,
		"192.168.1.1":          false,
		"169.254.169.254":      false, // cloud metadata
		"100.64.0.1":           false, // CGNAT
		"0.0.0.0":              false,
		"::":                   false,
		"fd00::1":              false,
		"fe80::1":              false,
		"224.0.0.1":            false,
		"255.255.255.255":      false,
		"::ffff:127.0.0.1":     false, // IPv4-mapped loopback
		"::ffff:10.0.0.1":      false,
		"64:ff9b::a00:1":       false, // NAT64 of 10.0.0.1
		"2002:a00:1::":         false, // 6to4 of 10.0.0.1
	} {
		require.Equal(t, want, webhook.PublicAddr(netip.MustParseAddr(addr)), addr)
	}
}

// The guard refuses a loopback receiver at dial time (so after DNS, and for every
// address tried); with allowPrivate the same POST goes through. A redirect is not
// followed: the 3xx comes back as the answer.
func TestHTTPClientGuard(t *testing.T) {
	t.Parallel()
	hits := make(chan string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits <- r.URL.Path
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/inner", http.StatusTemporaryRedirect)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	post := func(c *http.Client, path string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL+path, nil)
		require.NoError(t, err)
		return c.Do(req)
	}

	_, err := post(webhook.NewHTTPClient(2*time.Second, 1, false), "/hook")
	require.Error(t, err)
	require.True(t, errors.Is(err, webhook.ErrPrivateAddress), "%v", err)
	require.Empty(t, hits, "nothing may reach a private address")

	open := webhook.NewHTTPClient(2*time.Second, 1, true)
	resp, err := post(open, "/hook")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Equal(t, "/hook", <-hits)

	resp, err = post(open, "/redirect")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusTemporaryRedirect, resp.StatusCode)
	require.Equal(t, "/redirect", <-hits)
	require.Empty(t, hits, "the redirect must not be followed")
}
