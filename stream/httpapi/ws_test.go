package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
	"github.com/opsdash/opsdash/stream/httpapi"
)

func TestHelloIsFirst(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config, _ *stream.RegistryConfig) { c.Heartbeat = 7 * time.Second })
	c := e.dial(t)
	f := c.next()
	if f.Type != "hello" || f.Protocol != 1 || f.Session == "" || f.Instance != "test-instance" ||
		f.Host != testHost || f.HeartbeatMS != 7000 {
		t.Fatalf("first frame %s, want hello with protocol 1, a session, instance, host and heartbeat_ms 7000", f.raw)
	}
	c2 := e.dial(t)
	if f2 := c2.next(); f2.Type != "hello" || f2.Session == f.Session {
		t.Fatalf("second connection's hello %s: want its own session id", f2.raw)
	}
}

func TestSubscribeSnapshotThenLive(t *testing.T) {
	e := newEnv(t)
	e.publish("web-1.cpu", map[string]any{"usage_pct": 10})
	e.publish("web-1.cpu", map[string]any{"usage_pct": 11})
	e.publish("web-1.mem", map[string]any{"used_bytes": 1})
	e.publish("web-1.disk", map[string]any{"x": 1})
	c := e.dialHello(t)

	c.send(`{"type":"subscribe","id":"1","topics":["web-1.cpu","*.mem"]}`)
	sub := c.next()
	if sub.Type != "subscribed" || sub.ID != "1" || strings.Join(topicsOf(t, sub), ",") != "web-1.cpu,*.mem" {
		t.Fatalf("got %s, want subscribed with id 1 and the patterns as sent", sub.raw)
	}
	snap := map[string]frame{}
	for len(snap) < 2 {
		f := c.next()
		if f.Type != "update" {
			t.Fatalf("got %s in the snapshot", f.raw)
		}
		snap[f.Topic] = f
	}
	if cpu := snap["web-1.cpu"]; cpu.Seq != 2 || string(cpu.Data) != `{"usage_pct":11}` || cpu.TS == 0 {
		t.Fatalf("snapshot of web-1.cpu %s, want the latest value (seq 2)", cpu.raw)
	}
	if _, ok := snap["web-1.mem"]; !ok {
		t.Fatal("no snapshot of web-1.mem")
	}

	e.publish("web-1.disk", map[string]any{"x": 2}) // not subscribed
	e.publish("web-1.cpu", map[string]any{"usage_pct": 12})
	f := c.next()
	if f.Type != "update" || f.Topic != "web-1.cpu" || f.Seq != 3 || string(f.Data) != `{"usage_pct":12}` {
		t.Fatalf("live frame %s, want web-1.cpu seq 3", f.raw)
	}
}

// TestSeqStrictlyRisingWhilePublishing subscribes while a topic is being
// published as fast as possible: subscribed, then the snapshot, then live
// updates, each with a higher seq than the one before, up to the last one.
func TestSeqStrictlyRisingWhilePublishing(t *testing.T) {
	e := newEnv(t)
	const n = 3000
	e.publish("app.fast", map[string]any{"i": 0})
	c := e.dialHello(t)
	start := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-start
		for i := 1; i < n; i++ {
			e.publish("app.fast", map[string]any{"i": i})
		}
	}()
	c.send(`{"type":"subscribe","id":"s","topics":["app.>"]}`)
	close(start)
	if f := c.next(); f.Type != "subscribed" {
		t.Fatalf("got %s, want subscribed first", f.raw)
	}
	// How many values arrive depends on timing (the rest are conflated);
	// the order and the last value are what is asserted.
	var last uint64
	for last < n {
		f := c.next()
		if f.Type != "update" || f.Topic != "app.fast" {
			t.Fatalf("unexpected %s", f.raw)
		}
		if f.Seq <= last {
			t.Fatalf("seq %d after %d: seqs must rise strictly", f.Seq, last)
		}
		last = f.Seq
	}
	<-done
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	e := newEnv(t)
	c := e.dialHello(t)
	c.send(`{"type":"subscribe","id":"1","topics":["app.a","app.b"]}`)
	c.nextOf("subscribed", nil)
	e.publish("app.a", map[string]any{"v": 1})
	if f := c.next(); f.Topic != "app.a" {
		t.Fatalf("got %s, want app.a", f.raw)
	}
	c.send(`{"type":"unsubscribe","id":"2","topics":["app.a"]}`)
	if f := c.next(); f.Type != "unsubscribed" || f.ID != "2" || strings.Join(topicsOf(t, f), ",") != "app.a" {
		t.Fatalf("got %s, want unsubscribed 2 [app.a]", f.raw)
	}
	// app.a is published before app.b: had it still been flowing, its
	// update would be pending before app.b's and arrive first.
	e.publish("app.a", map[string]any{"v": 2})
	e.publish("app.b", map[string]any{"v": 1})
	if f := c.next(); f.Topic != "app.b" {
		t.Fatalf("got %s after unsubscribing app.a, want app.b's update", f.raw)
	}
}

