package httpapi

import (
	"bufio"
	"bytes"
	"errors"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/stream"
)

// sseRetryMS is the reconnection delay suggested to EventSource clients.
const sseRetryMS = 2000

// handleSSE serves GET /sse?topics=a,b[&max_hz=N]: the subscription of
// protocol v1 over Server-Sent Events (max_hz as in a subscribe request). Errors (bad or missing topics, limits, draining) are
// JSON answers before the stream starts; after that the stream is the
// snapshot followed by live updates and status changes, with comment lines
// every heartbeat.
func (s *Server) handleSSE(c *fiber.Ctx) error {
	patterns, err := parseTopicsParam(c.Query("topics"))
	if err != nil {
		return WriteError(c, fiber.StatusBadRequest, stream.CodeInvalidTopic, err.Error())
	}
	maxHz, err := parseMaxHzParam(c.Query("max_hz"))
	if err != nil {
		return WriteError(c, fiber.StatusBadRequest, stream.CodeBadRequest, err.Error())
	}
	ip := s.cfg.ClientIP(c)
	switch r := s.conns.admit(ip); r {
	case refuseNone:
	case refusePerIP:
		s.countRefused(r.String())
		return WriteError(c, fiber.StatusTooManyRequests, "too_many_connections", "too many connections from this address")
	case refuseDraining:
		return s.answerDraining(c)
	default:
		s.countRefused(r.String())
		c.Set(fiber.HeaderRetryAfter, "5")
		return WriteError(c, fiber.StatusServiceUnavailable, "over_capacity", "server at connection capacity")
	}

	fctx := c.Context()
	sc := &sseConn{
		srv:   s,
		ip:    ip,
		nc:    fctx.Conn(),
		kick:  make(chan struct{}, 1),
		taken: make(chan struct{}, 1),
		done:  make(chan struct{}),
		ended: make(chan struct{}),
	}
	sc.sess = s.reg.Open(sc, s.cfg.Session)
	if err := sc.sess.SubscribeMaxHz(patterns, maxHz); err != nil {
		sc.sess.Close(closeNormal, "")
		s.conns.release(ip)
		code := stream.CodeInvalidTopic
		if !errors.Is(err, stream.ErrInvalidTopic) {
			code = stream.CodeTooManySubscriptions
		}
		return WriteError(c, fiber.StatusBadRequest, code, err.Error())
	}
	if !s.conns.add(sc, true) { // Drain started since admit
		sc.sess.Close(closeGoingAway, "server going away")
		s.conns.release(ip)
		return s.answerDraining(c)
	}
	s.opened.Add(1)
	s.log.Debug("sse stream opened", "session", sc.sess.ID(), "client_ip", ip)

	c.Set(fiber.HeaderContentType, "text/event-stream; charset=utf-8")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	// One stream per TCP connection: when it ends (drain, write failure)
	// the connection goes too, rather than idling as keep-alive.
	fctx.SetConnectionClose()
	// fasthttp runs the stream writer in its own goroutine, writing into a
	// pipe that the connection's goroutine copies to the socket as chunks.
	fctx.SetBodyStreamWriter(sc.run)
	return nil
}

// parseTopicsParam splits "a,b" and checks every pattern.
func parseTopicsParam(q string) ([]string, error) {
	if strings.TrimSpace(q) == "" {
		return nil, errors.New(`query parameter "topics" is required: /sse?topics=web-1.cpu,*.mem`)
	}
	var patterns []string
	for _, p := range strings.Split(q, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if _, err := stream.ParsePattern(p); err != nil {
			return nil, err
		}
		patterns = append(patterns, p)
	}
	if len(patterns) == 0 {
		return nil, errors.New(`query parameter "topics" names no pattern`)
	}
	return patterns, nil
}

// parseMaxHzParam reads ?max_hz= (empty: no limit; else a positive number).
func parseMaxHzParam(q string) (float64, error) {
	if q == "" {
		return 0, nil
	}
	hz, err := strconv.ParseFloat(q, 64)
	if err != nil || !(hz > 0) || math.IsInf(hz, 0) {
		return 0, errors.New(`query parameter "max_hz" must be a positive number`)
	}
	return hz, nil
}

// sseConn is the stream.Conn of one SSE stream. WriteFrames encodes the
// events into out and leaves writing them to the stream-writer goroutine
// (run), so the bufio.Writer fasthttp gives run is only ever used by run,
// which also writes the heartbeats, and a flush loop never waits for an
// SSE client: while run is still writing an earlier batch and another
// waits in out, the session is parked (Backlogged, WaitWritable).
type sseConn struct {
	srv  *Server
	ip   string
	nc   net.Conn // the client's connection: write deadlines go here
	sess *stream.Session

	mu    sync.Mutex
	out   []byte        // events waiting for run
	spare []byte        // run's last batch buffer, for reuse
	busy  bool          // run is writing a batch
	kick  chan struct{} // out has something for run
	taken chan struct{} // run took out or finished a batch
	done  chan struct{} // closed by Close: run returns
	ended chan struct{} // closed when run has returned
	once  sync.Once
}

var _ stream.NonBlockingConn = (*sseConn)(nil)

