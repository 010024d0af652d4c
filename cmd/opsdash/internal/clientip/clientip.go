// Package clientip says who an HTTP request comes from when the server
// may sit behind proxies of its own deployment (load balancers, nginx):
// the TCP peer, unless the peer is a trusted proxy, in which case the
// rightmost X-Forwarded-For address that is not one (see Forwarded).
//
// Per-IP limits, the login failure limiter and logs count clients by it;
// the Origin check and Fiber believe X-Forwarded-Host and
// X-Forwarded-Proto only from the same proxies (TrustedPeer, FiberConfig).
// docs/deploy.md ("Behind a proxy: client addresses") is the operator's
// description.
package clientip

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// Proxies is a set of trusted proxies: addresses and CIDR ranges whose
// X-Forwarded-For and X-Forwarded-Host are believed. The zero value trusts
// nobody.
type Proxies struct {
	prefixes []netip.Prefix
}

// ParseProxies parses IP addresses ("10.0.0.7", "::1") and CIDR ranges
// ("10.0.0.0/8", "fd00::/8"); empty entries are skipped. An entry that
// does not parse is returned as an error quoting it (`"proxy.example":
// want …`, for the caller to prefix with the setting's name); the set
// holds the others, so it trusts less, never more.
func ParseProxies(entries []string) (Proxies, []error) {
	var set Proxies
	var errs []error
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		var p netip.Prefix
		var err error
		if strings.Contains(e, "/") {
			p, err = netip.ParsePrefix(e)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(e); err == nil {
				p = netip.PrefixFrom(a, a.BitLen()) // drops a zone, as peers are compared without one
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%q: want an IP address or a CIDR range (10.0.0.0/8)", e))
			continue
		}
		// Addresses are compared unmapped (::ffff:10.0.0.1 is 10.0.0.1),
		// so an IPv4-mapped range is turned into the IPv4 one.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		set.prefixes = append(set.prefixes, p.Masked())
	}
	return set, errs
}

// Len is the number of addresses and ranges in the set.
func (s Proxies) Len() int { return len(s.prefixes) }

// Contains reports whether a is one of the trusted proxies.
func (s Proxies) Contains(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range s.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ContainsIP is Contains for a net.IP (what fasthttp reports as the peer).
func (s Proxies) ContainsIP(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	return ok && s.Contains(a)
}

// Strings returns the set as CIDR strings.
func (s Proxies) Strings() []string {
	out := make([]string, len(s.prefixes))
	for i, p := range s.prefixes {
		out[i] = p.String()
	}
	return out
}

// ClientIP says who c comes from, for per-IP limits and logs: the TCP
// peer, or, when the peer is a trusted proxy, the rightmost
// X-Forwarded-For address that is not one (Forwarded). Its method value
// fits httpapi.Config.ClientIP.
func (s Proxies) ClientIP(c *fiber.Ctx) string {
	peer, ok := netip.AddrFromSlice(c.Context().RemoteIP())
	if !ok {
		return c.IP()
	}
	peer = peer.Unmap()
	if !s.Contains(peer) {
		return peer.String()
	}
	raw := c.Request().Header.PeekAll(fiber.HeaderXForwardedFor)
	xff := make([]string, len(raw))
	for i, v := range raw {
		xff[i] = string(v)
	}
	return Forwarded(peer, xff, s.Contains).String()
}

// TrustedPeer returns the predicate for httpapi.Config.TrustedProxy: the
// Origin check believes X-Forwarded-Host only from these peers. nil when
// the set is empty (httpapi then trusts nobody).
func (s Proxies) TrustedPeer() func(net.IP) bool {
	if s.Len() == 0 {
		return nil
	}
	return s.ContainsIP
}

// FiberConfig returns base with Fiber's own trusted-proxy check on and
// limited to the set, so that c.Protocol(), c.Hostname() and c.BaseURL()
// believe X-Forwarded-Proto and X-Forwarded-Host only from these proxies
// (Fiber's default believes them from anyone).
func (s Proxies) FiberConfig(base fiber.Config) fiber.Config {
	base.EnableTrustedProxyCheck = true
	base.TrustedProxies = s.Strings()
	return base
}

// Forwarded says who a request comes from, given its TCP peer and its
// X-Forwarded-For header values (in order; several header lines count as
// one list).
//
// The rule: a peer that is not a trusted proxy is the client, whatever the
// header says. Behind trusted proxies the header is read from the right,
// since each proxy appends the address it received the request from: the
// rightmost entry was written by the peer, the one before it by the proxy
// that entry names, and so on. The first entry from the right that is not a
// trusted proxy is the client; everything to its left was written by the
// client or its own proxies and may be forged. (Fiber v2's c.IP() with a
// proxy header takes the leftmost entry, which any client can set.)
//
// Edge cases, decided:
//   - no header, or nothing but empty entries: the peer;
//   - an entry that is not an IP address ("unknown", garbage) before a
//     non-trusted address is found: the peer, since the chain cannot be
//     followed further and the peer is the last address known for sure;
//   - every entry a trusted proxy (the request started inside the trusted
//     network, e.g. a health check from the load balancer): the leftmost
//     entry, the furthest hop that trusted proxies vouch for;
//   - entries may carry a port ("203.0.113.9:4711", "[2001:db8::1]:443"),
//     which is dropped; IPv4-mapped IPv6 is reported as IPv4, zones dropped.
func Forwarded(peer netip.Addr, xff []string, trusted func(netip.Addr) bool) netip.Addr {
	peer = peer.Unmap().WithZone("")
	if !peer.IsValid() || !trusted(peer) {
		return peer
	}
	client := peer
	for i := len(xff) - 1; i >= 0; i-- {
		rest := xff[i]
		for rest != "" {
			var entry string
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				entry, rest = rest[j+1:], rest[:j]
			} else {
				entry, rest = rest, ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			a, ok := parseForwardedAddr(entry)
			if !ok {
				return peer
			}
			if !trusted(a) {
				return a
			}
			client = a
		}
	}
	return client
}

// parseForwardedAddr parses one X-Forwarded-For entry: an IP address,
// optionally with a port ("1.2.3.4:80", "[::1]:80") or in brackets ("[::1]").
func parseForwardedAddr(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil && a.Is6() {
			return a.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}
