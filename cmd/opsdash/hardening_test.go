package main

// The attacks of issue 9 against a real server (serveMain on loopback):
// each test reproduces one and checks what a client sees now. The file
// descriptor attack, which needs a process with its own limit, is in
// fdlimit_test.go.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/opsdash/opsdash/stream/httpapi/certtest"
)

// hostRequest sends method path to base naming host in the Host header,
// with headers h, and returns the status and the JSON error code.
func hostRequest(t *testing.T, base, method, path, host string, h map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := authNoRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s (Host %s): %v", method, path, host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, authErrorCode(string(b))
}

// port is the port of a base URL.
func port(base string) string {
	_, p, _ := net.SplitHostPort(strings.TrimPrefix(base, "http://"))
	return p
}

// TestHostCheck (DNS rebinding): without an auth token, a request naming a
// host that is not this machine's is refused with 403 forbidden_host before
// anything else, WebSocket and SSE included; the probes stay open; loopback,
// the machine's names and --allowed-hosts pass; X-Forwarded-Host counts only
// from a trusted proxy; with an auth token the check is off.
func TestHostCheck(t *testing.T) {
	base, _ := startServer(t, "--allowed-hosts", "ops.example.com,*.lan.example")
	p := port(base)
	evil := "rebind.attacker.example:" + p

	for _, path := range []string{"/", "/topics", "/api/v1/topics", "/sse?topics=testhost.cpu", "/metrics", "/static/nope"} {
		if code, ec := hostRequest(t, base, "GET", path, evil, nil); code != 403 || ec != "forbidden_host" {
			t.Errorf("GET %s naming %s = %d %q, want 403 forbidden_host", path, evil, code, ec)
		}
	}
	hdr := http.Header{"Host": {evil}}
	if ws, resp, err := websocket.DefaultDialer.Dial(wsURL(base), hdr); err == nil {
		ws.Close()
		t.Error("a WebSocket naming a foreign host was upgraded")
	} else if resp == nil || resp.StatusCode != 403 {
		t.Errorf("a WebSocket naming a foreign host: %v, want 403", err)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := hostRequest(t, base, "GET", path, evil, nil); code == 403 {
			t.Errorf("GET %s naming a foreign host = 403: the probes must stay open", path)
		}
	}
	hostname, _ := os.Hostname()
	for _, host := range []string{"127.0.0.1:" + p, "localhost:" + p, "LOCALHOST.:" + p, "[::1]:" + p, "testhost:" + p,
		hostname + ":" + p, "ops.example.com", "dash.lan.example:" + p} {
		if code, ec := hostRequest(t, base, "GET", "/api/v1/topics", host, nil); code != 200 {
			t.Errorf("GET /api/v1/topics naming %s = %d %q, want 200", host, code, ec)
		}
	}
	// X-Forwarded-Host from a peer that is not a trusted proxy is ignored.
	if code, _ := hostRequest(t, base, "GET", "/api/v1/topics", evil, map[string]string{"X-Forwarded-Host": "localhost"}); code != 403 {
		t.Errorf("an untrusted X-Forwarded-Host let a foreign Host through: %d", code)
	}
	fams := mustScrape(t, base)
	if got := value(fams, "opsdash_connections_refused_total", "reason", "host"); got < 7 {
		t.Errorf("refused for the host: %v counted, want at least 7", got)
	}

	t.Run("behind a trusted proxy", func(t *testing.T) {
		base, _ := startServer(t, "--trusted-proxies", "127.0.0.1", "--allowed-hosts", "ops.example.com")
		for xfh, want := range map[string]int{"ops.example.com": 200, "rebind.attacker.example": 403, "localhost:8080": 200} {
			if code, _ := hostRequest(t, base, "GET", "/api/v1/topics", "127.0.0.1:"+port(base), map[string]string{"X-Forwarded-Host": xfh}); code != want {
				t.Errorf("X-Forwarded-Host %s from a trusted proxy = %d, want %d", xfh, code, want)
			}
		}
	})
	t.Run("with an auth token", func(t *testing.T) {
		base, _ := startServer(t, "--auth-token", testAuthToken)
		if code, _ := hostRequest(t, base, "GET", "/api/v1/topics", evil, map[string]string{"Authorization": "Bearer " + testAuthToken}); code != 200 {
			t.Errorf("with a token the Host is not checked: got %d", code)
		}
	})
}

