package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape GETs /metrics (with an optional Authorization header) and parses
// the Prometheus text exposition.
func scrape(t *testing.T, base, authorization string) (int, map[string]*dto.MetricFamily) {
	t.Helper()
	return scrapeWith(t, http.DefaultClient, base, authorization)
}

// scrapeWith is scrape through client (e.g. one that trusts a test
// certificate).
func scrapeWith(t *testing.T, client *http.Client, base, authorization string) (int, map[string]*dto.MetricFamily) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("/metrics Content-Type = %q, want the Prometheus text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not valid Prometheus text: %v", err)
	}
	return resp.StatusCode, fams
}

// mustScrape scrapes and fails the test unless /metrics answers 200.
func mustScrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, fams := scrape(t, base, "")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d, want 200", code)
	}
	return fams
}

// sample returns the value of the series of family name whose labels
// include labels (name=value pairs): a counter's or gauge's value, a
// histogram's sample count. ok is false when there is no such series.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) (v float64, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// value is sample without ok: a missing series reads as 0, which is what a
// counter that has not moved yet means.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	v, _ := sample(fams, name, labels...)
	return v
}

// allMetricNames is every metric opsdash itself exports (docs/deploy.md
// lists them with their labels).
var allMetricNames = []string{
	"opsdash_build_info",
	"opsdash_connections_open",
	"opsdash_connections_opened_total",
	"opsdash_connections_refused_total",
	"opsdash_sessions",
	"opsdash_sessions_opened_total",
	"opsdash_sessions_closed_total",
	"opsdash_subscriptions",
	"opsdash_topics",
	"opsdash_published_topics",
	"opsdash_published_total",
	"opsdash_encode_errors_total",
	"opsdash_topics_expired_total",
	"opsdash_updates_offered_total",
	"opsdash_messages_sent_total",
	"opsdash_updates_dropped_total",
	"opsdash_mailbox_depth",
	"opsdash_reply_queue_depth",
	"opsdash_reply_queue_bytes",
	"opsdash_sessions_reading_paused",
	"opsdash_tcp_connections_open",
	"opsdash_tcp_connections_limit",
	"opsdash_accept_errors_total",
	"opsdash_accept_cap_waits_total",
	"opsdash_writers",
	"opsdash_write_batches_total",
	"opsdash_write_errors_total",
	"opsdash_write_timeouts_total",
	"opsdash_write_duration_seconds",
	"opsdash_write_batch_frames",
	"opsdash_rate_limited_total",
	"opsdash_rate_limit_closes_total",
	"opsdash_auth_failures_total",
	"opsdash_collector_duration_seconds",
	"opsdash_collector_errors_total",
}

func wsURL(base string) string { return strings.Replace(base, "http", "ws", 1) + "/ws" }

