package stream

import "time"

// Test hooks (compiled into tests only).

// ExpireAt runs the published-topic expiry as if the clock read now.
func (r *Registry) ExpireAt(now time.Time) int { return r.expire(now) }

// SubscriberCount returns how many sessions the topic is routed to.
func (r *Registry) SubscriberCount(topic string) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if t := r.topics[topic]; t != nil {
		return len(t.subs)
	}
	return 0
}

// PatternCount returns how many distinct patterns are indexed.
func (r *Registry) PatternCount() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.patterns)
}

// Pending returns how many values the session's mailbox holds.
func (s *Session) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.early)
	for _, sl := range s.pending {
		if sl.update != nil {
			n++
		}
		if sl.status != nil {
			n++
		}
	}
	return n
}

// PendingSeq returns the seq of topic's pending update in the session's
// mailbox, 0 when none is pending: a test waits for a value a flush loop
// offers asynchronously.
func (s *Session) PendingSeq(topic string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sl := range s.pending {
		if sl.t.name == topic && sl.update != nil {
			return sl.lastSeq
		}
	}
	return 0
}

// SetClock replaces the session's rate-limiter clock.
func (s *Session) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// SetFlushClock replaces the clock of the flush loops' windows and of
// max_hz (monotonic ns).
func (r *Registry) SetFlushClock(now func() int64) { r.flush.now = now }

// WakeFlushLoops makes every running flush loop look at its windows again
// (after a test moved the flush clock).
func (r *Registry) WakeFlushLoops() {
	for _, f := range r.flush.loops {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

// ReleaseHeld runs the session's max_hz timer now (after a test moved the
// flush clock).
func (s *Session) ReleaseHeld() { s.releaseHeld() }

// FlushLoops returns how many flush loops the registry has.
func (r *Registry) FlushLoops() int { return len(r.flush.loops) }
