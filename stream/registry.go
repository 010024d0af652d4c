package stream

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opsdash/opsdash/collectors"
)

// Defaults of RegistryConfig's zero fields (see NoLimit for the rule).
const (
	DefaultHistoryLen   = 300
	DefaultHistoryBytes = 1 << 20
	DefaultMaxTopics    = 1000
	DefaultPublishedTTL = 10 * time.Minute
	// DefaultMaxValueBytes and DefaultPublishedHistoryBytes bound what a
	// topic created through the publish API holds: with DefaultMaxTopics,
	// published topics hold at most about 1000 × 3 × 64 KiB (latest value,
	// its update frame, history) instead of gigabytes.
	DefaultMaxValueBytes         = 64 << 10
	DefaultPublishedHistoryBytes = 64 << 10
)

// Topic statuses, as shown in lists and "status" frames.
const (
	StatusPending = "pending" // declared, no sample yet
	StatusOK      = "ok"
	StatusFailing = "failing" // the last collection failed; Error says why
	StatusIdle    = "idle"    // on-demand topic that nobody subscribes to
)

// ErrInvalidData is returned by PublishJSON when data is not one JSON object.
var ErrInvalidData = errors.New("data must be a JSON object")

// ErrValueTooLarge is returned by PublishJSON when data is larger than
// RegistryConfig.MaxValueBytes.
var ErrValueTooLarge = errors.New("value too large")

// RegistryConfig configures a Registry. Zero fields take the defaults above
// (the zero rule: see NoLimit); Demand, Logger and WriteObserver are
// optional.
type RegistryConfig struct {
	// Host is the local host id: the first token of the collectors' topics,
	// which the publish API may not use.
	Host string
	// Instance identifies this server process start (hello "instance");
	// generated when "".
	Instance string
	// HistoryLen is how many values each topic keeps for ?history=N
	// (default 300, including the latest).
	HistoryLen int
	// HistoryBytes bounds the JSON bytes one topic's history holds
	// (default 1 MiB; the oldest values go first; the latest is always kept).
	// It keeps a topic with large payloads (proc.top, a published topic)
	// from holding HistoryLen large values.
	HistoryBytes int
	// MaxValueBytes caps the compacted JSON of one value published through
	// PublishJSON (ErrValueTooLarge). 0 means DefaultMaxValueBytes, NoLimit
	// no cap. Collectors' samples are not capped.
	MaxValueBytes int
	// PublishedHistoryBytes is HistoryBytes for topics created through
	// PublishJSON (default DefaultPublishedHistoryBytes): there can be
	// MaxTopics of them, and their payloads are anyone's choice.
	PublishedHistoryBytes int
	// MaxTopics caps topics created through PublishJSON. 0 means
	// DefaultMaxTopics, NoLimit no cap.
	MaxTopics int
	// PublishedTTL: a topic created through PublishJSON that is not
	// published for this long disappears (default 10 minutes).
	PublishedTTL time.Duration
	// Demand is called when a topic gains its first (true) or loses its last
	// (false) subscriber; the collectors' scheduler uses it for on-demand
	// topics. It is never called with a lock of the registry held, calls are
	// not concurrent, and the last call for a topic reflects its current
	// state. It should return quickly.
	Demand func(topic string, subscribed bool)
	// Logger receives warnings (a sample that cannot be encoded...);
	// slog.Default() when nil.
	Logger *slog.Logger
	// WriteObserver, when set, is told how long each Conn.WriteFrames call
	// took and how many frames it carried, failed calls included (see
	// observe.go). It runs on the writer goroutines and must be quick.
	WriteObserver func(d time.Duration, frames int)
}