func TestWildcardReceivesLaterTopic(t *testing.T) {
	e := newEnv(t)
	c := e.dialHello(t)
	c.send(`{"type":"subscribe","id":"w","topics":["billing.>","*.cpu"]}`)
	c.nextOf("subscribed", nil)
	e.publish("billing.orders.eu", map[string]any{"count": 4})
	f := c.next()
	if f.Topic != "billing.orders.eu" || f.Seq != 1 {
		t.Fatalf("got %s, want the new topic billing.orders.eu", f.raw)
	}
	e.publish("web-2.cpu", map[string]any{"usage_pct": 1})
	if f := c.next(); f.Topic != "web-2.cpu" {
		t.Fatalf("got %s, want web-2.cpu", f.raw)
	}
}

func TestListAndStatus(t *testing.T) {
	e := newEnv(t)
	e.reg.Declare(collectors.TopicInfo{Name: "web-1.disk.io", Interval: time.Second, Description: "disk I/O"})
	e.publish("web-1.disk.io", map[string]any{"x": 1})
	c := e.dialHello(t)
	c.send(`{"type":"list","id":"l"}`)
	f := c.next()
	var list []stream.TopicState
	if err := json.Unmarshal(f.Topics, &list); f.Type != "topics" || f.ID != "l" || err != nil || len(list) != 1 ||
		list[0].Name != "web-1.disk.io" || list[0].IntervalMS != 1000 || list[0].Status != "ok" {
		t.Fatalf("list reply %s", f.raw)
	}
	c.send(`{"type":"subscribe","id":"1","topics":["web-1.disk.io"]}`)
	c.nextOf("subscribed", nil)
	c.nextOf("update", nil)
	e.reg.SetStatus("web-1.disk.io", fmt.Errorf("device gone"))
	f = c.next()
	if f.Type != "status" || f.Topic != "web-1.disk.io" || f.Status != "failing" || f.Error != "device gone" {
		t.Fatalf("got %s, want a failing status frame", f.raw)
	}
}

func TestPingPong(t *testing.T) {
	const hb = 200 * time.Millisecond
	e := newEnv(t, func(c *httpapi.Config, _ *stream.RegistryConfig) { c.Heartbeat = hb })
	c := e.dialHello(t)
	c.send(`{"type":"ping","id":"p1"}`)
	if f := c.next(); f.Type != "pong" || f.ID != "p1" {
		t.Fatalf("got %s, want pong p1", f.raw)
	}
	// From here the client sends nothing but the pongs its library answers
	// the server's ping frames with (inside ReadMessage), so the connection
	// outliving several read timeouts (2.5 heartbeats) is the pongs' doing.
	var pings atomic.Int32
	c.c.SetPingHandler(func(data string) error {
		pings.Add(1)
		return c.c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(wait))
	})
	readErr := make(chan error, 1)
	go func() {
		c.c.SetReadDeadline(time.Time{})
		_, _, err := c.c.ReadMessage()
		readErr <- err
	}()
	start := time.Now()
	eventually(t, "ping frames", func() bool {
		select {
		case err := <-readErr:
			t.Fatalf("connection ended after %d pings: %v", pings.Load(), err)
		default:
		}
		return pings.Load() >= 5 && time.Since(start) > 5*hb/2*2
	})
	if e.srv.Conns() != 1 {
		t.Fatal("connection not live")
	}
	c.c.Close()
	<-readErr
}

// TestSilentPeerIsClosed: a client that answers no ping (it does not read)
// is closed after the read timeout, and its session is gone.
func TestSilentPeerIsClosed(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config, _ *stream.RegistryConfig) { c.Heartbeat = 50 * time.Millisecond })
	e.dial(t) // never reads, so never answers a ping
	eventually(t, "the connection to be registered", func() bool { return e.srv.Conns() == 1 })
	eventually(t, "the silent connection to be closed", func() bool {
		return e.srv.Conns() == 0 && e.reg.Sessions() == 0
	})
	if got := e.srv.Stats().Closes[1001]; got != 1 {
		t.Fatalf("closes with 1001 = %d, want 1 (read timeout)", got)
	}
}

