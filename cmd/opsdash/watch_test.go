package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// startServerOn is startServer on a fixed address, so that a test can stop
// a server and start the next one where clients reconnect. startServer's
// own --listen comes first, and a later flag wins.
func startServerOn(t *testing.T, addr string, args ...string) (string, func() int) {
	t.Helper()
	return startServer(t, append([]string{"--listen", addr}, args...)...)
}

// watchRun is one `opsdash watch` running in-process, as run() starts it.
type watchRun struct {
	stdout, stderr *syncBuffer
	cancel         context.CancelFunc
	done           chan int
}

// startWatch runs `opsdash watch args...` until the test stops it.
func startWatch(t *testing.T, getenv func(string) string, args ...string) *watchRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watchRun{stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	go func() { w.done <- run(ctx, append([]string{"watch"}, args...), w.stdout, w.stderr, getenv) }()
	t.Cleanup(func() {
		w.stop(t)
		if t.Failed() {
			t.Logf("watch stdout:\n%s\nwatch stderr:\n%s", w.stdout.String(), w.stderr.String())
		}
	})
	return w
}

// stop ends the watch as SIGINT does and returns its exit code.
func (w *watchRun) stop(t *testing.T) int {
	t.Helper()
	w.cancel()
	select {
	case code := <-w.done:
		w.done <- code // later calls (the cleanup) see it too
		return code
	case <-time.After(10 * time.Second):
		t.Fatalf("watch did not exit within 10s of its context ending; stderr:\n%s", w.stderr.String())
		return -1
	}
}

// lines returns stdout's complete lines.
func (w *watchRun) lines() []string {
	out := w.stdout.String()
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		return strings.Split(out[:i], "\n")
	}
	return nil
}

func noEnv(string) string { return "" }

// readableLine matches a readable update line: time, topic, seq, data.
var readableLine = regexp.MustCompile(`^(\d\d:\d\d:\d\d\.\d\d\d) (\S+) #(\d+)( \(\d+ skipped\))? (.*)$`)

// cpuSeqs returns the seqs of testhost.cpu lines in order, failing the
// test on a line that is not a well-formed update line.
func cpuSeqs(t *testing.T, lines []string) []uint64 {
	t.Helper()
	var seqs []uint64
	for _, l := range lines {
		m := readableLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("not an update line: %q", l)
		}
		if m[2] != "testhost.cpu" {
			t.Fatalf("line for a topic not subscribed: %q", l)
		}
		if !strings.Contains(m[5], "usage_pct=") {
			t.Fatalf("cpu line without usage_pct: %q", l)
		}
		seq, _ := strconv.ParseUint(m[3], 10, 64)
		seqs = append(seqs, seq)
	}
	return seqs
}

func TestWatchPrintsSnapshotAndLiveUpdates(t *testing.T) {
	base, _ := startServer(t)
	w := startWatch(t, noEnv, "--server", base, "testhost.cpu")
	// The snapshot arrives at once, then one line per second.
	eventually(t, "three cpu lines", func() bool { return len(w.lines()) >= 3 })
	seqs := cpuSeqs(t, w.lines())
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("seqs do not grow: %v\n%s", seqs, w.stdout.String())
		}
	}
	if !strings.Contains(w.stderr.String(), "connected to ws://") {
		t.Errorf("stderr does not say it connected:\n%s", w.stderr.String())
	}
	if code := w.stop(t); code != 0 {
		t.Fatalf("exit code after the context ended = %d, want 0", code)
	}
}

// TestWatchMaxHz: with --max-hz 0.5 the server sends the 1 Hz cpu topic
// every other second at most, so watch reports the values it skipped.
func TestWatchMaxHz(t *testing.T) {
	base, _ := startServer(t)
	w := startWatch(t, noEnv, "--server", base, "--max-hz", "0.5", "testhost.cpu")
	eventually(t, "a line after skipped values", func() bool {
		for _, l := range w.lines() {
			if m := readableLine.FindStringSubmatch(l); m != nil && m[4] != "" {
				return true
			}
		}
		return false
	})
	cpuSeqs(t, w.lines())
}

