package stream_test

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsdash/opsdash/stream"
)

// blockConn blocks every write until released: a transport whose writes
// never return (worse than a full socket, which a NonBlockingConn reports).
type blockConn struct {
	release chan struct{}
	writes  *atomic.Int64
}

func (c *blockConn) WriteFrames([]stream.Frame) error {
	c.writes.Add(1)
	<-c.release
	return nil
}
func (c *blockConn) Close(int, string) error { return nil }

// TestPublishNotDelayedByBlockedWriters: with 5,000 sessions whose every
// write blocks, publishes still complete (an offer only fills a mailbox),
// and the sessions are written by the registry's few flush loops, not by a
// goroutine each: the number of goroutines does not grow with the sessions
// that have something to write.
func TestPublishNotDelayedByBlockedWriters(t *testing.T) {
	const n = 5000
	r := newRegistry(t)
	publish(r, "app.cpu", 0)
	release := make(chan struct{})
	var writes atomic.Int64
	base := runtime.NumGoroutine()
	sessions := make([]*stream.Session, n)
	for i := range sessions {
		s := r.Open(&blockConn{release: release, writes: &writes}, stream.SessionConfig{})
		if err := s.Subscribe([]string{"app.cpu"}); err != nil { // queues the snapshot: its write blocks
			t.Fatal(err)
		}
		sessions[i] = s
	}
	defer func() {
		close(release)
		for _, s := range sessions {
			s.Close(1001, "")
		}
	}()
	waitFor(t, "every flush loop to block in a write", func() bool { return writes.Load() >= int64(min(r.FlushLoops(), n)) })

	done := make(chan struct{})
	go func() {
		defer close(done)
		for v := 1; v <= 100; v++ {
			publish(r, "app.cpu", v)
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // a bound on a hang, not a speed check
		t.Fatal("publishes did not complete while the writers were blocked")
	}
	if got := runtime.NumGoroutine() - base; got > r.FlushLoops()+2 {
		t.Fatalf("%d goroutines for %d sessions with pending output; want the %d flush loops", got, n, r.FlushLoops())
	}
	if got := writes.Load(); got > int64(r.FlushLoops()) {
		t.Fatalf("%d writes under way, want at most one per flush loop (%d)", got, r.FlushLoops())
	}
	if st := r.Stats(); st.UpdatesOffered < 100*n {
		t.Fatalf("offered %d updates, want %d", st.UpdatesOffered, 100*n)
	}
}

// fakeClock is a flush clock the test moves.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() int64              { return c.ns.Load() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newClockedRegistry(t *testing.T, window time.Duration) (*stream.Registry, *fakeClock) {
	t.Helper()
	r := stream.NewRegistry(stream.RegistryConfig{Host: "web-1", Instance: "inst-1", FlushWindow: window})
	clk := &fakeClock{}
	clk.ns.Store(int64(time.Hour)) // far from 0, which means "never"
	r.SetFlushClock(clk.now)
	return r, clk
}

