package httpapi

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/fasthttp/websocket"
	wsfiber "github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/stream"
)

// Sizes of the WebSocket's own buffers. Requests are small JSON objects and
// the read buffer is held for the connection's lifetime, so it is as small
// as the library allows (a control frame's 125-byte payload must fit; a
// larger request takes a few reads); the write buffer comes from a pool
// shared by every connection and is held only while a message is being
// written (frames are corked below it anyway).
const (
	wsReadBufferSize  = 128
	wsWriteBufferSize = 4096
)

// closeTimeout bounds writing a close frame: the socket is closed right
// after, whether the frame got out or not.
const closeTimeout = time.Second

// Close codes of the protocol (docs/protocol.md).
const (
	closeNormal      = websocket.CloseNormalClosure           // 1000
	closeGoingAway   = websocket.CloseGoingAway               // 1001: drain, shutdown, read timeout
	closeProtocol    = websocket.CloseProtocolError           // 1002: sent by the library itself
	closeUnsupported = websocket.CloseUnsupportedData         // 1003: binary frame
	closeInvalidUTF8 = websocket.CloseInvalidFramePayloadData // 1007
	closePolicy      = websocket.ClosePolicyViolation         // 1008: per-IP limit, rate limit
	closeTooBig      = websocket.CloseMessageTooBig           // 1009
	closeInternal    = websocket.CloseInternalServerErr       // 1011
	closeTryLater    = websocket.CloseTryAgainLater           // 1013: over capacity
	// closeWriteTimeout is the application code of a connection whose
	// writes stayed stuck past WriteTimeout (the session closes with it).
	closeWriteTimeout = stream.CloseWriteTimeout
)

// localClientIP is the Fiber local carrying the client IP from the
// pre-upgrade handler to the WebSocket handler (contrib copies locals).
const localClientIP = "opsdash.httpapi.client_ip"

// wsHandler returns the handler of GET /ws (after the Origin check).
func (s *Server) wsHandler() fiber.Handler {
	upgrade := wsfiber.New(s.serveWS, wsfiber.Config{
		// No HandshakeTimeout: the server-side upgrader ignores it; reading
		// the handshake is bounded by fasthttp's ReadTimeout (FiberConfig).
		ReadBufferSize:  wsReadBufferSize,
		WriteBufferSize: wsWriteBufferSize,
		WriteBufferPool: s.wsPool,
		RecoverHandler: func(c *wsfiber.Conn) {
			if r := recover(); r != nil {
				s.log.Error("panic in a WebSocket handler", "panic", r)
			}
		},
	})
	return func(c *fiber.Ctx) error {
		if !wsfiber.IsWebSocketUpgrade(c) {
			return WriteError(c, fiber.StatusUpgradeRequired, "upgrade_required",
				"/ws is a WebSocket endpoint (protocol v1, see docs/protocol.md)")
		}
		// Draining is refused with a status a load balancer understands.
		// The connection limits are not checked here but after the upgrade,
		// so that a browser (which cannot read a failed handshake's status)
		// sees the close code (1013 or 1008), and so that no slot is taken
		// for an upgrade fasthttp may still fail to complete.
		if s.conns.isDraining() {
			return s.answerDraining(c)
		}
		c.Locals(localClientIP, s.cfg.ClientIP(c))
		return upgrade(c)
	}
}

// serveWS takes one upgraded connection. When it can, it runs the
// connection on a goroutine of its own and returns at once, so that what
// the upgrade held for the connection's life goes (detach.go); otherwise it
// runs it here.
func (s *Server) serveWS(c *wsfiber.Conn) {
	ip, _ := c.Locals(localClientIP).(string)
	ws := c.Conn
	s.runWS(ws, ip, s.detachWS && detachable(ws.NetConn()))
}

// runWS runs one upgraded connection: limits, session, then the read loop,
// on a goroutine of its own when detach is set (detach.go). It returns
// when the connection is closed and no goroutine of this package will
// touch it again, or, detached, once the read loop has started.
func (s *Server) runWS(ws *websocket.Conn, ip string, detach bool) {
	wc := newWSConn(s, ws)
	wc.ip = ip
	if !s.openWS(wc) {
		wc.finish()
		return
	}
	if detach {
		go s.serveDetached(wc)
		return
	}
	s.serveOpened(wc)
}

