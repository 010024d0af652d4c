package stream_test

import (
	"testing"

	"github.com/opsdash/opsdash/stream"
)

func TestCloseAll(t *testing.T) {
	r := newRegistry(t)
	var conns []*fakeConn
	for range 5 {
		c := newFakeConn(t)
		s := r.Open(c, stream.SessionConfig{})
		mustHandle(t, s, `{"type":"subscribe","id":"1","topics":[">"]}`)
		conns = append(conns, c)
	}
	if r.Sessions() != 5 {
		t.Fatalf("Sessions() = %d", r.Sessions())
	}
	r.CloseAll(1001, "server going away")
	for _, c := range conns {
		if closed, code, reason := c.closeState(); !closed || code != 1001 || reason != "server going away" {
			t.Fatalf("closed=%v code=%d reason=%q", closed, code, reason)
		}
	}
	if stats := r.Stats(); r.Sessions() != 0 || stats.Subscriptions != 0 || r.PatternCount() != 0 {
		t.Fatalf("after CloseAll: sessions %d, subscriptions %d, patterns %d", r.Sessions(), stats.Subscriptions, r.PatternCount())
	}
}
