package httpapi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/opsdash/opsdash/stream"
	"github.com/opsdash/opsdash/stream/httpapi"
)

// hostileRequests are requests whose replies are as large as a client can
// make them: a ping echoing a long id, a subscribe echoing a long list of
// (repeated) patterns, both up to the frame limit; the same within the
// request limits (stream.MaxRequestIDLen, MaxRequestTopics); a list of
// every topic. Before the reply FIFO was bounded in bytes and requests in
// length, a client that sent them and never read held megabytes of
// replies per connection.
func hostileRequests(frameLimit int) [][]byte {
	pats := func(n int) string {
		return `"` + strings.TrimSuffix(strings.Repeat(strings.Repeat("a", stream.MaxTopicLen-2)+`.b","`, n), `,"`)
	}
	long := 1
	for len(pats(long+1)) < frameLimit-100 {
		long++
	}
	return [][]byte{
		[]byte(`{"type":"ping","id":"` + strings.Repeat("i", frameLimit-40) + `"}`),
		[]byte(`{"type":"subscribe","id":"s","topics":[` + pats(long) + `]}`),
		[]byte(`{"type":"ping","id":"` + strings.Repeat("i", stream.MaxRequestIDLen) + `"}`),
		[]byte(`{"type":"subscribe","id":"s","topics":[` + pats(stream.MaxRequestTopics) + `]}`),
		[]byte(`{"type":"list","id":"l"}`),
	}
}

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestHostileClientMemoryIsBounded: clients that send requests with the
// largest replies they can provoke and never read anything must not make
// the server hold more than a bounded amount per connection. The server
// here runs the defaults (frame limit, request rate, reply FIFO) with 30
// topics, about what the default collectors declare.
func TestHostileClientMemoryIsBounded(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config, _ *stream.RegistryConfig) { c.Session = stream.DefaultSessionConfig() })
	for i := range 30 {
		e.publish(fmt.Sprintf("%s.metric-%d", testHost, i), map[string]any{"value": i, "unit_pct": 12.5})
	}
	reqs := hostileRequests(httpapi.DefaultMaxFrameBytes)
	const n = 40
	before := heapInUse()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dialer := websocket.Dialer{NetDialContext: smallRcvbufDialer().DialContext, HandshakeTimeout: wait}
	for i := range n {
		c, _, err := dialer.Dial(e.wsURL("/ws"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		// The client writes until the server stops reading it (the write
		// then blocks until the test ends and closes the connection).
		go func() {
			for j := 0; ctx.Err() == nil; j++ {
				if c.WriteMessage(websocket.TextMessage, reqs[(i+j)%len(reqs)]) != nil {
					return
				}
			}
		}()
	}
	// Each client ends up either no longer read (its reply FIFO is full)
	// or closed (it went on past rate_limited).
	eventually(t, "every hostile client to be no longer read, or closed", func() bool {
		st := e.reg.Stats()
		return st.SessionsOpened == n && st.ReadingPaused == int64(st.Sessions)
	})
	after := heapInUse()
	perConn := (int64(after) - int64(before)) / n
	st := e.reg.Stats()
	t.Logf("heap %d → %d KiB: %d KiB per hostile connection; %d of %d still open, their reply FIFOs hold %d replies, %d KiB",
		before>>10, after>>10, perConn>>10, st.Sessions, n, st.ReplyQueueDepth, st.ReplyQueueBytes>>10)
	// The bound documented in docs/protocol.md ("Memory per connection").
	const bound = 160 << 10
	if perConn > bound {
		t.Fatalf("a hostile connection holds %d KiB, want at most %d KiB", perConn>>10, bound>>10)
	}
}

// TestRequestLimits: an id or a pattern list past its limit is refused
// with bad_request (the error does not echo the long id), and the
// connection keeps working.
func TestRequestLimits(t *testing.T) {
	e := newEnv(t)
	c := e.dialHello(t)
	c.send(`{"type":"ping","id":"` + strings.Repeat("x", stream.MaxRequestIDLen+1) + `"}`)
	if f := c.next(); f.Type != "error" || f.Code != stream.CodeBadRequest || f.ID != "" {
		t.Fatalf("long id: got %s, want bad_request with id \"\"", f.raw)
	}
	c.send(`{"type":"ping","id":"` + strings.Repeat("x", stream.MaxRequestIDLen) + `"}`)
	if f := c.next(); f.Type != "pong" {
		t.Fatalf("id at the limit: got %s, want pong", f.raw)
	}
	many := `"a.b"` + strings.Repeat(`,"a.b"`, stream.MaxRequestTopics)
	c.send(`{"type":"subscribe","id":"1","topics":[` + many + `]}`)
	if f := c.next(); f.Type != "error" || f.Code != stream.CodeBadRequest || f.ID != "1" {
		t.Fatalf("%d patterns: got %s, want bad_request", stream.MaxRequestTopics+1, f.raw)
	}
	c.send(`{"type":"ping","id":"2"}`)
	if f := c.next(); f.Type != "pong" || f.ID != "2" {
		t.Fatalf("after the refusals: got %s, want pong", f.raw)
	}
}

// TestRateLimitTenThenClose: a client that sends a burst of requests past
// the rate limit gets exactly RateLimitStrikes (10) rate_limited errors
// and then close 1008, as documented, even when it sends them all at once
// (the close used to drop the last errors still queued).
func TestRateLimitTenThenClose(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config, _ *stream.RegistryConfig) {
		c.Session = stream.SessionConfig{RequestsPerSecond: 0.001, RequestBurst: 1}
	})
	c := e.dialHello(t)
	var burst bytes.Buffer
	for i := range 30 {
		burst.Reset()
		fmt.Fprintf(&burst, `{"type":"ping","id":"%d"}`, i)
		c.c.SetWriteDeadline(time.Now().Add(wait))
		if err := c.c.WriteMessage(websocket.TextMessage, burst.Bytes()); err != nil {
			break // closed by the server: the rest of the burst is not needed
		}
	}
	limited := 0
	for {
		f, err := c.read()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != 1008 {
				t.Fatalf("ended with %v, want close 1008", err)
			}
			break
		}
		if f.Type == "error" && f.Code == stream.CodeRateLimited {
			limited++
		}
	}
	if limited != stream.DefaultRateLimitStrikes {
		t.Fatalf("%d rate_limited errors before the close, want %d", limited, stream.DefaultRateLimitStrikes)
	}
}

