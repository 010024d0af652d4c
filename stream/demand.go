package stream

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
