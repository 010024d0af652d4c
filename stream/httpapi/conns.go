package httpapi

import (
	"net/netip"
	"sync"
	"sync/atomic"
)

// refusal says why a new connection was refused by the limits.
type refusal int

const (
	refuseNone     refusal = iota
	refuseTotal            // MaxConns reached: WebSocket close 1013, SSE 503
	refusePerIP            // MaxConnsPerIP reached: WebSocket close 1008, SSE 429
	refuseDraining         // Drain called: 503 before any upgrade
)

func (r refusal) String() string {
	switch r {
	case refuseTotal:
		return "capacity"
	case refusePerIP:
		return "per_ip"
	case refuseDraining:
		return "draining"
	}
	return "none"
}

// liveConn is one WebSocket or SSE stream in the server's own registry:
// fasthttp neither tracks nor closes hijacked connections, and an SSE
// stream outlives its handler, so this registry is what Drain closes and
// what Conns counts.
type liveConn interface {
	// shutdown ends the connection with the close code (WebSocket) or ends
	// the stream (SSE). It does not wait for the handler to return.
	shutdown(code int, reason string)
}

// connSet is the registry of live connections together with the limits on
// them. Every admitted connection holds one slot until release.
type connSet struct {
	maxTotal, maxPerIP int

	mu       sync.Mutex
	live     map[liveConn]struct{}
	byIP     map[string]int // slots held per ClientKey of the client IP
	slots    int            // slots held in total: live plus being set up or torn down
	draining bool
	empty    chan struct{} // closed when draining and live is empty; nil before Drain

	ws, sse atomic.Int64 // live counts by kind, for Stats
}

func newConnSet(maxTotal, maxPerIP int) *connSet {
	return &connSet{
		maxTotal: maxTotal,
		maxPerIP: maxPerIP,
		live:     make(map[liveConn]struct{}),
		byIP:     make(map[string]int),
	}
}

// admit takes a slot for a connection from ip, or says why not. The slot
// is counted from here on (so concurrent handshakes cannot overshoot the
// limits) and must be given back with release. The per-IP limit counts
// ClientKey(ip): an IPv6 client by its /64.
func (s *connSet) admit(ip string) refusal {
	ip = ClientKey(ip)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.draining:
		return refuseDraining
	case s.maxTotal > 0 && s.slots >= s.maxTotal:
		return refuseTotal
	case s.maxPerIP > 0 && s.byIP[ip] >= s.maxPerIP:
		return refusePerIP
	}
	s.byIP[ip]++
	s.slots++
	return refuseNone
}

// add registers c, an SSE stream when sse is set and else a WebSocket,
// which admit let in, as live (its slot stays with the address admit
// counted it for). It returns false when Drain started since admit: the
// caller ends c at once.
func (s *connSet) add(c liveConn, sse bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.live[c] = struct{}{}
	if sse {
		s.sse.Add(1)
	} else {
		s.ws.Add(1)
	}
	return true
}

// remove takes c out of the live registry (idempotent per c).
func (s *connSet) remove(c liveConn, sse bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.live[c]; !ok {
		return
	}
	delete(s.live, c)
	if sse {
		s.sse.Add(-1)
	} else {
		s.ws.Add(-1)
	}
}

// release gives back the slot admit took for ip.
func (s *connSet) release(ip string) {
	ip = ClientKey(ip)
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.byIP[ip]; n <= 1 {
		delete(s.byIP, ip)
	} else {
		s.byIP[ip] = n - 1
	}
	s.slots--
	s.checkEmptyLocked()
}

func (s *connSet) checkEmptyLocked() {
	if s.empty != nil && s.slots == 0 {
		select {
		case <-s.empty:
		default:
			close(s.empty)
		}
	}
}

// isDraining reports whether drain was called.
func (s *connSet) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// count is the number of connections holding a slot (live ones and those
// still being set up or torn down).
func (s *connSet) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.slots
}

// drain refuses every later admit and returns the live connections (to be
// shut down outside the lock) and a channel closed once every slot is
// released.
func (s *connSet) drain() ([]liveConn, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.draining = true
	if s.empty == nil {
		s.empty = make(chan struct{})
	}
	s.checkEmptyLocked()
	conns := make([]liveConn, 0, len(s.live))
	for c := range s.live {
		conns = append(conns, c)
	}
	return conns, s.empty
}

// ClientKey is the key under which per-client limits count a client
// address (ip, as ClientIP returns it): an IPv6 address by its /64, which
// one host or home usually owns whole, so that walking through its
// addresses buys no extra allowance; an IPv4 address (IPv4-mapped ones
// included) as itself. Anything that does not parse is its own key.
func ClientKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.String()
		}
	}
	return a.String()
}
