package stream

import (
	"github.com/opsdash/opsdash/collectors"
)

// Run-time topics: topics that exist while something on the host does (one
// per container, pod or service) rather than for the life of the server.
// The collector that finds them declares each with DeclareRuntime when it
// appears and removes it with Undeclare when it is gone for good. Between
// the two the topic is an ordinary declared topic: listed, subscribable by
// pattern, never expired by PublishedTTL. Its seq survives removal
// (tombstones, as for expired published topics), so a workload that comes
// back under the same name continues its seq instead of starting over at 1,
// and a client that kept a pattern matching it sees no seq going backwards.

var _ collectors.RuntimeTopics = (*Registry)(nil)

// DeclareRuntime declares a topic that exists until Undeclare removes it.
// history, when positive, caps the values its history keeps below
// RegistryConfig.HistoryLen: there can be hundreds of such topics, each
// with a short history. Declaring a topic that exists updates its
// metadata; a catalog topic (Declare) is never turned into a run-time one.
// Like any topic, one that appears with a subscriber waiting is reported to
// the Demand callback. It implements collectors.RuntimeTopics.
func (r *Registry) DeclareRuntime(info collectors.TopicInfo, history int) {
	r.declare(info, true, history)
}

// Undeclare removes a topic declared with DeclareRuntime, or one that only
// a value or a status created (a fleet replica removes those when their
// host no longer lists them): it leaves lists and the REST API, its
// subscribers forget it (their patterns stay, and match it again if it
// comes back), and its last seq is kept for a later DeclareRuntime of the
// same name. Catalog topics (Declare) and published ones are left alone.
// It implements collectors.RuntimeTopics.
func (r *Registry) Undeclare(name string) {
	r.mu.Lock()
	t := r.topics[name]
	if t == nil || (t.declared && !t.runtime) || t.published {
		r.mu.Unlock()
		return
	}
	subs := r.dropLocked(t)
	r.mu.Unlock()
	for _, rt := range subs {
		rt.s.forget(rt.slot)
	}
	r.notifyDemand([]*topic{t})
}

// dropLocked removes t from the registry, keeping its seq in the
// tombstones, and returns its routes, which the caller makes their
// sessions forget once r.mu is released. r.mu must be held for writing.
func (r *Registry) dropLocked(t *topic) []route {
	delete(r.topics, t.name)
	r.unindexTopicLocked(t)
	t.removed.Store(true)
	r.tombstoneLocked(t.name, t.seq)
	return t.subscribersLocked()
}

// historyLen is how many values t's history keeps.
func (t *topic) historyLen(registryLen int) int {
	if t.histLen > 0 {
		return min(t.histLen, registryLen)
	}
	return registryLen
}