// dialWS opens a WebSocket and reads the hello frame; it returns the
// connection and the session id the server announced.
func dialWS(t *testing.T, base string) (*websocket.Conn, string) {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(wsURL(base), nil)
	if err != nil {
		t.Fatalf("dial /ws: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	var hello struct {
		Type    string `json:"type"`
		Session string `json:"session"`
	}
	if err := ws.ReadJSON(&hello); err != nil || hello.Type != "hello" || hello.Session == "" {
		t.Fatalf("hello = %+v, %v", hello, err)
	}
	return ws, hello.Session
}

func TestMetricsEndToEnd(t *testing.T) {
	base, _ := startServer(t)

	t.Run("collector runs", func(t *testing.T) {
		eventually(t, `a sample in opsdash_collector_duration_seconds{collector="cpu"}`, func() bool {
			return value(mustScrape(t, base), "opsdash_collector_duration_seconds", "collector", "cpu") > 0
		})
		if _, ok := sample(mustScrape(t, base), "opsdash_collector_errors_total", "collector", "cpu"); !ok {
			t.Error(`opsdash_collector_errors_total{collector="cpu"} missing after cpu ran`)
		}
	})

	// After the collector runs: a labelled metric (collector_*) has no
	// series before its first observation.
	t.Run("names", func(t *testing.T) {
		fams := mustScrape(t, base)
		for _, name := range allMetricNames {
			if fams[name] == nil {
				t.Errorf("metric %s missing from /metrics", name)
			}
		}
		// Go runtime and process collectors.
		for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "process_open_fds"} {
			if fams[name] == nil {
				t.Errorf("runtime metric %s missing from /metrics", name)
			}
		}
		for _, reason := range []string{"stale", "unsubscribed", "closed"} {
			if _, ok := sample(fams, "opsdash_updates_dropped_total", "reason", reason); !ok {
				t.Errorf("opsdash_updates_dropped_total{reason=%q} missing", reason)
			}
		}
		if v, ok := sample(fams, "opsdash_topics"); !ok || v < 10 {
			t.Errorf("opsdash_topics = %v (present %v), want the collectors' declared topics", v, ok)
		}
	})

	t.Run("a client connects and subscribes", func(t *testing.T) {
		before := mustScrape(t, base)
		ws, _ := dialWS(t, base)
		if err := ws.WriteJSON(map[string]any{"type": "subscribe", "id": "1", "topics": []string{"testhost.cpu", "*.mem"}}); err != nil {
			t.Fatal(err)
		}
		for gotUpdate := false; !gotUpdate; {
			var f struct{ Type string }
			if err := ws.ReadJSON(&f); err != nil {
				t.Fatalf("reading the subscription: %v", err)
			}
			gotUpdate = f.Type == "update"
		}
		after := mustScrape(t, base)
		if got, want := value(after, "opsdash_connections_opened_total"), value(before, "opsdash_connections_opened_total")+1; got != want {
			t.Errorf("opsdash_connections_opened_total = %v, want %v", got, want)
		}
		if got := value(after, "opsdash_connections_open", "kind", "ws"); got != 1 {
			t.Errorf(`opsdash_connections_open{kind="ws"} = %v, want 1`, got)
		}
		if got := value(after, "opsdash_sessions"); got != 1 {
			t.Errorf("opsdash_sessions = %v, want 1", got)
		}
		if got := value(after, "opsdash_subscriptions"); got != 2 {
			t.Errorf("opsdash_subscriptions = %v, want 2 (two patterns)", got)
		}
		// Frames are counted once their write returns, which can be after
		// the client has read them: wait for the counters rather than
		// assume they moved by the time the update arrived.
		eventually(t, "messages sent and write batches to be counted", func() bool {
			m := mustScrape(t, base)
			for _, typ := range []string{"hello", "subscribed", "update"} {
				if value(m, "opsdash_messages_sent_total", "type", typ) <= value(before, "opsdash_messages_sent_total", "type", typ) {
					return false
				}
			}
			return value(m, "opsdash_write_batches_total") > value(before, "opsdash_write_batches_total")
		})

		ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
		ws.Close()
		eventually(t, "the connection and its subscriptions to be gone from the gauges", func() bool {
			m := mustScrape(t, base)
			return value(m, "opsdash_connections_open", "kind", "ws") == 0 &&
				value(m, "opsdash_subscriptions") == 0 && value(m, "opsdash_sessions") == 0
		})
	})

	t.Run("an SSE stream", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse?topics=testhost.cpu", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("/sse = %d", resp.StatusCode)
		}
		// The stream is open once its first line arrives.
		if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		if got := value(mustScrape(t, base), "opsdash_connections_open", "kind", "sse"); got != 1 {
			t.Errorf(`opsdash_connections_open{kind="sse"} = %v, want 1`, got)
		}
		cancel()
		eventually(t, `opsdash_connections_open{kind="sse"} back to 0`, func() bool {
			return value(mustScrape(t, base), "opsdash_connections_open", "kind", "sse") == 0
		})
	})

	t.Run("a client is dropped for a binary frame", func(t *testing.T) {
		before := value(mustScrape(t, base), "opsdash_connections_closed_total", "code", "1003")
		ws, _ := dialWS(t, base)
		if err := ws.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3}); err != nil {
			t.Fatal(err)
		}
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				if !websocket.IsCloseError(err, websocket.CloseUnsupportedData) {
					t.Fatalf("connection ended with %v, want close 1003", err)
				}
				break
			}
		}
		eventually(t, `opsdash_connections_closed_total{code="1003"} to move`, func() bool {
			return value(mustScrape(t, base), "opsdash_connections_closed_total", "code", "1003") == before+1
		})
	})

	t.Run("a foreign origin is refused", func(t *testing.T) {
		before := mustScrape(t, base)
		if got, ok := sample(before, "opsdash_connections_refused_total", "reason", "origin"); !ok || got != 0 {
			t.Fatalf(`opsdash_connections_refused_total{reason="origin"} = %v (present %v), want 0 before any refusal`, got, ok)
		}
		_, resp, err := websocket.DefaultDialer.Dial(wsURL(base), http.Header{"Origin": {"https://evil.example"}})
		if err == nil {
			t.Fatal("a handshake from a foreign origin was accepted")
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("handshake from a foreign origin: %v (response %+v), want 403", err, resp)
		}
		after := mustScrape(t, base)
		if got := value(after, "opsdash_connections_refused_total", "reason", "origin"); got != 1 {
			t.Errorf(`opsdash_connections_refused_total{reason="origin"} = %v, want 1`, got)
		}
		if a, b := value(after, "opsdash_connections_opened_total"), value(before, "opsdash_connections_opened_total"); a != b {
			t.Errorf("opsdash_connections_opened_total moved from %v to %v for a refused handshake", b, a)
		}
	})

	t.Run("write latency", func(t *testing.T) {
		if value(mustScrape(t, base), "opsdash_write_duration_seconds") == 0 {
			t.Error("opsdash_write_duration_seconds has no sample after clients were sent frames")
		}
		if value(mustScrape(t, base), "opsdash_write_batch_frames") == 0 {
			t.Error("opsdash_write_batch_frames has no sample after clients were sent frames")
		}
	})
}

func TestMetricsConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		token   string
		wantErr bool
	}{
		{"default: /metrics open", nil, "", false},
		{"metrics auth with a token", []string{"--metrics-auth"}, "s3cret", false},
		{"metrics auth without a token", []string{"--metrics-auth"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg metricsConfig
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			cfg.register(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if cfg.Auth != (len(tt.args) > 0) {
				t.Errorf("Auth = %v after %v", cfg.Auth, tt.args)
			}
			errs := cfg.validate(tt.token)
			if (len(errs) > 0) != tt.wantErr {
				t.Fatalf("validate = %v, want error: %v", errs, tt.wantErr)
			}
			if tt.wantErr && !strings.Contains(errs[0].Error(), "--auth-token") {
				t.Errorf("error %q does not say what is missing", errs[0])
			}
		})
	}
}

// TestMetricsAuth: /metrics stays open with an auth token unless
// --metrics-auth is set; then it needs the token, and wrong tokens are counted.
func TestMetricsAuth(t *testing.T) {
	const token = "metrics-test-token"

	t.Run("open by default", func(t *testing.T) {
		base, _ := startServer(t, "--auth-token", token)
		if code, _ := scrape(t, base, ""); code != http.StatusOK {
			t.Errorf("GET /metrics without a token = %d, want 200 without --metrics-auth", code)
		}
	})

	t.Run("behind the token with --metrics-auth", func(t *testing.T) {
		base, _ := startServer(t, "--auth-token", token, "--metrics-auth")
		code, fams := scrape(t, base, "Bearer "+token)
		if code != http.StatusOK {
			t.Fatalf("GET /metrics with the token = %d, want 200", code)
		}
		failures := value(fams, "opsdash_auth_failures_total", "token", "auth")
		for _, auth := range []string{"", "Bearer wrong-token"} {
			if code, _ := scrape(t, base, auth); code != http.StatusUnauthorized {
				t.Errorf("GET /metrics with Authorization %q = %d, want 401", auth, code)
			}
		}
		_, fams = scrape(t, base, "Bearer "+token)
		// Only the wrong token counts: a request without credentials is
		// not an attack (a first visit, a cookie from before a restart).
		if got := value(fams, "opsdash_auth_failures_total", "token", "auth"); got != failures+1 {
			t.Errorf("opsdash_auth_failures_total = %v after one missing and one wrong token, want %v", got, failures+1)
		}
	})
}

// TestConnectionLogs: connection open and close are logged (debug) with
// the session id the client saw in hello and the client IP, and no token
// reaches the log.
func TestConnectionLogs(t *testing.T) {
	const publishToken = "publish-secret-0123"
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan string, 1)
	done := make(chan int, 1)
	logs := &syncBuffer{}
	args := []string{"--listen", "127.0.0.1:0", "--host-id", "testhost", "--drain-timeout", "5s",
		"--log-level", "debug", "--log-format", "json", "--publish-token", publishToken}
	go func() { done <- serveMain(ctx, args, logs, func(string) string { return "" }, started) }()
	var base string
	select {
	case addr := <-started:
		base = "http://" + addr
	case code := <-done:
		t.Fatalf("serve exited with %d: %s", code, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start")
	}
	var stopOnce sync.Once
	stop := func() {
		stopOnce.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Error("server did not stop")
			}
		})
	}
	defer stop()

	// logged reports whether a JSON log line has msg and every attr given.
	logged := func(msg string, attrs map[string]string) bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != msg {
				continue
			}
			match := true
			for k, v := range attrs {
				if s, _ := rec[k].(string); s != v {
					match = false
				}
			}
			if match {
				return true
			}
		}
		return false
	}

	ws, session := dialWS(t, base)
	conn := map[string]string{"session": session, "client_ip": "127.0.0.1"}
	eventually(t, "a log line for the opened WebSocket", func() bool { return logged("websocket opened", conn) })
	ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	ws.Close()
	eventually(t, "a log line for the closed WebSocket", func() bool { return logged("websocket closed", conn) })

	// Publishing with a wrong and the right token; neither may be logged.
	for _, tok := range []string{"wrong-secret-4567", publishToken} {
		req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/publish", strings.NewReader(`{"topic":"app.orders","data":{"count":1}}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if code, _ := get(t, base+"/metrics"); code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	stop() // the last log lines are written before serve returns
	out := logs.String()
	for _, secret := range []string{publishToken, "wrong-secret-4567", "Bearer"} {
		if strings.Contains(out, secret) {
			t.Errorf("the log contains %q:\n%s", secret, out)
		}
	}
}
