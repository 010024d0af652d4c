package stream_test

import (
	"slices"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
)

// TestOnDemand: a demand callback set after the registry is built is told,
// as RegistryConfig.Demand is, when an on-demand topic gains its first
// subscriber and loses its last.
func TestOnDemand(t *testing.T) {
	d := &demandRecorder{}
	r := stream.NewRegistry(stream.RegistryConfig{Host: "web-1"})
	r.OnDemand(d.record)
	r.Declare(collectors.TopicInfo{Name: "web-1.proc.top", Interval: 3 * time.Second, OnDemand: true})
	s := openSession(t, r, newFakeConn(t), stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["web-1.proc.top"]}`)
	mustHandle(t, s, `{"type":"unsubscribe","id":"2","topics":["web-1.proc.top"]}`)
	if got := d.get(); !slices.Equal(got, []string{"+web-1.proc.top", "-web-1.proc.top"}) {
		t.Fatalf("demand calls = %v, want one on and one off", got)
	}
}
