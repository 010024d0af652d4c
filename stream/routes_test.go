package stream_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opsdash/opsdash/stream"
)

// Lifecycle edges of a topic's routes (a topic keeps each subscriber's
// mailbox slot): a route created by a topic appearing after the pattern,
// removed by unsubscribe or expiry, created again.

// A topic that appears after two overlapping patterns flows once; it keeps
// flowing when one pattern goes; when the last goes, its pending value is
// dropped and nothing of it follows "unsubscribed"; subscribing again
// brings a snapshot.
func TestLaterTopicOverlappingPatternsUnsubscribe(t *testing.T) {
	r := newRegistry(t)
	c := newGatedConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["app.*","app.x"]}`)
	waitFor(t, "writer blocked", c.blocked)
	publish(r, "app.x", 1) // creates the topic: routed through both patterns, once
	if n := r.SubscriberCount("app.x"); n != 1 {
		t.Fatalf("app.x routed to %d sessions, want 1", n)
	}
	c.open()
	c.waitMsg(t, "app.x 1", isUpdate("app.x", 1))

	mustHandle(t, s, `{"type":"unsubscribe","id":"2","topics":["app.*"]}`)
	c.waitMsg(t, "unsubscribed 2", isReply("unsubscribed", "2"))
	publish(r, "app.x", 2)
	c.waitMsg(t, "app.x 2 via the literal pattern", isUpdate("app.x", 2))

	// Stall the reader again so that the next value is pending when the
	// last pattern goes.
	c.mu.Lock()
	c.gate = make(chan struct{})
	c.mu.Unlock()
	mustHandle(t, s, `{"type":"ping","id":"p"}`)
	waitFor(t, "writer blocked", c.blocked)
	publish(r, "app.x", 3)
	waitFor(t, "app.x 3 pending", func() bool { return s.Pending() == 1 }) // the flush loop offers it
	mustHandle(t, s, `{"type":"unsubscribe","id":"3","topics":["app.x"]}`)
	if n := s.Pending(); n != 0 {
		t.Fatalf("pending = %d after unsubscribe, want 0", n)
	}
	publish(r, "app.x", 4)
	c.open()
	_, iu := c.waitMsg(t, "unsubscribed 3", isReply("unsubscribed", "3"))
	if d := r.Stats().Dropped.Unsubscribed; d != 1 {
		t.Fatalf("Dropped.Unsubscribed = %d, want 1 (the pending app.x 3; app.x 4 had no route)", d)
	}
	if n := r.SubscriberCount("app.x"); n != 0 {
		t.Fatalf("app.x still routed to %d sessions", n)
	}

	mustHandle(t, s, `{"type":"subscribe","id":"4","topics":["app.>"]}`)
	c.waitMsg(t, "snapshot after resubscribe", isUpdate("app.x", 4))
	publish(r, "app.x", 5)
	c.waitMsg(t, "app.x 5", isUpdate("app.x", 5))
	ms := c.messages()
	if got := updates(ms[:iu], "app.x"); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("app.x before unsubscribed = %v, want [1 2]", got)
	}
	if got := updates(ms[iu:], "app.x"); !slices.Equal(got, []uint64{4, 5}) {
		t.Fatalf("app.x after unsubscribed = %v, want [4 5] (snapshot, live)", got)
	}
}

// Expiry drops a published topic's pending value; the topic published
// again reaches the same patterns (wildcard and literal) with its seq going
// on, once per session.
func TestExpireThenRecreate(t *testing.T) {
	r := stream.NewRegistry(stream.RegistryConfig{Host: "web-1", PublishedTTL: time.Minute})
	pub := func(topic string) {
		t.Helper()
		if err := r.PublishJSON(topic, time.Time{}, json.RawMessage(`{"n":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	wild, lit := newGatedConn(t), newFakeConn(t)
	sw := openSession(t, r, wild, stream.SessionConfig{})
	sl := openSession(t, r, lit, stream.SessionConfig{})
	mustHandle(t, sw, `{"type":"subscribe","id":"1","topics":["app.>","app.a"]}`)
	mustHandle(t, sl, `{"type":"subscribe","id":"1","topics":["app.a"]}`)
	waitFor(t, "writer blocked", wild.blocked)
	pub("app.a")
	lit.waitMsg(t, "app.a 1", isUpdate("app.a", 1))
	if n := sw.Pending(); n != 1 {
		t.Fatalf("pending = %d, want app.a 1", n)
	}

	if n := r.ExpireAt(time.Now().Add(2 * time.Minute)); n != 1 {
		t.Fatalf("expired %d topics, want 1", n)
	}
	if n := sw.Pending(); n != 0 {
		t.Fatalf("pending = %d after expiry, want 0", n)
	}
	if d := r.Stats().Dropped.Unsubscribed; d != 1 {
		t.Fatalf("Dropped.Unsubscribed = %d, want 1 (the pending app.a 1)", d)
	}

	pub("app.a") // created again: seq 2, routed to both sessions
	if n := r.SubscriberCount("app.a"); n != 2 {
		t.Fatalf("app.a routed to %d sessions, want 2", n)
	}
	wild.open()
	wild.waitMsg(t, "app.a 2 (wildcard session)", isUpdate("app.a", 2))
	lit.waitMsg(t, "app.a 2 (literal session)", isUpdate("app.a", 2))
	pub("app.a")
	wild.waitMsg(t, "app.a 3", isUpdate("app.a", 3))
	lit.waitMsg(t, "app.a 3", isUpdate("app.a", 3))
	if got := updates(wild.messages(), "app.a"); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("wildcard session app.a = %v, want [2 3]", got)
	}
	if got := updates(lit.messages(), "app.a"); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("literal session app.a = %v, want [1 2 3]", got)
	}
}

