package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/opsdash/opsdash/cmd/opsdash/internal/auth"
)

// TestBrowserAuth signs in through the login form in Chromium against the
// real server with --auth-token, sees the dashboard go live over the
// session cookie, signs in again through the page's own form after a
// restart ended the session, follows a link from another site, is not
// signed out by another site's form, and signs out. It reuses the browser
// helpers of pages_e2e_test.go.
func TestBrowserAuth(t *testing.T) {
	chromium := findChromium(t)
	args := []string{"--heartbeat", "2s", "--auth-token", testAuthToken}
	base, stop := startServer(t, args...)
	eventually(t, "ready", func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })
	b := newBrowser(t, chromium)
	ctx := b.ctx
	outer := t // the restarted server lives as long as the whole test

	loginPage := `document.querySelector('[data-testid=login-page]')`
	submit := func(t *testing.T, token string) {
		t.Helper()
		if err := chromedp.Do(ctx,
			chromedp.SetValue(chromedp.CSS(`#login-token`), token),
			chromedp.Submit(chromedp.CSS(`#login-token`)),
		); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("sign in through the form", func(t *testing.T) {
		navigate(t, ctx, base+"/topics?pattern=*.cpu")
		waitJS(t, ctx, "the login page", loginPage)
		if got := eval[string](t, ctx, `document.activeElement.id`); got != "login-token" {
			t.Errorf("focus on %q, want the token field", got)
		}
		submit(t, "not-the-token-0123456789")
		waitJS(t, ctx, "the error", `document.querySelector('[data-testid=login-error]') && document.querySelector('[data-testid=login-error]').textContent === 'That token is not valid.'`)
		submit(t, testAuthToken)
		waitJS(t, ctx, "the explorer it asked for", `location.pathname === '/topics' && location.search === '?pattern=*.cpu'`)
		waitJS(t, ctx, "the explorer to go live", liveState)
		if cookie := eval[string](t, ctx, `document.cookie`); strings.Contains(cookie, auth.SessionCookie) {
			t.Errorf("the page's script can read the session cookie: %q", cookie)
		}
		navigate(t, ctx, base+"/")
		waitJS(t, ctx, "the dashboard to go live", `document.querySelector('[data-testid=dashboard]') && `+liveState)
		before := eval[string](t, ctx, snapshotJS)
		waitJS(t, ctx, "a value to change", snapshotJS+` !== `+jsString(before))
	})

	t.Run("sign in again after a restart", func(t *testing.T) {
		// Sessions live in memory: the restarted server does not know the
		// cookie, the page's handshake is refused, it asks the API, gets
		// 401 and shows its own sign-in form, which returns to the page.
		addr := strings.TrimPrefix(base, "http://")
		if code := stop(); code != 0 {
			t.Fatalf("server exit code %d", code)
		}
		if base2, _ := startServer(outer, append(args, "--listen", addr)...); base2 != base {
			t.Fatalf("restarted on %s, want %s", base2, base)
		}
		waitJS(t, ctx, "the page's login", `!document.querySelector('[data-testid=login]').hidden && document.querySelector('[data-conn]').dataset.state === 'login required'`)
		submit(t, testAuthToken)
		waitJS(t, ctx, "the dashboard, live again", `location.pathname === '/' && document.querySelector('[data-testid=dashboard]') && `+liveState)
	})

	t.Run("a link from another site", func(t *testing.T) {
		// localhost and 127.0.0.1 are different sites: the SameSite=Strict
		// cookie is not sent on the link, and the login page reloads once
		// from this site to get it.
		other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write([]byte(`<!DOCTYPE html><a id="go" href="` + base + `/topics">the dashboard</a>`))
		}))
		defer other.Close()
		navigate(t, ctx, strings.Replace(other.URL, "127.0.0.1", "localhost", 1)+"/")
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#go`))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the explorer, signed in", `location.href === `+jsString(base+"/topics")+` && document.querySelector('[data-testid=topic-rows]') && `+liveState)
	})

	t.Run("another site cannot sign out", func(t *testing.T) {
		// A page elsewhere posting a form to /logout (a link would be a GET,
		// which /logout does not answer) is refused, and the session stays.
		other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write([]byte(`<!DOCTYPE html><form id="out" method="post" action="` + base + `/logout"></form>` +
				`<script>document.getElementById('out').submit()</script>`))
		}))
		defer other.Close()
		navigate(t, ctx, strings.Replace(other.URL, "127.0.0.1", "localhost", 1)+"/")
		waitJS(t, ctx, "the refused sign-out", `location.pathname === '/logout' && document.body.innerText.includes('forbidden')`)
		navigate(t, ctx, base+"/")
		waitJS(t, ctx, "the dashboard, still signed in", `document.querySelector('[data-testid=dashboard]')`)
	})

	t.Run("sign out", func(t *testing.T) {
		// From a page of this server: a form posted to /logout.
		eval[bool](t, ctx, `(() => { const f = document.createElement('form'); f.method = 'post'; f.action = '/logout';
			document.body.append(f); f.submit(); return true; })()`)
		waitJS(t, ctx, "the login page", `location.pathname === '/login' && `+loginPage)
		navigate(t, ctx, base+"/")
		waitJS(t, ctx, "the login page instead of the dashboard", loginPage+` && !document.querySelector('[data-testid=dashboard]')`)
	})

	b.logConsole(t)
	for _, p := range b.problems() {
		t.Error(p)
	}
}
