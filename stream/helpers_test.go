package stream_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
)

// msg is any server frame, decoded.
type msg = stream.ServerMessage

// fakeConn is a stream.NonBlockingConn that records what the session
// writes. With a gate it models a client that stopped reading: its writes
// are kept back (not recorded) and the session parks in WaitWritable until
// the test opens the gate; err makes every write fail.
type fakeConn struct {
	t *testing.T

	mu      sync.Mutex
	frames  []stream.Frame
	msgs    []msg
	calls   int
	sizes   []int         // frames per WriteFrames call
	gate    chan struct{} // nil: never blocks
	kept    []stream.Frame
	writing bool // a session is parked in WaitWritable
	err     error
	closed  bool
	code    int
	reason  string
	closeCh chan struct{}
}

var _ stream.NonBlockingConn = (*fakeConn)(nil)

func newFakeConn(t *testing.T) *fakeConn {
	return &fakeConn{t: t, closeCh: make(chan struct{})}
}

// newGatedConn returns a conn whose writes are kept back until open is called.
func newGatedConn(t *testing.T) *fakeConn {
	c := newFakeConn(t)
	c.gate = make(chan struct{})
	return c
}

func (c *fakeConn) WriteFrames(frames []stream.Frame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	c.sizes = append(c.sizes, len(frames))
	if c.err != nil {
		return c.err
	}
	if c.gate != nil {
		for _, f := range frames {
			c.kept = append(c.kept, stream.Frame{Type: f.Type, Topic: f.Topic, Seq: f.Seq, JSON: append([]byte(nil), f.JSON...)})
		}
		return nil
	}
	c.recordLocked(frames)
	return nil
}

func (c *fakeConn) recordLocked(frames []stream.Frame) {
	for _, f := range frames {
		var m msg
		if e := json.Unmarshal(f.JSON, &m); e != nil {
			c.t.Errorf("frame is not JSON: %v: %s", e, f.JSON)
		}
		if m.Type == "update" && (f.Type != "update" || f.Topic != m.Topic || f.Seq != m.Seq) {
			c.t.Errorf("Frame metadata %q %q %d does not match its JSON %s", f.Type, f.Topic, f.Seq, f.JSON)
		}
		c.frames = append(c.frames, stream.Frame{Type: f.Type, Topic: f.Topic, Seq: f.Seq, JSON: append([]byte(nil), f.JSON...)})
		c.msgs = append(c.msgs, m)
	}
}

// Backlogged implements stream.NonBlockingConn: frames are kept back.
func (c *fakeConn) Backlogged() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.kept) > 0
}

// WaitWritable implements stream.NonBlockingConn: it waits for the gate,
// then records the frames kept back.
func (c *fakeConn) WaitWritable() error {
	c.mu.Lock()
	gate := c.gate
	c.writing = gate != nil
	c.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-c.closeCh:
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writing = false
	if c.closed {
		return errors.New("fake conn closed")
	}
	c.recordLocked(c.kept)
	c.kept = nil
	return nil
}

func (c *fakeConn) Close(code int, reason string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed, c.code, c.reason = true, code, reason
		close(c.closeCh)
	}
	return nil
}

// open lets blocked and future writes through.
func (c *fakeConn) open() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gate != nil {
		close(c.gate)
		c.gate = nil
	}
}

func (c *fakeConn) blocked() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writing
}

// writeSizes returns the number of frames of each WriteFrames call so far.
func (c *fakeConn) writeSizes() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.sizes...)
}

func (c *fakeConn) messages() []msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]msg(nil), c.msgs...)
}

func (c *fakeConn) closeState() (bool, int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed, c.code, c.reason
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitMsg waits for a message satisfying pred and returns it with its index.
func (c *fakeConn) waitMsg(t *testing.T, what string, pred func(msg) bool) (msg, int) {
	t.Helper()
	var found msg
	idx := -1
	waitFor(t, what, func() bool {
		for i, m := range c.messages() {
			if pred(m) {
				found, idx = m, i
				return true
			}
		}
		return false
	})
	return found, idx
}

func isReply(typ, id string) func(msg) bool {
	return func(m msg) bool { return m.Type == typ && m.ID == id }
}

func isUpdate(topic string, seq uint64) func(msg) bool {
	return func(m msg) bool { return m.Type == "update" && m.Topic == topic && m.Seq == seq }
}

// updates returns the seqs of topic's updates, in order.
func updates(ms []msg, topic string) []uint64 {
	var seqs []uint64
	for _, m := range ms {
		if m.Type == "update" && m.Topic == topic {
			seqs = append(seqs, m.Seq)
		}
	}
	return seqs
}

func mustHandle(t *testing.T, s *stream.Session, req string) {
	t.Helper()
	if err := s.Handle([]byte(req)); err != nil {
		t.Fatalf("Handle(%s) = %v", req, err)
	}
}

func publish(r *stream.Registry, topic string, v int) {
	r.Publish(collectorsSample(topic, v))
}

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx, cancel
}

func collectorsSample(topic string, v int) collectors.Sample {
	return collectors.Sample{Topic: topic, Time: time.Now(), Data: map[string]int{"v": v}}
}

func newRegistry(t *testing.T) *stream.Registry {
	t.Helper()
	return stream.NewRegistry(stream.RegistryConfig{Host: "web-1", Instance: "inst-1"})
}

func openSession(t *testing.T, r *stream.Registry, c *fakeConn, cfg stream.SessionConfig) *stream.Session {
	t.Helper()
	s := r.Open(c, cfg)
	t.Cleanup(func() { c.open(); s.Close(1000, "test over") })
	return s
}

func assertRising(t *testing.T, ms []msg) {
	t.Helper()
	last := map[string]uint64{}
	for _, m := range ms {
		if m.Type != "update" {
			continue
		}
		if m.Seq <= last[m.Topic] {
			t.Fatalf("topic %s: seq %d after %d", m.Topic, m.Seq, last[m.Topic])
		}
		last[m.Topic] = m.Seq
	}
}
