package stream

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// Defaults of SessionConfig's zero fields (see NoLimit for the rule);
// DefaultSessionConfig returns them all.
const (
	DefaultMaxSubscriptions  = 100
	DefaultRequestsPerSecond = 20
	DefaultRequestBurst      = 40
	DefaultRateLimitStrikes  = 10
	DefaultReplyQueue        = 16
)

// Frame is one frame handed to a Conn.
type Frame struct {
	// Type is "update", "status" or "reply" (hello, subscribed,
	// unsubscribed, topics, pong, error).
	Type string
	// Topic is set for update and status frames.
	Topic string
	// Seq is set for update frames.
	Seq uint64
	// JSON is the complete JSON object of the WebSocket frame, on one line.
	// It is shared between sessions: read-only, and not to be kept after
	// WriteFrames returns unless copied.
	JSON []byte
}

// Conn is the write side of one client's transport (WebSocket or SSE),
// implemented at the edge.
type Conn interface {
	// WriteFrames sends frames in order with as few write syscalls as it can
	// (one flush per call), each frame its own WebSocket text message / SSE
	// event. It returns an error if the transport failed or the write
	// deadline passed. The session calls it from one goroutine at a time and
	// does not touch frames until it returns.
	WriteFrames(frames []Frame) error
	// Close ends the transport with a WebSocket close code and reason; SSE
	// ends the stream. Safe to call more than once and concurrently with
	// WriteFrames.
	Close(code int, reason string) error
}

// SessionConfig configures one session. Zero fields take the defaults above
// (the zero rule: see NoLimit).
type SessionConfig struct {
	// ID is the connection id (hello "session"); generated when "".
	ID string
	// Heartbeat is advertised as heartbeat_ms in hello.
	Heartbeat time.Duration
	// MaxSubscriptions caps the patterns of one connection (NoLimit: no
	// cap); a subscribe past it gets too_many_subscriptions and subscribes
	// nothing.
	MaxSubscriptions int
	// RequestsPerSecond is the token bucket rate for client requests
	// (NoLimit: no rate limit); a request without a token gets
	// rate_limited.
	RequestsPerSecond float64
	// RequestBurst is the bucket size (default 40).
	RequestBurst int
	// RateLimitStrikes is how many consecutive rate_limited replies a client
	// gets; the next refused request makes Handle return *CloseError{1008}
	// (default 10). An accepted request resets the count.
	RateLimitStrikes int
	// ReplyQueue is the length of the reply FIFO (default 16); Handle blocks
	// while it is full, which stops the edge reading that client.
	ReplyQueue int
}

// DefaultSessionConfig returns the documented default limits, which a
// zero SessionConfig gets too.
func DefaultSessionConfig() SessionConfig {
	return SessionConfig{
		MaxSubscriptions:  DefaultMaxSubscriptions,
		RequestsPerSecond: DefaultRequestsPerSecond,
		RequestBurst:      DefaultRequestBurst,
		RateLimitStrikes:  DefaultRateLimitStrikes,
		ReplyQueue:        DefaultReplyQueue,
	}
}

// CloseWriteTimeout is the application close code of a session whose writes
// failed or stayed stuck past the write deadline.
const CloseWriteTimeout = 4008

// CloseRateLimit is the close code Handle asks for when a client keeps
// sending past rate_limited (policy violation).
const CloseRateLimit = 1008

// Session is one client connection: its patterns, its conflating mailbox
// (newest pending value per topic), its reply FIFO and, only while something
// is pending, one writer goroutine that drains both into Conn.WriteFrames.
type Session struct {
	r          *Registry
	conn       Conn
	cfg        SessionConfig
	id         string
	order      uint64 // place in every topic's route list (subscribersLocked)
	done       chan struct{}
	replySpace chan struct{} // signalled by the writer when it took the replies
	// writeFn is s.writeLoop, made once in Open: "go s.writeLoop()" would
	// allocate a closure at every writer start, which in a fan-out is once
	// per subscriber per published value.
	writeFn func()

	mu      sync.Mutex
	closed  bool
	writing bool      // a writer goroutine runs (or is starting)
	pats    []Pattern // distinct patterns
	mailbox

	// rate limiting (guarded by mu)
	tokens  float64
	last    time.Time
	strikes int
	now     func() time.Time // the rate limiter's clock (tests replace it)
}

