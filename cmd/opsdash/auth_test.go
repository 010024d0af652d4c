package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"
)

const testAuthToken = "test-token-0123456789abcdef"

// authNoRedirect is an HTTP client that shows redirects instead of following
// them.
var authNoRedirect = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       15 * time.Second,
}

// authRequest sends one authRequest with headers h (and a form body when form is
// not nil) and returns the response with its body read.
func authRequest(t *testing.T, method, u string, h map[string]string, form url.Values) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := authNoRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// authErrorCode returns the code of a JSON error body, "" when it is not one.
func authErrorCode(body string) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal([]byte(body), &e)
	return e.Error.Code
}

func authWSURL(base string) string { return "ws" + strings.TrimPrefix(base, "http") + "/ws" }

// authWSHello opens /ws with headers h and returns the connection after its
// hello frame.
func authWSHello(t *testing.T, base string, h http.Header) *websocket.Conn {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(authWSURL(base), h)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("WebSocket handshake: %v (status %d)", err, status)
	}
	t.Cleanup(func() { ws.Close() })
	ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	var hello struct{ Type string }
	if err := ws.ReadJSON(&hello); err != nil || hello.Type != "hello" {
		t.Fatalf("first frame %+v, %v", hello, err)
	}
	return ws
}

// authFirstUpdate subscribes ws to topic and waits for its first update.
func authFirstUpdate(t *testing.T, ws *websocket.Conn, topic string) {
	t.Helper()
	if err := ws.WriteJSON(map[string]any{"type": "subscribe", "id": "1", "topics": []string{topic}}); err != nil {
		t.Fatal(err)
	}
	for {
		var f struct{ Type, Topic string }
		if err := ws.ReadJSON(&f); err != nil {
			t.Fatalf("waiting for an update of %s: %v", topic, err)
		}
		if f.Type == "update" && f.Topic == topic {
			return
		}
	}
}

// authSSEUpdate opens /sse for topic with headers h; with status 200 it reads
// until the first update event.
func authSSEUpdate(t *testing.T, base, topic string, h map[string]string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/sse?topics="+topic, nil)
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /sse: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return resp.StatusCode
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if sc.Text() == "event: update" {
			return 200
		}
	}
	t.Fatalf("SSE stream ended without an update: %v", sc.Err())
	return 0
}