func TestBadRequestsGetErrorsAndTheConnectionKeepsWorking(t *testing.T) {
	e := newEnv(t)
	c := e.dialHello(t)
	tests := []struct {
		msg, id, code string
	}{
		{`not json`, "", stream.CodeBadRequest},
		{`[1,2]`, "", stream.CodeBadRequest},
		{`{"type":5,"id":"a"}`, "a", stream.CodeBadRequest},
		{`{"id":"b"}`, "b", stream.CodeBadRequest},
		{`{"type":"frobnicate","id":"c"}`, "c", stream.CodeUnknownType},
		{`{"type":"subscribe","id":"d"}`, "d", stream.CodeBadRequest},
		{`{"type":"subscribe","id":"e","topics":[]}`, "e", stream.CodeBadRequest},
		{`{"type":"subscribe","id":"f","topics":[1]}`, "f", stream.CodeBadRequest},
		{`{"type":"subscribe","id":"g","topics":["web-1.cpu","Bad Topic"]}`, "g", stream.CodeInvalidTopic},
		{`{"type":"subscribe","id":"h","topics":["a.>.b"]}`, "h", stream.CodeInvalidTopic},
		{`{"type":"unsubscribe","id":"i","topics":["a..b"]}`, "i", stream.CodeInvalidTopic},
	}
	for _, tt := range tests {
		c.send(tt.msg)
		f := c.next()
		if f.Type != "error" || f.ID != tt.id || f.Code != tt.code || f.Message == "" {
			t.Errorf("%s: got %s, want error id %q code %s", tt.msg, f.raw, tt.id, tt.code)
		}
	}
	// Nothing of the refused subscribe was subscribed, and the connection works.
	e.publish("web-1.cpu", map[string]any{"v": 1})
	c.send(`{"type":"subscribe","id":"ok","topics":["web-1.cpu"]}`)
	c.nextOf("subscribed", nil)
	if f := c.next(); f.Topic != "web-1.cpu" || f.Seq != 1 {
		t.Fatalf("got %s", f.raw)
	}
}

func TestBadFramesClose(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config, _ *stream.RegistryConfig) { c.MaxFrameBytes = 1024 })
	tests := []struct {
		name string
		mt   int
		msg  []byte
		code int
	}{
		{"binary", websocket.BinaryMessage, []byte(`{"type":"ping"}`), 1003},
		{"oversized", websocket.TextMessage, []byte(`{"type":"ping","id":"` + strings.Repeat("x", 2000) + `"}`), 1009},
		{"invalid UTF-8", websocket.TextMessage, []byte("{\"type\":\"ping\",\"id\":\"\xff\xfe\"}"), 1007},
	}
	other := e.dialHello(t) // a bystander that must keep working
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.dialHello(t)
			c.c.SetWriteDeadline(time.Now().Add(wait))
			if err := c.c.WriteMessage(tt.mt, tt.msg); err != nil {
				t.Fatal(err)
			}
			c.expectClose(tt.code)
		})
	}
	// A frame at the limit is fine (padded with a field the server ignores:
	// ids have their own, smaller limit).
	other.send(`{"type":"ping","id":"y","pad":"` + strings.Repeat("y", 1024-33) + `"}`)
	if f := other.next(); f.Type != "pong" {
		t.Fatalf("bystander got %s", f.raw)
	}
	eventually(t, "closed connections to be gone", func() bool { return e.srv.Conns() == 1 })
}