// TestWindowMergesFramesIntoOneWrite: an idle session's first value goes
// at once; values of other topics offered while it waits out the window
// after that write leave together in one write when the window ends; a new
// value of a topic the last write carried does not wait (holding it would
// merge nothing, only conflate it); once a window has passed without
// anything to send, the session is idle and its next value goes at once.
func TestWindowMergesFramesIntoOneWrite(t *testing.T) {
	r, clk := newClockedRegistry(t, 50*time.Millisecond)
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["app.>"]}`)
	c.waitMsg(t, "subscribed", isReply("subscribed", "1"))

	clk.advance(time.Second) // the subscribe's window is long over
	r.WakeFlushLoops()
	waitFor(t, "the session to go idle", func() bool { return r.Stats().Writers == 0 })
	publish(r, "app.a", 1) // idle: written at once, though the clock stands still
	c.waitMsg(t, "app.a at once", isUpdate("app.a", 1))
	writes := len(c.writeSizes())

	publish(r, "app.b", 1) // in the window of app.a's write: these wait
	publish(r, "app.c", 1)
	clk.advance(50 * time.Millisecond)
	r.WakeFlushLoops()
	c.waitMsg(t, "app.c after the window", isUpdate("app.c", 1))
	if sizes := c.writeSizes()[writes:]; len(sizes) != 1 || sizes[0] != 2 {
		t.Fatalf("writes after the window carried %v frames, want one write of 2", sizes)
	}
	writes = len(c.writeSizes())

	publish(r, "app.c", 2) // in the next window: kept, not conflated, by app.c 3
	waitFor(t, "app.c 2 in the mailbox", func() bool { return s.Pending() == 1 })
	publish(r, "app.c", 3)
	waitFor(t, "app.c 3 in the mailbox", func() bool { return s.Pending() == 2 })
	clk.advance(50 * time.Millisecond)
	r.WakeFlushLoops()
	c.waitMsg(t, "app.c 3 after the window", isUpdate("app.c", 3))
	if sizes := c.writeSizes()[writes:]; len(sizes) != 1 || sizes[0] != 2 {
		t.Fatalf("writes %v, want app.c 2 and 3 in one write", sizes)
	}
	if got := updates(c.messages(), "app.c"); len(got) != 3 {
		t.Fatalf("app.c updates %v, want seqs 1, 2, 3: the window conflated", got)
	}
	if d := r.Stats().Dropped.Stale; d != 0 {
		t.Fatalf("%d values conflated by a window", d)
	}
}

// TestWindowKeepsBoundedValues: a topic offered far more often than a
// window holds ends the window at once (the clock stands still here) rather
// than keeping more than a bounded number of values.
func TestWindowKeepsBoundedValues(t *testing.T) {
	r, clk := newClockedRegistry(t, time.Hour)
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["app.a"]}`)
	c.waitMsg(t, "subscribed", isReply("subscribed", "1"))
	maxPending := 0
	lastP, lastW := s.Pending(), len(c.writeSizes())
	for v := 1; v <= 200; v++ {
		publish(r, "app.a", v)
		// Each value reaches the mailbox before the next is published
		// (else the flush loop's inbox keeps only the newest).
		waitFor(t, "the value offered", func() bool { return s.Pending() != lastP || len(c.writeSizes()) != lastW })
		lastP, lastW = s.Pending(), len(c.writeSizes())
		maxPending = max(maxPending, lastP)
	}
	// 200 values within hour-long windows: the bound ended them.
	waitFor(t, "a write during a window", func() bool { return len(c.writeSizes()) >= 3 })
	for _, n := range c.writeSizes() {
		if n > 65 {
			t.Fatalf("a write of %d frames: more than the bound kept", n)
		}
	}
	clk.advance(time.Hour)
	r.WakeFlushLoops()
	c.waitMsg(t, "the newest value", isUpdate("app.a", 200))
	if maxPending > 65 {
		t.Fatalf("a session held %d values of one topic", maxPending)
	}
	assertRising(t, c.messages())
}

// TestRepliesSkipTheWindow: a reply is not held for the rest of a window.
func TestRepliesSkipTheWindow(t *testing.T) {
	r, _ := newClockedRegistry(t, time.Hour)
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	s.Hello()
	c.waitMsg(t, "hello", func(m msg) bool { return m.Type == "hello" })
	mustHandle(t, s, `{"type":"ping","id":"p"}`) // within the hour-long window of hello
	c.waitMsg(t, "pong", isReply("pong", "p"))
}