// TestAuthServer runs the real server with --auth-token and checks what
// each kind of client sees.
func TestAuthServer(t *testing.T) {
	base, _ := startServer(t, "--auth-token", testAuthToken, "--publish-token", "publish-token-0123456789")
	bearer := map[string]string{"Authorization": "Bearer " + testAuthToken}
	html := map[string]string{"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}

	t.Run("probes and assets stay open", func(t *testing.T) {
		if code, _ := get(t, base+"/healthz"); code != 200 {
			t.Errorf("/healthz = %d", code)
		}
		eventually(t, "/readyz to answer 200 without a token", func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })
		// The login page's stylesheet must load before anyone signs in.
		_, page := authRequest(t, "GET", base+"/login", html, nil)
		i := strings.Index(page, `href="/static/`)
		if i < 0 {
			t.Fatalf("login page links no stylesheet:\n%s", page)
		}
		asset := page[i+len(`href="`):]
		asset = asset[:strings.IndexByte(asset, '"')]
		if code, _ := get(t, base+asset); code != 200 {
			t.Errorf("GET %s = %d, want 200 without a token", asset, code)
		}
	})

	t.Run("without a token", func(t *testing.T) {
		for _, path := range []string{"/api/v1/topics", "/api/v1/topics/testhost.cpu", "/sse?topics=testhost.cpu", "/no-such-page"} {
			resp, body := authRequest(t, "GET", base+path, nil, nil)
			if resp.StatusCode != 401 || authErrorCode(body) != "unauthorized" {
				t.Errorf("GET %s = %d %s, want 401 unauthorized", path, resp.StatusCode, body)
			}
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("GET %s: WWW-Authenticate %q", path, resp.Header.Get("WWW-Authenticate"))
			}
		}
		// The WebSocket handshake is refused before the upgrade.
		_, resp, err := websocket.DefaultDialer.Dial(authWSURL(base), nil)
		if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil || resp.StatusCode != 401 {
			t.Fatalf("/ws without a token: %v, %+v; want a refused handshake with 401", err, resp)
		}
		b, _ := io.ReadAll(resp.Body)
		if authErrorCode(string(b)) != "unauthorized" {
			t.Errorf("/ws refusal body %s", b)
		}
		// A browser asking for a page gets the login form, which returns
		// to the page it asked for.
		resp, page := authRequest(t, "GET", base+"/topics?pattern=*.cpu", html, nil)
		if resp.StatusCode != 401 || !strings.Contains(page, `action="/login"`) || !strings.Contains(page, `name="next" value="/topics?pattern=*.cpu"`) {
			t.Errorf("GET /topics as a browser = %d:\n%s", resp.StatusCode, page)
		}
		if strings.Contains(page, "testhost") || strings.Contains(page, "login-error") || strings.Contains(page, "<script") {
			t.Errorf("the login page shows the host, an error before any attempt, or loads a script:\n%s", page)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("login page CSP %q", csp)
		}
	})

	t.Run("the token in a header", func(t *testing.T) {
		resp, body := authRequest(t, "GET", base+"/api/v1/topics", bearer, nil)
		if resp.StatusCode != 200 || !strings.Contains(body, `"testhost.cpu"`) {
			t.Fatalf("GET /api/v1/topics with the token = %d %s", resp.StatusCode, body)
		}
		resp, body = authRequest(t, "GET", base+"/", bearer, nil)
		if resp.StatusCode != 200 || !strings.Contains(body, `data-testid="dashboard"`) {
			t.Errorf("GET / with the token = %d", resp.StatusCode)
		}
		ws := authWSHello(t, base, http.Header{"Authorization": {"Bearer " + testAuthToken}})
		authFirstUpdate(t, ws, "testhost.cpu")
		if code := authSSEUpdate(t, base, "testhost.cpu", bearer); code != 200 {
			t.Errorf("/sse with the token = %d", code)
		}
	})

	t.Run("never in the query string", func(t *testing.T) {
		for _, path := range []string{"/api/v1/topics?token=" + testAuthToken, "/?access_token=" + testAuthToken, "/login?token=" + testAuthToken} {
			resp, body := authRequest(t, "GET", base+path, nil, nil)
			if resp.StatusCode != 400 || authErrorCode(body) != "bad_request" || !strings.Contains(body, "not accepted in the URL") {
				t.Errorf("GET %s = %d %s, want 400 saying tokens are not accepted in the URL", path, resp.StatusCode, body)
			}
		}
		resp, _ := authRequest(t, "POST", base+"/login?token="+testAuthToken, nil, url.Values{"next": {"/"}})
		if resp.StatusCode != 400 || resp.Header.Get("Set-Cookie") != "" {
			t.Errorf("POST /login?token= = %d, cookie %q; want 400 and no session", resp.StatusCode, resp.Header.Get("Set-Cookie"))
		}
	})

	t.Run("browser login", func(t *testing.T) {
		resp, _ := authRequest(t, "POST", base+"/login", html, url.Values{"token": {testAuthToken}, "next": {"/topics?pattern=*.cpu"}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/topics?pattern=*.cpu" {
			t.Fatalf("POST /login = %d to %q, want 303 to /topics?pattern=*.cpu", resp.StatusCode, resp.Header.Get("Location"))
		}
		var sess *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == sessionCookie {
				sess = c
			}
		}
		if sess == nil {
			t.Fatalf("no session cookie: %q", resp.Header.Values("Set-Cookie"))
		}
		if !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || sess.Path != "/" || sess.Secure || sess.MaxAge != 12*3600 {
			t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/, not Secure over http, Max-Age 12 h", sess)
		}
		if strings.Contains(sess.Value, testAuthToken) || len(sess.Value) < 40 {
			t.Errorf("cookie value %q: want a long random id, not the token", sess.Value)
		}
		cookie := map[string]string{"Cookie": sessionCookie + "=" + sess.Value}

		resp, body := authRequest(t, "GET", base+"/", cookie, nil)
		if resp.StatusCode != 200 || !strings.Contains(body, `data-testid="dashboard"`) {
			t.Errorf("GET / with the cookie = %d", resp.StatusCode)
		}
		ws := authWSHello(t, base, http.Header{"Cookie": {sessionCookie + "=" + sess.Value}})
		authFirstUpdate(t, ws, "testhost.mem")
		if code := authSSEUpdate(t, base, "testhost.cpu", cookie); code != 200 {
			t.Errorf("/sse with the cookie = %d", code)
		}

		// Logging out ends the session on the server, not just in the browser.
		resp, _ = authRequest(t, "POST", base+"/logout", cookie, nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
			t.Errorf("POST /logout = %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if sc := resp.Header.Get("Set-Cookie"); !strings.Contains(sc, sessionCookie+"=;") || !strings.Contains(sc, "expires=") {
			t.Errorf("logout Set-Cookie %q does not clear the cookie", sc)
		}
		if resp, _ := authRequest(t, "GET", base+"/api/v1/topics", cookie, nil); resp.StatusCode != 401 {
			t.Errorf("the cookie still works after logout: %d", resp.StatusCode)
		}
		resp, page := authRequest(t, "GET", base+"/", map[string]string{"Accept": "text/html", "Cookie": sessionCookie + "=" + sess.Value}, nil)
		if resp.StatusCode != 401 || !strings.Contains(page, "Your session has ended") {
			t.Errorf("GET / with an ended session = %d:\n%s", resp.StatusCode, page)
		}
	})

	t.Run("login returns only to local paths", func(t *testing.T) {
		for _, next := range []string{"//evil.example/", "https://evil.example/", `/\evil.example`, "/login"} {
			resp, _ := authRequest(t, "POST", base+"/login", html, url.Values{"token": {testAuthToken}, "next": {next}})
			if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/" {
				t.Errorf("next=%q: %d to %q, want 303 to /", next, resp.StatusCode, loc)
			}
		}
		// The page's own sign-in form sends no next: back to the page it was on.
		resp, _ := authRequest(t, "POST", base+"/login", map[string]string{"Accept": "text/html", "Referer": base + "/topics/testhost.cpu"},
			url.Values{"token": {testAuthToken}})
		if loc := resp.Header.Get("Location"); loc != "/topics/testhost.cpu" {
			t.Errorf("login from the page's form returns to %q, want /topics/testhost.cpu", loc)
		}
	})

	t.Run("publishing keeps its own token", func(t *testing.T) {
		req, _ := http.NewRequest("POST", base+"/api/v1/publish", strings.NewReader(`{"topic":"app.orders","data":{"count":1}}`))
		req.Header.Set("Authorization", "Bearer publish-token-0123456789")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Errorf("publish with the publish token = %d, want 2xx", resp.StatusCode)
		}
	})

	t.Run("no way around the guard", func(t *testing.T) {
		for _, path := range []string{"/static/..%2f..%2fapi/v1/topics", "/static/../api/v1/topics", "/API/V1/TOPICS", "/api/v1/topics/", "/healthz/../api/v1/topics"} {
			resp, body := authRequest(t, "GET", base+path, nil, nil)
			if resp.StatusCode == 200 || strings.Contains(body, "testhost.cpu") {
				t.Errorf("GET %s = %d %s without a token", path, resp.StatusCode, body)
			}
		}
	})

	// Last: wrong tokens use up this address's attempts.
	t.Run("a wrong token", func(t *testing.T) {
		for _, h := range []map[string]string{
			{"Authorization": "Bearer not-the-token-0123456789"},
			{"Authorization": "Basic b3BzZGFzaDp4"},
		} {
			resp, body := authRequest(t, "GET", base+"/api/v1/topics", h, nil)
			if resp.StatusCode != 401 || authErrorCode(body) != "unauthorized" || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
				t.Errorf("%v: %d %s %q", h, resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"))
			}
		}
		_, resp, err := websocket.DefaultDialer.Dial(authWSURL(base), http.Header{"Authorization": {"Bearer not-the-token-0123456789"}})
		if err == nil || resp == nil || resp.StatusCode != 401 {
			t.Errorf("/ws with a wrong token: %v %+v", err, resp)
		}
		resp, page := authRequest(t, "POST", base+"/login", html, url.Values{"token": {"not-the-token-0123456789"}, "next": {"/topics"}})
		if resp.StatusCode != 401 || !strings.Contains(page, "That token is not valid.") || !strings.Contains(page, `value="/topics"`) {
			t.Errorf("wrong login = %d:\n%s", resp.StatusCode, page)
		}
		if resp.Header.Get("Set-Cookie") != "" {
			t.Errorf("a wrong login set a cookie: %q", resp.Header.Get("Set-Cookie"))
		}
	})
}