// publishBody posts body to base's publish API with token and returns the
// status and the JSON error code.
func publishBody(t *testing.T, base, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", base+"/api/v1/publish", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := authNoRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, authErrorCode(string(b))
}

const testPublishToken = "publish-token-0123456789"

// quotedValue is a published value of about n bytes of compact JSON made
// of short strings, whose quotes HTML escaping makes five times longer.
func quotedValue(n int) string {
	return `{"items":["é"` + strings.Repeat(`,"é"`, (n-16)/5) + `]}`
}

// publishValues publishes value on n topics named by topic(i), perRequest
// items to a request.
func publishValues(t *testing.T, base string, n, perRequest int, topic func(i int) string, value string) {
	t.Helper()
	for i := 0; i < n; i += perRequest {
		var items []string
		for j := i; j < min(i+perRequest, n); j++ {
			items = append(items, fmt.Sprintf(`{"topic":%q,"data":%s}`, topic(j), value))
		}
		if code, ec := publishBody(t, base, testPublishToken, "["+strings.Join(items, ",")+"]"); code != 200 {
			t.Fatalf("publish: %d %s", code, ec)
		}
	}
}

// TestExplorerPageIsBounded: 300 published topics of 64 KiB used to make
// one /topics page 75 MiB of HTML (and the server hundreds of MiB per view).
// The page now shows a preview of each value within its byte budget, and a
// topic's own page shows its value.
func TestExplorerPageIsBounded(t *testing.T) {
	base, _ := startServer(t, "--publish-token", testPublishToken, "--max-topics", "0")
	v := quotedValue(64000)
	const n = 300
	publishValues(t, base, n, 15, func(i int) string { return fmt.Sprintf("app-%03d.orders", i) }, v)
	code, page := get(t, base+"/topics")
	t.Logf("/topics with %d topics of %d KiB: %d KiB of HTML", n, len(v)>>10, len(page)>>10)
	if code != 200 || len(page) > 1<<20 {
		t.Fatalf("/topics = %d, %d KiB: want a page of at most 1 MiB", code, len(page)>>10)
	}
	if !strings.Contains(page, "app-000.orders") || !strings.Contains(page, `[&#34;é&#34;,&#34;é&#34;`) {
		t.Error("/topics does not show the published topics with a preview of their values")
	}
	code, one := get(t, base+"/topics/app-000.orders")
	if code != 200 || len(one) > 300<<10 || !strings.Contains(one, "&#34;é&#34;") {
		t.Errorf("/topics/app-000.orders = %d, %d KiB", code, len(one)>>10)
	}
}

// TestPublishedValuesAreChecked: what a publish may carry. Invalid UTF-8
// (which a browser must drop a WebSocket for), numbers no float64 holds
// and sample times far from now are refused with 400 and nothing of the
// request is published; --max-value-bytes counts the compact JSON, not the
// sender's indentation.
func TestPublishedValuesAreChecked(t *testing.T) {
	base, _ := startServer(t, "--publish-token", testPublishToken)
	for name, body := range map[string]string{
		"invalid UTF-8":         `[{"topic":"app.ok","data":{"n":1}},{"topic":"app.bad","data":{"s":"` + "\xff\xfe" + `"}}]`,
		"a number out of range": `[{"topic":"app.ok","data":{"n":1}},{"topic":"app.bad","data":{"n":1e400}}]`,
		"ts in seconds":         `[{"topic":"app.ok","data":{"n":1}},{"topic":"app.bad","data":{"n":1},"ts":1763740000}]`,
		"ts in 2100":            `[{"topic":"app.ok","data":{"n":1}},{"topic":"app.bad","data":{"n":1},"ts":4102444800000}]`,
	} {
		if code, ec := publishBody(t, base, testPublishToken, body); code != 400 || ec != "bad_request" {
			t.Errorf("%s: %d %q, want 400 bad_request", name, code, ec)
		}
	}
	for _, topic := range []string{"app.ok", "app.bad"} {
		if code, _ := get(t, base+"/api/v1/topics/"+topic); code != 404 {
			t.Errorf("%s exists after refused publishes (%d)", topic, code)
		}
	}
	// 60 KB of compact JSON, over 64 KiB with the sender's indentation.
	var pretty strings.Builder
	pretty.WriteString("{\n")
	for i := 0; pretty.Len() < 80<<10; i++ {
		fmt.Fprintf(&pretty, "    \"field_%05d\":          %d,\n", i, i)
	}
	pretty.WriteString("    \"last\": 0\n}")
	if code, ec := publishBody(t, base, testPublishToken, `{"topic":"app.pretty","data":`+pretty.String()+`}`); code != 200 {
		t.Errorf("a pretty-printed value whose compact JSON is under --max-value-bytes: %d %s, want 200", code, ec)
	}
}

