package httpapi_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
	"github.com/opsdash/opsdash/stream/httpapi"
)

// TestProtocolTranscript runs the session that docs/protocol.md shows,
// against a real server, and checks its shape. With OPSDASH_TRANSCRIPT set
// to a file name it also writes the transcript there (that is how the
// document's transcript was captured):
//
//	OPSDASH_TRANSCRIPT=/tmp/t.txt go test -run TestProtocolTranscript ./stream/httpapi/
func TestProtocolTranscript(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config, _ *stream.RegistryConfig) {
		c.PublishToken = "s3cret"
		c.Heartbeat = 15 * time.Second
	})
	var out strings.Builder
	say := func(format string, args ...any) { fmt.Fprintf(&out, format+"\n", args...) }

	e.reg.Declare(collectors.TopicInfo{Name: "web-1.cpu", Interval: time.Second, Description: "CPU usage, total"})
	e.reg.Declare(collectors.TopicInfo{Name: "web-1.mem", Interval: 2 * time.Second, Description: "memory and swap"})
	e.reg.Declare(collectors.TopicInfo{Name: "web-1.disk.io", Interval: time.Second, Description: "disk I/O per device"})
	e.reg.Declare(collectors.TopicInfo{Name: "web-1.proc.top", Interval: 2 * time.Second, Description: "top processes", OnDemand: true})
	cpu := func(pct float64) map[string]any { return map[string]any{"usage_pct": pct, "cores": 4} }
	e.publish("web-1.cpu", cpu(12.5))
	e.publish("web-1.cpu", cpu(14.1))
	e.publish("web-1.mem", map[string]any{"used_bytes": 3221225472, "total_bytes": 8589934592, "used_pct": 37.5})

	// ---- WebSocket ----
	say("## WebSocket: GET /ws")
	c := e.dial(t)
	recv := func() frame {
		t.Helper()
		f := c.next()
		say("< %s", f.raw)
		return f
	}
	send := func(msg string) { say("> %s", msg); c.send(msg) }
	if f := recv(); f.Type != "hello" {
		t.Fatalf("hello: %s", f.raw)
	}
	send(`{"type":"list","id":"1"}`)
	recv()
	send(`{"type":"subscribe","id":"2","topics":["web-1.cpu","*.mem"]}`)
	if f := recv(); f.Type != "subscribed" {
		t.Fatal(f.raw)
	}
	recv()
	recv()
	e.publish("web-1.cpu", cpu(15.0))
	say("(web-1.cpu published again)")
	if f := recv(); f.Type != "update" || f.Seq != 3 {
		t.Fatal(f.raw)
	}
	send(`{"type":"subscribe","id":"3","topics":["web-1.>"]}`)
	recv() // subscribed; cpu and mem already flow: no second snapshot
	say("(web-1.disk.io starts failing)")
	e.reg.SetStatus("web-1.disk.io", errors.New("open /proc/diskstats: permission denied"))
	if f := recv(); f.Type != "status" {
		t.Fatal(f.raw)
	}
	send(`{"type":"ping","id":"4"}`)
	recv()
	send(`{"type":"unsubscribe","id":"5","topics":["web-1.>"]}`)
	recv()
	send(`{"type":"subscribe","id":"6","topics":["Web 1.cpu"]}`)
	recv()
	send(`{"type":"fetch","id":"7"}`)
	recv()
	send(`{"type":"subscribe","id":"8"}`)
	recv()
	send(`not json`)
	recv()
	say("> (binary frame 0x01 0x02)")
	c.c.WriteMessage(websocket.BinaryMessage, []byte{1, 2})
	code, text := c.closeCode()
	say("< (close frame %d %q)", code, text)
	if code != 1003 {
		t.Fatalf("binary: close %d", code)
	}

	// ---- SSE ----
	say("")
	say("## SSE: GET /sse?topics=web-1.cpu,web-1.disk.io")
	e.reg.SetStatus("web-1.disk.io", nil)
	s := e.openSSE(t, "topics=web-1.cpu,web-1.disk.io")
	say("HTTP/1.1 %d, Content-Type: %s", s.resp.StatusCode, s.resp.Header.Get("Content-Type"))
	readUntil := func(want string) {
		t.Helper()
		for {
			s.conn.SetReadDeadline(time.Now().Add(wait))
			line, err := s.r.ReadString('\n')
			if err != nil {
				t.Fatalf("sse: %v", err)
			}
			say("%s", strings.TrimSuffix(line, "\n"))
			if strings.HasPrefix(line, want) {
				s.r.ReadString('\n') // the event's blank line
				say("")
				return
			}
		}
	}
	readUntil("data: ")
	e.publish("web-1.cpu", cpu(9.5))
	readUntil("data: ")
	e.reg.SetStatus("web-1.disk.io", errors.New("open /proc/diskstats: permission denied"))
	readUntil("data: ")
	s.conn.Close()

	// ---- REST ----
	for _, p := range []string{"/api/v1/topics", "/api/v1/topics/web-1.cpu?history=2", "/api/v1/topics/web-1.nope", "/api/v1/topics/Web-1"} {
		say("")
		say("## GET %s", p)
		resp, err := http.Get(e.url(p))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		say("HTTP/1.1 %s", resp.Status)
		say("%s", b)
	}

	// ---- publish ----
	for _, p := range []struct{ auth, body string }{
		{"Bearer s3cret", `[{"topic":"billing.orders","data":{"count":3,"value_eur":129.5}},{"topic":"billing.refunds","data":{"count":0}}]`},
		{"", `{"topic":"billing.orders","data":{"count":4}}`},
		{"Bearer s3cret", `{"topic":"billing.orders","data":42}`},
		{"Bearer s3cret", `{"topic":"web-1.cpu","data":{"usage_pct":0}}`},
	} {
		say("")
		say("## POST /api/v1/publish")
		if p.auth != "" {
			say("Authorization: Bearer ******")
		}
		say("%s", p.body)
		req, _ := http.NewRequest("POST", e.url("/api/v1/publish"), strings.NewReader(p.body))
		req.Header.Set("Content-Type", "application/json")
		if p.auth != "" {
			req.Header.Set("Authorization", p.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		say("HTTP/1.1 %s", resp.Status)
		say("%s", b)
	}

	// ---- limits: over capacity, per IP ----
	say("")
	say("## WebSocket over a limit (here MaxConnsPerIP=1, a second connection from the same address)")
	e2 := newEnv(t, func(c *httpapi.Config, _ *stream.RegistryConfig) { c.MaxConnsPerIP = 1 })
	e2.dialHello(t)
	code, text = e2.dial(t).closeCode()
	say("< (close frame %d %q)", code, text)
	if code != 1008 {
		t.Fatalf("per-IP: %d", code)
	}
	say("")
	say("## WebSocket from a foreign Origin")
	h := http.Header{"Origin": []string{"https://evil.example"}}
	_, resp, err := websocket.DefaultDialer.Dial(e.wsURL("/ws"), h)
	if err == nil {
		t.Fatal("foreign origin upgraded")
	}
	b, _ := io.ReadAll(resp.Body)
	say("HTTP/1.1 %s", resp.Status)
	say("%s", b)

	if path := os.Getenv("OPSDASH_TRANSCRIPT"); path != "" {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
