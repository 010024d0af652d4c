package stream

import (
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
)

// A publisher may take a topic's routes just before a session unsubscribes
// and offer just after: the offer to the unrouted slot is dropped, also
// once the session has subscribed again (which makes a new slot).
func TestOfferThroughStaleRouteIsDropped(t *testing.T) {
	r := NewRegistry(RegistryConfig{Host: "web-1"})
	s := r.Open(&countConn{}, SessionConfig{})
	defer s.Close(1000, "test over")
	if err := s.Subscribe([]string{"app.a"}); err != nil {
		t.Fatal(err)
	}
	r.Publish(collectors.Sample{Topic: "app.a", Data: map[string]int{"v": 1}})
	// The value reaches the session from a flush loop: wait until it is
	// written, so that its offer cannot land after the unsubscribe below.
	for deadline := time.Now().Add(10 * time.Second); r.counters.sent[kindUpdate].Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the published value was never written")
		}
		time.Sleep(time.Millisecond)
	}
	r.mu.Lock()
	tp := r.topics["app.a"]
	routes := tp.subscribersLocked()
	seq, frame := tp.seq, tp.frame
	r.mu.Unlock()
	if len(routes) != 1 || routes[0].s != s {
		t.Fatalf("routes = %v, want the session", routes)
	}

	if err := s.Handle([]byte(`{"type":"unsubscribe","id":"1","topics":["app.a"]}`)); err != nil {
		t.Fatal(err)
	}
	dropped := r.counters.dropUnsub.Load()
	routes[0].s.offerFromLoop(routes[0].slot, seq+1, frame, 0)
	if n := s.Pending(); n != 0 {
		t.Fatalf("%d values pending after an offer through an unrouted slot", n)
	}
	if d := r.counters.dropUnsub.Load() - dropped; d != 1 {
		t.Fatalf("dropUnsub grew by %d, want 1", d)
	}

	if err := s.Subscribe([]string{"app.a"}); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	fresh := tp.subs[s]
	r.mu.Unlock()
	if fresh == nil || fresh == routes[0].slot {
		t.Fatal("subscribing again did not make a new slot")
	}
	routes[0].s.offerFromLoop(routes[0].slot, seq+2, frame, 0)
	if d := r.counters.dropUnsub.Load() - dropped; d != 2 {
		t.Fatalf("dropUnsub grew by %d, want 2: the old slot stays dropped", d)
	}
}
