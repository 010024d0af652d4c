package stream

import "time"

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
		r.unindexTopicLocked(t)
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
	r.counters.expired.Add(uint64(len(removed)))
	ts := make([]*topic, len(removed))
	for i, g := range removed {
		ts[i] = g.t
		for _, rt := range g.subs {
			rt.s.forget(rt.slot)
		}
	}
	r.notifyDemand(ts)
	return len(removed)
}
