package httpapi

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The listener under everything else (TLS, corking): what keeps one
// address, or many, from stopping the server by using up its file
// descriptors.
//
//   - A cap on the connections open at once (MaxOpen). Accept waits for a
//     slot before it accepts: past the cap, new connections wait in the
//     kernel's backlog, costing the process nothing, and are accepted as
//     open ones close. fasthttp's own Concurrency cannot do this: it does
//     not count hijacked (WebSocket) connections.
//   - An accept error (EMFILE: the process's descriptors are used up by
//     files, collectors or another listener; ENFILE, ENOBUFS, ENOMEM) is
//     survived: Accept backs off (5 ms doubling to 1 s) and tries again
//     instead of returning the error, which fasthttp treats as the end of
//     the server. Errors are counted, and logged once per burst (at most
//     one burst a minute; so is reaching the cap).
//   - A deadline for the first byte: fasthttp sets a connection's read
//     deadline only once a request has started (with ReduceMemoryUsage it
//     waits for the first byte without one), so a connection that never
//     sends anything would stay open forever. Each accepted connection
//     gets FirstByteTimeout; fasthttp's own deadlines (the read timeout
//     from the first byte, the TLS handshake, keep-alive idling) replace
//     it from there.
//   - Every open connection is known, so a drain can close what is left
//     when its time runs out (CloseAll).

// DefaultMaxOpenConns is AcceptConfig.MaxOpen's default: room for
// DefaultMaxConns streams and as many HTTP requests again a fifth of that.
const DefaultMaxOpenConns = DefaultMaxConns + DefaultMaxConns/5

// Accept back-off after a failed accept: it starts at acceptBackoffMin
// and doubles up to acceptBackoffMax while accepts keep failing.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// AcceptConfig configures LimitListener. Zero fields take the defaults
// (the zero rule: see stream.NoLimit).
type AcceptConfig struct {
	// MaxOpen caps the connections open at once, of every kind (HTTP,
	// WebSocket, SSE, TLS handshakes). Default DefaultMaxOpenConns;
	// stream.NoLimit turns it off. A server should keep it below its file
	// descriptor limit, with room for the files it opens.
	MaxOpen int
	// FirstByteTimeout bounds the wait for a connection's first byte.
	// Default DefaultHandshakeTimeout.
	FirstByteTimeout time.Duration
	// Logger receives the back-off reports. nil means slog.Default().
	Logger *slog.Logger
}

// AcceptStats are the listener's counters, for /metrics.
type AcceptStats struct {
	// Open is the number of connections open now; Limit is MaxOpen (0:
	// none).
	Open, Limit int
	// Errors counts failed accepts (each one backed off from).
	Errors uint64
	// CapWaits counts the times Accept had to wait for a connection to
	// close because Limit were open.
	CapWaits uint64
}

// AcceptListener is a net.Listener with a cap on open connections, a
// back-off on accept errors and a first-byte deadline (see LimitListener).
type AcceptListener struct {
	net.Listener
	cfg   AcceptConfig
	log   *slog.Logger
	slots chan struct{} // one per open connection; nil: no cap

	closeOnce sync.Once
	closed    chan struct{}

	mu    sync.Mutex
	conns map[*acceptedConn]struct{}

	errors, capWaits atomic.Uint64
	// Burst state, used by the goroutine in Accept only (fasthttp calls
	// Accept from one goroutine): the failures since the last success,
	// and when each report was last logged (at most one per logEvery, so
	// that churn at the limit does not fill the log either).
	burstErrs  int
	burstStart time.Time
	errLogged  time.Time
	capLogged  time.Time
	capHeld    uint64 // cap waits since the last logged one
}

