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

// nonPublic lists the IPv4 ranges netip's predicates leave out that the IANA IPv4
// Special-Purpose Address Registry marks not globally reachable: "this network",
// CGNAT (carrier-grade NAT, often internal in clouds), the IETF protocol assignments
// (192.0.0.0/24), the three documentation ranges (TEST-NET-1, -2, -3), benchmarking
// and the reserved 240.0.0.0/4; and the IPv6 ranges inside global unicast
// (2000::/3, see PublicAddr) that are not globally reachable: the IETF protocol
// assignments 2001::/23 (Teredo, 2001::/32, embeds IPv4 addresses), the
// documentation prefixes 2001:db8::/32 and 3fff::/20 (RFC 9637), and 6to4 (it embeds
// IPv4 addresses).
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("2001::/23"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("3fff::/20"),
}

// globalExceptions are the more specific entries of the registries inside a
// nonPublic range that are globally reachable and reach a service somewhere else:
// AMT (2001:3::/32), AS112-v6 (2001:4:112::/48), ORCHIDv2 (2001:20::/28) and the
// drone remote ID tags (2001:30::/28). The anycast addresses the registries also mark
// globally reachable (PCP 192.0.0.9 and 2001:1::1, TURN 192.0.0.10 and 2001:1::2,
// DNS-SD SRP 2001:1::3) stay refused: anycast is answered by the nearest server of
// the service, typically the site's own gateway (RFC 7723), and no receiver lives
// there.
var globalExceptions = []netip.Prefix{
	netip.MustParsePrefix("2001:3::/32"),
	netip.MustParsePrefix("2001:4:112::/48"),
	netip.MustParsePrefix("2001:20::/28"),
	netip.MustParsePrefix("2001:30::/28"),
}

// globalUnicast6 is the only IPv6 space IANA allocates for global unicast; the rest
// is reserved, unique-local, link-local or multicast: ::/96 (IPv4-compatible,
// deprecated, embeds IPv4 addresses), 100::/64 (discard), 64:ff9b:1::/48 (local-use
// NAT64, RFC 8215), fec0::/10 (deprecated site-local, still routed internally by
// some hosts), 5f00::/16 (SRv6 SIDs) and whatever the IETF assigns there next.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// nat64 is the well-known NAT64 prefix (RFC 6052): globally reachable, it reaches
// the IPv4 address in its last 32 bits, so it is public when that address is (an
// IPv6-only worker behind DNS64 reaches IPv4-only receivers this way).
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// PublicAddr reports whether a is a public unicast address: not loopback, private,
// link-local (cloud metadata lives at 169.254.169.254), multicast, unspecified or
// one of the other ranges the IANA special-purpose registries mark not globally
// reachable; an IPv6 address must be in global unicast (2000::/3). IPv4-mapped
// (::ffff:0:0/96) and well-known NAT64 (64:ff9b::/96) addresses are judged by the
// IPv4 address they embed.
func PublicAddr(a netip.Addr) bool {
	a = a.Unmap().WithZone("") // a zone would keep a from matching any prefix
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		return PublicAddr(netip.AddrFrom4([4]byte(b[12:])))
	}
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() ||
		a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() || a.IsMulticast() ||
		a.IsUnspecified() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) ||
		(a.Is6() && !globalUnicast6.Contains(a)) {
		return false
	}
	for _, p := range globalExceptions {
		if p.Contains(a) {
			return true
		}
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
