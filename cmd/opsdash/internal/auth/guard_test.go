package auth

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
)

const testAuthToken = "test-token-0123456789abcdef"

// authApp is a Fiber app with g installed in front of stand-ins for the
// real routes; the client IP comes from the X-Test-IP header.
func authApp(g *Guard) *fiber.App {
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	g.clientIP = func(c *fiber.Ctx) string { return c.Get("X-Test-IP") }
	g.Install(app)
	app.Get("/healthz", func(c *fiber.Ctx) error { return c.SendString("ok") })
	app.Get("/metrics", g.Require(), func(c *fiber.Ctx) error { return c.SendString("metrics") })
	app.Get("/metrics-open", func(c *fiber.Ctx) error { return c.SendString("metrics") })
	app.Get("/api/v1/topics", func(c *fiber.Ctx) error { return c.SendString("[]") })
	app.Get("/", func(c *fiber.Ctx) error { return c.SendString("dashboard") })
	return app
}

// authClock is a clock tests move by hand.
type authClock struct{ t atomic.Int64 }

func (f *authClock) now() time.Time { return time.Unix(0, f.t.Load()) }

func (f *authClock) advance(d time.Duration) { f.t.Add(int64(d)) }

func newAuthClock() *authClock {
	f := &authClock{}
	f.t.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return f
}

// authCall sends one authRequest to app and returns status, headers and body.
func authCall(t *testing.T, app *fiber.App, method, target string, h map[string]string, form url.Values) (int, http.Header, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, target, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestAuthGuardCountsAndLimitsWrongTokens(t *testing.T) {
	var failures atomic.Int64
	g := New(Config{Token: testAuthToken, SessionTTL: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), OnFailure: func(string) { failures.Add(1) }})
	clock := newAuthClock()
	g.now = clock.now
	app := authApp(g)
	wrong := map[string]string{"Authorization": "Bearer wrong-token-0123456789", "X-Test-IP": "192.0.2.1"}
	right := map[string]string{"Authorization": "Bearer " + testAuthToken, "X-Test-IP": "192.0.2.1"}

	// Neither a visit without credentials nor a right token is a failure.
	if code, _, _ := authCall(t, app, "GET", "/api/v1/topics", map[string]string{"X-Test-IP": "192.0.2.1"}, nil); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	if code, _, _ := authCall(t, app, "GET", "/api/v1/topics", right, nil); code != 200 {
		t.Fatalf("right token: %d", code)
	}
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d failures counted without a wrong token", n)
	}

	// Five wrong tokens (header or form) are answered and counted ...
	for i := 0; i < failBurst; i++ {
		var code int
		if i%2 == 0 {
			code, _, _ = authCall(t, app, "GET", "/api/v1/topics", wrong, nil)
		} else {
			code, _, _ = authCall(t, app, "POST", "/login", map[string]string{"X-Test-IP": "192.0.2.1"}, url.Values{"token": {"wrong-token-0123456789"}})
		}
		if code != 401 {
			t.Fatalf("wrong token %d: %d, want 401", i+1, code)
		}
		if n := failures.Load(); n != int64(i+1) {
			t.Fatalf("after %d wrong tokens, %d counted", i+1, n)
		}
	}
	// ... then that address waits, even with the right token; another
	// address does not.
	code, h, body := authCall(t, app, "GET", "/api/v1/topics", right, nil)
	var e struct{ Error struct{ Code string } }
	_ = json.Unmarshal([]byte(body), &e)
	if code != 429 || e.Error.Code != "rate_limited" || h.Get("Retry-After") != "1" {
		t.Fatalf("after the burst: %d %s Retry-After %q, want 429 rate_limited, Retry-After 1", code, body, h.Get("Retry-After"))
	}
	if code, _, _ := authCall(t, app, "POST", "/login", map[string]string{"X-Test-IP": "192.0.2.1"}, url.Values{"token": {testAuthToken}}); code != 429 {
		t.Fatalf("login after the burst: %d, want 429", code)
	}
	if code, _, _ := authCall(t, app, "GET", "/api/v1/topics", map[string]string{"Authorization": right["Authorization"], "X-Test-IP": "192.0.2.2"}, nil); code != 200 {
		t.Fatalf("another address: %d, want 200", code)
	}
	if n := failures.Load(); n != failBurst {
		t.Fatalf("%d failures counted, want %d (refused attempts are not checked)", n, failBurst)
	}
	// One attempt comes back per second.
	clock.advance(failEvery)
	if code, _, _ := authCall(t, app, "GET", "/api/v1/topics", right, nil); code != 200 {
		t.Fatalf("a second later: %d, want 200", code)
	}
	if code, _, _ := authCall(t, app, "GET", "/api/v1/topics", wrong, nil); code != 401 {
		t.Fatalf("a second later, wrong: %d, want 401", code)
	}
	if code, _, _ := authCall(t, app, "GET", "/api/v1/topics", wrong, nil); code != 429 {
		t.Fatalf("then: %d, want 429", code)
	}
}

