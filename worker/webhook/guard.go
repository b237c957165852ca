package webhook

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// ErrPrivateAddress is wrapped by the dial error of a connection to a non-public
// address while private addresses are not allowed.
var ErrPrivateAddress = errors.New("address is not public (VIBERQ_WEBHOOK_ALLOW_PRIVATE is off)")

// nonPublic lists the ranges netip's predicates leave out: "this network", CGNAT
// (carrier-grade NAT, often internal in clouds), IETF protocol assignments,
// benchmarking, the IPv6 discard and documentation prefixes, 6to4 and NAT64 (they
// embed IPv4 addresses).
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("fec0::/10"), // deprecated site-local, still routed internally by some hosts
}

// PublicAddr reports whether a is a public unicast address: not loopback, private,
// link-local (cloud metadata lives at 169.254.169.254), multicast, unspecified or
// one of the other reserved ranges.
func PublicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() ||
		a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() || a.IsMulticast() ||
		a.IsUnspecified() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// guardControl is a net.Dialer Control that refuses non-public addresses. It runs
// after DNS resolution, for every address tried, so a name that resolves to an
// internal address (or is rebound to one) is refused too.
func guardControl(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("webhook dial %s: %w", address, err)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("webhook dial %s: %w", address, err)
	}
	if !PublicAddr(a) {
		return fmt.Errorf("webhook dial %s: %w", a, ErrPrivateAddress)
	}
	return nil
}

// NewHTTPClient returns the client webhook POSTs go through: timeout per POST,
// redirects never followed (a 3xx is a failed attempt), no proxy from the
// environment, and unless allowPrivate, connections to non-public addresses refused
// at dial time (see the package doc, "Addresses").
func NewHTTPClient(timeout time.Duration, concurrency int, allowPrivate bool) *http.Client {
	d := &net.Dialer{Timeout: min(timeout, 10*time.Second), KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = guardControl
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          max(100, concurrency),
		MaxIdleConnsPerHost:   max(10, concurrency),
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