// Open registers a session for conn. Nothing is written until Hello, Handle
// or Subscribe queue something. A writer goroutine exists only while frames
// are pending.
func (r *Registry) Open(conn Conn, cfg SessionConfig) *Session {
	if cfg.MaxSubscriptions == 0 {
		cfg.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if cfg.RequestsPerSecond == 0 {
		cfg.RequestsPerSecond = DefaultRequestsPerSecond
	}
	if cfg.RequestBurst <= 0 {
		cfg.RequestBurst = DefaultRequestBurst
	}
	if cfg.RateLimitStrikes <= 0 {
		cfg.RateLimitStrikes = DefaultRateLimitStrikes
	}
	if cfg.ReplyQueue <= 0 {
		cfg.ReplyQueue = DefaultReplyQueue
	}
	s := &Session{
		r:          r,
		conn:       conn,
		cfg:        cfg,
		id:         cfg.ID,
		order:      scramble(r.nextOrder.Add(1)),
		done:       make(chan struct{}),
		replySpace: make(chan struct{}, 1),
		tokens:     float64(cfg.RequestBurst),
		last:       time.Now(),
		now:        time.Now,
	}
	if s.id == "" {
		s.id = strconv.FormatUint(r.nextID.Add(1), 10)
	}
	s.writeFn = s.writeLoop
	r.sessMu.Lock()
	r.sessions[s] = struct{}{}
	r.sessMu.Unlock()
	r.st.opened.Add(1)
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
	s.reply(kindHello, encodeHello(s.id, s.r.instance, s.r.cfg.Host, s.cfg.Heartbeat.Milliseconds()))
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
		s.r.st.rateLimited.Add(1)
		s.mu.Lock()
		s.strikes++
		over := s.strikes > s.cfg.RateLimitStrikes
		s.mu.Unlock()
		if over {
			s.r.st.rateLimitCloses.Add(1)
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
		s.subscribe(req.Topics, req.ID, true)
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
	now := s.now()
	s.tokens = min(float64(s.cfg.RequestBurst), s.tokens+now.Sub(s.last).Seconds()*s.cfg.RequestsPerSecond)
	s.last = now
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	s.strikes = 0
	return true
}

// waitReplySpace blocks while the reply FIFO is full. It returns false when
// the session is closed.
func (s *Session) waitReplySpace() bool {
	for {
		s.mu.Lock()
		closed, full := s.closed, len(s.replies) >= s.cfg.ReplyQueue
		s.mu.Unlock()
		if closed {
			return false
		}
		if !full {
			return true
		}
		select {
		case <-s.replySpace:
		case <-s.done:
			return false
		}
	}
}

func (s *Session) replyError(id, code, msg string) {
	s.reply(kindError, encodeError(id, code, msg))
}

// reply queues a reply frame and makes sure a writer runs.
func (s *Session) reply(kind frameKind, b []byte) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.replies = append(s.replies, reply{kind, b})
	start := s.kickLocked()
	s.mu.Unlock()
	if start {
		s.startWriter()
	}
}

// Subscribe adds patterns without a reply (SSE): the snapshot of every
// matching topic with a value is queued at once, then live updates follow.
// Errors: ErrInvalidTopic (nothing subscribed), ErrTooManySubscriptions,
// ErrSessionClosed.
func (s *Session) Subscribe(patterns []string) error {
	return s.subscribe(patterns, "", false)
}

// subscribe adds the patterns and queues the
// "subscribed" reply (withReply) before the snapshot, all under s.mu, so a
// concurrent publish of a newly matched topic lands after the snapshot in
// the mailbox (and replaces it if newer).
func (s *Session) subscribe(patterns []string, id string, withReply bool) error {
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
	snap, demand := s.r.addPatterns(s, add)
	if withReply {
		s.replies = append(s.replies, reply{kindSubscribed, encodeTopicsReply("subscribed", id, patterns)})
	}
	for _, f := range snap {
		s.offerUpdateLocked(f.st, f.seq, f.frame)
	}
	start := s.kickLocked()
	s.mu.Unlock()
	s.r.st.subscriptions.Add(int64(len(add)))
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
		var unrouted []*subTopic
		unrouted, demand = s.r.removePatterns(s, removed, s.pats)
		// Stop every topic no remaining pattern matches.
		for _, st := range unrouted {
			s.dropTopicLocked(st, &s.r.st.dropUnsub)
		}
		// A pending value of a topic that expired but that the expiry has
		// not yet made the session forget is not among the routes any more:
		// drop it too, so nothing of it follows "unsubscribed".
		for i := 0; i < len(s.pending); {
			if st := s.pending[i]; st.t.removed.Load() && !matchAny(s.pats, st.t.name) {
				s.dropTopicLocked(st, &s.r.st.dropUnsub) // removes s.pending[i]
				continue
			}
			i++
		}
	}
	s.replies = append(s.replies, reply{kindUnsubscribed, encodeTopicsReply("unsubscribed", id, patterns)})
	start := s.kickLocked()
	s.mu.Unlock()
	s.r.st.subscriptions.Add(-int64(len(removed)))
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
	dropped := 0
	for _, st := range s.pending {
		if st.update != nil {
			dropped++
		}
	}
	s.pending, s.replies = nil, nil
	pats := s.pats
	s.pats = nil
	s.mu.Unlock()

	s.r.st.dropClosed.Add(uint64(dropped))
	s.r.st.subscriptions.Add(-int64(len(pats)))
	demand := s.r.removeSession(s, pats)
	s.r.notifyDemand(demand)
	s.r.sessMu.Lock()
	delete(s.r.sessions, s)
	s.r.sessMu.Unlock()
	s.r.st.closed.Add(1)
	_ = s.conn.Close(code, reason)
	close(s.done) // last: when Done fires, the session is gone and its conn closed
}