// Registry is the hub: topics with their latest value, bounded history and
// status; the sessions subscribed to them by pattern. It implements
// collectors.Sink and collectors.Tracker. All methods are safe for
// concurrent use.
//
// Routing: each topic keeps the set of sessions that have a pattern matching
// it, each with that session's mailbox slot for the topic (a route),
// computed when the topic appears or a pattern is added (topics are few and
// change rarely), so a publish is: lock, bump seq, encode once, take the
// topic's route slice, unlock, offer the shared bytes to each route's slot.
// No per-subscriber lookup: at 10,000 subscribers a map lookup per offer was
// an eighth of the server's CPU.
type Registry struct {
	cfg      RegistryConfig
	instance string
	log      *slog.Logger
	now      func() time.Time

	mu        sync.RWMutex
	topics    map[string]*topic
	patterns  map[string]*patternEntry // distinct subscribed patterns → sessions
	published int                      // topics created through PublishJSON
	// tombstones keep the last seq of expired topics so a topic that
	// reappears continues its seq instead of starting over (bounded).
	tombstones map[string]uint64

	// demand delivery: one goroutine at a time delivers, others queue.
	demandMu    sync.Mutex
	demandBusy  bool
	demandDirty []*topic

	sessMu    sync.Mutex
	sessions  map[*Session]struct{}
	nextID    atomic.Uint64
	nextOrder atomic.Uint64 // source of Session.order

	st counters
}

var (
	_ collectors.Sink    = (*Registry)(nil)
	_ collectors.Tracker = (*Registry)(nil)
)

// topic is one topic's state. Fields are guarded by Registry.mu unless noted.
type topic struct {
	name        string
	interval    time.Duration
	description string
	onDemand    bool
	declared    bool // through Declare (never expires)
	published   bool // created through PublishJSON (counts against MaxTopics, expires)
	lastPublish time.Time

	failing bool
	errMsg  string

	seq   uint64
	ts    int64
	data  json.RawMessage
	frame []byte // latest update frame, shared read-only by every session
	hist  ring

	// subs maps each session the topic flows to onto its mailbox slot for
	// the topic. A slot is created with the route (a pattern added, or the
	// topic appearing while a pattern matches it) and dropped with it.
	subs     map[*Session]*subTopic
	subsList []route // immutable snapshot of subs, nil when it must be rebuilt

	removed atomic.Bool // expired; read by sessions without Registry.mu

	demandReported bool // guarded by the demand delivery (demandBusy)
}

// route is one session a topic flows to and the session's mailbox slot for
// that topic, so that a publish reaches the slot without a lookup.
type route struct {
	s  *Session
	st *subTopic
}

type patternEntry struct {
	pat      Pattern
	sessions map[*Session]struct{}
}

// NewRegistry returns an empty registry. Call Run to expire published topics.
func NewRegistry(cfg RegistryConfig) *Registry {
	if cfg.HistoryLen <= 0 {
		cfg.HistoryLen = DefaultHistoryLen
	}
	if cfg.HistoryBytes <= 0 {
		cfg.HistoryBytes = DefaultHistoryBytes
	}
	if cfg.MaxTopics == 0 {
		cfg.MaxTopics = DefaultMaxTopics
	}
	if cfg.MaxValueBytes == 0 {
		cfg.MaxValueBytes = DefaultMaxValueBytes
	}
	if cfg.PublishedHistoryBytes <= 0 {
		cfg.PublishedHistoryBytes = DefaultPublishedHistoryBytes
	}
	if cfg.PublishedTTL <= 0 {
		cfg.PublishedTTL = DefaultPublishedTTL
	}
	r := &Registry{
		cfg:        cfg,
		instance:   cfg.Instance,
		log:        cfg.Logger,
		now:        time.Now,
		topics:     make(map[string]*topic),
		patterns:   make(map[string]*patternEntry),
		tombstones: make(map[string]uint64),
		sessions:   make(map[*Session]struct{}),
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.instance == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		r.instance = hex.EncodeToString(b[:])
	}
	return r
}

// Host returns the local host id.
func (r *Registry) Host() string { return r.cfg.Host }

// Instance returns the id of this server process start.
func (r *Registry) Instance() string { return r.instance }

// newTopicLocked creates topic name and routes it to every session with a
// matching pattern. r.mu must be held for writing.
//
// The routes' mailbox slots are created here without the sessions' locks
// (the lock order is Session.mu, then Registry.mu): a new slot is zero, and
// a session reaches it only through the topic's routes, which r.mu guards.
func (r *Registry) newTopicLocked(name string) *topic {
	t := &topic{name: name, subs: make(map[*Session]*subTopic)}
	if seq, ok := r.tombstones[name]; ok {
		t.seq = seq
		delete(r.tombstones, name)
	}
	for _, e := range r.patterns {
		if e.pat.Match(name) {
			for s := range e.sessions {
				if t.subs[s] == nil {
					t.subs[s] = &subTopic{t: t}
				}
			}
		}
	}
	r.topics[name] = t
	return t
}

