package httpapi

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
)

// pingerSlots is how many groups the pinger spreads its connections over:
// each tick (a slot's share of the period) pings one group, so the pings of
// 10,000 connections do not all go out at the same instant.
const pingerSlots = 16

// pinger sends the heartbeat pings of a Server's WebSockets from one
// goroutine instead of a timer per connection (a time.Timer and its closure
// were about 400 bytes of every idle connection). It runs only while there
// are connections. A ping never waits for a client: over a sendConn it is
// written without blocking (or kept behind unsent bytes, see ping), and
// what could wait (a close, a flush) goes to a goroutine of its own.
type pinger struct {
	period time.Duration

	mu      sync.Mutex
	slots   [pingerSlots][]*wsConn
	next    int // slot the next connection joins
	count   int
	running bool
}

// add makes the pinger ping w every period.
func (p *pinger) add(w *wsConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.next
	p.next = (p.next + 1) % pingerSlots
	w.pingSlot, w.pingIndex = s, len(p.slots[s])
	p.slots[s] = append(p.slots[s], w)
	p.count++
	if !p.running {
		p.running = true
		go p.run()
	}
}

// remove stops pinging w (a no-op if it was never added).
func (p *pinger) remove(w *wsConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.pingSlot < 0 {
		return
	}
	sl := p.slots[w.pingSlot]
	last := len(sl) - 1
	sl[w.pingIndex] = sl[last]
	sl[w.pingIndex].pingIndex = w.pingIndex
	sl[last] = nil
	p.slots[w.pingSlot] = sl[:last]
	w.pingSlot = -1
	p.count--
}

// run pings one slot per tick until no connection is left.
func (p *pinger) run() {
	tick := time.NewTicker(p.period / pingerSlots)
	defer tick.Stop()
	var batch []*wsConn
	for s := 0; ; s = (s + 1) % pingerSlots {
		<-tick.C
		p.mu.Lock()
		if p.count == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		batch = append(batch[:0], p.slots[s]...)
		p.mu.Unlock()
		for i, w := range batch {
			w.pingShared()
			batch[i] = nil
		}
	}
}

// pingShared is one heartbeat ping from the pinger: it must not wait.
func (w *wsConn) pingShared() {
	w.life.RLock()
	if w.dead {
		w.life.RUnlock()
		return
	}
	err := w.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(w.srv.cfg.WriteTimeout))
	backlogged := err == nil && w.send.backlogged()
	w.life.RUnlock()
	switch {
	case err != nil:
		go w.pingFailed(err)
	case backlogged:
		// The ping is kept behind unsent bytes. A parked session's own
		// wait sends them; an idle one has none, so see them out here,
		// off the pinger, that a client that reads again gets the ping.
		go w.flushPing()
	}
}

// flushPing waits until the bytes kept behind a ping are sent.
func (w *wsConn) flushPing() {
	w.life.RLock()
	if w.dead {
		w.life.RUnlock()
		return
	}
	err := w.send.flush(time.Now().Add(w.srv.cfg.WriteTimeout))
	w.life.RUnlock()
	if err != nil {
		w.pingFailed(err)
	}
}

// pingFailed closes a connection whose ping could not be written.
func (w *wsConn) pingFailed(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		w.shutdown(closeWriteTimeout, "write timeout")
	} else {
		w.shutdown(closeNormal, "")
	}
}

// pingerFor returns the Server's pinger, made on first use with period.
func (s *Server) pingerFor(period time.Duration) *pinger {
	s.pingerOnce.Do(func() { s.pinger = &pinger{period: period} })
	return s.pinger
}
