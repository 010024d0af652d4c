package stream

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/opsdash/opsdash/stream/ratelimit"
)

var (
	// ErrTooManySubscriptions means a subscription would take a session past
	// SessionConfig.MaxSubscriptions patterns; nothing was subscribed.
	ErrTooManySubscriptions = errors.New("too many subscriptions")
	// ErrSessionClosed is returned by Subscribe on a closed session.
	ErrSessionClosed = errors.New("session closed")
)

// Session is one client connection: its patterns, its conflating mailbox
// (newest pending value per topic) and its reply FIFO, which its flush loop
// (flush.go) drains into Conn.WriteFrames while something is pending.
type Session struct {
	r          *Registry
	conn       Conn
	cfg        SessionConfig
	id         string
	order      uint64 // place in every topic's route list (subscribersLocked)
	done       chan struct{}
	replySpace chan struct{} // signalled by the writer when it took the replies
	f          *flusher      // the flush loop that writes this session

	// mu guards what follows and the mailbox's slots. Lock order: taken
	// before Registry.mu (a subscribe holds both), never while Registry.mu
	// is held; the flush loop releases it across Conn.WriteFrames.
	mu          sync.Mutex
	closed      bool
	wstate      wstate     // where writing stands (writer.go)
	windowSeq   uint32     // numbers the session's windows (recentEntry.seq)
	windowEnd   int64      // when the current window ends (flush clock)
	urgent      bool       // something offered in the window must not wait for its end (writer.go)
	earlyValues            // values kept in a window instead of conflated (early.go)
	pats        []Pattern  // distinct patterns
	rates       *rateState // max_hz (rate.go); nil until a subscribe asks for one
	mailbox

	// rate limiting (guarded by mu)
	requests ratelimit.Bucket
	strikes  int
	now      func() time.Time // the rate limiter's clock (tests replace it)
}

// Open registers a session for conn. Nothing is written until Hello, Handle
// or Subscribe queue something; the session then gets turns on one of the
// registry's flush loops.
func (r *Registry) Open(conn Conn, cfg SessionConfig) *Session {
	cfg = cfg.withDefaults()
	s := &Session{
		r:          r,
		conn:       conn,
		cfg:        cfg,
		id:         cfg.ID,
		order:      scramble(r.nextOrder.Add(1)),
		done:       make(chan struct{}),
		replySpace: make(chan struct{}, 1),
		now:        time.Now,
	}
	if s.id == "" {
		s.id = strconv.FormatUint(r.nextID.Add(1), 10)
	}
	s.f = r.flush.loopFor(s.order)
	r.sessMu.Lock()
	r.sessions[s] = struct{}{}
	r.sessMu.Unlock()
	r.counters.opened.Add(1)
	return s
}

// scramble maps a counter onto a unique, well-spread order key (the
// splitmix64 finalizer: a bijection, so keys never collide). Topics' route
// lists are sorted by it; scrambled, the order in which a fan-out reaches
// the sessions does not follow how old their connections are.
func scramble(x uint64) uint64 {
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// ID returns the session id (hello "session").
func (s *Session) ID() string { return s.id }

// Done is closed when the session ends (Close, or a failed write).
func (s *Session) Done() <-chan struct{} { return s.done }

// Hello queues the hello frame. The edge calls it first, for WebSocket
// sessions only.
func (s *Session) Hello() {
	s.reply(kindHello, encodeHello(s.id, s.r.Instance(), s.r.cfg.Host, s.r.cfg.Replica, s.cfg.Heartbeat.Milliseconds()))
}

// Handle processes one client text frame (a protocol v1 request). Bad
// requests get an error reply and a nil return. It returns a *CloseError
// when the client broke a limit; the edge then closes the connection with
// that code (Session.Close). It blocks while the reply FIFO is full, and
// returns nil at once on a closed session.
func (s *Session) Handle(msg []byte) error {
	if !s.waitReplySpace() {
		return nil
	}
	req, err := DecodeRequest(msg)
	var rerr *RequestError
	if err != nil {
		rerr = err.(*RequestError)
		req.ID = rerr.ID
	}
	if !s.allow() {
		s.r.counters.rateLimited.Add(1)
		s.mu.Lock()
		s.strikes++
		over := s.strikes > s.cfg.RateLimitStrikes
		s.mu.Unlock()
		if over {
			s.r.counters.rateLimitCloses.Add(1)
			s.awaitRepliesWritten() // the close comes after every rate_limited reply
			return &CloseError{Code: CloseRateLimit, Reason: "rate limit exceeded"}
		}
		s.replyError(req.ID, CodeRateLimited, fmt.Sprintf("more than %g requests per second; slow down", s.cfg.RequestsPerSecond))
		return nil
	}
	if rerr != nil {
		s.replyError(rerr.ID, rerr.Code, rerr.Message)
		return nil
	}
	switch req.Type {
	case TypeSubscribe:
		s.subscribe(req.Topics, req.ID, true, req.MaxHz)
	case TypeUnsubscribe:
		s.unsubscribe(req.Topics, req.ID)
	case TypeList:
		s.reply(kindTopics, encodeList(req.ID, s.r.Topics()))
	case TypePing:
		s.reply(kindPong, encodePong(req.ID))
	}
	return nil
}

// allow takes a token from the request bucket and resets the strike count
// when it got one.
func (s *Session) allow() bool {
	if s.cfg.RequestsPerSecond <= 0 {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ok, _ := s.requests.Take(ratelimit.Limit{Rate: s.cfg.RequestsPerSecond, Burst: float64(s.cfg.RequestBurst)}, s.now())
	if ok {
		s.strikes = 0
	}
	return ok
}

func (s *Session) replyError(id, code, msg string) {
	s.reply(kindError, encodeError(id, code, msg))
}

// Subscribe adds patterns without a reply (SSE): the snapshot of every
// matching topic with a value is queued at once, then live updates follow.
// Errors: ErrInvalidTopic (nothing subscribed), ErrTooManySubscriptions,
// ErrSessionClosed.
func (s *Session) Subscribe(patterns []string) error {
	return s.subscribe(patterns, "", false, 0)
}

// SubscribeMaxHz is Subscribe with a rate: each topic of patterns reaches
// the session at most maxHz times per second, the newest value each time
// (0: no limit; see rate.go). SSE's ?max_hz= comes here.
func (s *Session) SubscribeMaxHz(patterns []string, maxHz float64) error {
	return s.subscribe(patterns, "", false, maxHz)
}

// subscribe adds the patterns and queues the
// "subscribed" reply (withReply) before the snapshot, all under s.mu, so a
// concurrent publish of a newly matched topic lands after the snapshot in
// the mailbox (and replaces it if newer).
func (s *Session) subscribe(patterns []string, id string, withReply bool, maxHz float64) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrSessionClosed
	}
	var add []Pattern
	for _, raw := range patterns {
		if s.hasPatternLocked(raw) || containsPattern(add, raw) {
			continue
		}
		p, err := ParsePattern(raw)
		if err != nil { // nothing is changed before every pattern parsed
			s.mu.Unlock()
			return err
		}
		add = append(add, p)
	}
	if m := s.cfg.MaxSubscriptions; m > 0 && len(s.pats)+len(add) > m {
		s.mu.Unlock()
		if withReply {
			s.replyError(id, CodeTooManySubscriptions,
				fmt.Sprintf("at most %d patterns per connection; this request would make %d", m, len(s.pats)+len(add)))
		}
		return fmt.Errorf("%w: at most %d patterns per connection", ErrTooManySubscriptions, m)
	}
	s.pats = append(s.pats, add...)
	s.setRatesLocked(patterns, maxHz)
	snap, demand := s.r.addPatterns(s, add)
	if withReply {
		s.replies = append(s.replies, reply{kindSubscribed, encodeTopicsReply("subscribed", id, patterns)})
	}
	offered := 0
	for _, f := range snap {
		if f.status != nil { // sent before the value, as a status change is
			f.slot.status = f.status
			s.queueLocked(f.slot)
		}
		if f.frame != nil {
			s.offerUpdateLocked(f.slot, f.seq, f.frame)
			offered++
		}
	}
	start := s.kickLocked()
	s.mu.Unlock()
	// A snapshot value is offered like a published one, so that every
	// update sent or dropped was counted as offered first (stats.go).
	s.r.counters.offered.Add(uint64(offered))
	s.r.counters.subscriptions.Add(int64(len(add)))
	if start {
		s.startWriter()
	}
	s.r.notifyDemand(demand)
	return nil
}

