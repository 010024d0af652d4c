package stream

import (
	"fmt"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
)

// BenchmarkSubscribeAt1000Topics: one subscribe and one unsubscribe of a
// pattern with 1,000 topics in the registry (20 of the host, 980 published
// under other sources), the work a client's request does under the
// registry's lock. Patterns: a literal topic, the host's subtree, and a
// wildcard first token (every source's "cpu").
func BenchmarkSubscribeAt1000Topics(b *testing.B) {
	r := NewRegistry(RegistryConfig{Host: "web-1", MaxTopics: NoLimit})
	for i := range 20 {
		r.Declare(collectors.TopicInfo{Name: fmt.Sprintf("web-1.m%d", i), Interval: time.Second})
	}
	r.Declare(collectors.TopicInfo{Name: "web-1.cpu", Interval: time.Second})
	for i := range 980 {
		if err := r.PublishJSON(fmt.Sprintf("app-%d.cpu", i), time.Now(), benchData); err != nil {
			b.Fatal(err)
		}
	}
	for _, pat := range []string{"web-1.cpu", "web-1.>", "*.cpu"} {
		b.Run(pat, func(b *testing.B) {
			s := r.Open(&discardConn{}, DefaultSessionConfig())
			defer s.Close(1000, "")
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Subscribe([]string{pat}); err != nil {
					b.Fatal(err)
				}
				s.unsubscribe([]string{pat}, "")
			}
		})
	}
}