func TestConnectionLimits(t *testing.T) {
	t.Run("per IP", func(t *testing.T) {
		e := newEnv(t, func(c *httpapi.Config, _ *stream.RegistryConfig) { c.MaxConnsPerIP = 2 })
		a := e.dialHello(t)
		e.dialHello(t)
		e.dial(t).expectClose(1008)
		a.c.Close()
		eventually(t, "the slot to be released", func() bool { return e.srv.Conns() == 1 })
		e.dialHello(t)
		if got := e.srv.Stats().Refused["per_ip"]; got != 1 {
			t.Fatalf("refused per_ip = %d, want 1", got)
		}
	})
	t.Run("total", func(t *testing.T) {
		e := newEnv(t, func(c *httpapi.Config, _ *stream.RegistryConfig) { c.MaxConns = 2 })
		e.dialHello(t)
		s := e.openSSE(t, "topics=app.x") // SSE counts towards the total
		if s.resp.StatusCode != 200 {
			t.Fatalf("sse status %d", s.resp.StatusCode)
		}
		e.dial(t).expectClose(1013)
		var body apiError
		if code, _ := e.httpJSON(t, "GET", "/sse?topics=app.x", "", "", &body); code != 503 || body.Error.Code != "over_capacity" {
			t.Fatalf("sse over capacity: %d %+v, want 503 over_capacity", code, body)
		}
	})
	t.Run("too many subscriptions", func(t *testing.T) {
		e := newEnv(t, func(c *httpapi.Config, _ *stream.RegistryConfig) {
			c.Session = stream.DefaultSessionConfig()
			c.Session.MaxSubscriptions = 2
		})
		c := e.dialHello(t)
		c.send(`{"type":"subscribe","id":"1","topics":["a.a","a.b"]}`)
		c.nextOf("subscribed", nil)
		c.send(`{"type":"subscribe","id":"2","topics":["a.c"]}`)
		if f := c.next(); f.Type != "error" || f.ID != "2" || f.Code != stream.CodeTooManySubscriptions {
			t.Fatalf("got %s, want too_many_subscriptions", f.raw)
		}
		var body apiError
		if code, _ := e.httpJSON(t, "GET", "/sse?topics=a.a,a.b,a.c", "", "", &body); code != 400 ||
			body.Error.Code != stream.CodeTooManySubscriptions {
			t.Fatalf("sse: %d %+v, want 400 too_many_subscriptions", code, body)
		}
	})
	t.Run("rate limit then 1008", func(t *testing.T) {
		e := newEnv(t, func(c *httpapi.Config, _ *stream.RegistryConfig) {
			c.Session = stream.SessionConfig{RequestsPerSecond: 0.001, RequestBurst: 2, RateLimitStrikes: 3}
		})
		c := e.dialHello(t)
		// One request at a time, so each reply is read before the next is
		// sent (a close drops replies still queued).
		var types []string
		for i := 0; i < 5; i++ {
			c.send(fmt.Sprintf(`{"type":"ping","id":"%d"}`, i))
			f := c.next()
			types = append(types, f.Type+"/"+f.Code)
		}
		want := "pong/,pong/,error/rate_limited,error/rate_limited,error/rate_limited"
		if strings.Join(types, ",") != want {
			t.Fatalf("replies %v, want %s", types, want)
		}
		c.send(`{"type":"ping","id":"last straw"}`)
		c.expectClose(1008)
	})
}

func TestOriginCheck(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config, _ *stream.RegistryConfig) {
		c.AllowedOrigins = []string{"https://dash.example.com"}
	})
	dial := func(origin string) (*websocket.Conn, *http.Response, error) {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		return websocket.DefaultDialer.Dial(e.wsURL("/ws"), h)
	}
	for _, origin := range []string{"", "http://" + e.addr, "https://dash.example.com"} {
		c, _, err := dial(origin)
		if err != nil {
			t.Fatalf("origin %q refused: %v", origin, err)
		}
		c.Close()
	}
	_, resp, err := dial("https://evil.example")
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("foreign origin: err %v resp %v, want a 403 before the upgrade", err, resp)
	}
	var body apiError
	if json.NewDecoder(resp.Body).Decode(&body) != nil || body.Error.Code != "forbidden" {
		t.Fatalf("403 body %+v, want error code forbidden", body)
	}
	if got := e.srv.Stats().Refused["origin"]; got != 1 {
		t.Fatalf("refused origin = %d", got)
	}
}

func TestNotAnUpgradeIs426(t *testing.T) {
	e := newEnv(t)
	var body apiError
	if code, _ := e.httpJSON(t, "GET", "/ws", "", "", &body); code != 426 || body.Error.Code != "upgrade_required" {
		t.Fatalf("plain GET /ws: %d %+v", code, body)
	}
}

// TestHandshakeTimeout: a client that never finishes its request is cut off.
func TestHandshakeTimeout(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config, _ *stream.RegistryConfig) { c.HandshakeTimeout = 200 * time.Millisecond })
	conn, err := net.DialTimeout("tcp", e.addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\n", e.addr) // headers never end
	conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 512)
	for {
		_, err := conn.Read(buf)
		if err == nil {
			continue // an error response is fine; the close is what counts
		}
		if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
			t.Fatal("the server kept a half-sent handshake open")
		}
		return
	}
}

