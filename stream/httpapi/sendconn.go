package httpapi

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// maxUnsent bounds the bytes a sendConn keeps for a client that does not
// read: one flush turn of frames (the stream package takes at most 64 KiB
// of them per turn, plus one frame) and the control frames (pings, close)
// written while the session is parked. Past it the connection fails.
const maxUnsent = 64<<10 + 2*64<<10

// errBacklogFull is the error of a connection that went past maxUnsent.
var errBacklogFull = errors.New("httpapi: too many unsent bytes for a client that does not read")

// sendConn is the accepted socket at the bottom of a WebSocket's write path
// (under TLS, when there is TLS). Until setNonBlocking it behaves as the
// socket does (the HTTP exchange, the TLS handshake, SSE). After it, a
// Write never waits for the client: it writes what the kernel takes at once
// (a non-blocking write(2)) and keeps the rest, in order, to be sent by
// flush, which waits for the socket to become writable under a deadline.
// Writes made while bytes are kept are appended behind them. So a flush
// loop writing frames never blocks, TLS above never sees a timed-out write
// (which would kill a tls.Conn for good), and a client that stopped
// reading costs at most maxUnsent bytes here.
type sendConn struct {
	net.Conn
	rc syscall.RawConn // nil: the conn has no file descriptor; it stays blocking

	mu          sync.Mutex
	nonblocking bool
	unsent      []byte
	err         error // the first write error; sticky

	flushMu sync.Mutex // one flush at a time
}

func newSendConn(c net.Conn) *sendConn {
	s := &sendConn{Conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			s.rc = rc
		}
	}
	return s
}

// SyscallConn gives the socket's descriptor (for socket options).
func (c *sendConn) SyscallConn() (syscall.RawConn, error) {
	if c.rc == nil {
		return nil, errors.New("httpapi: connection has no file descriptor")
	}
	return c.rc, nil
}

// setNonBlocking switches Write to not waiting for the client, and reports
// whether it could (a conn without a file descriptor stays blocking).
func (c *sendConn) setNonBlocking() bool {
	if c.rc == nil {
		return false
	}
	c.mu.Lock()
	c.nonblocking = true
	c.mu.Unlock()
	// Deadlines from above no longer apply (see SetWriteDeadline); clear
	// any left from the HTTP exchange, flush sets its own.
	_ = c.Conn.SetWriteDeadline(time.Time{})
	return true
}

// Write implements net.Conn.
func (c *sendConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !c.nonblocking {
		c.mu.Unlock()
		return c.Conn.Write(p)
	}
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	total := len(p)
	if len(c.unsent) == 0 {
		n, err := c.writeNowLocked(p)
		if err != nil {
			return n, err
		}
		p = p[n:]
		if len(p) == 0 {
			return total, nil
		}
	}
	if len(c.unsent)+len(p) > maxUnsent {
		c.err = errBacklogFull
		return 0, c.err
	}
	c.unsent = append(c.unsent, p...)
	return total, nil
}

// writeNowLocked writes what the socket takes of p without waiting.
func (c *sendConn) writeNowLocked(p []byte) (int, error) {
	n := 0
	var werr error
	err := c.rc.Control(func(fd uintptr) {
		for n < len(p) {
			m, err := syscall.Write(int(fd), p[n:])
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				return
			case err != nil:
				werr = err
				return
			}
			n += m
		}
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		c.err = &net.OpError{Op: "write", Net: "tcp", Addr: c.RemoteAddr(), Err: err}
		return n, c.err
	}
	return n, nil
}

// backlogged reports whether bytes wait for the socket.
func (c *sendConn) backlogged() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.unsent) > 0
}

// flush waits until the kept bytes are written, or deadline passes (a
// timeout error, after which the connection is failed), or the socket is
// closed or fails.
func (c *sendConn) flush(deadline time.Time) error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	return c.flushLocked(deadline)
}

// flushLocked is flush with flushMu held.
func (c *sendConn) flushLocked(deadline time.Time) error {
	c.mu.Lock()
	done, err := len(c.unsent) == 0, c.err
	c.mu.Unlock()
	if done || err != nil {
		return err
	}
	if err := c.Conn.SetWriteDeadline(deadline); err != nil {
		return err
	}
	// RawConn.Write calls the function when the socket may be writable and
	// waits in the runtime's poller, under the deadline, while it returns
	// false.
	err = c.rc.Write(func(fd uintptr) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for len(c.unsent) > 0 && c.err == nil {
			m, err := syscall.Write(int(fd), c.unsent)
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				return false
			case err != nil:
				c.err = &net.OpError{Op: "write", Net: "tcp", Addr: c.RemoteAddr(), Err: err}
				return true
			}
			c.unsent = c.unsent[m:]
		}
		c.unsent = nil // let a burst's buffer go: an idle connection keeps none
		return true
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil && c.err == nil {
		c.err = err
	}
	return c.err
}

// SetWriteDeadline implements net.Conn. Once non-blocking, writes never
// wait, so deadlines set from above (the WebSocket library sets one before
// each frame) do not apply; flush sets its own.
func (c *sendConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	nb := c.nonblocking
	c.mu.Unlock()
	if nb {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline implements net.Conn (see SetWriteDeadline).
func (c *sendConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	nb := c.nonblocking
	c.mu.Unlock()
	if nb {
		return c.Conn.SetReadDeadline(t)
	}
	return c.Conn.SetDeadline(t)
}

// Close sends what is kept (within closeTimeout, unless a flush is already
// waiting: closing the socket is what ends it) and closes the socket.
func (c *sendConn) Close() error {
	if c.backlogged() && c.flushMu.TryLock() {
		_ = c.flushLocked(time.Now().Add(closeTimeout))
		c.flushMu.Unlock()
	}
	return c.Conn.Close()
}

// sender returns the sendConn under a corking connection, nil if none.
func (c *corkConn) sender() *sendConn {
	if s, ok := c.raw.(*sendConn); ok {
		return s
	}
	s, _ := c.Conn.(*sendConn)
	return s
}