// unsubscribe removes the exact patterns (valid, already checked) and
// queues "unsubscribed". Topics no other pattern matches stop at once: their
// pending values are dropped before the reply is queued.
func (s *Session) unsubscribe(patterns []string, id string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	var removed []Pattern
	for _, raw := range patterns {
		for i, p := range s.pats {
			if p.raw == raw {
				removed = append(removed, p)
				s.pats = append(s.pats[:i], s.pats[i+1:]...)
				break
			}
		}
	}
	var demand []*topic
	if len(removed) > 0 {
		var unrouted []*slot
		unrouted, demand = s.r.removePatterns(s, removed, s.pats)
		s.ratesRemovedLocked(removed)
		// Stop every topic no remaining pattern matches.
		for _, sl := range unrouted {
			s.dropSlotLocked(sl, &s.r.counters.dropUnsub)
		}
		// A pending value of a topic that expired but that the expiry has
		// not yet made the session forget is not among the routes any more:
		// drop it too, so nothing of it follows "unsubscribed".
		for i := 0; i < len(s.pending); {
			if sl := s.pending[i]; sl.t.removed.Load() && !matchAny(s.pats, sl.t.name) {
				s.dropSlotLocked(sl, &s.r.counters.dropUnsub) // removes s.pending[i]
				continue
			}
			i++
		}
	}
	s.replies = append(s.replies, reply{kindUnsubscribed, encodeTopicsReply("unsubscribed", id, patterns)})
	start := s.kickLocked()
	s.mu.Unlock()
	s.r.counters.subscriptions.Add(-int64(len(removed)))
	if start {
		s.startWriter()
	}
	s.r.notifyDemand(demand)
}

// Close ends the session: unsubscribes everything, drops pending frames,
// lets the writer stop, calls conn.Close(code, reason), then closes Done.
// Idempotent; only the first call's code and reason are used.
func (s *Session) Close(code int, reason string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	dropped := len(s.early)
	for _, sl := range s.pending {
		if sl.update != nil {
			dropped++
		}
	}
	s.early = nil
	s.pending, s.replies = nil, nil
	if s.wstate != wIdle {
		s.idleLocked()
	}
	dropped += s.stopRatesLocked()
	pats := s.pats
	s.pats = nil
	s.mu.Unlock()

	s.r.counters.dropClosed.Add(uint64(dropped))
	s.r.counters.subscriptions.Add(-int64(len(pats)))
	demand := s.r.removeSession(s, pats)
	s.r.notifyDemand(demand)
	s.r.sessMu.Lock()
	delete(s.r.sessions, s)
	s.r.sessMu.Unlock()
	s.r.counters.closed.Add(1)
	_ = s.conn.Close(code, reason)
	close(s.done) // last: when Done fires, the session is gone and its conn closed
}

func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Session) hasPatternLocked(raw string) bool { return containsPattern(s.pats, raw) }