func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// writeFailed closes the session after a failed WriteFrames.
func (s *Session) writeFailed(err error) {
	if s.isClosed() {
		return // closed meanwhile: the failure is the close's doing
	}
	s.r.st.writeErrors.Add(1)
	reason := "write failed"
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		s.r.st.writeTimeouts.Add(1)
		reason = "write timeout"
	}
	s.r.log.Debug("stream: write failed, closing session", "session", s.id, "err", err)
	s.Close(CloseWriteTimeout, reason)
}

func (s *Session) hasPatternLocked(raw string) bool { return containsPattern(s.pats, raw) }

func containsPattern(ps []Pattern, raw string) bool {
	for _, p := range ps {
		if p.raw == raw {
			return true
		}
	}
	return false
}

func matchAny(ps []Pattern, name string) bool {
	for _, p := range ps {
		if p.Match(name) {
			return true
		}
	}
	return false
}

// ---- registry side of subscriptions (lock order: Session.mu, then Registry.mu) ----

type snapFrame struct {
	st    *subTopic
	seq   uint64
	frame []byte
}

// addPatterns indexes s's new patterns and routes the matching topics to s.
// It returns the snapshot (latest value of each topic that was not flowing
// to s yet) and the topics that gained their first subscriber. s.mu is held.
func (r *Registry) addPatterns(s *Session, add []Pattern) (snap []snapFrame, demand []*topic) {
	if len(add) == 0 {
		return nil, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range add {
		e := r.patterns[p.raw]
		if e == nil {
			e = &patternEntry{pat: p, sessions: make(map[*Session]struct{})}
			r.patterns[p.raw] = e
		}
		e.sessions[s] = struct{}{}
	}
	consider := func(t *topic) {
		if t.subs[s] != nil {
			return // already flowing through another pattern: no second snapshot
		}
		st := &subTopic{t: t}
		t.subs[s] = st
		t.subsList = nil
		if len(t.subs) == 1 {
			demand = append(demand, t)
		}
		if t.seq > 0 && t.frame != nil {
			snap = append(snap, snapFrame{st, t.seq, t.frame})
		}
	}
	for _, p := range add {
		if p.Literal() {
			if t := r.topics[p.raw]; t != nil {
				consider(t)
			}
			continue
		}
		for _, t := range r.topics {
			if p.Match(t.name) {
				consider(t)
			}
		}
	}
	return snap, demand
}

// removePatterns unindexes s's removed patterns and unroutes the topics that
// none of s's remaining patterns match. It returns the unrouted topics'
// mailbox slots, which the caller (holding s.mu) drops, and the topics that
// lost their last subscriber.
func (r *Registry) removePatterns(s *Session, removed, remaining []Pattern) (unrouted []*subTopic, demand []*topic) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range removed {
		if e := r.patterns[p.raw]; e != nil {
			delete(e.sessions, s)
			if len(e.sessions) == 0 {
				delete(r.patterns, p.raw)
			}
		}
	}
	for _, t := range r.topics {
		st := t.subs[s]
		if st == nil || matchAny(remaining, t.name) {
			continue
		}
		delete(t.subs, s)
		t.subsList = nil
		unrouted = append(unrouted, st)
		if len(t.subs) == 0 {
			demand = append(demand, t)
		}
	}
	return unrouted, demand
}

// removeSession unroutes a closed session (whose patterns were pats) from
// every pattern and topic: removePatterns with no pattern remaining. The
// slots need no dropping: a closed session takes no offer.
func (r *Registry) removeSession(s *Session, pats []Pattern) (demand []*topic) {
	_, demand = r.removePatterns(s, pats, nil)
	return demand
}
