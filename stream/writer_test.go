package stream_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/opsdash/opsdash/stream"
)

func TestWriteTimeoutClosesSession(t *testing.T) {
	r := newRegistry(t)
	c := newFakeConn(t)
	c.err = fmt.Errorf("write: %w", os.ErrDeadlineExceeded)
	s := r.Open(c, stream.SessionConfig{})
	s.Hello()
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session not closed after a write timeout")
	}
	if closed, code, reason := c.closeState(); !closed || code != 4008 || reason != "write timeout" {
		t.Fatalf("conn closed=%v code=%d reason=%q, want 4008 write timeout", closed, code, reason)
	}
	stats := r.Stats()
	if stats.WriteTimeouts != 1 || stats.WriteErrors != 1 || stats.Sessions != 0 {
		t.Fatalf("stats %+v", stats)
	}
	// Handle on a closed session does nothing.
	if err := s.Handle([]byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
}

func TestIdleSessionHasNoWriter(t *testing.T) {
	r := newRegistry(t)
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	s.Hello()
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["app.a"]}`)
	publish(r, "app.a", 1)
	c.waitMsg(t, "update", isUpdate("app.a", 1))
	waitFor(t, "writer to exit", func() bool { return r.Stats().Writers == 0 })
	publish(r, "app.a", 2) // a new writer starts on demand
	c.waitMsg(t, "update 2", isUpdate("app.a", 2))
	// A frame is counted once its write returns, which can be after the
	// connection has recorded it.
	waitFor(t, "the second update to be counted", func() bool { return r.Stats().Sent.Update >= 2 })
	stats := r.Stats()
	if stats.Sent.Hello != 1 || stats.Sent.Subscribed != 1 || stats.Sent.Update != 2 || stats.UpdatesOffered != 2 {
		t.Fatalf("counters %+v", stats.Sent)
	}
}
