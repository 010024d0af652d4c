package stream_test

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
)

type demandRecorder struct {
	mu    sync.Mutex
	calls []string
}

func (d *demandRecorder) record(topic string, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if on {
		d.calls = append(d.calls, "+"+topic)
	} else {
		d.calls = append(d.calls, "-"+topic)
	}
}

func (d *demandRecorder) get() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

func topicStatus(t *testing.T, r *stream.Registry, name string) string {
	t.Helper()
	state, ok := r.Topic(name, 0)
	if !ok {
		t.Fatalf("topic %s unknown", name)
	}
	return state.Status
}

func TestDemand(t *testing.T) {
	d := &demandRecorder{}
	r := stream.NewRegistry(stream.RegistryConfig{Host: "web-1", Demand: d.record})
	r.Declare(collectors.TopicInfo{Name: "web-1.proc.top", Interval: 3 * time.Second, OnDemand: true})
	if got := topicStatus(t, r, "web-1.proc.top"); got != stream.StatusIdle {
		t.Fatalf("status = %q, want idle", got)
	}
	a := openSession(t, r, newFakeConn(t), stream.SessionConfig{})
	b := openSession(t, r, newFakeConn(t), stream.SessionConfig{})
	mustHandle(t, a, `{"type":"subscribe","id":"1","topics":["*.proc.top"]}`)
	if got := d.get(); !slices.Equal(got, []string{"+web-1.proc.top"}) {
		t.Fatalf("demand calls = %v", got)
	}
	if got := topicStatus(t, r, "web-1.proc.top"); got != stream.StatusPending {
		t.Fatalf("status while subscribed = %q, want pending", got)
	}
	mustHandle(t, b, `{"type":"subscribe","id":"1","topics":["web-1.proc.top"]}`)
	mustHandle(t, a, `{"type":"subscribe","id":"2","topics":["web-1.>"]}`) // a second pattern of a
	a.Close(1000, "")
	mustHandle(t, b, `{"type":"unsubscribe","id":"2","topics":["web-1.proc.top"]}`)
	if got := d.get(); !slices.Equal(got, []string{"+web-1.proc.top", "-web-1.proc.top"}) {
		t.Fatalf("demand calls = %v, want one on and one off", got)
	}
	if got := topicStatus(t, r, "web-1.proc.top"); got != stream.StatusIdle {
		t.Fatalf("status = %q, want idle again", got)
	}
	// A topic that appears with a subscriber waiting is demanded too.
	mustHandle(t, b, `{"type":"subscribe","id":"3","topics":["app.>"]}`)
	publish(r, "app.x", 1)
	if got := d.get(); !slices.Contains(got, "+app.x") {
		t.Fatalf("demand calls = %v, want +app.x", got)
	}
}

// The demand callback may call back into the registry without deadlocking.
func TestDemandCallbackReentry(t *testing.T) {
	var r *stream.Registry
	r = stream.NewRegistry(stream.RegistryConfig{Demand: func(topic string, on bool) {
		if on && !strings.HasSuffix(topic, ".sub") {
			r.SetStatus(topic, nil)
			r.Publish(collectorsSample(topic, 1))
			r.Publish(collectorsSample(topic+".sub", 1)) // creates a topic with a subscriber
		}
	}})
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["app.>"]}`)
	publish(r, "app.x", 0)
	c.waitMsg(t, "value published from the callback", isUpdate("app.x.sub", 1))
}

// A run-time topic that appears with a subscriber waiting is demanded,
// like any topic that appears so, and undemanded when it is removed.
func TestDemandOfRuntimeTopics(t *testing.T) {
	d := &demandRecorder{}
	r := stream.NewRegistry(stream.RegistryConfig{Host: "web-1", Demand: d.record})
	s := openSession(t, r, newFakeConn(t), stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["web-1.workload.*"]}`)
	name := "web-1.workload.docker-3f2a9c1b7d4e"
	r.DeclareRuntime(collectors.TopicInfo{Name: name, Interval: 5 * time.Second}, 3)
	r.Undeclare(name)
	if got := d.get(); !slices.Equal(got, []string{"+" + name, "-" + name}) {
		t.Fatalf("demand calls = %v, want one on and one off", got)
	}
}
