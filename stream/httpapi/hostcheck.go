package httpapi

import (
	"context"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
)

// The Host check (DNS rebinding). A web page can point a name it controls
// at 127.0.0.1 (or at any address of this machine) after it loaded; the
// browser then takes the dashboard for that page's own site, and the
// Origin check cannot tell, since page and request share the name. The
// request still names the attacker's host, so a server without an auth
// token refuses a request whose host is not one of its own: loopback
// names and addresses, this machine's hostname and FQDN, its host id, the
// addresses of its interfaces, and the names the operator lists
// (--allowed-hosts). The host is the one the Origin check compares with
// (requestHost: the Host header, or a trusted proxy's X-Forwarded-Host).

// hostPolicy is the set of hosts a request may name.
type hostPolicy struct {
	any       bool            // "*": no check
	names     map[string]bool // lowercased names and canonical IP addresses
	wildcards []string        // ".example.com" for "*.example.com"

	// The interfaces' addresses change (DHCP, a VPN, containers), so they
	// are looked up again on a miss, at most every ifaceRefresh.
	mu          sync.Mutex
	ifaceAddrs  map[string]bool
	ifaceLooked time.Time
}

// ifaceRefresh is how often, at most, a request naming an unknown IP
// address makes the server list its interfaces' addresses again.
const ifaceRefresh = 5 * time.Second

// newHostPolicy builds the policy from the machine's own names (hostname,
// FQDN, host id) and the operator's entries: names, IP addresses,
// "*.example.com" (its subdomains) or "*" (any host).
func newHostPolicy(own, allowed []string) *hostPolicy {
	p := &hostPolicy{names: make(map[string]bool)}
	for _, e := range append(append([]string(nil), own...), allowed...) {
		e = normalizeHost(e)
		switch {
		case e == "":
		case e == "*":
			p.any = true
		case strings.HasPrefix(e, "*."):
			p.wildcards = append(p.wildcards, e[1:])
		default:
			if ip := net.ParseIP(e); ip != nil {
				e = ip.String()
			}
			p.names[e] = true
		}
	}
	return p
}

// normalizeHost lowercases a host and drops its port, IPv6 brackets and a
// trailing dot.
func normalizeHost(h string) string {
	h, _ = splitHostPort(strings.TrimSpace(h))
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// allows reports whether a request naming hostport may be served.
func (p *hostPolicy) allows(hostport string) bool {
	h := normalizeHost(hostport)
	switch {
	case p.any, h == "":
		// No Host at all comes from a program (HTTP/1.0), never from a
		// browser, which always names the host it thinks it talks to.
		return true
	case h == "localhost" || strings.HasSuffix(h, ".localhost"):
		return true // browsers resolve these to loopback themselves (RFC 6761)
	case p.names[h]:
		return true
	}
	if ip := net.ParseIP(h); ip != nil {
		return ip.IsLoopback() || p.names[ip.String()] || p.isInterfaceAddr(ip)
	}
	for _, w := range p.wildcards {
		if strings.HasSuffix(h, w) && len(h) > len(w) {
			return true
		}
	}
	return false
}

// isInterfaceAddr reports whether ip is an address of one of this
// machine's interfaces.
func (p *hostPolicy) isInterfaceAddr(ip net.IP) bool {
	key := ip.String()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ifaceAddrs[key] {
		return true
	}
	if time.Since(p.ifaceLooked) < ifaceRefresh {
		return false
	}
	p.ifaceLooked = time.Now()
	p.ifaceAddrs = make(map[string]bool)
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				p.ifaceAddrs[n.IP.String()] = true
			}
		}
	}
	return p.ifaceAddrs[key]
}

// LocalNames returns this machine's hostname and, when a resolver knows
// it within a second, its fully qualified name: the names of Config.Hosts
// a server gets besides its host id.
func LocalNames() []string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return nil
	}
	names := []string{host}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if cname, err := net.DefaultResolver.LookupCNAME(ctx, host); err == nil {
		if fqdn := strings.TrimSuffix(cname, "."); fqdn != "" && !strings.EqualFold(fqdn, host) {
			names = append(names, fqdn)
		}
	}
	return names
}

// HostGuard returns a middleware that refuses, with 403 forbidden_host, a
// request whose host is not one of this server's (see hostcheck.go) when
// Config.CheckHost is set; requests for the open paths (exact, compared
// case-insensitively, such as the probes "/healthz" and "/readyz") always
// pass. Install it with app.Use before the routes it protects.
func (s *Server) HostGuard(open ...string) fiber.Handler {
	if !s.cfg.CheckHost {
		return func(c *fiber.Ctx) error { return c.Next() }
	}
	openSet := make(map[string]bool, len(open))
	for _, p := range open {
		openSet[strings.ToLower(p)] = true
	}
	return func(c *fiber.Ctx) error {
		path := strings.ToLower(c.Path())
		if len(path) > 1 {
			path = strings.TrimSuffix(path, "/")
		}
		host := s.requestHost(c)
		if openSet[path] || s.hosts.allows(host) {
			return c.Next()
		}
		s.countRefused("host")
		ip := s.cfg.ClientIP(c)
		if ok, held := s.logLimit.allow(ip, "host", time.Now()); ok {
			s.log.Info("refused a request for a foreign host", "host", host, "path", c.Path(), "client_ip", ip, "held_back", held)
		}
		return WriteError(c, fiber.StatusForbidden, "forbidden_host",
			"host "+normalizeHost(host)+" is not a name of this server; an operator can allow it with --allowed-hosts")
	}
}