// authApp is a Fiber app with g installed in front of stand-ins for the
// real routes; the client IP comes from the X-Test-IP header.
func authApp(g *authGuard) *fiber.App {
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	g.withClientIP(func(c *fiber.Ctx) string { return c.Get("X-Test-IP") })
	g.install(app)
	app.Get("/healthz", func(c *fiber.Ctx) error { return c.SendString("ok") })
	app.Get("/metrics", g.require(), func(c *fiber.Ctx) error { return c.SendString("metrics") })
	app.Get("/metrics-open", func(c *fiber.Ctx) error { return c.SendString("metrics") })
	app.Get("/api/v1/topics", func(c *fiber.Ctx) error { return c.SendString("[]") })
	app.Get("/", func(c *fiber.Ctx) error { return c.SendString("dashboard") })
	return app
}

// authClock is a clock tests move by hand.
type authClock struct{ t atomic.Int64 }

func (f *authClock) now() time.Time          { return time.Unix(0, f.t.Load()) }
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
	g := newAuthGuard(authConfig{Token: testAuthToken, SessionTTL: time.Hour}, slog.New(slog.NewTextHandler(io.Discard, nil)), func() { failures.Add(1) })
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
	if code != 429 || authErrorCode(body) != "rate_limited" || h.Get("Retry-After") != "1" {
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
	g := newAuthGuard(authConfig{Token: testAuthToken, SessionTTL: time.Hour}, nil, nil)
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
			if c.Name == sessionCookie {
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
	withCookie := map[string]string{"Cookie": sessionCookie + "=" + c.Value, "Accept": "text/html"}
	if code, _, _ := authCall(t, app, "GET", "/", withCookie, nil); code != 200 {
		t.Fatalf("with the cookie: %d", code)
	}
	clock.advance(time.Hour)
	code, hdr, page := authCall(t, app, "GET", "/", withCookie, nil)
	if code != 401 || !strings.Contains(page, "Your session has ended") || !strings.Contains(hdr.Get("Set-Cookie"), "expires=") {
		t.Fatalf("after the session's hour: %d %q\n%s", code, hdr.Get("Set-Cookie"), page)
	}
	// A made-up session id is no session either.
	if code, _, _ := authCall(t, app, "GET", "/api/v1/topics", map[string]string{"Cookie": sessionCookie + "=" + strings.Repeat("A", len(c.Value))}, nil); code != 401 {
		t.Errorf("made-up session: %d", code)
	}
}

func TestAuthGuardRoutes(t *testing.T) {
	g := newAuthGuard(authConfig{Token: testAuthToken, SessionTTL: time.Hour}, nil, nil)
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
	open := newAuthGuard(authConfig{SessionTTL: time.Hour}, nil, func() { t.Error("failure counted without auth") })
	app = authApp(open)
	for path, want := range map[string]int{"/": 200, "/api/v1/topics": 200, "/metrics": 200, "/login": 404} {
		if code, _, _ := authCall(t, app, "GET", path, map[string]string{"Authorization": "Bearer whatever"}, nil); code != want {
			t.Errorf("no auth configured: GET %s = %d, want %d", path, code, want)
		}
	}
}

func TestAuthNeverLogsTheToken(t *testing.T) {
	var logs syncBuffer
	g := newAuthGuard(authConfig{Token: testAuthToken, SessionTTL: time.Hour}, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), nil)
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

func TestAuthConfig(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string // "" = valid
	}{
		{name: "off by default"},
		{name: "from the environment", env: map[string]string{"OPSDASH_AUTH_TOKEN": testAuthToken}},
		{name: "flag", args: []string{"--auth-token", testAuthToken, "--auth-session-ttl", "30m"}},
		{name: "too short", args: []string{"--auth-token", "short-secret"}, want: "--auth-token must be at least 16 characters long (it has 12)"},
		{name: "space", env: map[string]string{"OPSDASH_AUTH_TOKEN": "secret secret secret"}, want: "character 7 is not one"},
		{name: "newline", env: map[string]string{"OPSDASH_AUTH_TOKEN": "secret-secret-secret\n"}, want: "only printable ASCII"},
		{name: "not ASCII", args: []string{"--auth-token", "sécret-sécret-sécret"}, want: "only printable ASCII"},
		{name: "session too short", args: []string{"--auth-session-ttl", "10s"}, want: "--auth-session-ttl must be at least 1m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg serveConfig
			fs := newServeFlags(&cfg)
			if err := parseWithEnv(fs, tt.args, env(tt.env)); err != nil {
				t.Fatal(err)
			}
			err := cfg.validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if tt.env["OPSDASH_AUTH_TOKEN"] != "" && cfg.Auth.Token != tt.env["OPSDASH_AUTH_TOKEN"] {
					t.Errorf("token from env not read")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("validate() = %v, want an error containing %q", err, tt.want)
			}
			// The message describes the token, never quotes it.
			tok := cfg.Auth.Token
			if tok != "" && strings.Contains(err.Error(), strings.TrimSpace(tok)) {
				t.Errorf("the error quotes the token: %v", err)
			}
		})
	}
}