// subscribersLocked returns the topic's routes as a slice that is never
// modified afterwards, so it can be used after r.mu is released. It is
// rebuilt only after the set changed, which is rare next to publishes.
//
// The routes are sorted by Session.order, the same order in every topic, so
// a batch can merge its topics' lists session by session without a map
// (batch.deliver).
func (t *topic) subscribersLocked() []route {
	if t.subsList == nil && len(t.subs) > 0 {
		l := make([]route, 0, len(t.subs))
		for s, st := range t.subs {
			l = append(l, route{s, st})
		}
		slices.SortFunc(l, func(a, b route) int { return cmp.Compare(a.s.order, b.s.order) })
		t.subsList = l
	}
	return t.subsList
}

// statusLocked derives the topic's status.
func (t *topic) statusLocked() string {
	switch {
	case t.onDemand && len(t.subs) == 0:
		return StatusIdle
	case t.failing:
		return StatusFailing
	case t.seq == 0 || t.data == nil:
		return StatusPending
	}
	return StatusOK
}

// Declare announces a topic so lists show it before its first sample. It
// implements collectors.Tracker. Declaring an existing topic updates its
// metadata; a declared topic never expires.
func (r *Registry) Declare(info collectors.TopicInfo) {
	if !ValidTopic(info.Name) {
		r.log.Warn("stream: declare: invalid topic name", "topic", info.Name)
		return
	}
	r.mu.Lock()
	t := r.topics[info.Name]
	if t == nil {
		t = r.newTopicLocked(info.Name)
	}
	if t.published {
		t.published = false
		r.published--
	}
	t.declared = true
	t.interval, t.description, t.onDemand = info.Interval, info.Description, info.OnDemand
	notify := len(t.subs) > 0
	r.mu.Unlock()
	if notify {
		r.notifyDemand([]*topic{t})
	}
}

// SetStatus records a topic's health (err nil: ok) and sends a "status"
// frame to the topic's subscribers when the status or error changed. It
// implements collectors.Tracker. An unknown topic is created, so a failure
// of an undeclared topic is still visible.
func (r *Registry) SetStatus(name string, err error) {
	if !ValidTopic(name) {
		r.log.Warn("stream: set status: invalid topic name", "topic", name)
		return
	}
	failing, msg := err != nil, ""
	if failing {
		msg = err.Error()
	}
	r.mu.Lock()
	t := r.topics[name]
	created := false
	if t == nil {
		t = r.newTopicLocked(name)
		created = true
	} else if t.failing == failing && t.errMsg == msg {
		r.mu.Unlock()
		return
	}
	t.failing, t.errMsg = failing, msg
	frame := encodeStatus(name, t.statusLocked(), msg)
	subs := t.subscribersLocked()
	r.mu.Unlock()
	if created && len(subs) > 0 {
		r.notifyDemand([]*topic{t})
	}
	for _, rt := range subs {
		rt.s.offerStatus(rt.st, frame)
	}
}

// Publish stores a collector's sample as the topic's latest value and offers
// it to every matching session. It implements collectors.Sink and never
// blocks on a subscriber. A sample with an invalid topic or data that
// cannot be encoded as JSON is logged and dropped.
func (r *Registry) Publish(s collectors.Sample) {
	r.publishSample(s, nil)
}

// PublishBatch publishes samples taken together (one collector run) so that
// a subscriber of several of them gets them in one write: writers start
// once every sample is offered, not after each. It implements
// collectors.BatchSink.
func (r *Registry) PublishBatch(samples []collectors.Sample) {
	var b batch
	for _, s := range samples {
		r.publishSample(s, &b)
	}
	b.deliver()
}

func (r *Registry) publishSample(s collectors.Sample, b *batch) {
	if !ValidTopic(s.Topic) {
		r.st.encodeErrors.Add(1)
		r.log.Warn("stream: publish: invalid topic name", "topic", s.Topic)
		return
	}
	data, err := json.Marshal(s.Data)
	if err != nil {
		r.st.encodeErrors.Add(1)
		r.log.Warn("stream: publish: cannot encode sample", "topic", s.Topic, "err", err)
		return
	}
	ts := s.Time
	if ts.IsZero() {
		ts = r.now()
	}
	_ = r.publish(s.Topic, ts, data, false, b)
}

