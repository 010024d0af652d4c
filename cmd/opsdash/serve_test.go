package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// syncBuffer is a log sink the server and the test read concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServer runs `opsdash serve` in-process on a loopback port and returns
// its base URL and a function that stops it and returns its exit code.
func startServer(t *testing.T, args ...string) (string, func() int) {
	t.Helper()
	base, stop, _ := startServerLogs(t, args...)
	return base, stop
}

// startServerLogs is startServer that also returns the server's log.
func startServerLogs(t *testing.T, args ...string) (string, func() int, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan string, 1)
	done := make(chan int, 1)
	logs := &syncBuffer{}
	args = append([]string{"--listen", "127.0.0.1:0", "--host-id", "testhost", "--drain-timeout", "5s"}, args...)
	go func() { done <- serveMain(ctx, args, logs, func(string) string { return "" }, started) }()
	var addr string
	select {
	case addr = <-started:
	case code := <-done:
		t.Fatalf("serve exited with %d before listening: %s", code, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start")
	}
	var once sync.Once
	var code int
	stop := func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("server did not stop within 15s")
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return "http://" + addr, stop, logs
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronization
	}
}

func TestServeEndToEnd(t *testing.T) {
	base, stop := startServer(t)

	if code, body := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d %s", code, body)
	}
	eventually(t, "/readyz to report ready", func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })

	// Every topic a collector can produce is listed from the start,
	// including the on-demand proc.top (idle while nobody subscribes).
	code, body := get(t, base+"/api/v1/topics")
	if code != 200 {
		t.Fatalf("/api/v1/topics = %d %s", code, body)
	}
	var topics []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(body), &topics); err != nil {
		t.Fatalf("topics: %v in %s", err, body)
	}
	status := map[string]string{}
	for _, tp := range topics {
		status[tp.Name] = tp.Status
	}
	for _, want := range []string{"testhost.cpu", "testhost.cpu.cores", "testhost.mem", "testhost.swap", "testhost.load",
		"testhost.disk.usage", "testhost.disk.io", "testhost.net.io", "testhost.net.conns", "testhost.host"} {
		if _, ok := status[want]; !ok {
			t.Errorf("topic %s not listed; have %v", want, status)
		}
	}
	if status["testhost.proc.top"] != "idle" {
		t.Errorf("proc.top status = %q, want idle while nobody subscribes", status["testhost.proc.top"])
	}

	// A program subscribes over WebSocket and gets the snapshot, then the
	// on-demand proc.top starts because someone subscribed.
	ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(base, "http", "ws", 1)+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	var hello struct {
		Type     string `json:"type"`
		Protocol int    `json:"protocol"`
		Host     string `json:"host"`
	}
	if err := ws.ReadJSON(&hello); err != nil || hello.Type != "hello" || hello.Protocol != 1 || hello.Host != "testhost" {
		t.Fatalf("hello = %+v, %v", hello, err)
	}
	if err := ws.WriteJSON(map[string]any{"type": "subscribe", "id": "1", "topics": []string{"testhost.cpu", "testhost.proc.top"}}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for !(seen["testhost.cpu"] && seen["testhost.proc.top"]) {
		var f struct {
			Type  string          `json:"type"`
			Topic string          `json:"topic"`
			Data  json.RawMessage `json:"data"`
		}
		if err := ws.ReadJSON(&f); err != nil {
			t.Fatalf("reading updates (seen %v): %v", seen, err)
		}
		if f.Type == "update" {
			seen[f.Topic] = true
			if f.Topic == "testhost.cpu" && !bytes.Contains(f.Data, []byte(`"usage_pct"`)) {
				t.Errorf("cpu update without usage_pct: %s", f.Data)
			}
		}
	}

	// The page is server-rendered with the topics in it.
	code, body = get(t, base+"/")
	if code != 200 || !strings.Contains(body, `data-topic="testhost.cpu"`) {
		t.Fatalf("GET / = %d, page without the cpu topic:\n%s", code, body)
	}

	// Shutdown closes the WebSocket with 1001 and the process exits 0.
	if code := stop(); code != 0 {
		t.Fatalf("serve exit code = %d, want 0", code)
	}
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
				t.Fatalf("connection ended with %v, want close 1001", err)
			}
			break
		}
	}
}

func TestServeRefusesBadConfig(t *testing.T) {
	var stderr bytes.Buffer
	code := serveMain(context.Background(), []string{"--listen", "nope", "--heartbeat", "0s"}, &stderr, func(string) string { return "" }, nil)
	if code != 2 {
		t.Fatalf("exit code = %d, want 2", code)
	}
	for _, want := range []string{"--listen", "--heartbeat"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr does not mention %s:\n%s", want, stderr.String())
		}
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &out, io.Discard, func(string) string { return "" }); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.HasPrefix(out.String(), "opsdash ") {
		t.Fatalf("version output %q", out.String())
	}
}

func TestHealthcheck(t *testing.T) {
	base, stop := startServer(t)
	eventually(t, "ready", func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })
	noEnv := func(string) string { return "" }
	if code := run(context.Background(), []string{"healthcheck", "--server", base}, io.Discard, io.Discard, noEnv); code != 0 {
		t.Fatalf("healthcheck against a ready server = %d, want 0", code)
	}
	stop()
	if code := run(context.Background(), []string{"healthcheck", "--server", base, "--timeout", "2s"}, io.Discard, io.Discard, noEnv); code != 1 {
		t.Fatalf("healthcheck against a stopped server = %d, want 1", code)
	}
}

// --max-value-bytes reaches the publish API: a larger value is refused with
// 413 and publishes nothing, 0 turns the cap off.
func TestMaxValueBytes(t *testing.T) {
	post := func(t *testing.T, base, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/publish", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer value-cap-token-0123456789")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	value := func(n int) string { return `{"topic":"app.blob","data":{"s":"` + strings.Repeat("x", n) + `"}}` }

	base, _ := startServer(t, "--publish-token", "value-cap-token-0123456789", "--max-value-bytes", "100")
	if code, body := post(t, base, value(200)); code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "payload_too_large") {
		t.Fatalf("a 208-byte value with --max-value-bytes 100: %d %s, want 413 payload_too_large", code, body)
	}
	if code, _ := get(t, base+"/api/v1/topics/app.blob"); code != http.StatusNotFound {
		t.Fatalf("the refused value created its topic: GET = %d", code)
	}
	if code, body := post(t, base, value(50)); code != http.StatusOK {
		t.Fatalf("a 58-byte value: %d %s", code, body)
	}

	base, _ = startServer(t, "--publish-token", "value-cap-token-0123456789", "--max-value-bytes", "0")
	if code, body := post(t, base, value(200<<10)); code != http.StatusOK {
		t.Fatalf("a 200 KiB value with --max-value-bytes 0: %d %s, want 200", code, body)
	}
}