func TestWatchJSONLinesAreUpdateFrames(t *testing.T) {
	base, _ := startServer(t)
	// Flags after the pattern work too; the server comes from the environment.
	w := startWatch(t, func(k string) string {
		if k == "OPSDASH_SERVER" {
			return base
		}
		return ""
	}, "*.cpu", "testhost.mem", "--json")
	eventually(t, "cpu and mem updates", func() bool {
		out := w.stdout.String()
		return strings.Count(out, `"topic":"testhost.cpu"`) >= 2 && strings.Contains(out, `"topic":"testhost.mem"`)
	})
	for _, l := range w.lines() {
		var f struct {
			Type  string                     `json:"type"`
			Topic string                     `json:"topic"`
			Seq   uint64                     `json:"seq"`
			TS    int64                      `json:"ts"`
			Data  map[string]json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal([]byte(l), &f); err != nil {
			t.Fatalf("line is not JSON: %q: %v", l, err)
		}
		if f.Type != "update" || f.Seq == 0 || f.TS == 0 || f.Data == nil {
			t.Fatalf("line is not an update frame: %q", l)
		}
		if f.Topic != "testhost.cpu" && f.Topic != "testhost.mem" {
			t.Fatalf("update of a topic not subscribed: %q", l)
		}
	}
}

func TestWatchReconnectsAcrossServerRestart(t *testing.T) {
	base, stop := startServer(t)
	addr := strings.TrimPrefix(base, "http://")
	w := startWatch(t, noEnv, "--server", base, "--max-backoff", "2s", "testhost.cpu")
	eventually(t, "a cpu line from the first server", func() bool { return len(w.lines()) >= 1 })

	if code := stop(); code != 0 {
		t.Fatalf("first server exit code %d", code)
	}
	eventually(t, "watch to notice the drop", func() bool {
		return strings.Contains(w.stderr.String(), "reconnecting in")
	})
	before := len(w.lines())
	startServerOn(t, addr)

	eventually(t, "watch to reconnect and print the new server's updates", func() bool {
		return strings.Contains(w.stderr.String(), "reconnected to") && len(w.lines()) >= before+2
	})
	errs := w.stderr.String()
	for _, want := range []string{"close 1001", "server restarted", "reconnected to ws://" + addr + "/ws"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr does not say %q:\n%s", want, errs)
		}
	}
	// Every line is still a well-formed cpu update; the new server's seqs
	// start over and grow again.
	after := cpuSeqs(t, w.lines()[before:])
	if after[1] <= after[0] {
		t.Errorf("seqs after the restart do not grow: %v", after)
	}
	if code := w.stop(t); code != 0 {
		t.Fatalf("exit code = %d, want 0", code)
	}
}

