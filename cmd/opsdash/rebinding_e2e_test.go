package main

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserDNSRebinding (finding 2): a web page whose name was rebound to
// this server's address is, to the browser, the same origin as the server,
// so before the Host check it could read everything: real Chromium
// loading the rebound name got the dashboard, /api/v1/topics and a live
// /ws. Chromium here resolves rebind.test to 127.0.0.1 as a rebinding DNS
// server would; the server has no auth token, as on loopback by default.
func TestBrowserDNSRebinding(t *testing.T) {
	chromium := findChromium(t)
	base, _ := startServer(t)
	b := newBrowser(t, chromium, chromedp.Flag("host-resolver-rules", "MAP rebind.test 127.0.0.1"))
	ctx := b.tab(t)
	rebound := "http://rebind.test:" + port(base)

	navigate(t, ctx, rebound+"/")
	if body := eval[string](t, ctx, `document.body.innerText`); !strings.Contains(body, "forbidden_host") ||
		eval[bool](t, ctx, `!!document.querySelector('[data-testid=dashboard]')`) {
		t.Errorf("the dashboard under a rebound name: %q", body)
	}
	// Scripts of the rebound origin (here: from /healthz, which stays open)
	// can read nothing and open no stream.
	navigate(t, ctx, rebound+"/healthz")
	eval[bool](t, ctx, `(() => { window.rb = {};
		fetch('/api/v1/topics').then(r => { window.rb.api = r.status; });
		const ws = new WebSocket('ws://' + location.host + '/ws');
		ws.onmessage = e => { window.rb.ws = window.rb.ws || 'read: ' + e.data.slice(0, 40); };
		ws.onclose = e => { window.rb.ws = window.rb.ws || 'closed: ' + e.code; };
		return true; })()`)
	waitJS(t, ctx, "the page's requests to finish", `window.rb.api && window.rb.ws`)
	if api := eval[int](t, ctx, `window.rb.api`); api != 403 {
		t.Errorf("fetch('/api/v1/topics') from the rebound page = %d, want 403", api)
	}
	if ws := eval[string](t, ctx, `window.rb.ws`); !strings.HasPrefix(ws, "closed: ") {
		t.Errorf("a WebSocket from the rebound page: %s, want it refused", ws)
	}
	// The same server under its own name works.
	navigate(t, ctx, base+"/")
	if !eval[bool](t, ctx, `!!document.querySelector('[data-testid=dashboard]')`) {
		t.Error("the dashboard under 127.0.0.1 is gone")
	}
}