// TestPublishTokenRules: the publish token follows the auth token's rules:
// too short a token stops the server at startup, and wrong tokens are
// limited per client (then 429), logged and counted with token="publish".
func TestPublishTokenRules(t *testing.T) {
	var stderr strings.Builder
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // should the token pass, the server stops at once
	code := serveMain(ctx, []string{"--listen", "127.0.0.1:0", "--publish-token", "a"}, &stderr, func(string) string { return "" }, nil)
	if code != 2 || !strings.Contains(stderr.String(), "--publish-token must be at least 16 characters") {
		t.Errorf("--publish-token a: exit %d, %q", code, stderr.String())
	}

	base, _, logs := startServerLogs(t, "--publish-token", testPublishToken, "--log-format", "json")
	for i := range 6 {
		code, ec := publishBody(t, base, "wrong-token-0123456789", `{"topic":"app.x","data":{}}`)
		want, wantCode := 401, "unauthorized"
		if i == 5 {
			want, wantCode = 429, "rate_limited"
		}
		if code != want || ec != wantCode {
			t.Errorf("wrong token %d: %d %q, want %d %s", i+1, code, ec, want, wantCode)
		}
	}
	fams := mustScrape(t, base)
	if got := value(fams, "opsdash_auth_failures_total", "token", "publish"); got != 5 {
		t.Errorf("publish failures counted: %v, want 5", got)
	}
	if got := value(fams, "opsdash_auth_failures_total", "token", "auth"); got != 0 {
		t.Errorf("auth failures counted: %v, want 0", got)
	}
	if n := strings.Count(logs.String(), `"token":"publish"`); n != 5 {
		t.Errorf("%d wrong publish tokens logged, want 5:\n%s", n, logs.String())
	}
}

// TestPerIPLimitCountsIPv6Per64: one /64 gets one allowance, not one per
// address (here behind a trusted proxy that names the clients).
func TestPerIPLimitCountsIPv6Per64(t *testing.T) {
	base, _ := startServer(t, "--trusted-proxies", "127.0.0.1", "--max-conns-per-ip", "2")
	open := func(client string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/sse?topics=testhost.cpu", nil)
		req.Header.Set("X-Forwarded-For", client)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == 200 {
			t.Cleanup(func() { resp.Body.Close() })
		} else {
			resp.Body.Close()
		}
		return resp.StatusCode
	}
	for client, want := range map[string]int{"2001:db8::1": 200, "2001:db8::2": 200} {
		if got := open(client); got != want {
			t.Fatalf("SSE from %s = %d, want %d", client, got, want)
		}
	}
	if got := open("2001:db8::ffff:3"); got != 429 {
		t.Errorf("a third stream from the same /64 = %d, want 429", got)
	}
	if got := open("2001:db8:0:1::1"); got != 200 {
		t.Errorf("a stream from another /64 = %d, want 200", got)
	}
}

