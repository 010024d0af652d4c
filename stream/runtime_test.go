package stream_test

import (
	"slices"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
)

// A workload's topic is declared when it appears, listed and delivered to a
// pattern that matches it, keeps a short history, leaves lists and
// subscribers when removed, and continues its seq when it comes back.
func TestRuntimeTopicLifecycle(t *testing.T) {
	r := newRegistry(t)
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["web-1.workload.*"]}`)
	c.waitMsg(t, "subscribed", isReply("subscribed", "1"))

	name := "web-1.workload.docker-3f2a9c1b7d4e"
	info := collectors.TopicInfo{Name: name, Interval: 2 * time.Second, Description: "a container"}
	r.DeclareRuntime(info, 3)
	if st, ok := r.Topic(name, 0); !ok || st.Status != stream.StatusPending || st.IntervalMS != 2000 {
		t.Fatalf("declared topic: %+v, %v; want pending at 2000 ms", st, ok)
	}
	for v := 1; v <= 5; v++ {
		publish(r, name, v)
	}
	c.waitMsg(t, "the fifth value", isUpdate(name, 5))
	if st, _ := r.Topic(name, 10); len(st.History) != 3 || st.History[2].Seq != 5 {
		t.Fatalf("history %+v; want the last 3 values", st.History)
	}

	r.Undeclare(name)
	if _, ok := r.Topic(name, 0); ok || slices.ContainsFunc(r.Topics(), func(t stream.TopicState) bool { return t.Name == name }) {
		t.Fatal("an undeclared topic is still listed")
	}
	// Topics that stay: Undeclare leaves a catalog topic and a published
	// one alone.
	r.Declare(collectors.TopicInfo{Name: "web-1.cpu", Interval: time.Second})
	publish(r, "web-1.cpu", 1)
	if err := r.PublishJSON("billing.orders", time.Now(), []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	for _, kept := range []string{"web-1.cpu", "billing.orders"} {
		r.Undeclare(kept)
		if _, ok := r.Topic(kept, 0); !ok {
			t.Fatalf("Undeclare removed %s, which DeclareRuntime did not declare", kept)
		}
	}

	// Back again: the same name continues at seq 6, and the pattern that
	// matched it delivers it again.
	r.DeclareRuntime(info, 3)
	publish(r, name, 6)
	c.waitMsg(t, "the topic back at seq 6", isUpdate(name, 6))
	// (Values published back to back may be conflated: seqs only rise.)
	if got := updates(c.messages(), name); !slices.IsSorted(got) || got[len(got)-2] != 5 || got[len(got)-1] != 6 {
		t.Fatalf("seqs %v, want rising, ending 5, 6", got)
	}
	if n := r.SubscriberCount(name); n != 1 {
		t.Fatalf("routed to %d sessions, want 1", n)
	}
}

// In a fleet a workload's first value can reach a replica before the
// descriptor that declares it: the topic the value created becomes a
// run-time one when declared, and Undeclare removes it like any other.
func TestRuntimeTopicCreatedByItsFirstValue(t *testing.T) {
	r := newRegistry(t)
	name := "web-1.workload.docker-3f2a9c1b7d4e"
	if !r.PublishAt(stream.Sequenced{Topic: name, Seq: 7, Data: []byte(`{"v":7}`)}) {
		t.Fatal("PublishAt refused the first value")
	}
	r.DeclareRuntime(collectors.TopicInfo{Name: name, Interval: 5 * time.Second}, 3)
	if st, ok := r.Topic(name, 0); !ok || st.Seq != 7 || st.IntervalMS != 5000 {
		t.Fatalf("%+v, %v: want the value's topic, now with its interval", st, ok)
	}
	r.Undeclare(name)
	if _, ok := r.Topic(name, 0); ok {
		t.Fatal("Undeclare left a run-time topic that its first value created")
	}
	if r.PublishAt(stream.Sequenced{Topic: name, Seq: 7, Data: []byte(`{"v":7}`)}) {
		t.Fatal("a replayed old value re-created the removed topic under its kept seq")
	}
}

// A run-time topic's short history stays short when older values are
// loaded into it (Backfill), as it does when values are published.
func TestRuntimeTopicHistoryCapHoldsForBackfill(t *testing.T) {
	r := newRegistry(t)
	name := "web-1.workload.docker-3f2a9c1b7d4e"
	r.DeclareRuntime(collectors.TopicInfo{Name: name, Interval: 5 * time.Second}, 3)
	r.PublishAt(stream.Sequenced{Topic: name, Seq: 10, Data: []byte(`{"v":10}`)})
	var past []stream.HistoryEntry
	for seq := uint64(1); seq <= 9; seq++ {
		past = append(past, stream.HistoryEntry{Seq: seq, Data: []byte(`{}`)})
	}
	r.Backfill(name, past)
	st, _ := r.Topic(name, 100)
	var seqs []uint64
	for _, h := range st.History {
		seqs = append(seqs, h.Seq)
	}
	if !slices.Equal(seqs, []uint64{8, 9, 10}) {
		t.Fatalf("history seqs %v, want [8 9 10]: the topic's cap of 3, newest kept", seqs)
	}
}

// Removing a run-time topic is not a published topic's expiry: Stats'
// TopicsExpired (opsdash_topics_expired_total, "published topics removed
// after their TTL") does not count it.
func TestUndeclareIsNotCountedAsExpiry(t *testing.T) {
	r := newRegistry(t)
	name := "web-1.workload.docker-3f2a9c1b7d4e"
	r.DeclareRuntime(collectors.TopicInfo{Name: name, Interval: 5 * time.Second}, 3)
	publish(r, name, 1)
	r.Undeclare(name)
	if n := r.Stats().TopicsExpired; n != 0 {
		t.Fatalf("TopicsExpired = %d after removing a run-time topic, want 0", n)
	}
}

// Declaring a run-time topic again with a lower history cap applies it at
// once (a fleet replica lowers a topic nobody watches any more), and a
// higher cap lets the history grow again.
func TestRuntimeTopicHistoryCapChanges(t *testing.T) {
	r := newRegistry(t)
	name := "web-1.cpu"
	info := collectors.TopicInfo{Name: name, Interval: time.Second}
	r.DeclareRuntime(info, 0) // the registry's usual length
	for v := 1; v <= 5; v++ {
		publish(r, name, v)
	}
	hist := func() []uint64 {
		st, _ := r.Topic(name, 100)
		var seqs []uint64
		for _, h := range st.History {
			seqs = append(seqs, h.Seq)
		}
		return seqs
	}
	r.DeclareRuntime(info, 2)
	if got := hist(); !slices.Equal(got, []uint64{4, 5}) {
		t.Fatalf("after lowering the cap to 2: %v, want [4 5] at once", got)
	}
	r.DeclareRuntime(info, 0)
	publish(r, name, 6)
	if got := hist(); !slices.Equal(got, []uint64{4, 5, 6}) {
		t.Fatalf("after raising it again: %v, want [4 5 6]", got)
	}
}