// PublishJSON is the publish API's entry point. It validates the topic
// (ErrInvalidTopic), refuses the local host id as first token
// (ErrReservedTopic), refuses data that is not one JSON object
// (ErrInvalidData) and caps the number of topics it creates
// (ErrTooManyTopics). A zero ts means now. Topics created here expire after
// PublishedTTL without a publish.
func (r *Registry) PublishJSON(name string, ts time.Time, data json.RawMessage) error {
	return r.publishJSON(name, ts, data, nil)
}

func (r *Registry) publishJSON(name string, ts time.Time, data json.RawMessage, b *batch) error {
	if err := r.CheckPublishTopic(name); err != nil {
		return err
	}
	// Compact so every frame is one line (SSE data lines) and validate.
	var buf bytes.Buffer
	buf.Grow(len(data))
	if err := json.Compact(&buf, data); err != nil || buf.Len() == 0 || buf.Bytes()[0] != '{' {
		return ErrInvalidData
	}
	if err := r.CheckPublishSize(buf.Len()); err != nil {
		return err
	}
	if ts.IsZero() {
		ts = r.now()
	}
	return r.publish(name, ts, buf.Bytes(), true, b)
}

// CheckPublishTopic reports whether name may be published through the
// publish API: ErrInvalidTopic for a malformed name, ErrReservedTopic for
// a topic of the local host (no spoofing of its collectors' metrics). The
// HTTP edge checks a whole batch with it before publishing any of it.
func (r *Registry) CheckPublishTopic(name string) error {
	if !ValidTopic(name) {
		return fmt.Errorf("%w: %q", ErrInvalidTopic, name)
	}
	if h := r.cfg.Host; h != "" {
		if first, _, _ := strings.Cut(name, "."); first == h {
			return fmt.Errorf("%w: %q", ErrReservedTopic, name)
		}
	}
	return nil
}

// CheckPublishSize reports whether a value of n bytes of compact JSON may be
// published through the publish API (ErrValueTooLarge if not). The HTTP
// edge checks a whole batch with it before publishing any of it.
func (r *Registry) CheckPublishSize(n int) error {
	if max := r.cfg.MaxValueBytes; max > 0 && n > max {
		return fmt.Errorf("%w: %d bytes of JSON, the limit is %d", ErrValueTooLarge, n, max)
	}
	return nil
}

// JSONItem is one value for PublishJSONBatch.
type JSONItem struct {
	Topic string
	TS    time.Time // zero means now
	Data  json.RawMessage
}

// PublishJSONBatch publishes items in order through PublishJSON's checks,
// stopping at the first error, and returns how many were published. As
// with PublishBatch, a subscriber gets the batch's values in one write.
func (r *Registry) PublishJSONBatch(items []JSONItem) (int, error) {
	var b batch
	defer func() { b.deliver() }() // b grows below: deliver what it holds at return
	for i, it := range items {
		if err := r.publishJSON(it.Topic, it.TS, it.Data, &b); err != nil {
			return i, err
		}
	}
	return len(items), nil
}

// publish stores a value and offers it to the topic's subscribers. With b
// nil it is offered at once; otherwise it joins b, which the caller
// delivers after the batch's last value.
func (r *Registry) publish(name string, ts time.Time, data []byte, api bool, b *batch) error {
	tsMS := ts.UnixMilli()
	r.mu.Lock()
	t := r.topics[name]
	created := false
	if t == nil {
		if api && r.cfg.MaxTopics > 0 && r.published >= r.cfg.MaxTopics {
			r.mu.Unlock()
			return fmt.Errorf("%w (cap %d)", ErrTooManyTopics, r.cfg.MaxTopics)
		}
		t = r.newTopicLocked(name)
		created = true
		if api {
			t.published = true
			r.published++
		}
	}
	if t.published {
		t.lastPublish = r.now()
	}
	t.seq++
	t.ts = tsMS
	t.data = data
	t.frame = appendUpdate(make([]byte, 0, len(data)+len(name)+64), name, t.seq, tsMS, data)
	histBytes := r.cfg.HistoryBytes
	if t.published {
		histBytes = r.cfg.PublishedHistoryBytes
	}
	t.hist.push(HistoryEntry{Seq: t.seq, TS: tsMS, Data: data}, r.cfg.HistoryLen, histBytes)
	seq, frame := t.seq, t.frame
	subs := t.subscribersLocked()
	r.mu.Unlock()

	r.st.published.Add(1)
	r.st.offered.Add(uint64(len(subs)))
	if created && len(subs) > 0 {
		r.notifyDemand([]*topic{t})
	}
	if b != nil {
		*b = append(*b, batchValue{seq: seq, frame: frame, subs: subs})
		return nil
	}
	for _, rt := range subs {
		rt.s.offerUpdate(rt.st, seq, frame)
	}
	return nil
}

