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
	for _, t := range r.topics {
		if !t.published || now.Sub(t.lastPublish) < r.cfg.PublishedTTL {
			continue
		}
		r.published--
		removed = append(removed, gone{t, r.dropLocked(t)})
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