func TestWatchAgainstAServerWithAuth(t *testing.T) {
	const token = "watch-test-token-0123456789abcdef"
	base, _ := startServer(t, "--auth-token", token)

	// Without the token: refused for good, exit 1, no retry loop.
	var stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if code := run(ctx, []string{"watch", "--server", base, "testhost.cpu"}, io.Discard, &stderr, noEnv); code != 1 || ctx.Err() != nil {
		t.Fatalf("without a token: exit code %d (context: %v), want 1; stderr:\n%s", code, ctx.Err(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "401") {
		t.Errorf("stderr does not give the 401:\n%s", stderr.String())
	}

	// With it, from the environment as a deployment would set it.
	w := startWatch(t, func(k string) string {
		if k == "OPSDASH_AUTH_TOKEN" {
			return token
		}
		return ""
	}, "--server", base, "testhost.cpu")
	eventually(t, "cpu updates", func() bool { return len(w.lines()) >= 1 })
	cpuSeqs(t, w.lines())
	if strings.Contains(w.stderr.String(), token) {
		t.Errorf("the token appears on stderr:\n%s", w.stderr.String())
	}
}

func TestWatchBadUsageExits2WithoutConnecting(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no pattern", []string{"--server", srv.URL}, "no PATTERN"},
		{"invalid pattern", []string{"--server", srv.URL, "testhost.cpu", "Web 1.cpu"}, `pattern "Web 1.cpu"`},
		{"empty token", []string{"--server", srv.URL, "web-1..cpu"}, `pattern "web-1..cpu"`},
		{"wildcard inside a token", []string{"--server", srv.URL, "web-1.c*"}, `pattern "web-1.c*"`},
		{"not an http URL", []string{"--server", "ftp://127.0.0.1:1", "x.cpu"}, "--server"},
		{"no host", []string{"--server", "http://", "x.cpu"}, "no host"},
		{"unknown flag", []string{"--server", srv.URL, "--nope", "x.cpu"}, "nope"},
		{"negative width", []string{"--server", srv.URL, "--width", "-1", "x.cpu"}, "--width"},
		{"negative max-hz", []string{"--server", srv.URL, "--max-hz", "-1", "x.cpu"}, "--max-hz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(context.Background(), append([]string{"watch"}, tc.args...), io.Discard, &stderr, noEnv)
			if code != 2 {
				t.Fatalf("exit code = %d, want 2; stderr:\n%s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr does not mention %q:\n%s", tc.want, stderr.String())
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("bad usage still made %d requests to the server", n)
	}
}

// fakeServer is a scripted protocol-v1 server: each connection runs the
// next script, so a test controls exactly what a reconnecting client sees.
type fakeServer struct {
	t       *testing.T
	srv     *httptest.Server
	scripts []func(f *fakeServer, c *websocket.Conn)
	mu      sync.Mutex
	conns   int
	auth    []string
	pings   int
}

func newFakeServer(t *testing.T, scripts ...func(f *fakeServer, c *websocket.Conn)) *fakeServer {
	f := &fakeServer{t: t, scripts: scripts}
	up := websocket.Upgrader{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		n := f.conns
		f.conns++
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.mu.Unlock()
		if r.URL.Path != "/ws" || n >= len(f.scripts) {
			http.Error(w, "no more scripts", http.StatusServiceUnavailable)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		f.scripts[n](f, c)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// send writes a frame; a failure ends the script (the client went away).
func send(c *websocket.Conn, v string) { _ = c.WriteMessage(websocket.TextMessage, []byte(v)) }

// expectSubscribe reads the client's subscribe request and answers it.
func (f *fakeServer) expectSubscribe(c *websocket.Conn, want ...string) bool {
	var req struct {
		Type   string   `json:"type"`
		ID     string   `json:"id"`
		Topics []string `json:"topics"`
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := c.ReadJSON(&req); err != nil {
		f.t.Errorf("reading subscribe: %v", err)
		return false
	}
	if req.Type != "subscribe" || strings.Join(req.Topics, " ") != strings.Join(want, " ") {
		f.t.Errorf("request = %+v, want subscribe to %v", req, want)
		return false
	}
	reply, _ := json.Marshal(map[string]any{"type": "subscribed", "id": req.ID, "topics": req.Topics})
	send(c, string(reply))
	return true
}

// readUntilClosed reads the client's frames until it goes away, counting
// protocol pings and, when answer is set, replying to them.
func (f *fakeServer) readUntilClosed(c *websocket.Conn, answer bool) {
	_ = c.SetReadDeadline(time.Time{})
	for {
		_, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		var req struct{ Type, ID string }
		if json.Unmarshal(msg, &req) == nil && req.Type == "ping" {
			f.mu.Lock()
			f.pings++
			f.mu.Unlock()
			if answer {
				send(c, fmt.Sprintf(`{"type":"pong","id":%q}`, req.ID))
			}
		}
	}
}

func TestWatchDetectsADeadConnectionAndResumes(t *testing.T) {
	const hello = `{"type":"hello","protocol":1,"session":"s","instance":"i1","host":"fake","heartbeat_ms":200}`
	f := newFakeServer(t,
		// 1: a value, then silence: no frame, no pong, no ping frame.
		func(f *fakeServer, c *websocket.Conn) {
			send(c, hello)
			if !f.expectSubscribe(c, "fake.cpu", "fake.disk.>") {
				return
			}
			send(c, `{"type":"update","topic":"fake.cpu","seq":1,"ts":1700000000000,"data":{"usage_pct":1.5,"note":"a b"}}`)
			f.readUntilClosed(c, false)
		},
		// 2: the same server process: the snapshot repeats seq 1, then
		// a broken frame, seq 4 (2 and 3 were missed), a status change.
		func(f *fakeServer, c *websocket.Conn) {
			send(c, hello)
			if !f.expectSubscribe(c, "fake.cpu", "fake.disk.>") {
				return
			}
			send(c, `{"type":"update","topic":"fake.cpu","seq":1,"ts":1700000000000,"data":{"usage_pct":1.5,"note":"a b"}}`)
			send(c, `not JSON`) // skipped, not a reason to drop the connection
			send(c, `{"type":"update","topic":"fake.cpu","seq":4,"ts":1700000003000,"data":{"usage_pct":4}}`)
			send(c, `{"type":"status","topic":"fake.disk.io","status":"failing","error":"boom"}`)
			f.readUntilClosed(c, true)
		},
	)
	w := startWatch(t, func(k string) string {
		if k == "OPSDASH_AUTH_TOKEN" {
			return "s3cret"
		}
		return ""
	}, "--server", f.srv.URL, "--max-backoff", "200ms", "fake.cpu", "fake.disk.>")

	eventually(t, "the status line from the second connection", func() bool {
		return strings.Contains(w.stdout.String(), "STATUS failing: boom")
	})
	lines := w.lines()
	if len(lines) != 3 {
		t.Fatalf("want 3 lines (seq 1 once, seq 4, status), got:\n%s", w.stdout.String())
	}
	if !strings.HasSuffix(lines[0], ` fake.cpu #1 usage_pct=1.5 note="a b"`) {
		t.Errorf("line 1 = %q", lines[0])
	}
	if !strings.HasSuffix(lines[1], " fake.cpu #4 (2 skipped) usage_pct=4") {
		t.Errorf("line 2 = %q", lines[1])
	}
	errs := w.stderr.String()
	for _, want := range []string{"presumed dead", "reconnecting in", "reconnected to", "ignoring a frame that is not JSON"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr does not say %q:\n%s", want, errs)
		}
	}
	if strings.Contains(errs, "s3cret") {
		t.Errorf("the token appears on stderr:\n%s", errs)
	}
	f.mu.Lock()
	auth, pings := f.auth, f.pings
	f.mu.Unlock()
	for i, a := range auth[:2] {
		if a != "Bearer s3cret" {
			t.Errorf("connection %d sent Authorization %q, want the bearer token from OPSDASH_AUTH_TOKEN", i+1, a)
		}
	}
	if pings == 0 {
		t.Error("watch sent no protocol ping to a silent server")
	}
	if code := w.stop(t); code != 0 {
		t.Fatalf("exit code = %d, want 0", code)
	}
}

func TestWatchGivesUpOnRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"wrong token", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"code":"unauthorized","message":"a valid token is required"}}`)
		}, "401 Unauthorized unauthorized: a valid token is required (set --auth-token"},
		{"not opsdash", http.NotFound, "404 Not Found"},
		{"subscription refused", func(w http.ResponseWriter, r *http.Request) {
			c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			send(c, `{"type":"hello","protocol":1,"instance":"i","host":"h","heartbeat_ms":1000}`)
			var req struct{ ID string }
			if c.ReadJSON(&req) == nil {
				send(c, fmt.Sprintf(`{"type":"error","id":%q,"code":"too_many_subscriptions","message":"at most 1"}`, req.ID))
			}
			_, _, _ = c.ReadMessage()
		}, "refused the subscription: too_many_subscriptions: at most 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			var stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			code := run(ctx, []string{"watch", "--server", srv.URL, "x.cpu", "x.mem"}, io.Discard, &stderr, noEnv)
			if ctx.Err() != nil {
				t.Fatalf("watch kept retrying a refusal it cannot fix; stderr:\n%s", stderr.String())
			}
			if code != 1 {
				t.Fatalf("exit code = %d, want 1; stderr:\n%s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr does not say %q:\n%s", tc.want, stderr.String())
			}
		})
	}
}

func TestWatchRetriesUntilTheServerAppears(t *testing.T) {
	// Reserve a port, free it, and start the server there only after
	// watch has failed to connect at least once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	w := startWatch(t, noEnv, "--server", "http://"+addr, "--max-backoff", "1s", "testhost.cpu")
	eventually(t, "a failed attempt", func() bool { return strings.Contains(w.stderr.String(), "cannot connect") })
	startServerOn(t, addr)
	eventually(t, "cpu updates", func() bool { return len(w.lines()) >= 1 })
	cpuSeqs(t, w.lines())
}

func TestWebsocketURL(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "http://127.0.0.1:8080", want: "ws://127.0.0.1:8080/ws"},
		{in: "http://127.0.0.1:8080/", want: "ws://127.0.0.1:8080/ws"},
		{in: "https://ops.example.com", want: "wss://ops.example.com/ws"},
		{in: "https://ops.example.com/opsdash/", want: "wss://ops.example.com/opsdash/ws"},
		{in: "ws://h:1", want: "ws://h:1/ws"},
		{in: "http://user:pw@h:1/?x=1#f", want: "ws://h:1/ws"},
		{in: "127.0.0.1:8080", err: "want an http"},
		{in: "ftp://h", err: "want an http"},
		{in: "http://", err: "no host"},
		{in: "http://[::1", err: "missing ']'"},
	} {
		got, err := websocketURL(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("websocketURL(%q) = %q, %v; want error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("websocketURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestBackoffIsCappedExponentialWithFullJitter(t *testing.T) {
	base, max := 500*time.Millisecond, 30*time.Second
	highest := func(n int64) int64 { return n - 1 }
	lowest := func(int64) int64 { return 0 }
	for _, tc := range []struct {
		attempt int
		want    time.Duration
	}{
		{0, 500 * time.Millisecond}, {1, time.Second}, {2, 2 * time.Second}, {5, 16 * time.Second},
		{6, 30 * time.Second}, {40, 30 * time.Second}, {70, 30 * time.Second}, {1000, 30 * time.Second},
	} {
		if got := backoff(tc.attempt, base, max, highest); got != tc.want {
			t.Errorf("backoff(%d) upper bound = %v, want %v", tc.attempt, got, tc.want)
		}
		if got := backoff(tc.attempt, base, max, lowest); got != 0 {
			t.Errorf("backoff(%d) lower bound = %v, want 0 (full jitter)", tc.attempt, got)
		}
	}
}