// WriteFrames encodes the frames as events for the stream goroutine.
func (sc *sseConn) WriteFrames(frames []stream.Frame) error {
	select {
	case <-sc.done:
		return errClosed
	case <-sc.ended:
		return errClosed
	default:
	}
	sc.mu.Lock()
	for _, f := range frames {
		sc.out = appendEvent(sc.out, f)
	}
	sc.mu.Unlock()
	select {
	case sc.kick <- struct{}{}:
	default:
	}
	return nil
}

// Backlogged implements stream.NonBlockingConn: events wait behind a batch
// that is still being written.
func (sc *sseConn) Backlogged() bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.busy && len(sc.out) > 0
}

// WaitWritable implements stream.NonBlockingConn: it waits until run has
// taken the waiting events, at most the write timeout.
func (sc *sseConn) WaitWritable() error {
	timeout := time.NewTimer(sc.srv.cfg.WriteTimeout)
	defer timeout.Stop()
	for sc.Backlogged() {
		select {
		case <-sc.taken:
		case <-sc.done:
			return errClosed
		case <-sc.ended:
			return errClosed
		case <-timeout.C:
			return os.ErrDeadlineExceeded
		}
	}
	return nil
}

// take hands run the waiting events (nil if none) and marks it busy.
func (sc *sseConn) take() []byte {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	b := sc.out
	if len(b) == 0 {
		return nil
	}
	sc.out, sc.spare = sc.spare[:0], nil
	sc.busy = true
	return b
}

// written marks run's batch b written and keeps its buffer for reuse.
func (sc *sseConn) written(b []byte) {
	sc.mu.Lock()
	sc.busy = false
	if cap(b) <= 64<<10 {
		sc.spare = b[:0]
	}
	sc.mu.Unlock()
	select {
	case sc.taken <- struct{}{}:
	default:
	}
}

// Close ends the stream (the code and reason are not sent: SSE has no close
// frame; the client's EventSource reconnects). Idempotent.
func (sc *sseConn) Close(code int, reason string) error {
	sc.once.Do(func() { close(sc.done) })
	return nil
}

// shutdown implements liveConn. The stream's end must reach the client
// within closeTimeout: a client that stopped reading would otherwise hold
// fasthttp's write of it (and a drain) for the whole write timeout.
func (sc *sseConn) shutdown(code int, reason string) {
	_ = sc.Close(code, reason)
	sc.sess.Close(code, reason)
	if sc.nc != nil {
		_ = sc.nc.SetWriteDeadline(time.Now().Add(closeTimeout))
	}
}

// run is the body stream writer: it writes what WriteFrames hands it and a
// comment every heartbeat, and returns (ending the response) on Close or
// when a flush fails, which is how a client that went away shows up.
func (sc *sseConn) run(w *bufio.Writer) {
	s := sc.srv
	defer func() {
		close(sc.ended)
		sc.sess.Close(closeNormal, "")
		s.conns.remove(sc, true)
		s.conns.release(sc.ip)
		s.log.Debug("sse stream closed", "session", sc.sess.ID(), "client_ip", sc.ip)
	}()
	// Headers and a first line at once, so the client sees the stream open
	// even when no subscribed topic has a value yet.
	w.WriteString("retry: " + strconv.Itoa(sseRetryMS) + "\n: opsdash stream\n\n")
	if sc.flush(w) != nil {
		return
	}
	hb := time.NewTicker(s.cfg.Heartbeat)
	defer hb.Stop()
	for {
		select {
		case <-sc.kick:
			b := sc.take()
			if b == nil {
				continue
			}
			w.Write(b)
			err := sc.flush(w)
			sc.written(b)
			if err != nil {
				return
			}
		case <-hb.C:
			w.WriteString(": ping\n\n")
			if sc.flush(w) != nil {
				return
			}
		case <-sc.done:
			return
		}
	}
}

// flush sends what w holds with a fresh write deadline. The deadline is set
// on the client's socket, which fasthttp's goroutine writes; a stuck client
// makes that write fail, which closes the pipe under w and fails a later
// flush here.
func (sc *sseConn) flush(w *bufio.Writer) error {
	if sc.nc != nil {
		_ = sc.nc.SetWriteDeadline(time.Now().Add(sc.srv.cfg.WriteTimeout))
	}
	return w.Flush()
}

// appendEvent appends one frame as an SSE event: updates as "event:
// update" with "id: <topic>:<seq>", status changes as "event: status",
// anything else as the frame's own type. data is the WebSocket frame's
// JSON.
func appendEvent(w []byte, f stream.Frame) []byte {
	switch f.Type {
	case "update":
		w = append(w, "event: update\nid: "...)
		w = append(w, f.Topic...)
		w = append(w, ':')
		w = strconv.AppendUint(w, f.Seq, 10)
		w = append(w, '\n')
	case "status":
		w = append(w, "event: status\n"...)
	}
	// Encoded JSON has no raw newlines; should one ever appear, each line
	// goes on its own data: line, which the client joins back with "\n".
	data := f.JSON
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		w = append(w, "data: "...)
		w = append(w, data[:i]...)
		w = append(w, '\n')
		data = data[i+1:]
	}
	w = append(w, "data: "...)
	w = append(w, data...)
	return append(w, "\n\n"...)
}
