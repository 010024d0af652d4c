package stream

import (
	"encoding/json"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
)

// discardConn counts the update frames it is handed and drops them.
type discardConn struct {
	updates *atomic.Int64
	done    chan struct{} // receives when updates reaches target
	target  int64
}

func (c *discardConn) WriteFrames(frames []Frame) error {
	if c.updates != nil {
		for _, f := range frames {
			if f.Type == "update" && c.updates.Add(1) == c.target {
				c.done <- struct{}{}
			}
		}
	}
	return nil
}

func (c *discardConn) Close(int, string) error { return nil }

// stallConn keeps every write back until closed: a reader that stopped
// reading (its session parks after the first write).
type stallConn struct{ closed chan struct{} }

func (c *stallConn) WriteFrames([]Frame) error { return nil }
func (c *stallConn) Close(int, string) error   { return nil }
func (c *stallConn) Backlogged() bool          { return true }
func (c *stallConn) WaitWritable() error       { <-c.closed; return nil }

var benchData = json.RawMessage(`{"usage_pct":12.5,"user_pct":8.25,"system_pct":3.5,"iowait_pct":0.75,"steal_pct":0}`)

// BenchmarkPublishFanout10k: one publish offered to 10,000 sessions
// subscribed to the topic (each with three patterns). "offer" measures the
// publisher's side only (writers drain on the other core concurrently);
// "delivered" also waits until all 10,000 writers have handed the value to
// their conn.
func BenchmarkPublishFanout10k(b *testing.B) {
	const n = 10000
	for _, mode := range []string{"offer", "delivered"} {
		b.Run(mode, func(b *testing.B) {
			r := NewRegistry(RegistryConfig{Host: "web-1"})
			var count atomic.Int64
			done := make(chan struct{}, 1)
			sessions := make([]*Session, n)
			for i := range sessions {
				c := &discardConn{}
				if mode == "delivered" {
					c = &discardConn{updates: &count, done: done, target: n}
				}
				s := r.Open(c, DefaultSessionConfig())
				if err := s.Subscribe([]string{"web-1.cpu", "*.mem", fmt.Sprintf("app-%d.>", i)}); err != nil {
					b.Fatal(err)
				}
				sessions[i] = s
			}
			sample := collectors.Sample{Topic: "web-1.cpu", Time: time.Now(), Data: benchData}
			waitIdle(b, r)
			measureFanout(b, r, n, mode == "delivered", &count, done, func() { r.Publish(sample) })
		})
	}
}

