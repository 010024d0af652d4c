package stream

import "strings"

// The topics by source (first token), so that adding or removing a
// pattern whose first token is literal ("web-1.>", "billing.orders.*")
// visits only that source's topics under Registry.mu instead of every
// topic: a subscribe holds the lock publishers need, and with 1,000
// published topics a full scan per request let many clients subscribing
// at once stall publishing. Only patterns with a wildcard first token
// ("*.cpu", ">") still visit every topic, and only the topics they
// actually match do more than a cheap token comparison.

// sourceIndex maps a first token to the topics under it. Guarded by
// Registry.mu.
type sourceIndex map[string]map[*topic]struct{}

// topicSource is the first token of a topic name.
func topicSource(name string) string {
	first, _, _ := strings.Cut(name, ".")
	return first
}

// indexTopicLocked adds t to the source index. r.mu must be held for
// writing.
func (r *Registry) indexTopicLocked(t *topic) {
	if r.bySource == nil {
		r.bySource = make(sourceIndex)
	}
	src := topicSource(t.name)
	m := r.bySource[src]
	if m == nil {
		m = make(map[*topic]struct{})
		r.bySource[src] = m
	}
	m[t] = struct{}{}
}

// unindexTopicLocked removes t from the source index. r.mu must be held
// for writing.
func (r *Registry) unindexTopicLocked(t *topic) {
	src := topicSource(t.name)
	if m := r.bySource[src]; m != nil {
		delete(m, t)
		if len(m) == 0 {
			delete(r.bySource, src)
		}
	}
}

// matchingTopicsLocked calls visit for every topic p matches: a literal
// pattern is one lookup, a literal first token one source's topics, a
// wildcard first token every topic. r.mu must be held.
func (r *Registry) matchingTopicsLocked(p Pattern, visit func(*topic)) {
	if p.Literal() {
		if t := r.topics[p.raw]; t != nil {
			visit(t)
		}
		return
	}
	if src, ok := p.literalFirst(); ok {
		for t := range r.bySource[src] {
			if p.matchValid(t.name) {
				visit(t)
			}
		}
		return
	}
	for _, t := range r.topics {
		if p.matchValid(t.name) {
			visit(t)
		}
	}
}
