package httpapi

import (
	"net"
	"net/url"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// originPolicy decides whether a browser page of some origin may open a
// stream (WebSocket or SSE). Programs send no Origin header and are always
// allowed: the check protects browser users from cross-site pages riding on
// their network position or cookies, not the server from programs (that is
// what --auth-token is for).
//
// Allowed are the serving host itself (the Origin's host[:port] equals the
// request's Host, default ports ignored) and every entry of the allowlist:
//
//	https://dash.example.com:8443  exact origin (scheme, host and port)
//	dash.example.com               that host on http or https, default port
//	https://*.example.com          any subdomain of example.com (not itself), https, default port
//	*.example.com                  the same on http or https
//	*                              any origin (turns the check off)
//
// Matching is case-insensitive. The opaque origin "null" (sandboxed frames,
// file: pages) is allowed only by "*" or an explicit "null" entry.
type originPolicy struct {
	any     bool
	allowed []originRule
}

type originRule struct {
	scheme   string // "" = http or https
	host     string // lowercased, without port; for wildcards the suffix with its leading dot
	port     string // "" = the scheme's default port
	wildcard bool
	null     bool
}

// newOriginPolicy parses the allowlist. Entries it cannot parse are returned
// so the caller can log them; they allow nothing.
func newOriginPolicy(entries []string) (originPolicy, []string) {
	var p originPolicy
	var bad []string
	for _, e := range entries {
		e = strings.TrimSpace(e)
		switch {
		case e == "":
			continue
		case e == "*":
			p.any = true
			continue
		case strings.EqualFold(e, "null"):
			p.allowed = append(p.allowed, originRule{null: true})
			continue
		}
		r, ok := parseOriginRule(e)
		if !ok {
			bad = append(bad, e)
			continue
		}
		p.allowed = append(p.allowed, r)
	}
	return p, bad
}

func parseOriginRule(e string) (originRule, bool) {
	var r originRule
	rest := e
	if i := strings.Index(e, "://"); i >= 0 {
		r.scheme = strings.ToLower(e[:i])
		if r.scheme != "http" && r.scheme != "https" {
			return r, false
		}
		rest = e[i+3:]
	}
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" || strings.ContainsAny(rest, "/?#@ ") {
		return r, false
	}
	host, port := splitHostPort(rest)
	if strings.HasPrefix(host, "*.") {
		r.wildcard = true
		host = host[1:] // keep the dot: ".example.com"
		if len(host) < 2 || strings.Contains(host[1:], "*") {
			return r, false
		}
	} else if host == "" || strings.Contains(host, "*") {
		return r, false
	}
	r.host = strings.ToLower(host)
	r.port = normalizePort(r.scheme, port)
	return r, true
}

// allows reports whether a handshake with this Origin header value, sent
// to a request whose Host header is host, may proceed.
func (p originPolicy) allows(origin, host string) bool {
	if origin == "" || p.any {
		return true
	}
	if origin == "null" {
		for _, r := range p.allowed {
			if r.null {
				return true
			}
		}
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	scheme := strings.ToLower(u.Scheme)
	oHost, oPort := splitHostPort(u.Host)
	oHost = strings.ToLower(oHost)
	oPort = normalizePort(scheme, oPort)

	// Same host as the one the browser connected to. The Host header carries
	// no scheme; a default port on either side is dropped, so the usual
	// "Origin: https://h" with "Host: h" matches.
	hHost, hPort := splitHostPort(host)
	if strings.EqualFold(hHost, oHost) && normalizePort(scheme, hPort) == oPort {
		return true
	}
	for _, r := range p.allowed {
		if r.null || (r.scheme != "" && r.scheme != scheme) {
			continue
		}
		// A rule without a port means the default port of the origin's scheme.
		if r.port != oPort {
			continue
		}
		if r.wildcard {
			if strings.HasSuffix(oHost, r.host) && len(oHost) > len(r.host) {
				return true
			}
		} else if oHost == r.host {
			return true
		}
	}
	return false
}

// requestHost is the host[:port] the browser connected to, which a
// same-host Origin must match: the Host header, or, when the peer is a
// trusted proxy (Config.TrustedProxy), the first entry of its
// X-Forwarded-Host (the host the outermost proxy was asked for). Fiber's
// c.Hostname() believes X-Forwarded-Host from anyone unless the app turns
// on its own trusted-proxy check, which an edge library cannot count on.
// X-Forwarded-Proto plays no part: the scheme is the Origin's own.
func (s *Server) requestHost(c *fiber.Ctx) string {
	if s.cfg.TrustedProxy != nil && s.cfg.TrustedProxy(c.Context().RemoteIP()) {
		if fh := c.Get(fiber.HeaderXForwardedHost); fh != "" {
			first, _, _ := strings.Cut(fh, ",")
			if first = strings.TrimSpace(first); first != "" {
				return first
			}
		}
	}
	return string(c.Request().Host())
}

// splitHostPort splits "host:port", "host", "[::1]:port" or "[::1]".
func splitHostPort(hp string) (host, port string) {
	if h, p, err := net.SplitHostPort(hp); err == nil {
		return h, p
	}
	return strings.TrimSuffix(strings.TrimPrefix(hp, "["), "]"), ""
}

// normalizePort maps a scheme's default port to "".
func normalizePort(scheme, port string) string {
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		return ""
	}
	return port
}

// SameOrigin reports whether a request comes from a page this server
// serves, or from an origin its allowlist names, as the streams' Origin
// check decides; a request without Origin (a program) does too. For
// requests that change state (signing out), against cross-site forms.
func (s *Server) SameOrigin(c *fiber.Ctx) bool {
	return s.origins.allows(c.Get(fiber.HeaderOrigin), s.requestHost(c))
}