// TestClientPingFramesKeepTheConnection: a client that sends only
// WebSocket ping frames (and does not answer the server's) is alive: it
// is not closed as silent. Each server ping is answered with a client
// ping; after four server pings (more than the 2.5 heartbeats of the read
// timeout) the connection must still be open.
func TestClientPingFramesKeepTheConnection(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config, _ *stream.RegistryConfig) { c.Heartbeat = 400 * time.Millisecond })
	c := e.dialHello(t)
	pings := make(chan struct{}, 16)
	c.c.SetPingHandler(func(string) error { // no pong: only the client's own pings show it is alive
		pings <- struct{}{}
		return c.c.WriteControl(websocket.PingMessage, nil, time.Now().Add(wait))
	})
	readErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := c.c.ReadMessage(); err != nil {
				readErr <- err
				return
			}
		}
	}()
	for i := range 4 {
		select {
		case <-pings:
		case err := <-readErr:
			t.Fatalf("closed after %d server pings: %v", i, err)
		case <-time.After(wait):
			t.Fatal("no ping from the server")
		}
	}
}

// TestProtocolErrorIsCounted1002: a frame that breaks the WebSocket
// protocol (here reserved bits set) is closed by the library with 1002,
// and the server's close-code counters say 1002, not 1000.
func TestProtocolErrorIsCounted1002(t *testing.T) {
	e := newEnv(t)
	c := e.dialHello(t)
	nc := c.c.NetConn()
	// A masked text frame with RSV1 and RSV2 set: 0xF1 = FIN|RSV1|RSV2|RSV3|text.
	frame := []byte{0xF1, 0x80 | 2, 0, 0, 0, 0, 'h', 'i'}
	if _, err := nc.Write(frame); err != nil {
		t.Fatal(err)
	}
	c.expectClose(1002)
	eventually(t, "the close to be counted", func() bool { return e.srv.Stats().Closes[1002] == 1 })
	if n := e.srv.Stats().Closes[1000]; n != 0 {
		t.Fatalf("closes counted as 1000: %d", n)
	}
}
