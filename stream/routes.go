package stream

import (
	"cmp"
	"slices"
)

// Routing: each topic keeps the set of sessions that have a pattern matching
// it, each with that session's mailbox slot for the topic (a route),
// computed when the topic appears or a pattern is added (topics are few and
// change rarely), so a publish is: lock, bump seq, encode once, take the
// topic's route slice, unlock, offer the shared bytes to each route's slot.
// No per-subscriber lookup: at 10,000 subscribers a map lookup per offer was
// an eighth of the server's CPU.
//
// Routes change under Registry.mu. A subscribe or unsubscribe holds its
// Session.mu around the change (lock order: Session.mu, then Registry.mu),
// so its reply, snapshot and dropped values are ordered against publishes
// in the mailbox.

// route is one session a topic flows to and the session's mailbox slot for
// that topic, so that a publish reaches the slot without a lookup.
type route struct {
	s    *Session
	slot *slot
	f    *flusher // s.f, here so a flush loop can skip others' sessions without touching them
}

// patternEntry is one distinct subscribed pattern and the sessions that
// hold it (Registry.patterns).
type patternEntry struct {
	pat      Pattern
	sessions map[*Session]struct{}
}

// subscribersLocked returns the topic's routes as a slice that is never
// modified afterwards, so it can be used after r.mu is released. It is
// rebuilt only after the set changed, which is rare next to publishes.
//
// The routes are sorted by Session.order: a fan-out reaches the sessions
// in the same order in every topic and from one rebuild to the next, an
// order that does not follow how old their connections are (scramble).
// The flush loops' inboxes tell a changed route list from the same one by
// identity (sameRoutes).
func (t *topic) subscribersLocked() []route {
	if t.subsList == nil && len(t.subs) > 0 {
		l := make([]route, 0, len(t.subs))
		for s, sl := range t.subs {
			l = append(l, route{s, sl, s.f})
		}
		slices.SortFunc(l, func(a, b route) int { return cmp.Compare(a.s.order, b.s.order) })
		t.subsList = l
	}
	return t.subsList
}

// routeNewTopicLocked routes a topic being created to every session with a
// matching pattern. r.mu must be held for writing.
//
// The routes' mailbox slots are created here without the sessions' locks
// (the lock order is Session.mu, then Registry.mu): a new slot is zero, and
// a session reaches it only through the topic's routes, which r.mu guards.
func (r *Registry) routeNewTopicLocked(t *topic) {
	for _, e := range r.patterns {
		if e.pat.matchValid(t.name) {
			for s := range e.sessions {
				if t.subs[s] == nil {
					t.subs[s] = &slot{t: t}
				}
			}
		}
	}
}

// snapFrame is one topic's latest value for a new subscriber's snapshot,
// and its status frame when it is failing (a status frame otherwise comes
// only when the status changes, so a new subscriber would not learn it).
type snapFrame struct {
	slot   *slot
	seq    uint64
	frame  []byte // nil: no value yet
	status []byte // nil: not failing
}

// addPatterns indexes s's new patterns and routes the matching topics to s.
// It returns the snapshot (latest value and failing status of each topic
// that was not flowing to s yet) and the topics that gained their first subscriber. The caller
// holds s.mu; addPatterns takes r.mu (lock order: Session.mu, then
// Registry.mu).
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
		sl := &slot{t: t}
		t.subs[s] = sl
		t.subsList = nil
		if len(t.subs) == 1 {
			demand = append(demand, t)
		}
		var status []byte
		if t.failing {
			status = encodeStatus(t.name, t.statusLocked(), t.errMsg)
		}
		if t.seq > 0 && t.frame != nil || status != nil {
			snap = append(snap, snapFrame{sl, t.seq, t.frame, status})
		}
	}
	for _, p := range add {
		r.matchingTopicsLocked(p, consider)
	}
	return snap, demand
}

// removePatterns unindexes s's removed patterns and unroutes the topics that
// none of s's remaining patterns match. It returns the unrouted topics'
// mailbox slots, which the caller drops, and the topics that lost their
// last subscriber. The caller holds s.mu, except removeSession's, whose
// session is closed already; removePatterns takes r.mu.
func (r *Registry) removePatterns(s *Session, removed, remaining []Pattern) (unrouted []*slot, demand []*topic) {
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
	// Only a topic that a removed pattern matches can stop flowing; one
	// matched by several is unrouted at its first visit.
	unroute := func(t *topic) {
		sl := t.subs[s]
		if sl == nil || matchAny(remaining, t.name) {
			return
		}
		delete(t.subs, s)
		t.subsList = nil
		unrouted = append(unrouted, sl)
		if len(t.subs) == 0 {
			demand = append(demand, t)
		}
	}
	for _, p := range removed {
		r.matchingTopicsLocked(p, unroute)
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
