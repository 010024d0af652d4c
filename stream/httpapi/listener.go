package httpapi

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// DefaultSendBuffer is the SO_SNDBUF a server should give WrapListener.
//
// Why cap it at all: measured on Linux loopback, a socket's send buffer
// autotunes up to 4 MiB. For a subscriber that stops reading, that is
// megabytes of frames that already left the conflating mailbox, so when it
// resumes it is handed seconds of stale values before the fresh ones. With
// a small cap the backlog outside the mailbox stays small and conflation
// (newest value per topic) does the rest. The kernel doubles the value it
// is given (see socket(7)), so 64 KiB here means about 128 KiB of kernel
// memory at most per connection.
const DefaultSendBuffer = 64 << 10

// corkFlushAt is the corked buffer size past which Write flushes early, so a
// drain of many large frames never holds more than this (plus one frame) in
// process memory.
const corkFlushAt = 64 << 10

// Listen announces on the local network address like net.Listen and wraps
// the listener with WrapListener.
func Listen(network, addr string, sndbuf int) (net.Listener, error) {
	l, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	return WrapListener(l, sndbuf), nil
}

// WrapListener returns a listener whose accepted connections have their
// kernel send buffer capped to sndbuf bytes (SO_SNDBUF; 0 or less leaves
// the kernel's autotuning alone) and are wrapped in a corking connection:
// the WebSocket writer corks it, writes several frames and uncorks, so the
// frames leave in one write system call. Serve the Fiber app on it with
// app.Listener(WrapListener(l, DefaultSendBuffer)).
func WrapListener(l net.Listener, sndbuf int) net.Listener {
	return &listener{Listener: l, sndbuf: sndbuf}
}

// WrapTLSListener is WrapListener serving TLS (https, wss): each accepted
// connection is the socket (send buffer capped), TLS over it, and the
// corking connection over TLS. The order is what keeps corking worth it: a
// corked batch of frames is handed to TLS as one write, so it becomes one
// record (up to 16 KiB) and one write system call, not one record and one
// system call per frame. cfg is cloned; the clone has dynamic record sizing
// turned off, since Go's default otherwise cuts the first records of a
// connection to about one TCP segment each, one system call apiece.
//
// The connections also tell fasthttp they are TLS (fasthttp looks for
// Handshake and ConnectionState), so Fiber's c.Protocol() says "https" and
// the handshake runs, bounded by the server's read timeout, before the
// first request is read.
func WrapTLSListener(l net.Listener, sndbuf int, cfg *tls.Config) net.Listener {
	cfg = cfg.Clone()
	cfg.DynamicRecordSizingDisabled = true
	return &listener{Listener: l, sndbuf: sndbuf, tls: cfg}
}

type listener struct {
	net.Listener
	sndbuf int
	tls    *tls.Config // nil: plain TCP
}

// writeBufferSetter is implemented by *net.TCPConn and *net.UnixConn.
type writeBufferSetter interface{ SetWriteBuffer(bytes int) error }

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.sndbuf > 0 {
		if s, ok := c.(writeBufferSetter); ok {
			// A failure leaves the kernel default: worse freshness for a slow
			// reader, never a broken connection, so it is not worth refusing it.
			_ = s.SetWriteBuffer(l.sndbuf)
		}
	}
	sc := newSendConn(c) // blocking until a WebSocket session makes it not (sendconn.go)
	if l.tls == nil {
		return &corkConn{Conn: sc}, nil
	}
	// No handshake here: it would stall the accept loop on one slow client.
	// It runs in the connection's own goroutine (see tlsCorkConn).
	tc := tls.Server(sc, l.tls)
	return &tlsCorkConn{corkConn: corkConn{Conn: tc, raw: sc}, tls: tc}, nil
}

// tlsCorkConn is a corkConn over TLS that fasthttp recognises as TLS.
type tlsCorkConn struct {
	corkConn
	tls *tls.Conn
}

// Handshake runs the TLS handshake (fasthttp calls it before reading).
func (c *tlsCorkConn) Handshake() error { return c.tls.Handshake() }