// openWS admits the connection and opens its session (hello queued). On
// a refusal it closes the connection and returns false.
func (s *Server) openWS(wc *wsConn) bool {
	ip := wc.ip
	if r := s.conns.admit(ip); r != refuseNone {
		s.countRefused(r.String())
		code, reason := closeTryLater, "server at connection capacity"
		switch r {
		case refusePerIP:
			code, reason = closePolicy, "too many connections from this address"
		case refuseDraining:
			code, reason = closeGoingAway, "server going away"
		}
		_ = wc.Close(code, reason)
		return false
	}
	wc.sess = s.reg.Open(wc, s.cfg.Session)
	if !s.conns.add(wc, false) { // Drain started since admit
		wc.shutdown(closeGoingAway, "server going away")
		s.conns.release(ip)
		return false
	}
	s.opened.Add(1)
	s.log.Debug("websocket opened", "session", wc.sess.ID(), "client_ip", ip)
	wc.sess.Hello()
	return true
}

// serveOpened runs the read loop of an opened connection and ends it.
func (s *Server) serveOpened(wc *wsConn) {
	defer wc.finish()
	defer s.conns.release(wc.ip)
	defer s.conns.remove(wc, false)
	code, reason := s.readLoop(wc)
	wc.shutdown(code, reason)
}

// readTimeout is how long a WebSocket may stay silent (no frame, no pong)
// before it is considered dead: two missed pings and some slack.
func (s *Server) readTimeout() time.Duration { return s.cfg.Heartbeat * 5 / 2 }

// readLoop reads client frames until the connection must close and returns
// the close code and reason.
func (s *Server) readLoop(wc *wsConn) (int, string) {
	ws := wc.ws
	ws.SetReadLimit(int64(s.cfg.MaxFrameBytes))
	rt := s.readTimeout()
	extend := func() { _ = ws.SetReadDeadline(time.Now().Add(rt)) }
	extend()
	ws.SetPongHandler(func(string) error { extend(); return nil })
	// A client's own ping frames show it is alive as much as a pong does;
	// answered as the library would (a pong that cannot be written is the
	// writer's business, not a reason to stop reading).
	ws.SetPingHandler(func(data string) error {
		extend()
		err := ws.WriteControl(websocket.PongMessage, []byte(data), pingDeadline(time.Now(), s.cfg.WriteTimeout, wc.inflight.Load()))
		var ne net.Error
		if err == nil || errors.Is(err, websocket.ErrCloseSent) || errors.As(err, &ne) {
			return nil
		}
		return err
	})
	wc.startHeartbeat(s.cfg.Heartbeat)

	for {
		// A client that does not read its replies is not read either
		// (stream/replyqueue.go): its next request stays in the socket.
		if !wc.sess.WaitReplySpace() {
			return closeNormal, "" // closed meanwhile (drain, write timeout): that close stands
		}
		extend()
		mt, msg, err := ws.ReadMessage()
		if err != nil {
			return readErrorClose(err)
		}
		if mt != websocket.TextMessage {
			return closeUnsupported, "binary frames are not supported"
		}
		// fasthttp/websocket does not validate text frames; RFC 6455 says
		// to fail the connection with 1007.
		if !utf8.Valid(msg) {
			return closeInvalidUTF8, "invalid UTF-8 in a text frame"
		}
		if err := handleOffStack(wc.sess, msg); err != nil {
			if ce, ok := asCloseError(err); ok {
				return ce.Code, ce.Reason
			}
			s.log.Error("websocket request failed", "session", wc.sess.ID(), "err", err)
			return closeInternal, "internal error"
		}
	}
}

// readErrorClose maps a read error to the close the server sends (and
// counts).
func readErrorClose(err error) (int, string) {
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		return closeTooBig, "frame too big"
	case errors.As(err, &ce):
		// The client closed; the library has already echoed its close frame.
		return closeNormal, ""
	case errors.As(err, &ne) && ne.Timeout():
		return closeGoingAway, "read timeout"
	case isProtocolError(err):
		return closeProtocol, "protocol error"
	}
	return closeNormal, ""
}

// isProtocolError reports whether a read error is a WebSocket protocol
// violation by the client (reserved bits, a bad opcode, an unmasked or
// fragmented control frame...), which the library has already answered
// with close 1002. The library has no error value for these, only
// errors.New("websocket: " + what), so they are told apart from the
// failures of the connection below (net errors, EOF) and from the errors
// handled above.
func isProtocolError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return false
	}
	return strings.HasPrefix(err.Error(), "websocket: ")
}

