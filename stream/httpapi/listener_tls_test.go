package httpapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
	"github.com/opsdash/opsdash/stream/httpapi/certtest"
)

// testCert returns a self-signed certificate for 127.0.0.1 and a pool that
// trusts it.
func testCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	p := certtest.SelfSigned(t, "listener", time.Now().Add(time.Hour))
	return p.Certificate, p.Pool
}

// serveTLS serves app on a loopback port through WrapTLSListener over l
// (nil: a plain TCP listener) and returns the address and the client TLS
// config that trusts it.
func serveTLS(t *testing.T, app *fiber.App, srv *Server, wrap func(net.Listener) net.Listener) (string, *tls.Config) {
	t.Helper()
	cert, pool := testCert(t)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var under net.Listener = raw
	if wrap != nil {
		under = wrap(raw)
	}
	served := make(chan struct{})
	go func() {
		_ = app.Listener(WrapTLSListener(under, DefaultSendBuffer, &tls.Config{Certificates: []tls.Certificate{cert}}))
		close(served)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if srv != nil {
			_ = srv.Drain(ctx)
		}
		_ = app.ShutdownWithContext(ctx)
		<-served
	})
	return raw.Addr().String(), &tls.Config{RootCAs: pool}
}

// TestWebSocketBatchIsOneWriteTLS is TestWebSocketBatchIsOneWrite over wss:
// the corking connection sits above TLS and is still found under fasthttp's
// hijack, so a subscribe's reply and 50-update snapshot leave in one TLS
// record and one write call on the socket.
func TestWebSocketBatchIsOneWriteTLS(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := stream.NewRegistry(stream.RegistryConfig{Host: "web-1", Logger: log})
	const topics = 50
	for i := 0; i < topics; i++ {
		// ~180-byte frames: the batch (~9 KiB) is well past the first
		// records' size under Go's dynamic record sizing.
		reg.Publish(collectors.Sample{Topic: fmt.Sprintf("app.t%02d", i), Time: time.Now(),
			Data: map[string]string{"v": fmt.Sprintf("%0100d", i)}})
	}
	srv := New(Config{Registry: reg, Logger: log})
	app := fiber.New(srv.FiberConfig(fiber.Config{DisableStartupMessage: true}))
	srv.Register(app)
	var counting *writeCountingListener
	addr, clientTLS := serveTLS(t, app, srv, func(l net.Listener) net.Listener {
		counting = &writeCountingListener{Listener: l}
		return counting
	})

	d := websocket.Dialer{TLSClientConfig: clientTLS, HandshakeTimeout: 10 * time.Second}
	c, _, err := d.Dial("wss://"+addr+"/ws", nil)
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
	bytes := 0
	for i := 0; i < 1+topics; i++ {
		_, msg, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		bytes += len(msg)
	}
	if bytes > 16<<10 {
		t.Fatalf("batch of %d bytes does not fit one TLS record; the test needs smaller frames", bytes)
	}
	if got := counting.writes.Load() - before; got != 1 {
		t.Fatalf("%d frames (%d bytes) took %d write calls under TLS, want 1", 1+topics, bytes, got)
	}
}

// TestWrapTLSListener: https is served, Fiber sees the request as https
// (cookies can be Secure), and the send buffer is capped on the socket
// under TLS.
func TestWrapTLSListener(t *testing.T) {
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	sndbuf := make(chan int, 1)
	app.Get("/proto", func(c *fiber.Ctx) error {
		v := -1
		if tc, ok := c.Context().Conn().(*tlsCorkConn); ok {
			v = sendBufferOf(t, tc.raw)
		}
		select {
		case sndbuf <- v:
		default:
		}
		return c.SendString(c.Protocol())
	})
	addr, clientTLS := serveTLS(t, app, nil, nil)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + addr + "/proto")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "https" {
		t.Errorf("c.Protocol() = %q over TLS, want https", body)
	}
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("TLS state %+v", resp.TLS)
	}
	if got := <-sndbuf; got <= 0 || got > 2*DefaultSendBuffer {
		t.Errorf("SO_SNDBUF of the socket under TLS = %d, want 1..%d", got, 2*DefaultSendBuffer)
	}
	// Plain HTTP to the TLS port gets no answer it could mistake for one.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /proto HTTP/1.1\r\nHost: x\r\n\r\n")
	b, _ := io.ReadAll(c)
	if strings.HasPrefix(string(b), "HTTP") {
		t.Errorf("plain HTTP on the TLS port answered %q", b)
	}
}

// recordingConn counts writes to the socket below TLS once armed.
type recordingConn struct {
	net.Conn
	armed  atomic.Bool
	writes atomic.Int64
	closed atomic.Bool
}

func (c *recordingConn) Write(p []byte) (int, error) {
	if c.armed.Load() {
		c.writes.Add(1)
	}
	return c.Conn.Write(p)
}