// batch holds the values of one batch publish until they are delivered.
type batch []batchValue

type batchValue struct {
	seq   uint64
	frame []byte
	subs  []route // sorted by Session.order (subscribersLocked)
}

// batchChunk is how many values of a batch are offered per pass: a
// session's share of a pass is a bitmask.
const batchChunk = 64

// deliver offers the batch session by session: each subscriber gets all of
// its values of the batch under one lock and its writer starts right
// after, so it sends them in one write, and writers on the other core get
// going while later sessions are still being offered to. (Offering value
// by value instead starts each writer at the first value, and every later
// one then costs a write system call of its own.)
//
// The values' route lists are all sorted by Session.order, so walking them
// side by side (a k-way merge) meets each session once, with its slot of
// every value it subscribes to at hand: no map from session to values, and
// nothing allocated per batch.
func (b batch) deliver() {
	var pos [batchChunk]int // per value: its next route
	var sts [batchChunk]*subTopic
	for start := 0; start < len(b); start += batchChunk {
		vals := b[start:min(start+batchChunk, len(b))]
		clear(pos[:])
		for {
			// The next session is the lowest order at the head of any list.
			var next *Session
			for i, v := range vals {
				if p := pos[i]; p < len(v.subs) && (next == nil || v.subs[p].s.order < next.order) {
					next = v.subs[p].s
				}
			}
			if next == nil {
				break
			}
			var mask uint64
			for i, v := range vals {
				if p := pos[i]; p < len(v.subs) && v.subs[p].s == next {
					mask |= 1 << i
					sts[i] = v.subs[p].st
					pos[i]++
				}
			}
			next.offerBatch(vals, mask, &sts)
		}
	}
}

// TopicState is a topic as lists and the REST API show it.
type TopicState struct {
	Name        string          `json:"name"`
	IntervalMS  int64           `json:"interval_ms"`
	Description string          `json:"description"`
	Status      string          `json:"status"` // pending | ok | failing | idle
	Error       string          `json:"error,omitempty"`
	Seq         uint64          `json:"seq"`
	TS          int64           `json:"ts"` // unix ms of the latest value, 0 if none
	Data        json.RawMessage `json:"data,omitempty"`
	History     []HistoryEntry  `json:"history,omitempty"`
}

// HistoryEntry is one past value of a topic.
type HistoryEntry struct {
	Seq  uint64          `json:"seq"`
	TS   int64           `json:"ts"`
	Data json.RawMessage `json:"data"`
}

func (t *topic) stateLocked() TopicState {
	st := TopicState{
		Name:        t.name,
		IntervalMS:  t.interval.Milliseconds(),
		Description: t.description,
		Status:      t.statusLocked(),
		Seq:         t.seq,
		TS:          t.ts,
	}
	if st.Status == StatusFailing {
		st.Error = t.errMsg
	}
	return st
}

// Topics lists every topic sorted by name, without data or history (the
// "list" reply and GET /api/v1/topics).
func (r *Registry) Topics() []TopicState {
	r.mu.RLock()
	out := make([]TopicState, 0, len(r.topics))
	for _, t := range r.topics {
		out = append(out, t.stateLocked())
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b TopicState) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Topic returns one topic with its latest data and, when history > 0, up to
// history past values (oldest first, the latest included). Data and History
// share the registry's bytes: read-only.
func (r *Registry) Topic(name string, history int) (TopicState, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t := r.topics[name]
	if t == nil {
		return TopicState{}, false
	}
	st := t.stateLocked()
	st.Data = t.data
	if history > 0 {
		st.History = t.hist.last(history)
	}
	return st, true
}

// Run expires published topics that were not published for PublishedTTL.
// It returns when ctx is done.
func (r *Registry) Run(ctx context.Context) {
	every := min(max(r.cfg.PublishedTTL/4, time.Second), time.Minute)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			r.expire(r.now())
		}
	}
}