// wsConn is the stream.Conn of one WebSocket.
type wsConn struct {
	srv  *Server
	ws   *websocket.Conn
	nc   net.Conn // the connection under fasthttp's hijack wrapper: Close must reach it
	cork corker   // nil when the listener was not wrapped by WrapListener
	// send is the socket's non-blocking write end (sendconn.go); nil when
	// the listener was not wrapped, and writes then block under a deadline.
	send *sendConn
	sess *stream.Session
	ip   string // client IP, for logs

	// life guards dead: every write holds it for reading, and finish takes
	// it for writing, after which nothing touches ws (fasthttp and contrib
	// recycle it once the handler returns).
	life sync.RWMutex
	dead bool

	wmu      sync.Mutex // serializes WriteFrames (corking is per connection)
	deadline time.Time  // blocking writes only: write deadline of WriteFrames (guarded by wmu), see nextWriteDeadline
	// inflight is the deadline (Unix ns) of a blocking WriteFrames call
	// under way, 0 between calls: a ping must not push it further
	// (pingDeadline).
	inflight  atomic.Int64
	closeOnce sync.Once
	hb        *time.Timer // blocking writes only; else the pinger pings
	// pingSlot and pingIndex place the connection in the pinger (-1: not
	// in it); guarded by the pinger's mutex.
	pingSlot, pingIndex int
}

var _ stream.NonBlockingConn = (*wsConn)(nil)

// sendBacked is a corking connection over a sendConn.
type sendBacked interface{ sender() *sendConn }

func newWSConn(s *Server, ws *websocket.Conn) *wsConn {
	nc := underlying(ws.NetConn())
	wc := &wsConn{srv: s, ws: ws, nc: nc, pingSlot: -1}
	if ck, ok := nc.(corker); ok {
		wc.cork = ck
	}
	if sb, ok := nc.(sendBacked); ok {
		if sc := sb.sender(); sc != nil && sc.setNonBlocking() {
			wc.send = sc
		}
	}
	return wc
}

// WriteFrames writes each frame as its own text message, corked so that the
// batch leaves in one write system call. Over a sendConn it never waits for
// the client (what the socket does not take is kept: Backlogged);
// otherwise it blocks under one write deadline (see nextWriteDeadline).
func (w *wsConn) WriteFrames(frames []stream.Frame) error {
	w.life.RLock()
	defer w.life.RUnlock()
	if w.dead {
		return errClosed
	}
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.send != nil {
		return w.writeCorked(frames)
	}
	if d, moved := nextWriteDeadline(w.deadline, time.Now(), w.srv.cfg.WriteTimeout); moved {
		w.deadline = d
		// The library keeps it and sets it on the socket before each frame;
		// the corking connection passes it on only when it changed.
		if err := w.ws.SetWriteDeadline(d); err != nil {
			return err
		}
	}
	w.inflight.Store(w.deadline.UnixNano())
	defer w.inflight.Store(0)
	return w.writeCorked(frames)
}

// writeCorked writes the frames between Cork and Uncork. Corked even for
// one frame: the library writes a frame larger than its write buffer as
// two writes (header and buffered part, then the rest).
func (w *wsConn) writeCorked(frames []stream.Frame) error {
	if w.cork != nil {
		w.cork.Cork()
	}
	var err error
	for _, f := range frames {
		if err = w.ws.WriteMessage(websocket.TextMessage, f.JSON); err != nil {
			break
		}
	}
	if w.cork != nil {
		if ferr := w.cork.Uncork(); err == nil {
			err = ferr
		}
	}
	return err
}

// Backlogged implements stream.NonBlockingConn: bytes wait for the socket.
func (w *wsConn) Backlogged() bool { return w.send != nil && w.send.backlogged() }

// WaitWritable implements stream.NonBlockingConn: it waits until the
// client has taken the kept bytes, at most the write timeout.
func (w *wsConn) WaitWritable() error {
	w.life.RLock()
	defer w.life.RUnlock()
	if w.dead || w.send == nil {
		return errClosed
	}
	return w.send.flush(time.Now().Add(w.srv.cfg.WriteTimeout))
}

// nextWriteDeadline returns the deadline of a write that starts at now,
// given the deadline cur of the previous one, and whether it moved.
//
// Moving a socket's deadline costs a runtime timer update, and with a
// fan-out of one small write per subscriber per value that was a
// noticeable share of the server's CPU. So the deadline is moved forward
// only once less than half of timeout is left: a write that starts at now
// is cut after at least timeout/2 and at most timeout stuck (before, exactly
// timeout). The promise that matters, that no write stays stuck longer than
// the write timeout, holds; a connection that is writing steadily moves its
// deadline about once per timeout/2.
func nextWriteDeadline(cur, now time.Time, timeout time.Duration) (time.Time, bool) {
	if cur.Sub(now) >= timeout/2 {
		return cur, false
	}
	return now.Add(timeout), true
}

