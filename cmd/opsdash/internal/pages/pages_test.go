package pages

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/static"
	"github.com/opsdash/opsdash/stream"
)

// pagesApp serves the pages of a registry holding a few topics of host
// "testhost", without the rest of the server.
func pagesApp(t *testing.T) *fiber.App {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := stream.NewRegistry(stream.RegistryConfig{Host: "testhost", Logger: log})
	for _, ti := range []collectors.TopicInfo{
		{Name: "testhost.cpu", Interval: time.Second, Description: "CPU"},
		{Name: "testhost.mem", Interval: time.Second, Description: "memory"},
		{Name: "testhost.proc.top", Interval: 2 * time.Second, Description: "processes", OnDemand: true},
	} {
		reg.Declare(ti)
	}
	now := time.Now()
	for i := 10; i >= 0; i-- {
		at := now.Add(-time.Duration(i) * time.Second)
		reg.Publish(collectors.Sample{Topic: "testhost.cpu", Time: at, Data: collectors.CPUData{UsagePct: 42.25, Cores: 2}})
		reg.Publish(collectors.Sample{Topic: "testhost.mem", Time: at, Data: collectors.MemData{TotalBytes: 8 << 30, UsedBytes: 2 << 30, UsedPct: 25}})
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	Register(app, reg, log)
	return app
}

func do(t *testing.T, app *fiber.App, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := app.Test(req, 10_000)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestPagesSecurityHeaders(t *testing.T) {
	app := pagesApp(t)
	for _, path := range []string{"/", "/topics", "/topics?pattern=*.cpu", "/topics/testhost.cpu"} {
		resp, body := do(t, app, httptest.NewRequest("GET", path, nil))
		if resp.StatusCode != 200 {
			t.Errorf("GET %s = %d", path, resp.StatusCode)
			continue
		}
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("GET %s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: CSP allows unsafe sources: %q", path, csp)
		}
		for h, want := range map[string]string{
			"X-Content-Type-Options": "nosniff",
			"X-Frame-Options":        "DENY",
			"Cache-Control":          "no-store",
			"Content-Type":           "text/html; charset=utf-8",
		} {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("GET %s: %s = %q, want %q", path, h, got, want)
			}
		}
		if !strings.Contains(body, `data-topic="testhost.cpu"`) {
			t.Errorf("GET %s: no testhost.cpu in the page", path)
		}
	}
	resp, _ := do(t, app, httptest.NewRequest("GET", "/topics/testhost.nope", nil))
	if resp.StatusCode != 404 || resp.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("unknown topic page = %d with CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
}

var assetRE = regexp.MustCompile(`(?:src|href)="(/static/[^"]+)"`)

func TestPagesStaticAssets(t *testing.T) {
	app := pagesApp(t)
	_, page := do(t, app, httptest.NewRequest("GET", "/", nil))
	links := map[string]bool{}
	for _, m := range assetRE.FindAllStringSubmatch(page, -1) {
		links[m[1]] = true
	}
	fleetOnly := map[string]bool{"fleet.js": true, "fleet.css": true} // the fleet overview's (fleet_test.go)
	if len(links) != len(static.Assets())-len(fleetOnly) {
		t.Fatalf("the page links %v, want every asset but the fleet overview's (%d)", links, len(static.Assets())-len(fleetOnly))
	}
	for _, a := range static.Assets() {
		url := static.Path(a.Name)
		if !links[url] && !fleetOnly[a.Name] {
			t.Errorf("%s not linked as %s", a.Name, url)
		}
		resp, body := do(t, app, httptest.NewRequest("GET", url, nil))
		if resp.StatusCode != 200 || body != string(a.Body) {
			t.Errorf("GET %s = %d, %d bytes, want the %d bytes of %s", url, resp.StatusCode, len(body), len(a.Body), a.Name)
		}
		if got := resp.Header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
			t.Errorf("GET %s: Cache-Control %q", url, got)
		}
		if got := resp.Header.Get("Content-Type"); got != a.ContentType || got == "" {
			t.Errorf("GET %s: Content-Type %q", url, got)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s without nosniff", url)
		}
		// A browser revalidating (it should not need to) gets 304.
		req := httptest.NewRequest("GET", url, nil)
		req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
		if resp, _ := do(t, app, req); resp.StatusCode != 304 {
			t.Errorf("GET %s with its ETag = %d, want 304", url, resp.StatusCode)
		}
	}
	// Only current hashed names are served: an old page's script is gone,
	// rather than replaced by a newer one it may not work with.
	for _, url := range []string{"/static/app.js", "/static/app.0123456789.js", "/static/nope.css"} {
		if resp, _ := do(t, app, httptest.NewRequest("GET", url, nil)); resp.StatusCode != 404 {
			t.Errorf("GET %s = %d, want 404", url, resp.StatusCode)
		}
	}
}

func TestPagesProcessOrderQuery(t *testing.T) {
	app := pagesApp(t)
	_, body := do(t, app, httptest.NewRequest("GET", "/?procs=mem", nil))
	if !strings.Contains(body, `data-list="by_mem"`) {
		t.Error("?procs=mem does not order processes by memory")
	}
}