// TestWriteTimeoutCloses4008: a client that stops reading while big values
// flow is closed once a write stays stuck past WriteTimeout.
func TestWriteTimeoutCloses4008(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config, _ *stream.RegistryConfig) { c.WriteTimeout = 200 * time.Millisecond })
	c := dialSmallRcvbuf(t, e)
	c.next() // hello
	c.send(`{"type":"subscribe","id":"1","topics":["app.big"]}`)
	c.nextOf("subscribed", nil)
	// From here on the client reads nothing.
	payload := map[string]any{"blob": strings.Repeat("z", 4096)}
	eventually(t, "the stuck connection to be closed", func() bool {
		for i := 0; i < 50; i++ {
			e.publish("app.big", payload)
		}
		return e.srv.Conns() == 0
	})
	if got := e.srv.Stats().Closes[4008]; got != 1 {
		t.Fatalf("closes with 4008 = %d, want 1", got)
	}
	if e.reg.Sessions() != 0 {
		t.Fatal("session left behind")
	}
}

// dialSmallRcvbuf dials /ws with a 4 KiB receive buffer, so a client that
// stops reading makes the server's writes block soon.
func dialSmallRcvbuf(t *testing.T, e *env) *wsClient {
	t.Helper()
	d := websocket.Dialer{NetDialContext: smallRcvbufDialer().DialContext, HandshakeTimeout: wait}
	c, _, err := d.Dial(e.wsURL("/ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &wsClient{t: t, c: c}
}

// TestSlowReaderGetsNewestNotBacklog: one client stops reading (small
// receive buffer) while a topic is published thousands of times a second
// with payloads of a few KiB. Another client keeps receiving meanwhile.
// When the slow one reads again it reaches the newest seq after a handful
// of frames, with gaps, instead of working through a backlog.
func TestSlowReaderGetsNewestNotBacklog(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config, _ *stream.RegistryConfig) { c.WriteTimeout = time.Minute })
	slow := dialSmallRcvbuf(t, e)
	slow.next()
	slow.send(`{"type":"subscribe","id":"1","topics":["load.big"]}`)
	slow.nextOf("subscribed", nil)
	fast := e.dialHello(t)
	fast.send(`{"type":"subscribe","id":"1","topics":["load.big"]}`)
	fast.nextOf("subscribed", nil)

	blob := strings.Repeat("x", 3000)
	var published atomic.Uint64
	stop := make(chan struct{})
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			e.publish("load.big", map[string]any{"i": i, "blob": blob})
			published.Add(1)
		}
	}()

	// The fast reader keeps up with live values while the slow one is stuck.
	var fastFrames int
	var fastLast uint64
	deadline := time.Now().Add(wait)
	for published.Load() < 5000 || fastFrames < 200 {
		if time.Now().After(deadline) {
			close(stop)
			t.Fatalf("fast reader got %d frames while %d were published", fastFrames, published.Load())
		}
		f := fast.next()
		if f.Seq <= fastLast {
			t.Fatalf("fast reader: seq %d after %d", f.Seq, fastLast)
		}
		fastLast, fastFrames = f.Seq, fastFrames+1
	}
	close(stop)
	<-pubDone
	final := published.Load()
	for fastLast < final {
		fastLast = fast.next().Seq
	}

	// The slow reader resumes: it reaches the newest value fast, with gaps.
	var frames, gaps int
	var last uint64
	for last < final {
		f := slow.next()
		if f.Type != "update" || f.Seq <= last {
			t.Fatalf("slow reader: %s after seq %d", f.raw[:min(len(f.raw), 80)], last)
		}
		if f.Seq > last+1 {
			gaps++
		}
		last = f.Seq
		frames++
	}
	if gaps == 0 {
		t.Fatal("the slow reader saw no gap: it was handed a backlog")
	}
	// What is still in flight when it resumes is bounded by the socket
	// buffers (64 KiB SO_SNDBUF, doubled by the kernel, plus the client's
	// receive buffer) and one corked batch: a few dozen 3 KiB frames, not
	// the thousands published meanwhile.
	if frames > 200 {
		t.Fatalf("slow reader worked through %d frames to reach the newest value; want a handful, not a backlog", frames)
	}
}