// TestMaxHzHoldsAndDeliversNewest: with max_hz 1 the snapshot goes at once,
// values published within the next second are held and conflate, a status
// change is not delayed, and when the second has passed the newest value
// (not the ones before it) is sent.
func TestMaxHzHoldsAndDeliversNewest(t *testing.T) {
	r, clk := newClockedRegistry(t, stream.NoLimit)
	publish(r, "app.a", 0)
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["app.a"],"max_hz":1}`)
	c.waitMsg(t, "snapshot", isUpdate("app.a", 1))

	for v := 1; v <= 9; v++ {
		publish(r, "app.a", v) // seqs 2..10, all within the second
	}
	r.SetStatus("app.a", errors.New("probe failed"))
	c.waitMsg(t, "status at once", func(m msg) bool { return m.Type == "status" && m.Topic == "app.a" })
	mustHandle(t, s, `{"type":"ping","id":"p"}`)
	c.waitMsg(t, "pong", isReply("pong", "p"))
	if got := updates(c.messages(), "app.a"); len(got) != 1 {
		t.Fatalf("updates %v within the first second, want only the snapshot", got)
	}

	clk.advance(time.Second)
	s.ReleaseHeld()
	c.waitMsg(t, "newest value after a second", isUpdate("app.a", 10))
	if got := updates(c.messages(), "app.a"); len(got) != 2 || got[1] != 10 {
		t.Fatalf("updates %v, want the snapshot then seq 10", got)
	}
}

// TestMaxHzTakesTheHighestRate: a topic matched by a pattern with max_hz
// and by one without flows without a limit; unsubscribing the unlimited
// pattern brings the limit back.
func TestMaxHzTakesTheHighestRate(t *testing.T) {
	r, _ := newClockedRegistry(t, stream.NoLimit) // the clock stands still: any limit would hold
	publish(r, "app.a", 0)
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["app.*"],"max_hz":0.5}`)
	mustHandle(t, s, `{"type":"subscribe","id":"2","topics":["app.a"]}`)
	c.waitMsg(t, "snapshot", isUpdate("app.a", 1))
	for v := 1; v <= 5; v++ {
		publish(r, "app.a", v)
		c.waitMsg(t, "unlimited update", isUpdate("app.a", uint64(v+1)))
	}
	mustHandle(t, s, `{"type":"unsubscribe","id":"3","topics":["app.a"]}`)
	c.waitMsg(t, "unsubscribed", isReply("unsubscribed", "3"))
	publish(r, "app.a", 6) // seq 7: held by max_hz 0.5
	mustHandle(t, s, `{"type":"ping","id":"p"}`)
	c.waitMsg(t, "pong", isReply("pong", "p"))
	if got := updates(c.messages(), "app.a"); got[len(got)-1] != 6 {
		t.Fatalf("updates %v: seq 7 went out despite max_hz 0.5", got)
	}
}

// TestMaxHzTimerDeliversNewest: on the real clock, the held newest value
// of a burst goes out when its time comes, with nothing else happening.
func TestMaxHzTimerDeliversNewest(t *testing.T) {
	r := newRegistry(t)
	publish(r, "app.a", 0)
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["app.a"],"max_hz":20}`)
	c.waitMsg(t, "snapshot", isUpdate("app.a", 1))
	for v := 1; v <= 50; v++ {
		publish(r, "app.a", v)
	}
	c.waitMsg(t, "the newest value", isUpdate("app.a", 51))
	assertRising(t, c.messages())
}

// TestNewestAlwaysArrives: publishers on several goroutines, sessions
// with and without max_hz, a short window: every session ends up with the
// newest value of every topic, seqs only rise, and every value a session
// did not get is counted as conflated.
func TestNewestAlwaysArrives(t *testing.T) {
	r := stream.NewRegistry(stream.RegistryConfig{Host: "web-1", FlushWindow: time.Millisecond})
	topics := []string{"app.a", "app.b", "app.c", "app.d"}
	const sessions, values = 40, 300
	conns := make([]*fakeConn, sessions)
	for i := range conns {
		conns[i] = newFakeConn(t)
		s := openSession(t, r, conns[i], stream.SessionConfig{})
		req := `{"type":"subscribe","id":"1","topics":["app.*"]}`
		if i%2 == 1 {
			req = `{"type":"subscribe","id":"1","topics":["app.*"],"max_hz":200}`
		}
		mustHandle(t, s, req)
	}
	var wg sync.WaitGroup
	for _, tp := range topics {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := 1; v <= values; v++ {
				publish(r, tp, v)
			}
		}()
	}
	wg.Wait()
	for _, c := range conns {
		for _, tp := range topics {
			c.waitMsg(t, "newest "+tp, isUpdate(tp, values))
		}
		assertRising(t, c.messages())
	}
	waitFor(t, "sessions idle", func() bool { return r.Stats().Writers == 0 })
	st := r.Stats()
	if st.Sent.Update+st.Dropped.Stale != st.UpdatesOffered {
		t.Fatalf("sent %d + conflated %d != offered %d", st.Sent.Update, st.Dropped.Stale, st.UpdatesOffered)
	}
}
