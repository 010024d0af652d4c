package stream_test

import (
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
