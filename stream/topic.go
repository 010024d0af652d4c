package stream

import (
	"encoding/json"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/opsdash/opsdash/collectors"
)

// Topic statuses, as shown in lists and "status" frames.
const (
	StatusPending = "pending" // declared, no sample yet
	StatusOK      = "ok"
	StatusFailing = "failing" // the last collection failed; Error says why
	StatusIdle    = "idle"    // on-demand topic that nobody subscribes to
)

// topic is one topic's state. Fields are guarded by Registry.mu unless noted.
type topic struct {
	name        string
	interval    time.Duration
	description string
	onDemand    bool
	declared    bool // through Declare (never expires)
	published   bool // created through PublishJSON (counts against MaxTopics, expires)
	runtime     bool // declared through DeclareRuntime: Undeclare removes it (runtime.go)
	histLen     int  // when > 0, the history keeps at most this many values (runtime.go)
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
	subs     map[*Session]*slot
	subsList []route // immutable snapshot of subs, nil when it must be rebuilt

	removed atomic.Bool // expired; read by sessions without Registry.mu

	demandReported bool // guarded by the demand delivery (demandBusy)
}

// newTopicLocked creates topic name, continuing the seq of an expired topic
// of that name (tombstones), and routes it to every session with a matching
// pattern. r.mu must be held for writing.
func (r *Registry) newTopicLocked(name string) *topic {
	t := &topic{name: name, subs: make(map[*Session]*slot)}
	if seq, ok := r.tombstones[name]; ok {
		t.seq = seq
		delete(r.tombstones, name)
	}
	r.routeNewTopicLocked(t)
	r.topics[name] = t
	r.indexTopicLocked(t)
	return t
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
func (r *Registry) Declare(info collectors.TopicInfo) { r.declare(info, false, 0) }

// declare is Declare, and with runtime DeclareRuntime (runtime.go): a
// topic it creates is a run-time one, and so is one that was published
// before; a run-time topic takes history as its cap.
func (r *Registry) declare(info collectors.TopicInfo, runtime bool, history int) {
	if !ValidTopic(info.Name) {
		r.log.Warn("stream: declare: invalid topic name", "topic", info.Name, "runtime", runtime)
		return
	}
	r.mu.Lock()
	t := r.topics[info.Name]
	if t == nil {
		t = r.newTopicLocked(info.Name)
		t.runtime = runtime
	}
	if t.published {
		// Someone published under this name before: the collector's
		// declaration owns it from now on.
		t.published = false
		t.runtime = runtime
		r.published--
	} else if !t.declared {
		// Created by a value or a status before its declaration (in a
		// fleet, a workload's first value can beat its host's descriptor):
		// the declaration says what it is.
		t.runtime = runtime
	}
	if runtime && t.runtime {
		t.histLen = max(history, 0)
		t.hist.trim(t.historyLen(r.cfg.HistoryLen)) // a lower cap applies at once
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
		rt.s.offerStatus(rt.slot, frame)
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
	state := TopicState{
		Name:        t.name,
		IntervalMS:  t.interval.Milliseconds(),
		Description: t.description,
		Status:      t.statusLocked(),
		Seq:         t.seq,
		TS:          t.ts,
	}
	if state.Status == StatusFailing {
		state.Error = t.errMsg
	}
	return state
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
	state := t.stateLocked()
	state.Data = t.data
	if history > 0 {
		state.History = t.hist.last(history)
	}
	return state, true
}

// ring is a topic's bounded history, oldest first.
type ring struct {
	buf     []HistoryEntry
	head, n int
	bytes   int
}

func (h *ring) push(e HistoryEntry, maxLen, maxBytes int) {
	for h.n > 0 && (h.n >= maxLen || h.bytes+len(e.Data) > maxBytes) {
		h.dropOldest()
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

// trim drops the oldest entries beyond maxLen, and the buffer with them
// when it shrinks to a quarter of its size.
func (h *ring) trim(maxLen int) {
	for h.n > max(maxLen, 0) {
		h.dropOldest()
	}
	if len(h.buf) > 4 && h.n <= len(h.buf)/4 {
		nb := make([]HistoryEntry, max(4, h.n))
		for i := range h.n {
			nb[i] = h.buf[(h.head+i)%len(h.buf)]
		}
		h.buf, h.head = nb, 0
	}
}

func (h *ring) dropOldest() {
	h.bytes -= len(h.buf[h.head].Data)
	h.buf[h.head] = HistoryEntry{}
	h.head = (h.head + 1) % len(h.buf)
	h.n--
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