// LimitListener wraps l (the listening socket; TLS and WrapListener go on
// top of it) with the cap, back-off and first-byte deadline of cfg.
func LimitListener(l net.Listener, cfg AcceptConfig) *AcceptListener {
	if cfg.MaxOpen == 0 {
		cfg.MaxOpen = DefaultMaxOpenConns
	}
	if cfg.FirstByteTimeout <= 0 {
		cfg.FirstByteTimeout = DefaultHandshakeTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	al := &AcceptListener{
		Listener: l,
		cfg:      cfg,
		log:      cfg.Logger,
		closed:   make(chan struct{}),
		conns:    make(map[*acceptedConn]struct{}),
	}
	if cfg.MaxOpen > 0 {
		al.slots = make(chan struct{}, cfg.MaxOpen)
	}
	return al
}

// Accept waits for a free slot under the cap, accepts a connection and
// gives it the first-byte deadline. Errors other than the listener being
// closed are backed off from and retried, never returned.
func (l *AcceptListener) Accept() (net.Conn, error) {
	if !l.takeSlot() {
		return nil, net.ErrClosed
	}
	backoff := acceptBackoffMin
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			l.endBurst()
			return l.track(c), nil
		}
		if errors.Is(err, net.ErrClosed) || l.isClosed() {
			l.giveSlot()
			return nil, err
		}
		l.errors.Add(1)
		if l.burstErrs == 0 {
			l.burstStart = time.Now()
			if time.Since(l.errLogged) >= logEvery {
				l.errLogged = l.burstStart
				l.log.Warn("accepting connections failed; backing off and retrying while open ones close",
					"err", err, "open", l.open(), "max_open_conns", max(l.cfg.MaxOpen, 0))
			}
		}
		l.burstErrs++
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-l.closed:
			t.Stop()
			l.giveSlot()
			return nil, net.ErrClosed
		}
		backoff = min(2*backoff, acceptBackoffMax)
	}
}

// takeSlot waits for room under the cap; false when the listener closed.
func (l *AcceptListener) takeSlot() bool {
	if l.slots == nil {
		return !l.isClosed()
	}
	select {
	case l.slots <- struct{}{}:
		return true
	default:
	}
	l.capWaits.Add(1)
	if now := time.Now(); now.Sub(l.capLogged) >= logEvery {
		l.log.Warn("connection cap reached: new connections wait until open ones close",
			"max_open_conns", l.cfg.MaxOpen, "held_back", l.capHeld)
		l.capLogged, l.capHeld = now, 0
	} else {
		l.capHeld++
	}
	select {
	case l.slots <- struct{}{}:
		return true
	case <-l.closed:
		return false
	}
}

func (l *AcceptListener) giveSlot() {
	if l.slots != nil {
		<-l.slots
	}
}

// endBurst reports the end of a run of failed accepts, when its start was
// logged.
func (l *AcceptListener) endBurst() {
	if l.burstErrs == 0 {
		return
	}
	if !l.errLogged.Before(l.burstStart) {
		l.log.Info("accepting connections again", "failed_accepts", l.burstErrs,
			"after", time.Since(l.burstStart).Round(time.Millisecond))
	}
	l.burstErrs = 0
}

// track wraps an accepted connection so that closing it gives its slot
// back, and sets its first-byte deadline.
func (l *AcceptListener) track(c net.Conn) net.Conn {
	_ = c.SetReadDeadline(time.Now().Add(l.cfg.FirstByteTimeout))
	ac := &acceptedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[ac] = struct{}{}
	l.mu.Unlock()
	return ac
}

func (l *AcceptListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

func (l *AcceptListener) isClosed() bool {
	select {
	case <-l.closed:
		return true
	default:
		return false
	}
}

// Close closes the listening socket and wakes an Accept waiting for a
// slot. Open connections stay open (see CloseAll).
func (l *AcceptListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// CloseAll closes every connection still open, whatever it is doing (a
// request arriving byte by byte, a response its client does not read): a
// drain's last resort when its time is nearly up.
func (l *AcceptListener) CloseAll() int {
	l.mu.Lock()
	conns := make([]*acceptedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	return len(conns)
}

// Stats returns the listener's counters.
func (l *AcceptListener) Stats() AcceptStats {
	return AcceptStats{
		Open:     l.open(),
		Limit:    max(l.cfg.MaxOpen, 0),
		Errors:   l.errors.Load(),
		CapWaits: l.capWaits.Load(),
	}
}

// acceptedConn is a connection of an AcceptListener: closing it (once)
// gives its slot back.
type acceptedConn struct {
	net.Conn
	l    *AcceptListener
	once sync.Once
}

// Close implements net.Conn.
func (c *acceptedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		c.l.giveSlot()
	})
	return err
}

// SetWriteBuffer passes SO_SNDBUF on to the socket (WrapListener sets it).
func (c *acceptedConn) SetWriteBuffer(bytes int) error {
	if s, ok := c.Conn.(writeBufferSetter); ok {
		return s.SetWriteBuffer(bytes)
	}
	return nil
}