func TestAuthGuardSessions(t *testing.T) {
	g := New(Config{Token: testAuthToken, SessionTTL: time.Hour})
	clock := newAuthClock()
	g.now = clock.now
	app := authApp(g)

	login := func(h map[string]string) *http.Cookie {
		t.Helper()
		code, hdr, body := authCall(t, app, "POST", "/login", h, url.Values{"token": {testAuthToken}, "next": {"/"}})
		if code != http.StatusSeeOther {
			t.Fatalf("login: %d %s", code, body)
		}
		resp := http.Response{Header: hdr}
		for _, c := range resp.Cookies() {
			if c.Name == SessionCookie {
				return c
			}
		}
		t.Fatalf("no session cookie in %q", hdr.Values("Set-Cookie"))
		return nil
	}

	// Secure when the browser talks https (here: a TLS-terminating proxy says so).
	if c := login(map[string]string{"X-Forwarded-Proto": "https"}); !c.Secure {
		t.Errorf("cookie over https is not Secure: %+v", c)
	}
	c := login(nil)
	if c.Secure || c.MaxAge != 3600 {
		t.Errorf("cookie over http: %+v, want not Secure, Max-Age 3600", c)
	}
	withCookie := map[string]string{"Cookie": SessionCookie + "=" + c.Value, "Accept": "text/html"}
	if code, _, _ := authCall(t, app, "GET", "/", withCookie, nil); code != 200 {
		t.Fatalf("with the cookie: %d", code)
	}
	clock.advance(time.Hour)
	code, hdr, page := authCall(t, app, "GET", "/", withCookie, nil)
	if code != 401 || !strings.Contains(page, "Your session has ended") || !strings.Contains(hdr.Get("Set-Cookie"), "expires=") {
		t.Fatalf("after the session's hour: %d %q\n%s", code, hdr.Get("Set-Cookie"), page)
	}
	// A made-up session id is no session either.
	if code, _, _ := authCall(t, app, "GET", "/api/v1/topics", map[string]string{"Cookie": SessionCookie + "=" + strings.Repeat("A", len(c.Value))}, nil); code != 401 {
		t.Errorf("made-up session: %d", code)
	}
}

func TestAuthGuardRoutes(t *testing.T) {
	g := New(Config{Token: testAuthToken, SessionTTL: time.Hour})
	app := authApp(g)
	right := map[string]string{"Authorization": "bearer " + testAuthToken} // the scheme is case-insensitive
	tests := []struct {
		path        string
		anon, token int
	}{
		{"/healthz", 200, 200},
		{"/metrics", 401, 200},      // require() in front: the metrics flag asked for it
		{"/metrics-open", 401, 200}, // any route not on the open list is guarded
		{"/api/v1/topics", 401, 200},
		{"/", 401, 200},
		{"/login", 200, 200},
	}
	for _, tt := range tests {
		if code, _, _ := authCall(t, app, "GET", tt.path, nil, nil); code != tt.anon {
			t.Errorf("GET %s without a token = %d, want %d", tt.path, code, tt.anon)
		}
		if code, _, _ := authCall(t, app, "GET", tt.path, right, nil); code != tt.token {
			t.Errorf("GET %s with the token = %d, want %d", tt.path, code, tt.token)
		}
	}

	// A link from another site arrives without the SameSite=Strict cookie:
	// the login page reloads once, from this site, which sends it.
	_, _, page := authCall(t, app, "GET", "/", map[string]string{"Accept": "text/html", "Sec-Fetch-Site": "cross-site"}, nil)
	if !strings.Contains(page, `http-equiv="refresh"`) {
		t.Errorf("cross-site navigation: no reload in\n%s", page)
	}
	_, _, page = authCall(t, app, "GET", "/", map[string]string{"Accept": "text/html", "Sec-Fetch-Site": "same-origin"}, nil)
	if strings.Contains(page, `http-equiv="refresh"`) {
		t.Errorf("same-origin navigation reloads (a loop):\n%s", page)
	}

	// Without a token nothing is guarded and no login exists.
	open := New(Config{SessionTTL: time.Hour, OnFailure: func(string) { t.Error("failure counted without auth") }})
	app = authApp(open)
	for path, want := range map[string]int{"/": 200, "/api/v1/topics": 200, "/metrics": 200, "/login": 404} {
		if code, _, _ := authCall(t, app, "GET", path, map[string]string{"Authorization": "Bearer whatever"}, nil); code != want {
			t.Errorf("no auth configured: GET %s = %d, want %d", path, code, want)
		}
	}
}

func TestAuthNeverLogsTheToken(t *testing.T) {
	var logs bytes.Buffer // written before each answer is sent, read after
	g := New(Config{Token: testAuthToken, SessionTTL: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	app := authApp(g)
	const wrong = "wrong-token-abcdefghijkl"
	authCall(t, app, "GET", "/api/v1/topics", map[string]string{"Authorization": "Bearer " + wrong}, nil)
	authCall(t, app, "POST", "/login", nil, url.Values{"token": {wrong}})
	authCall(t, app, "POST", "/login", nil, url.Values{"token": {testAuthToken}})
	authCall(t, app, "GET", "/", map[string]string{"Authorization": "Bearer " + testAuthToken}, nil)
	out := logs.String()
	if !strings.Contains(out, "wrong token") || !strings.Contains(out, "signed in") {
		t.Fatalf("expected auth log lines, got:\n%s", out)
	}
	if strings.Contains(out, wrong) || strings.Contains(out, testAuthToken) {
		t.Fatalf("a token is in the log:\n%s", out)
	}
}