// smallRcvbufConn dials addr with a 4 KiB receive buffer, set before
// connecting: a client that soon stops taking what the server sends.
func smallRcvbufConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestDrainEndsStuckConnections: a request arriving byte by byte
// (slowloris) and an SSE client that stopped reading used to hold the
// shutdown past a short --drain-timeout (exit 1). Drain ends every
// connection, whatever it is doing, within the timeout, and exits 0.
func TestDrainEndsStuckConnections(t *testing.T) {
	base, stop := startServer(t, "--drain-timeout", "2s", "--publish-token", testPublishToken, "--max-topics", "0")
	addr := strings.TrimPrefix(base, "http://")
	slow := smallRcvbufConn(t, addr)
	if _, err := io.WriteString(slow, "GET /api/v1/topics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	sse := smallRcvbufConn(t, addr)
	if _, err := io.WriteString(sse, "GET /sse?topics=app.> HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(sse).ReadString('\n')
	if err != nil || !strings.Contains(line, "200") {
		t.Fatalf("SSE: %q %v", line, err)
	}
	// About 4 MiB for a client that reads nothing: the server's write to
	// it is stuck long before that.
	publishValues(t, base, 64, 16, func(i int) string { return fmt.Sprintf("app.v%02d", i) }, quotedValue(60000))
	eventually(t, "the SSE write to be under way", func() bool {
		return value(mustScrape(t, base), "opsdash_writers") >= 1
	})
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d after the drain, want 0", code)
	}
	_ = slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, slow); err != nil {
		t.Errorf("the slow request's connection was not closed: %v", err)
	}
}

// TestRefusalLogsAreLimited: one client repeating a refused request gets
// one log line per cause (then one a minute saying how many were held
// back), not one per request.
func TestRefusalLogsAreLimited(t *testing.T) {
	base, _, logs := startServerLogs(t, "--log-format", "json")
	for range 100 {
		hostRequest(t, base, "GET", "/sse?topics=testhost.cpu", "127.0.0.1:"+port(base), map[string]string{"Origin": "https://evil.example"})
		hostRequest(t, base, "GET", "/", "evil.example", nil)
	}
	if got := value(mustScrape(t, base), "opsdash_connections_refused_total", "reason", "origin"); got != 100 {
		t.Errorf("cross-origin refusals counted: %v, want 100", got)
	}
	for _, msg := range []string{"refused a cross-origin stream", "refused a request for a foreign host"} {
		if n := strings.Count(logs.String(), msg); n != 1 {
			t.Errorf("%q logged %d times for 100 refusals of one client, want 1", msg, n)
		}
	}
}

// TestProcTopTogglingKeepsItsInterval: a viewer that subscribes to and
// unsubscribes from the demand-driven proc.top over and over used to run
// the collector each time; it now runs at most once per interval. The
// toggles are paced by cpu's updates (every 100 ms), slower than a run of
// proc.top takes and much faster than its interval (30 s here).
func TestProcTopTogglingKeepsItsInterval(t *testing.T) {
	base, _ := startServer(t, "--intervals", "proc.top=30s,cpu=100ms", "--request-rate", "0")
	ws, _ := dialWS(t, base)
	next := func(typ, topic string) {
		t.Helper()
		for {
			var f struct{ Type, Topic string }
			if err := ws.ReadJSON(&f); err != nil {
				t.Fatal(err)
			}
			if f.Type == typ && (topic == "" || f.Topic == topic) {
				return
			}
		}
	}
	send := func(typ, topic string) {
		t.Helper()
		if err := ws.WriteJSON(map[string]any{"type": typ, "id": typ, "topics": []string{topic}}); err != nil {
			t.Fatal(err)
		}
		next(typ+"d", "")
	}
	send("subscribe", "testhost.cpu")
	const cycles = 20
	start := time.Now()
	for range cycles {
		_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
		next("update", "testhost.cpu")
		send("subscribe", "testhost.proc.top")
		send("unsubscribe", "testhost.proc.top")
	}
	next("update", "testhost.cpu") // a run started by the last toggle has had time to end
	elapsed := time.Since(start)
	runs := value(mustScrape(t, base), "opsdash_collector_duration_seconds", "collector", "proc.top")
	t.Logf("%d subscribe/unsubscribe cycles in %v: proc.top ran %v times", cycles, elapsed.Round(time.Millisecond), runs)
	if allowed := 1 + float64(elapsed/(30*time.Second)); runs < 1 || runs > allowed {
		t.Errorf("proc.top ran %v times in %v with a 30s interval, want 1 to %v", runs, elapsed.Round(time.Millisecond), allowed)
	}
}