// BenchmarkPublishBatchFanout10k: one batch of 10 values (10 topics, as a
// collector run or one publish API request of the load tool) offered to
// 10,000 sessions that each subscribe to all 10 topics through one
// pattern. "offer" and "delivered" as in BenchmarkPublishFanout10k;
// ns/subscriber is per session (10 values each).
func BenchmarkPublishBatchFanout10k(b *testing.B) {
	const n, topics = 10000, 10
	for _, mode := range []string{"offer", "delivered"} {
		b.Run(mode, func(b *testing.B) {
			r := NewRegistry(RegistryConfig{Host: "web-1"})
			items := make([]JSONItem, topics)
			for i := range items {
				items[i] = JSONItem{Topic: fmt.Sprintf("bench.t%d", i), Data: benchData}
			}
			if _, err := r.PublishJSONBatch(items); err != nil {
				b.Fatal(err)
			}
			var count atomic.Int64
			done := make(chan struct{}, 1)
			for range n {
				c := &discardConn{}
				if mode == "delivered" {
					c = &discardConn{updates: &count, done: done, target: n * topics}
				}
				s := r.Open(c, DefaultSessionConfig())
				if err := s.Subscribe([]string{"bench.>"}); err != nil {
					b.Fatal(err)
				}
			}
			waitIdle(b, r)
			select { // the snapshots reached the target once: forget it
			case <-done:
			default:
			}
			measureFanout(b, r, n, mode == "delivered", &count, done, func() {
				if _, err := r.PublishJSONBatch(items); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// measureFanout times publish to n subscribed sessions of r; with delivered
// each round also waits until done says every conn got its values (count
// is reset first). It reports ns per subscriber, then closes the sessions.
func measureFanout(b *testing.B, r *Registry, n int, delivered bool, count *atomic.Int64, done <-chan struct{}, publish func()) {
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if delivered {
			count.Store(0)
		}
		publish()
		if delivered {
			<-done
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/subscriber")
	r.CloseAll(1001, "bench over")
	waitIdle(b, r)
}

// BenchmarkOffer: one mailbox offer. "conflate": the writer is stuck in a
// write, so the offer replaces the pending value (the slow-reader path);
// "wake": the session is idle, so the offer starts a writer goroutine that
// drains into a discarding conn and exits.
func BenchmarkOffer(b *testing.B) {
	b.Run("conflate", func(b *testing.B) {
		c := &stallConn{closed: make(chan struct{})} // the snapshot's write stalls
		benchOffer(b, c, func() { close(c.closed) })
	})
	b.Run("wake", func(b *testing.B) {
		benchOffer(b, &discardConn{}, func() {})
	})
}

// benchOffer times offers of ever newer values of one topic to the slot of
// one session writing to conn; release runs after the timing, before the
// session closes.
func benchOffer(b *testing.B, conn Conn, release func()) {
	r := NewRegistry(RegistryConfig{})
	r.Publish(collectors.Sample{Topic: "app.a", Data: benchData})
	s := r.Open(conn, SessionConfig{})
	if err := s.Subscribe([]string{"app.a"}); err != nil {
		b.Fatal(err)
	}
	t := r.topics["app.a"]
	sl, frame, seq := t.subs[s], t.frame, t.seq
	b.ReportAllocs()
	for b.Loop() {
		seq++
		if s.offerFromLoop(sl, seq, frame, 0) {
			s.startWriter()
		}
	}
	b.StopTimer()
	release()
	s.Close(1000, "")
}

// BenchmarkPublishNoSubscribers: the cost of a publish itself (encode, seq,
// history) with nobody listening.
func BenchmarkPublishNoSubscribers(b *testing.B) {
	r := NewRegistry(RegistryConfig{})
	sample := collectors.Sample{Topic: "web-1.cpu", Data: map[string]float64{"usage_pct": 12.5, "user_pct": 8.25}}
	b.ReportAllocs()
	for b.Loop() {
		r.Publish(sample)
	}
}

func waitIdle(b *testing.B, r *Registry) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for r.counters.writers.Load() != 0 {
		if time.Now().After(deadline) {
			b.Fatal("writers did not finish")
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkIdleSessionMemory reports the heap one idle session costs in the
// core (session, patterns, routes, per-topic mailbox state) when 10,000
// sessions each subscribe to 10 topics that have all been published and
// delivered. The transport's own buffers (edge) come on top.
func BenchmarkIdleSessionMemory(b *testing.B) {
	const n, topics = 10000, 10
	for b.Loop() {
		r := NewRegistry(RegistryConfig{Host: "web-1"})
		for i := range topics {
			r.Publish(collectors.Sample{Topic: fmt.Sprintf("web-1.t%d", i), Data: benchData})
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		sessions := make([]*Session, n)
		for i := range sessions {
			s := r.Open(&discardConn{}, DefaultSessionConfig())
			if err := s.Subscribe([]string{"web-1.>"}); err != nil {
				b.Fatal(err)
			}
			sessions[i] = s
		}
		waitIdle(b, r)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/session")
		r.CloseAll(1000, "")
		runtime.KeepAlive(sessions)
	}
}

// BenchmarkSessionCycle: open a session, subscribe to a pattern matching 10
// published topics (snapshot queued and written), close it.
func BenchmarkSessionCycle(b *testing.B) {
	r := NewRegistry(RegistryConfig{Host: "web-1"})
	for i := range 10 {
		r.Publish(collectors.Sample{Topic: fmt.Sprintf("web-1.t%d", i), Data: benchData})
	}
	b.ReportAllocs()
	for b.Loop() {
		s := r.Open(&discardConn{}, DefaultSessionConfig())
		if err := s.Subscribe([]string{"web-1.>"}); err != nil {
			b.Fatal(err)
		}
		s.Close(1000, "")
	}
}
