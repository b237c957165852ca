package webhook_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/worker/webhook"
)

// PublicAddr against the IANA special-purpose registries: each range that is not
// globally reachable is refused at its edges, and what is globally reachable next
// to them (or inside them, as a more specific entry) stays allowed.
func TestPublicAddr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr string
		want bool
		why  string
	}{
		{"93.184.215.14", true, "public IPv4"},
		{"2606:2800:21f:cb07::", true, "public IPv6"},
		{"127.0.0.1", false, "loopback"},
		{"::1", false, "loopback"},
		{"10.1.2.3", false, "RFC 1918"},
		{"172.16.0.1", false, "RFC 1918"},
		{"192.168.1.1", false, "RFC 1918"},
		{"169.254.169.254", false, "cloud metadata"},
		{"100.64.0.1", false, "CGNAT"},
		{"0.0.0.0", false, "unspecified"},
		{"0.1.2.3", false, "this network"},
		{"::", false, "unspecified"},
		{"fd00::1", false, "unique local"},
		{"fe80::1", false, "link-local"},
		{"fe80::1%eth0", false, "link-local with a zone"},
		{"2001:db8::1%eth0", false, "documentation with a zone"},
		{"224.0.0.1", false, "multicast"},
		{"ff02::1", false, "multicast"},
		{"255.255.255.255", false, "broadcast"},
		{"240.0.0.1", false, "reserved"},
		{"198.18.0.1", false, "benchmarking"},
		{"::ffff:127.0.0.1", false, "IPv4-mapped loopback"},
		{"::ffff:10.0.0.1", false, "IPv4-mapped private"},
		{"::ffff:93.184.215.14", true, "IPv4-mapped public"},
		{"2002:a00:1::", false, "6to4 of 10.0.0.1"},
		{"100::1", false, "discard-only"},
		{"fec0::1", false, "deprecated site-local"},

		// IPv4-compatible IPv6 (::/96, deprecated): embeds an IPv4 address.
		{"::a00:1", false, "IPv4-compatible 10.0.0.1"},
		{"::7f00:1", false, "IPv4-compatible 127.0.0.1"},
		{"::5db8:d70e", false, "IPv4-compatible 93.184.215.14 (deprecated all the same)"},
		{"::ffff:ffff", false, "end of ::/96"},
		// Well-known NAT64 (64:ff9b::/96, globally reachable): judged by the IPv4
		// address it embeds.
		{"64:ff9b::a00:1", false, "NAT64 of 10.0.0.1"},
		{"64:ff9b::a9fe:a9fe", false, "NAT64 of 169.254.169.254"},
		{"64:ff9b::5db8:d70e", true, "NAT64 of 93.184.215.14"},
		// Local-use NAT64 (64:ff9b:1::/48, RFC 8215): not globally reachable.
		{"64:ff9b:1::5db8:d70e", false, "local-use NAT64"},
		{"64:ff9b:1:ffff:ffff:ffff:ffff:ffff", false, "end of local-use NAT64"},
		{"64:ff9b:2::1", false, "past local-use NAT64, outside 2000::/3"},
		// IPv4 documentation: TEST-NET-1, -2, -3, and their neighbours.
		{"192.0.2.0", false, "TEST-NET-1"},
		{"192.0.2.255", false, "TEST-NET-1"},
		{"192.0.3.1", true, "past TEST-NET-1"},
		{"198.51.100.1", false, "TEST-NET-2"},
		{"198.51.100.255", false, "TEST-NET-2"},
		{"198.51.101.1", true, "past TEST-NET-2"},
		{"198.51.99.255", true, "before TEST-NET-2"},
		{"203.0.113.1", false, "TEST-NET-3"},
		{"203.0.113.255", false, "TEST-NET-3"},
		{"203.0.112.255", true, "before TEST-NET-3"},
		{"203.0.114.0", true, "past TEST-NET-3"},
		// IETF protocol assignments (192.0.0.0/24) but PCP and TURN anycast.
		{"192.0.0.8", false, "IPv4 dummy address"},
		{"192.0.0.170", false, "NAT64 discovery"},
		{"192.0.0.9", false, "PCP anycast: the nearest gateway"},
		{"192.0.0.10", false, "TURN anycast: the nearest server"},
		// IPv6 documentation: 2001:db8::/32 and 3fff::/20 (RFC 9637).
		{"2001:db8::1", false, "documentation"},
		{"3fff::1", false, "documentation (RFC 9637)"},
		{"3fff:fff:ffff::1", false, "end of 3fff::/20"},
		{"3fff:1000::1", true, "past 3fff::/20"},
		{"3ffe:ffff::1", true, "before 3fff::/20 (global unicast)"},
		// IETF protocol assignments (2001::/23), Teredo (2001::/32) included, but
		// the globally reachable entries inside it.
		{"2001::1", false, "Teredo"},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", false, "Teredo"},
		{"2001:2::1", false, "benchmarking"},
		{"2001:10::1", false, "deprecated ORCHID"},
		{"2001:1ff:ffff::1", false, "end of 2001::/23"},
		{"2001:1::1", false, "PCP anycast: the nearest gateway"},
		{"2001:1::2", false, "TURN anycast: the nearest server"},
		{"2001:1::3", false, "DNS-SD SRP anycast: the nearest server"},
		{"2001:1::4", false, "unassigned in 2001:1::/48"},
		{"2001:3::1", true, "AMT"},
		{"2001:4:112::1", true, "AS112-v6"},
		{"2001:20::1", true, "ORCHIDv2"},
		{"2001:30::1", true, "drone remote ID tags"},
		{"2001:200::1", true, "past 2001::/23 (WIDE, global)"},
		{"2001:4860:4860::8888", true, "Google: 2001:4860::/32 is public"},
		// Outside 2000::/3 nothing is global unicast.
		{"5f00::1", false, "SRv6 SIDs"},
		{"4000::1", false, "reserved by the IETF"},
		{"1fff:ffff::1", false, "reserved by the IETF"},
	} {
		assert.Equal(t, tc.want, webhook.PublicAddr(netip.MustParseAddr(tc.addr)), "%s (%s)", tc.addr, tc.why)
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