func (c *recordingConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

// TestTLSCloseAfterFailedWrite: once a write has failed (a peer that does
// not read, past the write deadline), Close closes the socket without
// trying a close_notify alert, which crypto/tls would wait up to 5 s on;
// after a successful exchange Close sends the alert as usual.
func TestTLSCloseAfterFailedWrite(t *testing.T) {
	for _, failFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("failed=%v", failFirst), func(t *testing.T) {
			cert, pool := testCert(t)
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			rec := make(chan *recordingConn, 1)
			l := WrapTLSListener(listenerFunc(func() (net.Conn, error) {
				c, err := raw.Accept()
				if err != nil {
					return nil, err
				}
				r := &recordingConn{Conn: c}
				rec <- r
				return r, nil
			}, raw), 0, &tls.Config{Certificates: []tls.Certificate{cert}})

			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := l.Accept()
				if err != nil {
					accepted <- nil
					return
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if err := c.(*tlsCorkConn).Handshake(); err != nil {
					c.Close()
					accepted <- nil
					return
				}
				accepted <- c
			}()
			client, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", raw.Addr().String(), &tls.Config{RootCAs: pool})
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			sc := <-accepted
			if sc == nil {
				t.Fatal("accept or handshake failed")
			}
			r := <-rec
			if failFirst {
				// A deadline in the past makes the write fail at once, as a
				// write stuck on a full socket buffer would at its deadline.
				sc.SetWriteDeadline(time.Now().Add(-time.Second))
				if _, err := sc.Write([]byte("frame")); err == nil {
					t.Fatal("write past its deadline succeeded")
				}
			} else {
				sc.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if _, err := sc.Write([]byte("frame")); err != nil {
					t.Fatal(err)
				}
			}
			r.armed.Store(true)
			if err := sc.Close(); err != nil && !failFirst {
				t.Fatal(err)
			}
			if !r.closed.Load() {
				t.Fatal("socket not closed")
			}
			wantWrites := int64(1) // close_notify
			if failFirst {
				wantWrites = 0
			}
			if got := r.writes.Load(); got != wantWrites {
				t.Errorf("%d writes reached the socket during Close, want %d", got, wantWrites)
			}
			if !failFirst {
				// The client sees a clean TLS end (close_notify → io.EOF).
				client.SetReadDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 16)
				n, _ := io.ReadFull(client, buf[:5])
				if string(buf[:n]) != "frame" {
					t.Fatalf("client read %q", buf[:n])
				}
				if _, err := client.Read(buf); !errors.Is(err, io.EOF) {
					t.Errorf("client read after close: %v, want io.EOF (close_notify)", err)
				}
			}
		})
	}
}

// listenerFunc adapts an accept function to a net.Listener.
type listenerFuncT struct {
	net.Listener
	accept func() (net.Conn, error)
}

func (l listenerFuncT) Accept() (net.Conn, error) { return l.accept() }

func listenerFunc(accept func() (net.Conn, error), l net.Listener) net.Listener {
	return listenerFuncT{Listener: l, accept: accept}
}

// BenchmarkTLSBatch writes batches of 10 frames of 200 bytes to a TLS
// connection on loopback, corked (one record and one write system call per
// batch) and not (one record and one system call per frame). The peer
// drains the raw bytes without decrypting them, so the numbers are the
// server's side only.
func BenchmarkTLSBatch(b *testing.B) {
	for _, corked := range []bool{true, false} {
		b.Run(fmt.Sprintf("corked=%v", corked), func(b *testing.B) {
			cert, pool := testCert(b)
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer raw.Close()
			l := WrapTLSListener(raw, DefaultSendBuffer, &tls.Config{Certificates: []tls.Certificate{cert}})
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := l.Accept()
				if err == nil {
					err = c.(*tlsCorkConn).Handshake()
				}
				if err != nil {
					accepted <- nil
					return
				}
				accepted <- c
			}()
			rawClient, err := net.Dial("tcp", raw.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			tc := tls.Client(rawClient, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
			if err := tc.Handshake(); err != nil {
				b.Fatal(err)
			}
			sc := <-accepted
			if sc == nil {
				b.Fatal("server handshake failed")
			}
			drained := make(chan struct{})
			go func() { _, _ = io.Copy(io.Discard, rawClient); close(drained) }()
			ck := sc.(corker)
			frame := make([]byte, 200)
			b.SetBytes(int64(10 * len(frame)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if corked {
					ck.Cork()
				}
				for j := 0; j < 10; j++ {
					if _, err := sc.Write(frame); err != nil {
						b.Fatal(err)
					}
				}
				if corked {
					if err := ck.Uncork(); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			sc.Close()
			rawClient.Close()
			<-drained
		})
	}
}
