package httpapi_test

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/opsdash/opsdash/stream"
	"github.com/opsdash/opsdash/stream/httpapi"
)

// TestStuckClientDoesNotHoldTheFlushLoop: with one flush loop for every
// session (GOMAXPROCS 1), a client that stopped reading does not hold up
// another: its session is parked with its socket full while the loop goes
// on writing the reading client's values. (With writes that waited for the
// socket, the reader would get nothing until the minute-long write
// timeout.)
func TestStuckClientDoesNotHoldTheFlushLoop(t *testing.T) {
	prev := runtime.GOMAXPROCS(1)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	e := newEnv(t, func(c *httpapi.Config, _ *stream.RegistryConfig) { c.WriteTimeout = time.Minute })
	runtime.GOMAXPROCS(prev) // the registry has its one loop; the test may use both cores
	stuck := dialSmallRcvbuf(t, e)
	stuck.next()
	stuck.send(`{"type":"subscribe","id":"1","topics":["load.big"]}`)
	stuck.nextOf("subscribed", nil)
	reader := e.dialHello(t)
	reader.send(`{"type":"subscribe","id":"1","topics":["load.big"]}`)
	reader.nextOf("subscribed", nil)

	blob := strings.Repeat("x", 60000)
	const n = 200 // 12 MB: far more than the stuck client's socket buffers hold
	for i := 0; i < n; i++ {
		e.publish("load.big", map[string]any{"i": i, "blob": blob})
	}
	for f := reader.next(); f.Seq < n; f = reader.next() {
	}
	// By now the stuck client's socket is full and its session has the
	// newest value pending; one more value must still reach the reader.
	e.publish("load.big", map[string]any{"i": n, "blob": blob})
	for f := reader.next(); f.Seq < n+1; f = reader.next() {
	}
}

// TestMaxHzOverWebSocketAndSSE: max_hz is accepted by subscribe and by
// /sse?max_hz=, refused when not a positive number, and the newest value
// of a burst arrives.
func TestMaxHzOverWebSocketAndSSE(t *testing.T) {
	e := newEnv(t)
	e.publish("app.rate", map[string]any{"v": 0})
	c := e.dialHello(t)
	for _, bad := range []string{`0`, `-1`, `"5"`, `null`, `1e999`} {
		c.send(`{"type":"subscribe","id":"b","topics":["app.rate"],"max_hz":` + bad + `}`)
		if f := c.nextOf("error", nil); !strings.Contains(f.raw, `"bad_request"`) {
			t.Fatalf("max_hz %s: %s, want bad_request", bad, f.raw)
		}
	}
	c.send(`{"type":"subscribe","id":"1","topics":["app.rate"],"max_hz":4}`)
	c.nextOf("subscribed", nil)
	sse := e.openSSE(t, "topics=app.rate&max_hz=4")
	if sse.resp.StatusCode != http.StatusOK {
		t.Fatalf("SSE with max_hz: %d", sse.resp.StatusCode)
	}
	for i := 1; i <= 40; i++ {
		e.publish("app.rate", map[string]any{"v": i})
	}
	for f := c.next(); f.Seq < 41; f = c.next() {
	}
	for ev := sse.nextEvent(); ev.ID != "app.rate:41"; ev = sse.nextEvent() {
	}
	for _, bad := range []string{"0", "x", "-2", "Inf"} {
		if s := e.openSSE(t, "topics=app.rate&max_hz="+bad); s.resp.StatusCode != http.StatusBadRequest {
			t.Errorf("SSE max_hz=%s: %d, want 400", bad, s.resp.StatusCode)
		}
	}
}

// TestMaxHzTranscript runs the max_hz session docs/protocol.md shows and
// checks its shape; with OPSDASH_TRANSCRIPT set to a file name it writes
// the transcript there.
func TestMaxHzTranscript(t *testing.T) {
	e := newEnv(t)
	var out strings.Builder
	say := func(format string, args ...any) { fmt.Fprintf(&out, format+"\n", args...) }
	cpu := func(pct float64) map[string]any { return map[string]any{"usage_pct": pct, "cores": 4} }
	e.publish("web-1.cpu", cpu(12.5))

	c := e.dial(t)
	recv := func() frame {
		t.Helper()
		f := c.next()
		say("< %s", f.raw)
		return f
	}
	send := func(msg string) { say("> %s", msg); c.send(msg) }
	recv() // hello
	send(`{"type":"subscribe","id":"1","topics":["web-1.cpu"],"max_hz":0}`)
	if f := recv(); f.Type != "error" {
		t.Fatal(f.raw)
	}
	send(`{"type":"subscribe","id":"2","topics":["web-1.cpu"],"max_hz":2}`)
	if f := recv(); f.Type != "subscribed" {
		t.Fatal(f.raw)
	}
	start := time.Now()
	if f := recv(); f.Seq != 1 {
		t.Fatal(f.raw)
	}
	for i := 1; i <= 5; i++ {
		e.publish("web-1.cpu", cpu(12.5+float64(i)))
	}
	say("(web-1.cpu published 5 times within a few ms: seqs 2..6)")
	f := c.next()
	if f.Seq != 6 {
		t.Fatalf("after the burst: %s, want seq 6, the newest", f.raw)
	}
	say("(%d ms after the snapshot: only the newest, seq 6)", time.Since(start).Round(100*time.Millisecond).Milliseconds())
	say("< %s", f.raw)

	if name := os.Getenv("OPSDASH_TRANSCRIPT"); name != "" {
		if err := os.WriteFile(name, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