// ConnectionState reports the TLS state, for fasthttp's IsTLS and
// TLSConnectionState.
func (c *tlsCorkConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

// corkConn is a net.Conn whose writes can be held back ("corked") and sent
// together with one write system call when uncorked, like TCP_CORK but in
// user space and without its 200 ms timer. While it is not corked, writes go
// straight to the socket.
//
// All writes take mu, so a write from another goroutine (a ping, a close
// frame) while corked is appended after the frames already held, in order.
//
// It also drops write deadlines equal to the one already set: the WebSocket
// library sets the connection's deadline before every frame it writes, the
// same one for every frame of a batch, and each call costs the runtime a
// timer update (about 5% of the server's CPU in a fan-out).
type corkConn struct {
	net.Conn

	// raw is the socket under TLS (Conn is then the *tls.Conn), nil
	// without TLS. Once a write has failed, Close closes raw directly: a
	// TLS Close would first send a close_notify alert, and a failed write
	// usually means a peer that does not read, on which that alert waits
	// up to 5 s (crypto/tls's own bound) before giving up, which would
	// slow every drain down by as much.
	raw net.Conn

	mu     sync.Mutex
	corked bool
	failed bool    // a write to Conn returned an error
	buf    *[]byte // held frames while corked; from corkPool

	// dmu guards wdl, the write deadline last set on Conn (zero: none, as
	// on a new connection). Not mu: mu is held through a write that may
	// block, and a deadline set meanwhile (a close frame's short one) must
	// reach the socket at once to cut that write.
	dmu sync.Mutex
	wdl time.Time
}

// SetWriteDeadline implements net.Conn, skipping a deadline equal to the
// one in force (which would change nothing). Every deadline of the socket
// is set through here or SetDeadline while it is in use; under TLS,
// crypto/tls sets one of its own only when closing, after which nothing is
// written.
func (c *corkConn) SetWriteDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if t.Equal(c.wdl) {
		return nil
	}
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err // the socket is closed: wdl no longer matters
	}
	c.wdl = t
	return nil
}

// SetDeadline implements net.Conn; it sets the write deadline too, which
// SetWriteDeadline must know.
func (c *corkConn) SetDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if err := c.Conn.SetDeadline(t); err != nil {
		return err
	}
	c.wdl = t
	return nil
}

// corkPool holds the buffers of corked writes. A connection holds one only
// between Cork and Uncork, so an idle connection costs nothing here.
var corkPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// Write implements net.Conn.
func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		return c.writeLocked(p)
	}
	if c.buf == nil {
		c.buf = corkPool.Get().(*[]byte)
	}
	*c.buf = append(*c.buf, p...)
	if len(*c.buf) >= corkFlushAt {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Cork holds back every following write until Uncork.
func (c *corkConn) Cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// Uncork sends the held writes in one write call (bounded by the write
// deadline set on the connection) and lets later writes through.
func (c *corkConn) Uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	return c.flushLocked()
}

func (c *corkConn) flushLocked() error {
	if c.buf == nil {
		return nil
	}
	b := c.buf
	c.buf = nil
	var err error
	if len(*b) > 0 {
		_, err = c.writeLocked(*b)
	}
	// A buffer grown by an unusual burst is dropped rather than pinned in
	// the pool for every later connection.
	if cap(*b) <= 2*corkFlushAt {
		*b = (*b)[:0]
		corkPool.Put(b)
	}
	return err
}

// Close closes the socket. Frames still corked are sent first when no other
// write is in progress (bounded by the connection's write deadline, which
// the caller sets short); a write in progress is not waited for, since
// closing the socket is what unblocks it.
func (c *corkConn) Close() error {
	failed := false
	if c.mu.TryLock() {
		_ = c.flushLocked()
		c.corked = false
		failed = c.failed
		c.mu.Unlock()
	}
	// With a write in progress, tls.Conn's Close itself skips the
	// close_notify and closes the socket at once.
	if failed && c.raw != nil {
		return c.raw.Close()
	}
	return c.Conn.Close()
}

// writeLocked writes p to the connection below and remembers a failure.
func (c *corkConn) writeLocked(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.failed = true
	}
	return n, err
}

// corker is what the WebSocket writer needs from the connection below it.
type corker interface {
	Cork()
	Uncork() error
}

// unsafeConner is implemented by fasthttp's hijacked connection, which
// wraps the listener's connection: its Close does nothing (fasthttp closes
// the socket itself when the handler returns), so closing a WebSocket from
// another goroutine has to reach the connection underneath.
type unsafeConner interface{ UnsafeConn() net.Conn }

// underlying returns the connection a hijacked connection wraps, or c.
func underlying(c net.Conn) net.Conn {
	for i := 0; i < 4; i++ { // bounded: wrappers do not nest deeply
		u, ok := c.(unsafeConner)
		if !ok {
			return c
		}
		c = u.UnsafeConn()
	}
	return c
}

var errClosed = errors.New("httpapi: connection closed")
