package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Liveness: a replica cannot ask a dead host anything, so it judges each
// host topic by when its last value arrived.
const (
	// SilentAfter is the least silence that makes a topic failing; a topic
	// with a longer interval gets three of its intervals.
	SilentAfter = 15 * time.Second
	// livenessEvery is how often the check runs; a topic turns failing at
	// most this long after its limit minus the margin below.
	livenessEvery = 500 * time.Millisecond
	// livenessMargin: the check fires this much before the limit, so that
	// with the check's period a silent topic is failing within the limit.
	livenessMargin = time.Second
)

// silentLimit is how long topic of interval may stay silent: three
// intervals or SilentAfter, whichever is longer.
func silentLimit(interval time.Duration) time.Duration {
	return max(3*interval, SilentAfter)
}

// liveTopic is what the liveness check knows of one host topic.
type liveTopic struct {
	host        string
	desc        descTopic // its entry in the host's descriptor
	declared    bool      // desc came from a descriptor
	watched     bool      // its whole history is kept (history.go)
	watchedAt   time.Time // when its history was last asked for
	known       time.Time // when this replica learned of it
	lastArrival time.Time // when its last value arrived (zero: none yet)
	lastStored  time.Time // when the store took its last value
	agentErr    string    // its collector's error, from the descriptor
	shown       string    // the error last given to the registry ("": ok)
}

// topicLocked returns name's entry, creating it unless its host has
// MaxHostTopics already (nil then). r.mu must be held.
func (r *Replica) topicLocked(name string, now time.Time) *liveTopic {
	t := r.topics[name]
	if t == nil {
		host := hostOf(name)
		if r.hostTopics[host] >= MaxHostTopics {
			if !r.overCap[host] {
				r.overCap[host] = true
				r.log.Warn("a host has more topics than a replica takes from one host; the rest are ignored", "host", host, "max", MaxHostTopics)
			}
			return nil
		}
		t = &liveTopic{host: host, known: now}
		r.topics[name] = t
		r.hostTopics[host]++
	}
	return t
}

// noteArrival records that a value of topic, stored at stored, arrived at
// at. It returns false for a value to ignore: one stored before its host's
// descriptor stopped listing the topic (a workload's topic, replayed after
// the workload went).
func (r *Replica) noteArrival(topic string, at, stored time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d := r.hosts[hostOf(topic)]; d != nil && !d.lists[topic] && stored.Before(d.stored) {
		return false
	}
	t := r.topicLocked(topic, at)
	if t == nil {
		return false
	}
	if at.After(t.lastArrival) {
		t.lastArrival = at
	}
	if stored.After(t.lastStored) {
		t.lastStored = stored
	}
	return true
}

// watch runs the liveness check until ctx ends.
func (r *Replica) watch(ctx context.Context) {
	tick := time.NewTicker(livenessEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			r.checkLiveness(now)
			r.lowerUnwatched(now)
		}
	}
}

// checkLiveness gives every host topic the status it should have at now
// and tells the registry about each change.
func (r *Replica) checkLiveness(now time.Time) {
	connected, lostAt, _ := r.connState()
	feedLost := !connected && !lostAt.IsZero() && now.Sub(lostAt) >= FeedLostAfter
	type change struct{ topic, err string }
	var changes []change
	r.mu.Lock()
	for name, t := range r.topics {
		want := r.topicErrorLocked(name, t, now, feedLost, lostAt)
		if want != t.shown {
			t.shown = want
			changes = append(changes, change{name, want})
		}
	}
	r.mu.Unlock()
	r.regMu.Lock()
	defer r.regMu.Unlock()
	for _, c := range changes {
		r.mu.Lock()
		_, still := r.topics[c.topic] // not removed by a descriptor meanwhile
		r.mu.Unlock()
		if !still {
			continue
		}
		var err error
		if c.err != "" {
			err = errors.New(c.err)
		}
		r.reg.SetStatus(c.topic, err)
	}
}

// topicErrorLocked is the error topic t should show at now ("" for none).
func (r *Replica) topicErrorLocked(name string, t *liveTopic, now time.Time, feedLost bool, lostAt time.Time) string {
	if feedLost {
		return "live feed lost since " + clock(lostAt) + ": NATS is unreachable from this server"
	}
	if t.agentErr != "" {
		return t.agentErr
	}
	if !t.declared { // an interval is needed to judge silence
		return ""
	}
	ref := t.lastArrival
	if t.desc.OnDemand {
		since, wanted := r.wanted[name]
		if !wanted {
			return "" // idle: nobody asked for it
		}
		if since.After(ref) {
			ref = since
		}
	}
	if ref.IsZero() {
		ref = t.known
	}
	if now.Sub(ref) < silentLimit(time.Duration(t.desc.IntervalMS)*time.Millisecond)-livenessMargin {
		return ""
	}
	if t.lastArrival.IsZero() {
		return fmt.Sprintf("no value from %s yet (waiting since %s)", t.host, clock(ref))
	}
	return fmt.Sprintf("no value from %s since %s: the host or its agent is silent", t.host, clock(t.lastArrival))
}

// clock is a time as status errors show it: 15:04:05 UTC.
func clock(t time.Time) string { return t.UTC().Format("15:04:05") + " UTC" }
