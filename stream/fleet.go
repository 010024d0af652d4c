package stream

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Fleet mode (cmd/internal/fleet): a replica's values are produced
// elsewhere (agents, the publish API of any replica) and reach it through
// NATS with the seq their producer gave them, so that every replica shows
// a topic under the same seq. This file holds what the registry offers
// that mode; nothing here is used in single mode.

// CloseServiceRestart (1012) closes every session when the fleet's store was
// replaced and seqs start over (NewEpoch): the client reconnects and finds
// a new hello "instance".
const CloseServiceRestart = 1012

// Sequenced is one value whose seq was assigned by its producer.
type Sequenced struct {
	Topic string
	// Seq is the producer's seq: a value with a seq not above the topic's
	// current one is stale (a replay, or a lagging path) and is ignored.
	Seq uint64
	// TS is the sample's Unix time in milliseconds.
	TS int64
	// Data is one compact JSON object, kept as is (not copied).
	Data json.RawMessage
	// Published marks a publish-API topic: it counts as published (lists,
	// MaxTopics) and expires after PublishedTTL without a new value.
	Published bool
	// Stored is when the value was stored upstream (zero: now). A published
	// topic whose value is already older than PublishedTTL is not created:
	// only its seq is remembered (as an expired topic's), so that it
	// continues if the topic is published again.
	Stored time.Time
}

// PublishAt stores v as its topic's latest value, with v's seq, and offers
// it to the topic's subscribers, creating the topic if needed. It reports
// whether v was taken: false for an invalid topic or a seq not above the
// topic's. It never blocks on a subscriber.
func (r *Registry) PublishAt(v Sequenced) bool {
	if v.Seq == 0 || !ValidTopic(v.Topic) {
		return false
	}
	stored := v.Stored
	if stored.IsZero() {
		stored = r.now()
	}
	r.mu.Lock()
	t := r.topics[v.Topic]
	created := false
	if t == nil {
		if v.Published && r.now().Sub(stored) >= r.cfg.PublishedTTL {
			if v.Seq > r.tombstones[v.Topic] {
				r.tombstoneLocked(v.Topic, v.Seq)
			}
			r.mu.Unlock()
			return false
		}
		if v.Seq <= r.tombstones[v.Topic] { // older than the expired topic's last value
			r.mu.Unlock()
			return false
		}
		t = r.newTopicLocked(v.Topic)
		created = true
		if v.Published {
			t.published = true
			r.published++
		}
	}
	if v.Seq <= t.seq {
		r.mu.Unlock()
		return false
	}
	if t.published {
		t.lastPublish = stored
	}
	r.storeAndOffer(t, created, v.Seq, v.TS, v.Data, nil) // unlocks r.mu
	return true
}

// tombstoneLocked remembers seq as the last of the absent topic name,
// keeping the table bounded. r.mu must be held for writing.
func (r *Registry) tombstoneLocked(name string, seq uint64) {
	if _, ok := r.tombstones[name]; !ok && len(r.tombstones) >= max(r.cfg.MaxTopics, DefaultMaxTopics) {
		for k := range r.tombstones { // evict an arbitrary one: the map stays bounded
			delete(r.tombstones, k)
			break
		}
	}
	r.tombstones[name] = seq
}

// SetInstance sets the id that hello frames carry from now on: in a fleet,
// the seq epoch shared by every replica. Sessions already open keep the
// one they were told; use NewEpoch when seqs start over.
func (r *Registry) SetInstance(id string) {
	r.instance.Store(&id)
}

// NewEpoch starts seq epoch instance: every topic forgets its value, seq
// and history (its declaration and status stay), expired topics' seqs are
// forgotten, hello carries instance from now on, and every open session is
// closed with CloseServiceRestart so that its client reconnects, sees the
// new instance and starts over. A fleet replica calls it when the store it
// follows was lost and re-created.
func (r *Registry) NewEpoch(instance string) {
	r.mu.Lock()
	for _, t := range r.topics {
		t.seq, t.ts, t.data, t.frame, t.hist = 0, 0, nil, nil, ring{}
	}
	clear(r.tombstones)
	r.mu.Unlock()
	r.SetInstance(instance)
	r.CloseAll(CloseServiceRestart, "the fleet's store was replaced: seqs start over")
}

// Backfill adds past values of topic name older than the oldest it holds
// (a replica loads history from the fleet's store only when asked for it),
// keeping the topic's bounds on history (HistoryLen, or a run-time topic's
// shorter one, and HistoryBytes). It returns how many were added; an
// unknown topic takes none.
func (r *Registry) Backfill(name string, past []HistoryEntry) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.topics[name]
	if t == nil || len(past) == 0 {
		return 0
	}
	have := t.hist.last(t.hist.n)
	oldest := t.seq + 1
	if len(have) > 0 {
		oldest = have[0].Seq
	}
	older := make([]HistoryEntry, 0, len(past))
	for _, e := range past {
		if e.Seq < oldest {
			older = append(older, e)
		}
	}
	if len(older) == 0 {
		return 0
	}
	slices.SortFunc(older, func(a, b HistoryEntry) int { return compareSeq(a.Seq, b.Seq) })
	older = slices.CompactFunc(older, func(a, b HistoryEntry) bool { return a.Seq == b.Seq })
	histBytes := r.cfg.HistoryBytes
	if t.published {
		histBytes = r.cfg.PublishedHistoryBytes
	}
	var h ring
	for _, e := range append(older, have...) {
		h.push(e, t.historyLen(r.cfg.HistoryLen), histBytes)
	}
	t.hist = h
	return len(older)
}

func compareSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ErrUnavailable means a forwarded publish (ForwardPublished) could not be
// stored because the store behind it is unreachable: the publish API
// answers 503, and the client may retry.
var ErrUnavailable = errors.New("unavailable")

// ForwardPublished makes the publish API hand each checked value to f
// instead of storing it here: in a fleet, f publishes it through NATS so
// that every replica gets it with one seq (and comes back through
// PublishAt). f's error is PublishJSON's. Call it before the registry is
// in use, like OnDemand.
func (r *Registry) ForwardPublished(f func(topic string, ts time.Time, data json.RawMessage) error) {
	r.cfg.forward = f
}

// ReserveSources makes the publish API refuse every topic whose first
// token f reports as taken (ErrReservedTopic): in a fleet, every host's id,
// so that no client can pose as a host. Call it before the registry is in
// use, like OnDemand; f is called concurrently and must be quick.
func (r *Registry) ReserveSources(f func(source string) bool) {
	r.cfg.reservedSource = f
}

// forwardPublished applies the publish API's cap on new topics and hands
// the value to the forwarder.
func (r *Registry) forwardPublished(name string, ts time.Time, data json.RawMessage) error {
	r.mu.RLock()
	_, exists := r.topics[name]
	full := r.cfg.MaxTopics > 0 && r.published >= r.cfg.MaxTopics
	r.mu.RUnlock()
	if !exists && full {
		return fmt.Errorf("%w (cap %d)", ErrTooManyTopics, r.cfg.MaxTopics)
	}
	return r.cfg.forward(name, ts, data)
}
