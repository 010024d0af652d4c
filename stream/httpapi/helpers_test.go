package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
	"github.com/opsdash/opsdash/stream/httpapi"
)

// wait is the generous deadline of every "eventually" in these tests: a
// loaded 2-core machine running -race must not make them flaky.
const wait = 10 * time.Second

const testHost = "web-1"

// env is one real server: a registry, the edge on a Fiber app, served on a
// loopback port through WrapListener.
type env struct {
	t    *testing.T
	reg  *stream.Registry
	srv  *httpapi.Server
	addr string // 127.0.0.1:port
}

type envOption func(*httpapi.Config, *stream.RegistryConfig)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rcfg := stream.RegistryConfig{Host: testHost, Instance: "test-instance", Logger: log}
	cfg := httpapi.Config{Logger: log, MaxConns: stream.NoLimit, MaxConnsPerIP: stream.NoLimit}
	for _, o := range opts {
		o(&cfg, &rcfg)
	}
	reg := stream.NewRegistry(rcfg)
	cfg.Registry = reg
	srv := httpapi.New(cfg)
	app := fiber.New(srv.FiberConfig(fiber.Config{DisableStartupMessage: true}))
	srv.LimitBodies(app)
	srv.Register(app)
	ln, err := httpapi.Listen("tcp", "127.0.0.1:0", httpapi.DefaultSendBuffer)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	regDone := make(chan struct{})
	go func() { reg.Run(ctx); close(regDone) }()
	served := make(chan struct{})
	go func() { _ = app.Listener(ln); close(served) }()
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), wait)
		defer dcancel()
		_ = srv.Drain(dctx)
		_ = app.ShutdownWithTimeout(wait)
		<-served
		cancel()
		<-regDone
	})
	return &env{t: t, reg: reg, srv: srv, addr: ln.Addr().String()}
}

func (e *env) url(path string) string   { return "http://" + e.addr + path }
func (e *env) wsURL(path string) string { return "ws://" + e.addr + path }

// publish publishes one test value on topic.
func (e *env) publish(topic string, data any) {
	e.reg.Publish(collectors.Sample{Topic: topic, Time: time.Now(), Data: data})
}

// frame is any server frame of protocol v1, decoded loosely.
type frame struct {
	stream.ServerMessage
	raw string
}

type wsClient struct {
	t *testing.T
	c *websocket.Conn
}

// dial opens a WebSocket to /ws; it fails the test on a failed handshake.
func (e *env) dial(t *testing.T) *wsClient {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(e.wsURL("/ws"), nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (status %d)", err, status)
	}
	t.Cleanup(func() { c.Close() })
	return &wsClient{t: t, c: c}
}

// dialHello dials and reads the hello frame.
func (e *env) dialHello(t *testing.T) *wsClient {
	t.Helper()
	c := e.dial(t)
	if f := c.next(); f.Type != "hello" {
		t.Fatalf("first frame %s, want hello", f.raw)
	}
	return c
}

func (c *wsClient) send(msg string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(wait))
	if err := c.c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		c.t.Fatalf("send %s: %v", msg, err)
	}
}

// read returns the next frame or the read error.
func (c *wsClient) read() (frame, error) {
	c.c.SetReadDeadline(time.Now().Add(wait))
	mt, msg, err := c.c.ReadMessage()
	if err != nil {
		return frame{}, err
	}
	if mt != websocket.TextMessage {
		return frame{}, fmt.Errorf("message type %d", mt)
	}
	var f frame
	if err := json.Unmarshal(msg, &f); err != nil {
		return frame{}, fmt.Errorf("frame %q: %v", msg, err)
	}
	f.raw = string(msg)
	return f, nil
}

func (c *wsClient) next() frame {
	c.t.Helper()
	f, err := c.read()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return f
}

// nextOf reads frames until one of type typ and returns it; every frame
// skipped is passed to skip (nil: skipping is an error).
func (c *wsClient) nextOf(typ string, skip func(frame)) frame {
	c.t.Helper()
	for {
		f := c.next()
		if f.Type == typ {
			return f
		}
		if skip == nil {
			c.t.Fatalf("got %s while waiting for a %s frame", f.raw, typ)
		}
		skip(f)
	}
}

// closeCode reads until the connection ends and returns the close code
// the server sent (-1 when it ended without a close frame).
func (c *wsClient) closeCode() (int, string) {
	c.t.Helper()
	for {
		_, err := c.read()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Text
		}
		return -1, err.Error()
	}
}

// expectClose asserts that the server closes the connection with code.
func (c *wsClient) expectClose(code int) {
	c.t.Helper()
	got, text := c.closeCode()
	if got != code {
		c.t.Fatalf("close code %d (%s), want %d", got, text, code)
	}
}

// topicsOf decodes the "topics" field of subscribed/unsubscribed.
func topicsOf(t *testing.T, f frame) []string {
	t.Helper()
	var ts []string
	if err := json.Unmarshal(f.Topics, &ts); err != nil {
		t.Fatalf("topics of %s: %v", f.raw, err)
	}
	return ts
}

// eventually polls cond until it holds or wait passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// httpJSON does a request and decodes the JSON answer into out (if not nil).
func (e *env) httpJSON(t *testing.T, method, path, auth, body string, out any) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, e.url(path), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: wait}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %q: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode, resp.Header
}

// apiError is the HTTP error body.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Published *int `json:"published"`
}

// sseEvent is one parsed Server-Sent Event (or a comment, Comment set).
type sseEvent struct {
	Event, ID, Data, Comment string
}

// sseStream is an open GET /sse.
type sseStream struct {
	t    *testing.T
	resp *http.Response
	r    *bufio.Reader
	conn net.Conn
}

func (e *env) openSSE(t *testing.T, query string) *sseStream {
	t.Helper()
	// A raw connection, so reads can carry deadlines.
	conn, err := net.DialTimeout("tcp", e.addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /sse?%s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", query, e.addr)
	conn.SetReadDeadline(time.Now().Add(wait))
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &sseStream{t: t, resp: resp, r: bufio.NewReader(resp.Body), conn: conn}
}

// next returns the next event or comment; io.EOF when the stream ended.
func (s *sseStream) next() (sseEvent, error) {
	s.conn.SetReadDeadline(time.Now().Add(wait))
	var ev sseEvent
	started := false
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if started {
				return ev, nil
			}
			continue
		}
		started = true
		switch {
		case strings.HasPrefix(line, ":"):
			ev.Comment = strings.TrimSpace(line[1:])
		case strings.HasPrefix(line, "event: "):
			ev.Event = line[len("event: "):]
		case strings.HasPrefix(line, "id: "):
			ev.ID = line[len("id: "):]
		case strings.HasPrefix(line, "data: "):
			if ev.Data != "" {
				ev.Data += "\n"
			}
			ev.Data += line[len("data: "):]
		}
	}
}

// nextEvent skips comments and retry lines and returns the next event.
func (s *sseStream) nextEvent() sseEvent {
	s.t.Helper()
	for {
		ev, err := s.next()
		if err != nil {
			s.t.Fatalf("sse: %v", err)
		}
		if ev.Event != "" || ev.Data != "" {
			return ev
		}
	}
}

// smallRcvbufDialer dials with a 4 KiB SO_RCVBUF, set before connecting so
// the advertised window stays small.
func smallRcvbufDialer() *net.Dialer {
	return &net.Dialer{Timeout: wait, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func httpClient() *http.Client { return &http.Client{Timeout: wait} }

func newRequest(method, url string, headers map[string]string) (*http.Request, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return req, nil
}
