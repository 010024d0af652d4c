package fleet

import (
	"context"
	"encoding/json"
	"time"
)

// Demand across the fleet: a viewer of web-3.proc.top on any replica makes
// web-3's agent collect it. Each replica holds a lease per on-demand topic
// it has viewers for, renewed every DemandRenew; it releases the lease when
// its last viewer leaves, and an agent stops collecting when no replica
// holds one (a crashed replica's lease lapses after DemandLease).

// setDemand is the registry's demand callback: topic gained its first
// viewer here (true) or lost its last (false).
func (r *Replica) setDemand(topic string, subscribed bool) {
	r.mu.Lock()
	_, had := r.wanted[topic]
	if subscribed && !had {
		r.wanted[topic] = time.Now()
	} else if !subscribed {
		delete(r.wanted, topic)
	}
	onDemand := r.onDemandLocked(topic)
	r.mu.Unlock()
	if onDemand && subscribed != had {
		r.sendLease(topic, subscribed)
	}
}

// onDemandLocked reports whether a descriptor declared topic on-demand.
// r.mu must be held.
func (r *Replica) onDemandLocked(topic string) bool {
	t := r.topics[topic]
	return t != nil && t.desc.OnDemand
}

func (r *Replica) sendLease(topic string, want bool) {
	if r.nc == nil {
		return
	}
	b, _ := json.Marshal(demandMsg{Replica: r.name, Want: want})
	_ = r.nc.Publish(DemandPrefix+topic, b) // lost while disconnected: renewed later
}

// renewLeases renews this replica's leases until ctx ends, and at once
// after a reconnection (the agent may have lost them).
func (r *Replica) renewLeases(ctx context.Context) {
	tick := time.NewTicker(DemandRenew)
	defer tick.Stop()
	wasUp := false
	fast := time.NewTicker(250 * time.Millisecond)
	defer fast.Stop()
	for {
		renew := false
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			renew = true
		case <-fast.C:
			up, _, _ := r.connState()
			renew = up && !wasUp
			wasUp = up
		}
		if !renew {
			continue
		}
		r.mu.Lock()
		var topics []string
		for topic := range r.wanted {
			if r.onDemandLocked(topic) {
				topics = append(topics, topic)
			}
		}
		r.mu.Unlock()
		for _, topic := range topics {
			r.sendLease(topic, true)
		}
	}
}