// expire removes published topics not published since now-PublishedTTL and
// returns how many it removed. Their subscribers forget them; a pattern that
// matched one keeps matching it if it reappears.
func (r *Registry) expire(now time.Time) int {
	type gone struct {
		t    *topic
		subs []route
	}
	var removed []gone
	r.mu.Lock()
	for name, t := range r.topics {
		if !t.published || now.Sub(t.lastPublish) < r.cfg.PublishedTTL {
			continue
		}
		delete(r.topics, name)
		r.published--
		t.removed.Store(true)
		if len(r.tombstones) >= max(r.cfg.MaxTopics, DefaultMaxTopics) {
			for k := range r.tombstones { // evict an arbitrary one: the map stays bounded
				delete(r.tombstones, k)
				break
			}
		}
		r.tombstones[name] = t.seq
		removed = append(removed, gone{t, t.subscribersLocked()})
	}
	r.mu.Unlock()
	if len(removed) == 0 {
		return 0
	}
	r.st.expired.Add(uint64(len(removed)))
	ts := make([]*topic, len(removed))
	for i, g := range removed {
		ts[i] = g.t
		for _, rt := range g.subs {
			rt.s.forget(rt.st)
		}
	}
	r.notifyDemand(ts)
	return len(removed)
}

// notifyDemand reports the current subscribed state of each topic to
// cfg.Demand if it differs from what was last reported. One caller at a time
// delivers (the others queue their topics and return), no lock is held
// during the callback, and since the state is read at delivery time the
// last report for a topic is always its current state.
func (r *Registry) notifyDemand(ts []*topic) {
	if r.cfg.Demand == nil || len(ts) == 0 {
		return
	}
	r.demandMu.Lock()
	r.demandDirty = append(r.demandDirty, ts...)
	if r.demandBusy {
		r.demandMu.Unlock()
		return
	}
	r.demandBusy = true
	for len(r.demandDirty) > 0 {
		t := r.demandDirty[0]
		r.demandDirty[0] = nil
		r.demandDirty = r.demandDirty[1:]
		r.demandMu.Unlock()

		r.mu.RLock()
		cur := len(t.subs) > 0 && !t.removed.Load()
		r.mu.RUnlock()
		if cur != t.demandReported {
			t.demandReported = cur
			r.cfg.Demand(t.name, cur)
		}
		r.demandMu.Lock()
	}
	r.demandDirty = nil
	r.demandBusy = false
	r.demandMu.Unlock()
}

// Sessions returns the number of open sessions.
func (r *Registry) Sessions() int {
	r.sessMu.Lock()
	defer r.sessMu.Unlock()
	return len(r.sessions)
}

// CloseAll closes every open session with code and reason (drain).
func (r *Registry) CloseAll(code int, reason string) {
	r.sessMu.Lock()
	all := make([]*Session, 0, len(r.sessions))
	for s := range r.sessions {
		all = append(all, s)
	}
	r.sessMu.Unlock()
	for _, s := range all {
		s.Close(code, reason)
	}
}

// ring is a topic's bounded history, oldest first.
type ring struct {
	buf     []HistoryEntry
	head, n int
	bytes   int
}

func (h *ring) push(e HistoryEntry, maxLen, maxBytes int) {
	for h.n > 0 && (h.n >= maxLen || h.bytes+len(e.Data) > maxBytes) {
		h.bytes -= len(h.buf[h.head].Data)
		h.buf[h.head] = HistoryEntry{}
		h.head = (h.head + 1) % len(h.buf)
		h.n--
	}
	if h.n == len(h.buf) { // grow, in order, up to maxLen
		nb := make([]HistoryEntry, min(maxLen, max(4, 2*len(h.buf))))
		for i := range h.n {
			nb[i] = h.buf[(h.head+i)%len(h.buf)]
		}
		h.buf, h.head = nb, 0
	}
	h.buf[(h.head+h.n)%len(h.buf)] = e
	h.n++
	h.bytes += len(e.Data)
}

// last returns the newest k entries, oldest first.
func (h *ring) last(k int) []HistoryEntry {
	k = min(k, h.n)
	out := make([]HistoryEntry, k)
	for i := range k {
		out[i] = h.buf[(h.head+h.n-k+i)%len(h.buf)]
	}
	return out
}
