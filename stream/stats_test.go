package stream_test

import (
	"sync/atomic"
	"testing"

	"github.com/opsdash/opsdash/stream"
)

// TestUpdatesOfferedReconcile: every update value a session is sent, or
// that is dropped, was counted as offered first, a subscription's snapshot
// included; so once nothing is pending, offered = sent + dropped. (Before,
// snapshots were sent but not offered, and /metrics showed
// opsdash_messages_sent_total{type="update"} above
// opsdash_updates_offered_total.)
func TestUpdatesOfferedReconcile(t *testing.T) {
	r := newRegistry(t)
	publish(r, "app.a", 1)
	publish(r, "app.b", 1) // no subscriber yet: nothing offered
	if got := r.Stats().UpdatesOffered; got != 0 {
		t.Fatalf("offered = %d before any subscriber, want 0", got)
	}

	fast := newFakeConn(t)
	fs := openSession(t, r, fast, stream.SessionConfig{})
	mustHandle(t, fs, `{"type":"subscribe","id":"1","topics":["app.*"]}`)
	fast.waitMsg(t, "snapshot app.a", isUpdate("app.a", 1))
	fast.waitMsg(t, "snapshot app.b", isUpdate("app.b", 1))
	waitFor(t, "writer idle", func() bool { return r.Stats().Writers == 0 })
	if st := r.Stats(); st.UpdatesOffered != 2 || st.Sent.Update != 2 {
		t.Fatalf("after a snapshot of 2 topics: offered %d, sent %d; want 2 and 2", st.UpdatesOffered, st.Sent.Update)
	}

	// A reader that stops reading, with a snapshot stuck in its first
	// write: one value is replaced (stale), one pending at unsubscribe,
	// one pending at close.
	slow := newGatedConn(t)
	ss := openSession(t, r, slow, stream.SessionConfig{})
	mustHandle(t, ss, `{"type":"subscribe","id":"1","topics":["app.a","app.b"]}`)
	waitFor(t, "slow writer blocked", slow.blocked)
	publish(r, "app.a", 2)
	publish(r, "app.a", 3)
	publish(r, "app.b", 2)
	// Offers reach a session from its flush loop: wait for both newest
	// values to be pending before unsubscribing and closing.
	waitFor(t, "app.a 3 and app.b 2 pending on the slow session", func() bool {
		return ss.PendingSeq("app.a") == 3 && ss.PendingSeq("app.b") == 2
	})
	mustHandle(t, ss, `{"type":"unsubscribe","id":"2","topics":["app.b"]}`)
	ss.Close(1000, "done")
	fast.waitMsg(t, "app.a 3", isUpdate("app.a", 3))
	fast.waitMsg(t, "app.b 2", isUpdate("app.b", 2))
	waitFor(t, "writers idle", func() bool { return r.Stats().Writers == 0 })

	st := r.Stats()
	d := st.Dropped
	// 2 snapshots to each session, then 3 values to both.
	const offered = 2 + 2 + 3*2
	if st.UpdatesOffered != offered || st.Sent.Update+d.Stale+d.Unsubscribed+d.Closed != offered {
		t.Fatalf("offered %d, want %d = sent %d + dropped stale %d, unsubscribed %d, closed %d",
			st.UpdatesOffered, offered, st.Sent.Update, d.Stale, d.Unsubscribed, d.Closed)
	}
	if d.Stale == 0 || d.Unsubscribed != 1 || d.Closed != 1 {
		t.Errorf("dropped stale %d, unsubscribed %d, closed %d; want at least 1, 1, 1", d.Stale, d.Unsubscribed, d.Closed)
	}
}

// TestUpdatesOfferedReconcileWhenRoutesChangeInAnInbox: values of a topic
// wait in the flush loops' inboxes while the loops are busy; a session
// that subscribes between two of them was offered only its snapshot and
// the second value, and one subscribed all along both values, and each
// value is then sent or dropped once for each session it was offered to.
// (Before, the second value replaced the first in the inbox whatever their
// routes, and the session that subscribed in between had the first value
// counted as dropped without it ever being offered.)
func TestUpdatesOfferedReconcileWhenRoutesChangeInAnInbox(t *testing.T) {
	r := newRegistry(t)
	publish(r, "app.block", 0)
	// Keep every flush loop busy in a write that blocks, so published
	// values wait in the inboxes.
	release := make(chan struct{})
	var writes atomic.Int64
	blockers := make([]*stream.Session, 64*r.FlushLoops()) // every loop gets some
	for i := range blockers {
		blockers[i] = r.Open(&blockConn{release: release, writes: &writes}, stream.SessionConfig{})
		if err := blockers[i].Subscribe([]string{"app.block"}); err != nil { // its snapshot's write blocks
			t.Fatal(err)
		}
	}
	released := false
	defer func() {
		if !released {
			close(release)
		}
		for _, s := range blockers {
			s.Close(1000, "test over")
		}
	}()
	waitFor(t, "every flush loop to block in a write", func() bool { return writes.Load() >= int64(r.FlushLoops()) })

	early, late := newFakeConn(t), newFakeConn(t)
	es := openSession(t, r, early, stream.SessionConfig{})
	if err := es.Subscribe([]string{"app.x"}); err != nil {
		t.Fatal(err)
	}
	publish(r, "app.x", 1) // offered to early
	ls := openSession(t, r, late, stream.SessionConfig{})
	if err := ls.Subscribe([]string{"app.x"}); err != nil { // snapshot: seq 1
		t.Fatal(err)
	}
	publish(r, "app.x", 2) // offered to both
	close(release)
	released = true
	early.waitMsg(t, "app.x 2 on early", isUpdate("app.x", 2))
	late.waitMsg(t, "app.x 2 on late", isUpdate("app.x", 2))
	waitFor(t, "writers idle", func() bool { return r.Stats().Writers == 0 })

	st := r.Stats()
	d := st.Dropped
	offered := uint64(len(blockers)) + 1 + 1 + 2 // blockers' snapshots, early's seq 1, late's snapshot, seq 2 to both
	if st.UpdatesOffered != offered || st.Sent.Update+d.Stale+d.Unsubscribed+d.Closed != offered {
		t.Fatalf("offered %d, want %d = sent %d + dropped stale %d, unsubscribed %d, closed %d",
			st.UpdatesOffered, offered, st.Sent.Update, d.Stale, d.Unsubscribed, d.Closed)
	}
}
