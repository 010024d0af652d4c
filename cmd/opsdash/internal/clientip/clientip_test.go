package clientip

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"testing"

	"github.com/gofiber/fiber/v2"
)

func TestForwardedClient(t *testing.T) {
	set, errs := ParseProxies([]string{"10.0.0.0/8", "192.0.2.7", "fd00::/8", "::1"})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	tests := []struct {
		name string
		peer string
		xff  []string
		want string
	}{
		{"untrusted peer: the header is ignored", "203.0.113.5", []string{"198.51.100.1"}, "203.0.113.5"},
		{"untrusted peer without header", "203.0.113.5", nil, "203.0.113.5"},
		{"trusted peer without header: the peer", "10.0.0.1", nil, "10.0.0.1"},
		{"trusted peer, empty header", "10.0.0.1", []string{""}, "10.0.0.1"},
		{"one proxy", "10.0.0.1", []string{"198.51.100.1"}, "198.51.100.1"},
		{"forged leftmost entries are skipped", "10.0.0.1", []string{"1.1.1.1, 2.2.2.2, 198.51.100.1"}, "198.51.100.1"},
		{"chain of trusted proxies", "10.0.0.1", []string{"198.51.100.1, 10.9.9.9, 192.0.2.7"}, "198.51.100.1"},
		{"forgery before a chain", "10.0.0.1", []string{"6.6.6.6, 198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"several header lines are one list", "10.0.0.1", []string{"6.6.6.6, 198.51.100.1", "10.9.9.9"}, "198.51.100.1"},
		{"last header line holds the client", "10.0.0.1", []string{"6.6.6.6", "198.51.100.1"}, "198.51.100.1"},
		{"spaces and empty entries", "10.0.0.1", []string{" ,198.51.100.1 ,, 10.2.2.2 , "}, "198.51.100.1"},
		{"all trusted: the leftmost", "10.0.0.1", []string{"10.3.3.3, 10.2.2.2"}, "10.3.3.3"},
		{"malformed entry in the chain: the peer", "10.0.0.1", []string{"198.51.100.1, garbage, 10.2.2.2"}, "10.0.0.1"},
		{"malformed last entry: the peer", "10.0.0.1", []string{"198.51.100.1, unknown"}, "10.0.0.1"},
		{"malformed entry left of the client is never read", "10.0.0.1", []string{"garbage, 198.51.100.1"}, "198.51.100.1"},
		{"IPv4 with a port", "10.0.0.1", []string{"198.51.100.1:4711"}, "198.51.100.1"},
		{"IPv6 client", "10.0.0.1", []string{"2001:db8::1"}, "2001:db8::1"},
		{"IPv6 client with a port", "10.0.0.1", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"IPv6 client in brackets", "10.0.0.1", []string{"[2001:db8::1]"}, "2001:db8::1"},
		{"IPv6 proxies", "::1", []string{"2001:db8::1, fd00::2"}, "2001:db8::1"},
		{"IPv4-mapped peer and entries", "::ffff:10.0.0.1", []string{"::ffff:198.51.100.1, ::ffff:10.2.2.2"}, "198.51.100.1"},
		{"zone dropped", "10.0.0.1", []string{"fe80::1%eth0"}, "fe80::1"},
		{"bracketed IPv4 is malformed", "10.0.0.1", []string{"[198.51.100.1]"}, "10.0.0.1"},
		{"a name is malformed", "10.0.0.1", []string{"client.example"}, "10.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Forwarded(netip.MustParseAddr(tt.peer), tt.xff, set.Contains)
			if got.String() != tt.want {
				t.Errorf("Forwarded(%s, %q) = %s, want %s", tt.peer, tt.xff, got, tt.want)
			}
		})
	}
}

func TestParseProxies(t *testing.T) {
	set, errs := ParseProxies([]string{" 10.0.0.7 ", "10.1.2.3/8", "::ffff:192.0.2.0/120", "2001:db8::/32", "", "fe80::1%eth0", "nope", "10.0.0.0/40"})
	want := []string{"10.0.0.7/32", "10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32", "fe80::1/128"}
	if !reflect.DeepEqual(set.Strings(), want) {
		t.Errorf("set = %v, want %v", set.Strings(), want)
	}
	if len(errs) != 2 {
		t.Errorf("errors = %v, want 2 (a name, a bad prefix)", errs)
	}
	for _, tt := range []struct {
		ip   string
		want bool
	}{
		{"10.0.0.7", true}, {"10.0.0.8", true}, {"11.0.0.1", false}, {"192.0.2.200", true},
		{"::ffff:10.9.9.9", true}, {"2001:db8:1::5", true}, {"2001:db9::1", false},
	} {
		if got := set.ContainsIP(net.ParseIP(tt.ip)); got != tt.want {
			t.Errorf("contains(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
	if empty, _ := ParseProxies(nil); empty.Contains(netip.MustParseAddr("127.0.0.1")) {
		t.Error("an empty set trusts someone")
	}
}

func FuzzForwardedClient(f *testing.F) {
	f.Add("10.0.0.1", "1.1.1.1, 198.51.100.1, 10.2.2.2")
	f.Add("::1", "[2001:db8::1]:80,,garbage")
	set, _ := ParseProxies([]string{"10.0.0.0/8", "::1"})
	f.Fuzz(func(t *testing.T, peer, xff string) {
		p, err := netip.ParseAddr(peer)
		if err != nil {
			return
		}
		got := Forwarded(p, []string{xff}, set.Contains)
		// The answer is the peer, or an address the header names; never
		// a trusted proxy unless the whole chain was trusted.
		if !got.IsValid() && p.IsValid() {
			t.Fatalf("invalid result for peer %s, header %q", peer, xff)
		}
		if !set.Contains(p) && got != p.Unmap().WithZone("") {
			t.Fatalf("untrusted peer %s: got %s", peer, got)
		}
	})
}

// seen sends app.Test's GET http://web-1:8080/ with headers h (its peer is
// 0.0.0.0) to an app of cfg and returns what report says of the request.
func seen(t *testing.T, cfg fiber.Config, h http.Header, report func(*fiber.Ctx) string) string {
	t.Helper()
	cfg.DisableStartupMessage = true
	app := fiber.New(cfg)
	app.Get("/", func(c *fiber.Ctx) error { return c.SendString(report(c)) })
	req, _ := http.NewRequest("GET", "http://web-1:8080/", nil)
	req.Header = h
	resp, err := app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// TestTrustedProxyHooks: the hooks handed to Fiber (FiberConfig) and
// httpapi (TrustedPeer) believe forwarded headers only from the set
// (app.Test's peer is 0.0.0.0).
func TestTrustedProxyHooks(t *testing.T) {
	for _, tt := range []struct {
		proxies []string
		want    string
	}{
		{nil, "http web-1:8080"},
		{[]string{"10.0.0.0/8"}, "http web-1:8080"},
		{[]string{"0.0.0.0"}, "https ops.example.com"},
	} {
		set, errs := ParseProxies(tt.proxies)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		body := seen(t, set.FiberConfig(fiber.Config{}), http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"ops.example.com"}},
			func(c *fiber.Ctx) string { return c.Protocol() + " " + c.Hostname() })
		if body != tt.want {
			t.Errorf("--trusted-proxies %v: Fiber sees %q, want %q", tt.proxies, body, tt.want)
		}

		trusted := set.TrustedPeer()
		if len(tt.proxies) == 0 {
			if trusted != nil {
				t.Error("TrustedPeer() with no proxies is not nil")
			}
			continue
		}
		if got, want := trusted(net.IPv4zero), tt.proxies[0] == "0.0.0.0"; got != want {
			t.Errorf("--trusted-proxies %v: TrustedPeer()(0.0.0.0) = %v", tt.proxies, got)
		}
		if !trusted(net.ParseIP("10.1.2.3")) && tt.proxies[0] == "10.0.0.0/8" {
			t.Error("10.1.2.3 not trusted by 10.0.0.0/8")
		}
	}
}

// TestClientIP: a request from a trusted proxy is counted as the forwarded
// client, one from anyone else as its peer, whatever its header says
// (app.Test's peer is 0.0.0.0).
func TestClientIP(t *testing.T) {
	for _, tt := range []struct {
		proxies []string
		want    string
	}{
		{nil, "0.0.0.0"},
		{[]string{"10.0.0.0/8"}, "0.0.0.0"},
		{[]string{"0.0.0.0", "10.0.0.0/8"}, "203.0.113.9"},
	} {
		set, _ := ParseProxies(tt.proxies)
		body := seen(t, fiber.Config{}, http.Header{"X-Forwarded-For": {"198.51.100.66, 203.0.113.9", "10.1.1.1"}}, set.ClientIP)
		if body != tt.want {
			t.Errorf("proxies %v: client %q, want %q", tt.proxies, body, tt.want)
		}
	}
}
