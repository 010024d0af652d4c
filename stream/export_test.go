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
	n := 0
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

// SetClock replaces the session's rate-limiter clock.
func (s *Session) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}