// signIn logs in to base and returns the session cookie header.
func signIn(t *testing.T, base string) map[string]string {
	t.Helper()
	resp, _ := authRequest(t, "POST", base+"/login", nil, url.Values{"token": {testAuthToken}})
	for _, c := range resp.Cookies() {
		if c.Name == "opsdash_session" && c.Value != "" {
			return map[string]string{"Cookie": c.Name + "=" + c.Value}
		}
	}
	t.Fatalf("no session cookie from the login (%d)", resp.StatusCode)
	return nil
}

// TestSessionsBesideOtherCredentials: a proxy's Basic login does not hide
// a valid session cookie, nor counts as a wrong token; signing out is a
// POST from a page of this server.
func TestSessionsBesideOtherCredentials(t *testing.T) {
	base, _ := startServer(t, "--auth-token", testAuthToken)
	cookie := signIn(t, base)
	withBasic := map[string]string{"Cookie": cookie["Cookie"], "Authorization": "Basic b3BzZGFzaDpzZWNyZXQ="}
	if resp, body := authRequest(t, "GET", base+"/api/v1/topics", withBasic, nil); resp.StatusCode != 200 {
		t.Errorf("a session cookie beside a Basic header: %d %s", resp.StatusCode, body)
	}
	if got := value(mustScrape(t, base), "opsdash_auth_failures_total", "token", "auth"); got != 0 {
		t.Errorf("a Basic header counted as %v wrong tokens", got)
	}

	if resp, _ := authRequest(t, "GET", base+"/logout", cookie, nil); resp.StatusCode != 405 {
		t.Errorf("GET /logout = %d, want 405: a link must not sign anyone out", resp.StatusCode)
	}
	crossSite := map[string]string{"Cookie": cookie["Cookie"], "Origin": "https://evil.example"}
	if resp, _ := authRequest(t, "POST", base+"/logout", crossSite, url.Values{}); resp.StatusCode != 403 || resp.Header.Get("Set-Cookie") != "" {
		t.Errorf("POST /logout from another site = %d (Set-Cookie %q), want 403 and the cookie kept", resp.StatusCode, resp.Header.Get("Set-Cookie"))
	}
	if resp, _ := authRequest(t, "GET", base+"/api/v1/topics", cookie, nil); resp.StatusCode != 200 {
		t.Errorf("the session ended after a cross-site sign-out attempt: %d", resp.StatusCode)
	}
	sameSite := map[string]string{"Cookie": cookie["Cookie"], "Origin": base}
	if resp, _ := authRequest(t, "POST", base+"/logout", sameSite, url.Values{}); resp.StatusCode != 303 {
		t.Errorf("POST /logout from this server's page = %d, want 303", resp.StatusCode)
	}
	if resp, _ := authRequest(t, "GET", base+"/api/v1/topics", cookie, nil); resp.StatusCode != 401 {
		t.Errorf("the session still works after signing out: %d", resp.StatusCode)
	}
}

// rawRequest writes head (a request without its body) to base and returns
// the status line of the answer, which must come without the body being
// sent.
func rawRequest(t *testing.T, base, head string) string {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no answer before the body was sent: %v", err)
	}
	return strings.TrimSpace(line)
}