// A batch reaches each session with exactly the values it subscribes to,
// in one write, whatever mix of topics the sessions chose; a closed
// session and one that unsubscribed get nothing.
func TestBatchDeliversEachSessionItsTopics(t *testing.T) {
	r := newRegistry(t)
	const topics = 5
	names := make([]string, topics)
	for k := range names {
		names[k] = fmt.Sprintf("app.t%d", k)
	}
	publish(r, names[0], 0) // some topics exist before the subscriptions, others come with the batch
	publish(r, names[3], 0)

	type sub struct {
		c    *fakeConn
		want []string
	}
	var subs []sub
	for i := range 1 << topics { // every subset of the topics
		c := newFakeConn(t)
		s := openSession(t, r, c, stream.SessionConfig{})
		var pats, want []string
		for k, n := range names {
			if i&(1<<k) != 0 {
				pats, want = append(pats, n), append(want, n)
			}
		}
		if i == 1<<topics-1 {
			pats = append(pats, "app.*") // overlapping with the literals
		}
		pats = append(pats, "other.x")
		b, _ := json.Marshal(pats)
		mustHandle(t, s, `{"type":"subscribe","id":"1","topics":`+string(b)+`}`)
		subs = append(subs, sub{c, want})
	}
	closed := newFakeConn(t)
	sc := openSession(t, r, closed, stream.SessionConfig{})
	mustHandle(t, sc, `{"type":"subscribe","id":"1","topics":["app.>"]}`)
	sc.Close(1000, "gone")
	left := newFakeConn(t)
	sl := openSession(t, r, left, stream.SessionConfig{})
	mustHandle(t, sl, `{"type":"subscribe","id":"1","topics":["app.>"]}`)
	mustHandle(t, sl, `{"type":"unsubscribe","id":"2","topics":["app.>"]}`)
	left.waitMsg(t, "unsubscribed", isReply("unsubscribed", "2"))
	waitFor(t, "writers idle", func() bool { return r.Stats().Writers == 0 })

	before := make([]int, len(subs))
	for i, s := range subs {
		before[i] = s.c.callCount()
	}
	leftBefore := len(left.messages())
	items := make([]stream.JSONItem, topics)
	for k, n := range names {
		items[k] = stream.JSONItem{Topic: n, Data: json.RawMessage(`{"v":1}`)}
	}
	if n, err := r.PublishJSONBatch(items); n != topics || err != nil {
		t.Fatalf("PublishJSONBatch = %d, %v", n, err)
	}
	// Once every subscriber has its values, the writers are done with the
	// batch (nothing else is published).
	for _, s := range subs {
		for _, n := range s.want {
			state, _ := r.Topic(n, 0)
			s.c.waitMsg(t, n, isUpdate(n, state.Seq))
		}
	}
	waitFor(t, "writers idle", func() bool { return r.Stats().Writers == 0 })
	for i, s := range subs {
		ms := s.c.messages()
		var got []string
		for _, m := range ms {
			if m.Type == "update" {
				if state, _ := r.Topic(m.Topic, 0); m.Seq == state.Seq {
					got = append(got, m.Topic)
				}
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, s.want) {
			t.Errorf("session %d (%v) got the batch's %v", i, s.want, got)
		}
		wantWrites := 0
		if len(s.want) > 0 {
			wantWrites = 1
		}
		if w := s.c.callCount() - before[i]; w != wantWrites {
			t.Errorf("session %d: the batch took %d writes, want %d", i, w, wantWrites)
		}
	}
	if ms := left.messages()[leftBefore:]; len(ms) != 0 {
		t.Errorf("unsubscribed session got %v", ms)
	}
	if got := updates(closed.messages(), names[1]); len(got) != 0 {
		t.Errorf("closed session got %v", got)
	}
}

// Batch and single publishers race with sessions that drop one of two
// overlapping patterns and close: on every connection seqs rise, nothing of
// a topic no remaining pattern matches follows "unsubscribed", and the
// topic still matched reaches its newest value.
func TestRoutesUnderConcurrentPublishAndUnsubscribe(t *testing.T) {
	r := newRegistry(t)
	// Bounded on both sides: the fake conns keep every frame.
	const topics, rounds, batches = 4, 60, 200
	items := make([]stream.JSONItem, topics)
	for k := range items {
		items[k] = stream.JSONItem{Topic: fmt.Sprintf("app.t%d", k), Data: json.RawMessage(`{"v":1}`)}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range batches {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := r.PublishJSONBatch(items); err != nil {
					t.Error(err)
					return
				}
				publish(r, "app.t1", 0)
			}
		}()
	}
	type conn struct {
		c *fakeConn
		s *stream.Session
	}
	var conns []conn
	for i := range rounds {
		c := newFakeConn(t)
		s := openSession(t, r, c, stream.SessionConfig{})
		mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["app.*","app.t0"]}`)
		mustHandle(t, s, `{"type":"unsubscribe","id":"2","topics":["app.*"]}`)
		if i%3 == 0 {
			s.Close(1000, "bye")
			continue
		}
		conns = append(conns, conn{c, s})
	}
	close(stop)
	wg.Wait()
	if _, err := r.PublishJSONBatch(items); err != nil {
		t.Fatal(err)
	}
	final, _ := r.Topic("app.t0", 0)
	for _, cn := range conns {
		cn.c.waitMsg(t, "newest app.t0", isUpdate("app.t0", final.Seq))
		ms := cn.c.messages()
		assertRising(t, ms)
		_, iu := cn.c.waitMsg(t, "unsubscribed", isReply("unsubscribed", "2"))
		for _, m := range ms[iu:] {
			if m.Type == "update" && m.Topic != "app.t0" {
				t.Fatalf("%s seq %d after unsubscribed", m.Topic, m.Seq)
			}
		}
	}
	for k := 1; k < topics; k++ {
		if n := r.SubscriberCount(fmt.Sprintf("app.t%d", k)); n != 0 {
			t.Fatalf("app.t%d still routed to %d sessions", k, n)
		}
	}
	if n := r.SubscriberCount("app.t0"); n != len(conns) {
		t.Fatalf("app.t0 routed to %d sessions, want %d", n, len(conns))
	}
}
