package httpapi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
)

// writeCountingListener hands out TCP connections that count their Write
// calls and the writes made on their file descriptor (sendConn's
// non-blocking writes), each one write system call on the socket.
type writeCountingListener struct {
	net.Listener
	writes atomic.Int64
}

type writeCountingConn struct {
	*net.TCPConn
	n *atomic.Int64
}

func (c *writeCountingConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.TCPConn.Write(p)
}

// SyscallConn counts what sendConn writes on the descriptor: one Control
// call is one non-blocking write (a batch that fits the socket buffer).
func (c *writeCountingConn) SyscallConn() (syscall.RawConn, error) {
	rc, err := c.TCPConn.SyscallConn()
	return countingRawConn{rc, c.n}, err
}

type countingRawConn struct {
	syscall.RawConn
	n *atomic.Int64
}

func (c countingRawConn) Control(f func(fd uintptr)) error {
	c.n.Add(1)
	return c.RawConn.Control(f)
}

func (l *writeCountingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &writeCountingConn{TCPConn: c.(*net.TCPConn), n: &l.writes}, nil
}

// TestWebSocketBatchIsOneWrite: a subscribe whose reply and snapshot are
// queued together (one "subscribed" and 50 updates) reaches the socket in
// one write call, through the WebSocket library and the corking connection.
func TestWebSocketBatchIsOneWrite(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := stream.NewRegistry(stream.RegistryConfig{Host: "web-1", Logger: log})
	const topics = 50
	for i := 0; i < topics; i++ {
		reg.Publish(collectors.Sample{Topic: fmt.Sprintf("app.t%02d", i), Time: time.Now(), Data: map[string]int{"v": i}})
	}
	srv := New(Config{Registry: reg, Logger: log})
	app := fiber.New(srv.FiberConfig(fiber.Config{DisableStartupMessage: true}))
	srv.Register(app)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	counting := &writeCountingListener{Listener: raw}
	go app.Listener(WrapListener(counting, DefaultSendBuffer))
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Drain(ctx)
		app.ShutdownWithTimeout(10 * time.Second)
	}()

	c, _, err := websocket.DefaultDialer.Dial("ws://"+raw.Addr().String()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := c.ReadMessage(); err != nil { // hello
		t.Fatal(err)
	}
	before := counting.writes.Load()
	c.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","id":"1","topics":["app.>"]}`))
	for i := 0; i < 1+topics; i++ {
		if _, _, err := c.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	if got := counting.writes.Load() - before; got != 1 {
		t.Fatalf("%d frames took %d write calls, want 1", 1+topics, got)
	}
}