// TestBodiesAreReadAfterAuth: a request's body is read only as far as that
// request may send one, and a publish's token is checked before its body is
// read: large bodies without the right token are answered at once, unread.
func TestBodiesAreReadAfterAuth(t *testing.T) {
	base, _ := startServer(t, "--publish-token", testPublishToken)
	head := func(method, path, auth string, length int) string {
		h := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", method, path, length)
		if auth != "" {
			h += "Authorization: Bearer " + auth + "\r\n"
		}
		return h + "\r\n"
	}
	for _, tt := range []struct{ name, head, want string }{
		{"a wrong publish token", head("POST", "/api/v1/publish", "wrong-token-0123456789", 900<<10), "401"},
		{"no publish token", head("POST", "/api/v1/publish", "", 900<<10), "401"},
		{"the right token, over the body limit", head("POST", "/api/v1/publish", testPublishToken, 2<<20), "413"},
		{"a body on another route", head("POST", "/login", "", 1<<20), "413"},
	} {
		if got := rawRequest(t, base, tt.head); !strings.Contains(got, " "+tt.want+" ") {
			t.Errorf("%s: %q, want %s", tt.name, got, tt.want)
		}
	}
	if v := value(mustScrape(t, base), "opsdash_auth_failures_total", "token", "publish"); v != 1 {
		t.Errorf("publish failures counted: %v, want 1 (the wrong token; none for no token)", v)
	}
	if got := rawRequest(t, base, head("POST", "/api/v1/publish", testPublishToken, 0)); !strings.Contains(got, " 400 ") {
		t.Errorf("the right token with an empty body: %q, want 400", got)
	}
	if code, ec := publishBody(t, base, testPublishToken, `{"topic":"app.ok","data":{"n":1}}`); code != 200 {
		t.Errorf("publish with the right token: %d %s", code, ec)
	}
}

// TestUnreadResponseIsCut: a client that asks for a large page and never
// reads it must not hold the connection (and the rendered page) forever:
// writing a response has the write timeout, as every other stage of a
// connection has its deadline. A stream that writes within the timeout
// (SSE, with its heartbeat) is not cut.
func TestUnreadResponseIsCut(t *testing.T) {
	base, _ := startServer(t, "--publish-token", testPublishToken, "--write-timeout", "1s", "--heartbeat", "1500ms")
	publishValues(t, base, 64, 16, func(i int) string { return fmt.Sprintf("app.v%02d", i) }, quotedValue(60000))
	sse, err := http.Get(base + "/sse?topics=app.v00")
	if err != nil || sse.StatusCode != 200 {
		t.Fatalf("SSE: %v", err)
	}
	defer sse.Body.Close()

	open0 := value(mustScrape(t, base), "opsdash_tcp_connections_open")
	c := smallRcvbufConn(t, strings.TrimPrefix(base, "http://"))
	// Pipelined requests for about 4 MiB the client will not read.
	var reqs strings.Builder
	for i := range 32 {
		fmt.Fprintf(&reqs, "GET /api/v1/topics/app.v%02d?history=1000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", i)
	}
	if _, err := io.WriteString(c, reqs.String()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the unread response's connection to be closed by the server", func() bool {
		return value(mustScrape(t, base), "opsdash_tcp_connections_open") <= open0
	})
	// The SSE stream, quiet for longer than the write timeout, still lives.
	r := bufio.NewReader(sse.Body)
	pings := 0
	for pings < 2 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("the SSE stream ended: %v", err)
		}
		if strings.HasPrefix(line, ": ping") {
			pings++
		}
	}
}

// TestEveryStageHasADeadline (finding 1): a connection is cut at
// --handshake-timeout whatever stage it stops in: before its first byte
// (which fasthttp alone never timed out), in its headers, in its body, in
// a WebSocket upgrade, in a TLS handshake.
func TestEveryStageHasADeadline(t *testing.T) {
	dir := t.TempDir()
	pair := certtest.WriteSelfSigned(t, dir, "self")
	plain, _ := startServer(t, "--handshake-timeout", "500ms")
	tlsBase, _ := startServer(t, "--handshake-timeout", "500ms", "--tls-cert", pair.Cert, "--tls-key", pair.Key)
	for _, tt := range []struct{ name, base, sent string }{
		{"nothing sent", plain, ""},
		{"headers half sent", plain, "GET /api/v1/topics HTTP/1.1\r\nHost: 127.0.0.1\r\n"},
		{"body half sent", plain, "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ntoken="},
		{"upgrade half sent", plain, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"},
		{"TLS handshake half sent", tlsBase, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"},
		{"TLS: nothing sent", tlsBase, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", tt.base[strings.Index(tt.base, "//")+2:])
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tt.sent); err != nil {
				t.Fatal(err)
			}
			// The server closes it (after an error answer, if any): the
			// read ends well before this deadline.
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.Copy(io.Discard, c); err != nil {
				t.Errorf("the connection stayed open: %v", err)
			}
		})
	}
}
