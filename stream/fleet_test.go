package stream_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/opsdash/opsdash/stream"
)

func seqd(topic string, seq uint64, data string) stream.Sequenced {
	return stream.Sequenced{Topic: topic, Seq: seq, TS: int64(seq) * 1000, Data: json.RawMessage(data)}
}

// A value from elsewhere keeps its producer's seq; a replayed or older one
// changes nothing and reaches no subscriber.
func TestPublishAtKeepsTheProducersSeqAndIgnoresStaleOnes(t *testing.T) {
	r := newRegistry(t)
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["web-3.cpu"]}`)

	if !r.PublishAt(seqd("web-3.cpu", 41, `{"v":41}`)) {
		t.Fatal("PublishAt of a new topic's first value returned false")
	}
	for _, stale := range []uint64{41, 7} {
		if r.PublishAt(seqd("web-3.cpu", stale, `{"v":0}`)) {
			t.Errorf("PublishAt with seq %d after 41 was taken", stale)
		}
	}
	c.waitMsg(t, "update 41", isUpdate("web-3.cpu", 41))
	r.PublishAt(seqd("web-3.cpu", 45, `{"v":45}`))
	c.waitMsg(t, "update 45", isUpdate("web-3.cpu", 45))
	if got := updates(c.messages(), "web-3.cpu"); !slices.Equal(got, []uint64{41, 45}) {
		t.Errorf("the subscriber got seqs %v, want [41 45]", got)
	}
	st, _ := r.Topic("web-3.cpu", 10)
	if st.Seq != 45 || string(st.Data) != `{"v":45}` || len(st.History) != 2 {
		t.Errorf("topic = seq %d data %s history %d, want 45 {\"v\":45} 2", st.Seq, st.Data, len(st.History))
	}
}

// A published topic whose newest value is older than the TTL is not shown,
// but its seq is kept: published again, it continues instead of starting over.
func TestPublishAtRemembersTheSeqOfAnAlreadyExpiredPublishedTopic(t *testing.T) {
	r := stream.NewRegistry(stream.RegistryConfig{PublishedTTL: time.Minute})
	old := seqd("billing.orders", 12, `{"n":1}`)
	old.Published, old.Stored = true, time.Now().Add(-2*time.Minute)
	if r.PublishAt(old) {
		t.Fatal("an expired published value was shown")
	}
	if _, ok := r.Topic("billing.orders", 0); ok {
		t.Fatal("the expired topic is listed")
	}
	r.PublishAt(stream.Sequenced{Topic: "billing.orders", Seq: 5, Data: json.RawMessage(`{"n":2}`), Published: true})
	if _, ok := r.Topic("billing.orders", 0); ok {
		t.Error("a value with a seq below the remembered one created the topic")
	}
	r.PublishAt(stream.Sequenced{Topic: "billing.orders", Seq: 13, Data: json.RawMessage(`{"n":3}`), Published: true})
	if st, ok := r.Topic("billing.orders", 0); !ok || st.Seq != 13 {
		t.Errorf("topic after seq 13 = %+v %v, want seq 13", st, ok)
	}
	if got := r.ExpireAt(time.Now().Add(2 * time.Minute)); got != 1 {
		t.Errorf("expire removed %d topics, want the published one", got)
	}
}

// When the store is replaced the seqs start over: open sessions are closed
// with 1012, new ones are told the new instance and take seq 1 again.
func TestNewEpochClosesSessionsAndStartsSeqsOver(t *testing.T) {
	r := newRegistry(t)
	r.PublishAt(seqd("web-3.cpu", 900, `{"v":1}`))
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	s.Hello()
	c.waitMsg(t, "hello", func(m msg) bool { return m.Type == "hello" && m.Instance == "inst-1" })

	r.NewEpoch("epoch-2")
	if closed, code, _ := c.closeState(); !closed || code != stream.CloseServiceRestart {
		t.Fatalf("session closed=%v code=%d, want closed with %d", closed, code, stream.CloseServiceRestart)
	}
	if !r.PublishAt(seqd("web-3.cpu", 1, `{"v":2}`)) {
		t.Fatal("seq 1 refused after NewEpoch")
	}
	c2 := newFakeConn(t)
	s2 := openSession(t, r, c2, stream.SessionConfig{})
	s2.Hello()
	mustHandle(t, s2, `{"type":"subscribe","id":"1","topics":["web-3.cpu"]}`)
	c2.waitMsg(t, "snapshot seq 1", isUpdate("web-3.cpu", 1))
	if m, _ := c2.waitMsg(t, "hello", isReply("hello", "")); m.Instance != "epoch-2" {
		t.Errorf("hello instance %q, want epoch-2", m.Instance)
	}
}

// History asked for on a replica comes from the store: Backfill puts the
// older values before those the replica saw itself, without duplicates.
func TestBackfillAddsOlderValuesBeforeTheLiveOnes(t *testing.T) {
	r := stream.NewRegistry(stream.RegistryConfig{HistoryLen: 5})
	r.PublishAt(seqd("web-3.cpu", 10, `{"v":10}`))
	r.PublishAt(seqd("web-3.cpu", 11, `{"v":11}`))
	past := []stream.HistoryEntry{{Seq: 9, TS: 9}, {Seq: 6, TS: 6}, {Seq: 8, TS: 8}, {Seq: 7, TS: 7}, {Seq: 10, TS: 10}}
	if n := r.Backfill("web-3.cpu", past); n != 4 {
		t.Errorf("Backfill added %d, want 4 (seq 10 is held already)", n)
	}
	st, _ := r.Topic("web-3.cpu", 10)
	var seqs []uint64
	for _, h := range st.History {
		seqs = append(seqs, h.Seq)
	}
	if !slices.Equal(seqs, []uint64{7, 8, 9, 10, 11}) {
		t.Errorf("history seqs %v, want [7 8 9 10 11] (HistoryLen 5, newest kept)", seqs)
	}
	if r.Backfill("web-9.cpu", past) != 0 {
		t.Error("Backfill of an unknown topic added values")
	}
}

// In a fleet the publish API hands values to NATS and refuses every fleet
// host's id as a topic's source.
func TestForwardPublishedAndReservedSources(t *testing.T) {
	r := stream.NewRegistry(stream.RegistryConfig{Host: "hub", MaxTopics: 1})
	var got []string
	r.ForwardPublished(func(topic string, ts time.Time, data json.RawMessage) error {
		got = append(got, topic+" "+string(data))
		r.PublishAt(stream.Sequenced{Topic: topic, Seq: 1, Data: data, Published: true})
		return nil
	})
	r.ReserveSources(func(source string) bool { return source == "web-3" })

	if err := r.PublishJSON("billing.orders", time.Time{}, json.RawMessage(`{ "n": 1 }`)); err != nil {
		t.Fatalf("PublishJSON: %v", err)
	}
	if !slices.Equal(got, []string{`billing.orders {"n":1}`}) {
		t.Errorf("forwarded %q, want the compacted value", got)
	}
	if err := r.PublishJSON("web-3.cpu", time.Time{}, json.RawMessage(`{}`)); !errors.Is(err, stream.ErrReservedTopic) {
		t.Errorf("publishing as fleet host web-3: %v, want ErrReservedTopic", err)
	}
	if err := r.PublishJSON("other.x", time.Time{}, json.RawMessage(`{}`)); !errors.Is(err, stream.ErrTooManyTopics) {
		t.Errorf("a second published topic with MaxTopics 1: %v, want ErrTooManyTopics", err)
	}
}
