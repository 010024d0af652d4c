package stream_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
)

// A reader that stalls while a topic is published thousands of times gets,
// when it reads again, the newest value and not a backlog; the mailbox never
// holds more than one value per topic; another session keeps receiving.
func TestStalledReaderGetsNewestValue(t *testing.T) {
	r := newRegistry(t)
	topics := []string{"app.a", "app.b", "app.c"}
	for _, tp := range topics {
		publish(r, tp, 0)
	}
	slow := newGatedConn(t)
	ss := openSession(t, r, slow, stream.SessionConfig{})
	mustHandle(t, ss, `{"type":"subscribe","id":"1","topics":["app.*"]}`)
	waitFor(t, "slow writer blocked", slow.blocked)
	fast := newFakeConn(t)
	fs := openSession(t, r, fast, stream.SessionConfig{})
	mustHandle(t, fs, `{"type":"subscribe","id":"1","topics":["app.*"]}`)

	const n = 5000
	pad := strings.Repeat("x", 3000) // a few KiB per value
	maxPending := 0
	for i := 1; i <= n; i++ {
		data := json.RawMessage(fmt.Sprintf(`{"v":%d,"pad":%q}`, i, pad))
		for _, tp := range topics {
			r.Publish(collectors.Sample{Topic: tp, Time: time.Now(), Data: data})
		}
		if i%100 == 0 {
			maxPending = max(maxPending, ss.Pending())
		}
	}
	if maxPending > len(topics) {
		t.Fatalf("stalled mailbox held %d values for %d topics", maxPending, len(topics))
	}
	if stats := r.Stats(); stats.Dropped.Stale < uint64(len(topics)*(n-2)) {
		t.Fatalf("Dropped.Stale = %d, want >= %d", stats.Dropped.Stale, len(topics)*(n-2))
	}
	newest := uint64(n + 1) // seq 1 was the value published before subscribing
	for _, tp := range topics {
		fast.waitMsg(t, "fast reader newest "+tp, isUpdate(tp, newest))
	}
	if got := len(slow.messages()); got != 0 {
		t.Fatalf("stalled reader received %d frames while blocked", got)
	}

	slow.open()
	for _, tp := range topics {
		slow.waitMsg(t, "slow reader newest "+tp, isUpdate(tp, newest))
	}
	ms := slow.messages()
	assertRising(t, ms)
	for _, tp := range topics {
		seqs := updates(ms, tp)
		// The snapshot (seq 1, in the blocked batch), then the newest: a gap, no backlog.
		if !slices.Equal(seqs, []uint64{1, newest}) {
			t.Fatalf("%s: slow reader got seqs %v, want [1 %d]", tp, seqs, newest)
		}
	}
}

func TestSeqStrictlyRisesWithConcurrentPublishers(t *testing.T) {
	r := newRegistry(t)
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"s","topics":[">"]}`)
	var wg sync.WaitGroup
	for range 4 { // several publishers race on the same topics
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				publish(r, fmt.Sprintf("app.t%d", i%3), i)
			}
		}()
	}
	wg.Wait()
	for _, tp := range []string{"app.t0", "app.t1", "app.t2"} {
		state, _ := r.Topic(tp, 0)
		c.waitMsg(t, "newest of "+tp, isUpdate(tp, state.Seq))
	}
	assertRising(t, c.messages())
}

func TestFullReplyQueueBlocksHandle(t *testing.T) {
	r := newRegistry(t)
	c := newGatedConn(t)
	s := openSession(t, r, c, stream.SessionConfig{ReplyQueue: 2})
	s.Hello()
	waitFor(t, "writer blocked on hello", c.blocked)
	mustHandle(t, s, `{"type":"ping","id":"1"}`)
	mustHandle(t, s, `{"type":"ping","id":"2"}`)
	returned := make(chan error, 1)
	go func() { returned <- s.Handle([]byte(`{"type":"ping","id":"3"}`)) }()
	// Handle counts the session as paused when it finds the FIFO full and
	// is about to wait.
	waitFor(t, "Handle waiting for reply space", func() bool { return r.Stats().ReadingPaused == 1 })
	select {
	case err := <-returned:
		t.Fatalf("Handle returned (%v) while the reply FIFO was full", err)
	default:
	}
	if stats := r.Stats(); stats.ReplyQueueDepth != 2 {
		t.Fatalf("ReplyQueueDepth = %d, want 2", stats.ReplyQueueDepth)
	}
	c.open()
	select {
	case err := <-returned:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Handle still blocked after the reader resumed")
	}
	c.waitMsg(t, "pong 3", isReply("pong", "3"))
	var ids []string
	for _, m := range c.messages() {
		ids = append(ids, m.Type+m.ID)
	}
	if !slices.Equal(ids, []string{"hello", "pong1", "pong2", "pong3"}) {
		t.Fatalf("frames %v, want replies in order", ids)
	}
}

func TestCloseUnblocksHandle(t *testing.T) {
	r := newRegistry(t)
	c := newGatedConn(t)
	s := openSession(t, r, c, stream.SessionConfig{ReplyQueue: 1})
	s.Hello()
	waitFor(t, "writer blocked", c.blocked)
	mustHandle(t, s, `{"type":"ping","id":"1"}`)
	returned := make(chan error, 1)
	go func() { returned <- s.Handle([]byte(`{"type":"ping","id":"2"}`)) }()
	s.Close(1001, "going away")
	select {
	case err := <-returned:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Handle still blocked after Close")
	}
	if closed, code, _ := c.closeState(); !closed || code != 1001 {
		t.Fatalf("conn closed=%v code=%d", closed, code)
	}
}
