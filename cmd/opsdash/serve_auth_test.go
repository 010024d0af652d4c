package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/opsdash/opsdash/cmd/opsdash/internal/auth"
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
			if c.Name == auth.SessionCookie {
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
		cookie := map[string]string{"Cookie": auth.SessionCookie + "=" + sess.Value}

		resp, body := authRequest(t, "GET", base+"/", cookie, nil)
		if resp.StatusCode != 200 || !strings.Contains(body, `data-testid="dashboard"`) {
			t.Errorf("GET / with the cookie = %d", resp.StatusCode)
		}
		ws := authWSHello(t, base, http.Header{"Cookie": {auth.SessionCookie + "=" + sess.Value}})
		authFirstUpdate(t, ws, "testhost.mem")
		if code := authSSEUpdate(t, base, "testhost.cpu", cookie); code != 200 {
			t.Errorf("/sse with the cookie = %d", code)
		}

		// Logging out ends the session on the server, not just in the browser.
		resp, _ = authRequest(t, "POST", base+"/logout", cookie, nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
			t.Errorf("POST /logout = %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if sc := resp.Header.Get("Set-Cookie"); !strings.Contains(sc, auth.SessionCookie+"=;") || !strings.Contains(sc, "expires=") {
			t.Errorf("logout Set-Cookie %q does not clear the cookie", sc)
		}
		if resp, _ := authRequest(t, "GET", base+"/api/v1/topics", cookie, nil); resp.StatusCode != 401 {
			t.Errorf("the cookie still works after logout: %d", resp.StatusCode)
		}
		resp, page := authRequest(t, "GET", base+"/", map[string]string{"Accept": "text/html", "Cookie": auth.SessionCookie + "=" + sess.Value}, nil)
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
		h := map[string]string{"Authorization": "Bearer not-the-token-0123456789"}
		resp, body := authRequest(t, "GET", base+"/api/v1/topics", h, nil)
		if resp.StatusCode != 401 || authErrorCode(body) != "unauthorized" || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
			t.Errorf("%v: %d %s %q", h, resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"))
		}
		// Another scheme is not a token for opsdash (a proxy's Basic
		// login): no credential, not a wrong one.
		h = map[string]string{"Authorization": "Basic b3BzZGFzaDp4"}
		resp, body = authRequest(t, "GET", base+"/api/v1/topics", h, nil)
		if resp.StatusCode != 401 || authErrorCode(body) != "unauthorized" || strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
			t.Errorf("%v: %d %s %q", h, resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"))
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