// Close writes a close frame with code and reason (bounded by a short
// deadline) and closes the socket, which ends the read loop. Idempotent;
// safe concurrently with WriteFrames (closing the socket unblocks it).
func (w *wsConn) Close(code int, reason string) error {
	w.closeOnce.Do(func() {
		w.life.RLock()
		defer w.life.RUnlock()
		if w.dead {
			return
		}
		if len(reason) > 120 { // a close frame's payload is at most 125 bytes
			reason = reason[:120]
		}
		// The frame may not get out (the client closed first, the library
		// already sent 1009 or 1002, the socket is stuck): the socket is
		// closed anyway, and the code counted as the server's decision.
		_ = w.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason),
			time.Now().Add(closeTimeout))
		w.srv.countClose(code)
		// Logged here, where the code actually sent is known (a drain's
		// 1001, not the read error it causes). No session: refused at admit.
		var id string
		if w.sess != nil {
			id = w.sess.ID()
		}
		w.srv.log.Debug("websocket closed", "session", id, "client_ip", w.ip, "code", code, "reason", reason)
		_ = w.nc.Close()
	})
	return nil
}

// shutdown implements liveConn: close the socket first (which unblocks a
// writer stuck on a slow client at once), then end the session.
func (w *wsConn) shutdown(code int, reason string) {
	_ = w.Close(code, reason)
	if w.sess != nil {
		w.sess.Close(code, reason)
	}
}

// pingDeadline returns the deadline of a ping sent at now while a batch
// write with deadline inflight (Unix ns, 0 for none) may be under way.
// Setting a deadline on the socket applies to every write on it, so a ping
// given now+timeout while a batch write is stuck would move that write's
// deadline too and keep a stuck client up to twice the write timeout; the
// ping gets the earlier of the two instead.
func pingDeadline(now time.Time, timeout time.Duration, inflight int64) time.Time {
	d := now.Add(timeout)
	if inflight != 0 && inflight < d.UnixNano() {
		return time.Unix(0, inflight)
	}
	return d
}

// startHeartbeat sends a ping frame every period: from the Server's shared
// pinger when writes never block (pinger.go), else from a timer of the
// connection's own rather than a goroutine, so an idle connection costs no
// extra stack.
func (w *wsConn) startHeartbeat(period time.Duration) {
	w.life.Lock()
	defer w.life.Unlock()
	if w.dead {
		return
	}
	if w.send != nil {
		w.srv.pingerFor(period).add(w)
		return
	}
	w.hb = time.AfterFunc(period, func() { w.ping(period) })
}

func (w *wsConn) ping(period time.Duration) {
	w.life.RLock()
	if w.dead {
		w.life.RUnlock()
		return
	}
	err := w.ws.WriteControl(websocket.PingMessage, nil, pingDeadline(time.Now(), w.srv.cfg.WriteTimeout, w.inflight.Load()))
	if err == nil && w.send != nil && w.send.backlogged() {
		// The ping is kept behind unsent bytes: see it out (a parked
		// session's own wait does the same; one of them waits for the
		// other), so that a client that reads again gets it.
		err = w.send.flush(time.Now().Add(w.srv.cfg.WriteTimeout))
	}
	if err == nil {
		w.hb.Reset(period)
	}
	w.life.RUnlock()
	if err != nil {
		// Not under life: shutdown takes it again, and a pending finish
		// would deadlock a second read lock.
		w.pingFailed(err)
	}
}

// finish marks the connection dead once the handler is done with it.
func (w *wsConn) finish() {
	_ = w.Close(closeNormal, "")
	w.life.Lock()
	defer w.life.Unlock()
	w.dead = true
	if w.hb != nil {
		w.hb.Stop()
	}
	if w.pingSlot >= 0 {
		w.srv.pinger.remove(w)
	}
}

// handleOffStack runs Session.Handle on a short-lived goroutine and waits
// for it. Decoding a request (encoding/json, reflection) needs a deeper
// stack than the read loop ever does otherwise; run on the read loop's own
// goroutine it would leave every idle connection holding that bigger stack
// (stacks do not shrink below 4x what they use). Requests are rare and rate
// limited, so a goroutine per request costs little; the idle connection
// keeps a small stack.
func handleOffStack(sess *stream.Session, msg []byte) error {
	res := make(chan error, 1)
	go func() { res <- sess.Handle(msg) }()
	return <-res
}
