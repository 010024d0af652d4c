package stream

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"
)

// countConn records how many frames each WriteFrames call carried.
type countConn struct {
	mu    sync.Mutex
	calls []int
}

func (c *countConn) WriteFrames(frames []Frame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, len(frames))
	return nil
}

func (c *countConn) Close(int, string) error { return nil }

func (c *countConn) snapshot() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.calls...)
}

// Until a batch is delivered nothing of it reaches a subscriber (no
// pending value, no write), and then all of it goes out in one write. This
// does not depend on when the writer goroutine gets scheduled: with values
// offered one by one, the first would already be pending or written.
func TestBatchIsOfferedOnlyOnDelivery(t *testing.T) {
	r := NewRegistry(RegistryConfig{Host: "web-1"})
	c := &countConn{}
	s := r.Open(c, SessionConfig{})
	defer s.Close(1000, "test over")
	if err := s.Subscribe([]string{"app.>"}); err != nil {
		t.Fatal(err)
	}
	var b batch
	for i := range 10 {
		if err := r.publishJSON(fmt.Sprintf("app.t%d", i), time.Time{}, json.RawMessage(`{"v":1}`), &b); err != nil {
			t.Fatal(err)
		}
	}
	if n, calls := s.Pending(), c.snapshot(); n != 0 || len(calls) != 0 {
		t.Fatalf("before delivery: %d values pending, writes %v; want nothing offered yet", n, calls)
	}
	b.deliver(&r.flush)
	deadline := time.Now().Add(10 * time.Second)
	for len(c.snapshot()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the batch was never written")
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	if calls := c.snapshot(); len(calls) != 1 || calls[0] != 10 {
		t.Fatalf("writes = %v, want one write of 10 frames", calls)
	}
}