func TestSafeNext(t *testing.T) {
	tests := map[string]string{
		"":                              "/",
		"/":                             "/",
		"/topics?pattern=*.cpu":         "/topics?pattern=*.cpu",
		"/topics/web-1.cpu":             "/topics/web-1.cpu",
		"//evil.example":                "/",
		"///evil.example":               "/",
		`/\evil.example`:                "/",
		"/\t/evil.example":              "/",
		"https://evil.example/":         "/",
		"evil.example":                  "/",
		"javascript:alert(1)":           "/",
		"/login?next=/":                 "/",
		"/LOGOUT":                       "/",
		"/caf\u00e9":                    "/",
		"/" + strings.Repeat("a", 3000): "/",
	}
	for in, want := range tests {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLimitKey(t *testing.T) {
	tests := map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"::ffff:192.0.2.7":     "192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2::9":      "2001:db8:1:2::/64",
		"not an ip":            "not an ip",
	}
	for in, want := range tests {
		if got := limitKey(in); got != want {
			t.Errorf("limitKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSessionStoreBounded(t *testing.T) {
	s := newSessionStore(time.Hour, 3)
	now := time.Unix(1000, 0)
	var ids []string
	for i := 0; i < 4; i++ {
		id, err := s.create(now.Add(time.Duration(i) * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if len(s.expires) != 3 {
		t.Fatalf("%d sessions kept, want 3", len(s.expires))
	}
	if s.valid(ids[0], now.Add(5*time.Second)) {
		t.Error("the oldest session survived a full table")
	}
	for _, id := range ids[1:] {
		if !s.valid(id, now.Add(5*time.Second)) {
			t.Errorf("session %s lost", id)
		}
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Errorf("session id %s given twice", id)
		}
		seen[id] = true
	}
}

func TestFailureLimiterBounded(t *testing.T) {
	l := newFailureLimiter(2, time.Second, 2)
	now := time.Unix(1000, 0)
	for _, k := range []string{"a", "b", "c"} {
		if ok, _ := l.take(k, now); !ok {
			t.Fatalf("first attempt of %s refused", k)
		}
	}
	if len(l.buckets) > 2 {
		t.Fatalf("%d buckets, want at most 2", len(l.buckets))
	}
	// A right token gives its attempt back and leaves nothing behind.
	l.refund("c", now)
	if _, ok := l.buckets["c"]; ok {
		t.Error("a full bucket is kept")
	}
}
