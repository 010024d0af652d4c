package httpapi

import (
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/stream"
)

func TestOriginPolicy(t *testing.T) {
	allow := []string{
		"https://dash.example.com:8443",
		"ops.example.org",
		"https://*.corp.example",
		"*.lab.example",
		"http://127.0.0.1:3000",
	}
	p, bad := newOriginPolicy(append(allow, "ftp://x.example", "https://*", "http://a/b"))
	if len(bad) != 3 {
		t.Fatalf("unparseable entries = %q, want the 3 bad ones", bad)
	}
	tests := []struct {
		origin, host string
		want         bool
	}{
		{"", "anything:8080", true},                                // a program: no Origin
		{"http://web-1:8080", "web-1:8080", true},                  // same host
		{"http://WEB-1:8080", "web-1:8080", true},                  // case-insensitive
		{"https://web-1", "web-1:443", true},                       // default port on one side
		{"http://web-1", "web-1:80", true},                         // default port on one side
		{"http://web-1:8081", "web-1:8080", false},                 // other port
		{"http://evil.example", "web-1:8080", false},               // other host
		{"https://web-1.evil.example", "web-1:8080", false},        // prefix trick
		{"null", "web-1:8080", false},                              // opaque origin
		{"javascript://web-1:8080", "web-1:8080", false},           // not http(s)
		{"https://dash.example.com:8443", "web-1:8080", true},      // exact entry
		{"http://dash.example.com:8443", "web-1:8080", false},      // wrong scheme
		{"https://dash.example.com", "web-1:8080", false},          // wrong port
		{"http://ops.example.org", "web-1:8080", true},             // host entry, http
		{"https://ops.example.org", "web-1:8080", true},            // host entry, https
		{"https://ops.example.org:444", "web-1:8080", false},       // host entry means default port
		{"https://a.corp.example", "web-1:8080", true},             // wildcard
		{"https://a.b.corp.example", "web-1:8080", true},           // wildcard, deeper
		{"https://corp.example", "web-1:8080", false},              // wildcard excludes the domain itself
		{"http://a.corp.example", "web-1:8080", false},             // wildcard with scheme
		{"https://evilcorp.example", "web-1:8080", false},          // suffix without the dot
		{"http://x.lab.example", "web-1:8080", true},               // scheme-less wildcard
		{"https://x.lab.example", "web-1:8080", true},              // scheme-less wildcard
		{"http://127.0.0.1:3000", "web-1:8080", true},              // exact, IP
		{"http://[::1]:8080", "[::1]:8080", true},                  // IPv6 same host
		{"http://[::1]:8081", "[::1]:8080", false},                 // IPv6 other port
		{"http://%zz", "web-1:8080", false},                        // unparseable
		{"https://dash.example.com:8443/path", "web-1:8080", true}, // a path is ignored by url.Parse's Host
	}
	for _, tt := range tests {
		if got := p.allows(tt.origin, tt.host); got != tt.want {
			t.Errorf("allows(%q, host %q) = %v, want %v", tt.origin, tt.host, got, tt.want)
		}
	}
}

func TestOriginPolicyStarAndNull(t *testing.T) {
	p, _ := newOriginPolicy([]string{"*"})
	if !p.allows("https://anything.example", "web-1:8080") || !p.allows("null", "web-1") {
		t.Error(`"*" must allow every origin`)
	}
	p, _ = newOriginPolicy([]string{"null"})
	if !p.allows("null", "web-1") {
		t.Error(`an explicit "null" entry must allow the opaque origin`)
	}
	if p.allows("https://other.example", "web-1") {
		t.Error(`"null" must not allow other origins`)
	}
	p, _ = newOriginPolicy(nil)
	if p.allows("https://other.example", "web-1") {
		t.Error("no allowlist must allow only the serving host")
	}
}

func FuzzOriginPolicy(f *testing.F) {
	f.Add("https://a.corp.example", "web-1:8080")
	f.Add("http://[::1]:80", "[::1]")
	f.Add("null", "")
	p, _ := newOriginPolicy([]string{"https://*.corp.example", "ops.example.org"})
	f.Fuzz(func(t *testing.T, origin, host string) {
		// Must not panic; an origin equal to "http://"+host is always allowed
		// when host is a plain lowercase name.
		p.allows(origin, host)
		if host != "" && isPlainHost(host) && !p.allows("http://"+host, host) {
			t.Errorf("same-host origin refused: %q", host)
		}
	})
}

func isPlainHost(h string) bool {
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// TestOriginForwardedHostOnlyFromTrustedProxies: X-Forwarded-Host names the
// serving host only when the peer is a trusted proxy; from anyone else it is
// ignored and the Host header counts, so a client cannot pick the host its
// Origin is compared with.
func TestOriginForwardedHostOnlyFromTrustedProxies(t *testing.T) {
	var seenPeer []string
	trustAll := func(peer net.IP) bool { seenPeer = append(seenPeer, peer.String()); return true }
	trustNone := func(net.IP) bool { return false }
	tests := []struct {
		name    string
		trusted func(net.IP) bool
		host    string
		fwdHost string
		origin  string
		allowed bool
	}{
		{"same host, no proxy", nil, "web-1:8080", "", "http://web-1:8080", true},
		{"forwarded host from a trusted proxy", trustAll, "127.0.0.1:8080", "ops.example.com", "https://ops.example.com", true},
		{"first forwarded host of a chain", trustAll, "127.0.0.1:8080", "ops.example.com, inner:8080", "https://ops.example.com", true},
		{"trusted proxy without the header: Host counts", trustAll, "web-1:8080", "", "http://web-1:8080", true},
		{"trusted proxy, the Host header no longer counts", trustAll, "web-1:8080", "ops.example.com", "http://web-1:8080", false},
		{"forwarded host from an untrusted peer is ignored", trustNone, "127.0.0.1:8080", "ops.example.com", "https://ops.example.com", false},
		{"nil trusts nobody", nil, "127.0.0.1:8080", "ops.example.com", "https://ops.example.com", false},
		{"spoofed forwarded host cannot allow a foreign page", nil, "web-1:8080", "evil.example", "http://evil.example", false},
		{"untrusted peer keeps its own Host", trustNone, "web-1:8080", "evil.example", "http://web-1:8080", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			srv := New(Config{Registry: stream.NewRegistry(stream.RegistryConfig{Host: "web-1", Logger: log}), Logger: log, TrustedProxy: tt.trusted})
			app := fiber.New(srv.FiberConfig(fiber.Config{DisableStartupMessage: true}))
			srv.Register(app)
			req := httptest.NewRequest("GET", "http://"+tt.host+"/ws", nil)
			req.Header.Set("Origin", tt.origin)
			if tt.fwdHost != "" {
				req.Header.Set("X-Forwarded-Host", tt.fwdHost)
			}
			resp, err := app.Test(req, -1)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			// Past the Origin check, a plain GET /ws is answered 426
			// (not an upgrade); refused by it, 403.
			if got := resp.StatusCode != fiber.StatusForbidden; got != tt.allowed {
				t.Errorf("Origin %s, Host %s, X-Forwarded-Host %q: status %d, want allowed=%v",
					tt.origin, tt.host, tt.fwdHost, resp.StatusCode, tt.allowed)
			}
		})
	}
	// The hook is asked about the TCP peer (app.Test's is 0.0.0.0), not
	// about any address a header names.
	for _, p := range seenPeer {
		if p != "0.0.0.0" {
			t.Errorf("TrustedProxy asked about %s, want the peer 0.0.0.0", p)
		}
	}
	if len(seenPeer) == 0 {
		t.Error("TrustedProxy was never asked")
	}
}