// TestManyCyclesLeaveNothingBehind: 1,000 connect/subscribe/disconnect
// cycles leave no sessions, connections or goroutines behind.
func TestManyCyclesLeaveNothingBehind(t *testing.T) {
	e := newEnv(t)
	e.publish("app.x", map[string]any{"v": 1})
	cycle := func(i int) {
		c, _, err := websocket.DefaultDialer.Dial(e.wsURL("/ws"), nil)
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		cl := &wsClient{t: t, c: c}
		cl.nextOf("hello", nil)
		cl.send(`{"type":"subscribe","id":"1","topics":["app.>"]}`)
		cl.nextOf("subscribed", nil)
		cl.nextOf("update", nil)
		if i%2 == 0 { // half close politely, half just drop the socket
			c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(wait))
		}
		c.Close()
	}
	cycle(-1) // warm up pools and workers before the baseline
	eventually(t, "the warm-up connection to end", func() bool { return e.srv.Conns() == 0 })
	base := runtime.NumGoroutine()
	for i := 0; i < 1000; i++ {
		cycle(i)
	}
	eventually(t, "every connection and session to end", func() bool {
		return e.srv.Conns() == 0 && e.reg.Sessions() == 0
	})
	// fasthttp keeps idle workers for a while; a few above the baseline are
	// those, a leak would be hundreds.
	var n int
	eventually(t, "goroutines to return to the baseline", func() bool {
		n = runtime.NumGoroutine()
		return n <= base+8
	})
	if st := e.srv.Stats(); st.Opened != 1001 {
		t.Fatalf("opened %d, want 1001", st.Opened)
	}
}

func TestDrainClosesEverything(t *testing.T) {
	e := newEnv(t)
	e.publish("app.x", map[string]any{"v": 1})
	var ws []*wsClient
	for i := 0; i < 3; i++ {
		c := e.dialHello(t)
		c.send(`{"type":"subscribe","id":"1","topics":["app.x"]}`)
		c.nextOf("subscribed", nil)
		c.nextOf("update", nil)
		ws = append(ws, c)
	}
	var sse []*sseStream
	for i := 0; i < 2; i++ {
		s := e.openSSE(t, "topics=app.x")
		s.nextEvent()
		sse = append(sse, s)
	}
	eventually(t, "5 live connections", func() bool { return e.srv.Conns() == 5 })

	drained := make(chan error, 1)
	go func() {
		ctx, cancel := contextWithTimeout(wait)
		defer cancel()
		drained <- e.srv.Drain(ctx)
	}()
	for _, c := range ws {
		c.expectClose(1001)
	}
	for _, s := range sse {
		for {
			if _, err := s.next(); err != nil {
				break // the stream ended (EOF after the last chunk)
			}
		}
	}
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if e.srv.Conns() != 0 || e.reg.Sessions() != 0 {
		t.Fatalf("after Drain: %d conns, %d sessions", e.srv.Conns(), e.reg.Sessions())
	}
	_, resp, err := websocket.DefaultDialer.Dial(e.wsURL("/ws"), nil)
	if err == nil || resp == nil || resp.StatusCode != 503 {
		t.Fatalf("WebSocket after Drain: %v %v, want 503", err, resp)
	}
	if code, _ := e.httpJSON(t, "GET", "/sse?topics=app.x", "", "", nil); code != 503 {
		t.Fatalf("SSE after Drain: %d, want 503", code)
	}
	if code, _ := e.httpJSON(t, "GET", "/api/v1/topics", "", "", nil); code != 200 {
		t.Fatalf("REST after Drain: %d, want 200", code)
	}
}

// TestConcurrentClientsRace exercises concurrent subscribe, publish and
// close for the race detector.
func TestConcurrentClientsRace(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			e.publish(fmt.Sprintf("app.t%d", i%5), map[string]any{"i": i})
		}
	}()
	var cw sync.WaitGroup
	for k := 0; k < 8; k++ {
		cw.Add(1)
		go func() {
			defer cw.Done()
			for j := 0; j < 20; j++ {
				c, _, err := websocket.DefaultDialer.Dial(e.wsURL("/ws"), nil)
				if err != nil {
					t.Error(err)
					return
				}
				c.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","id":"1","topics":["app.>"]}`))
				c.SetReadDeadline(time.Now().Add(wait))
				for n := 0; n < 5; n++ {
					if _, _, err := c.ReadMessage(); err != nil {
						t.Error(err)
						break
					}
				}
				c.Close()
			}
		}()
	}
	cw.Wait()
	close(stop)
	wg.Wait()
	eventually(t, "all connections to end", func() bool { return e.srv.Conns() == 0 && e.reg.Sessions() == 0 })
}
