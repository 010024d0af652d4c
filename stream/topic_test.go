package stream_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
)

func TestHistoryBound(t *testing.T) {
	r := stream.NewRegistry(stream.RegistryConfig{HistoryLen: 5})
	for i := 1; i <= 12; i++ {
		publish(r, "app.a", i)
	}
	state, _ := r.Topic("app.a", 100)
	var seqs []uint64
	for _, h := range state.History {
		seqs = append(seqs, h.Seq)
	}
	if !slices.Equal(seqs, []uint64{8, 9, 10, 11, 12}) {
		t.Fatalf("history seqs = %v", seqs)
	}
	if string(state.History[4].Data) != `{"v":12}` || string(state.Data) != `{"v":12}` {
		t.Fatalf("latest = %s / %s", state.History[4].Data, state.Data)
	}
	state, _ = r.Topic("app.a", 2)
	if len(state.History) != 2 || state.History[0].Seq != 11 {
		t.Fatalf("history(2) = %+v", state.History)
	}
	if state, _ := r.Topic("app.a", 0); state.History != nil {
		t.Fatal("history without asking")
	}

	// The byte bound drops the oldest values first but keeps the latest.
	r = stream.NewRegistry(stream.RegistryConfig{HistoryLen: 100, HistoryBytes: 22})
	for i := 1; i <= 10; i++ {
		publish(r, "app.a", i) // {"v":N} is 7-8 bytes
	}
	state, _ = r.Topic("app.a", 100)
	if len(state.History) != 3 || state.History[2].Seq != 10 {
		t.Fatalf("byte-bounded history = %+v", state.History)
	}
	r.Publish(collectors.Sample{Topic: "app.big", Data: map[string]string{"s": "more than twenty-two bytes of payload"}})
	if state, _ := r.Topic("app.big", 10); len(state.History) != 1 {
		t.Fatalf("oversized latest value not kept: %+v", state.History)
	}
}

func TestStatusFrames(t *testing.T) {
	r := newRegistry(t)
	r.Declare(collectors.TopicInfo{Name: "web-1.disk.io", Interval: time.Second})
	r.Declare(collectors.TopicInfo{Name: "web-1.cpu", Interval: time.Second})
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["web-1.disk.io"]}`)
	r.SetStatus("web-1.disk.io", errors.New("permission denied"))
	r.SetStatus("web-1.disk.io", errors.New("permission denied")) // no change, no frame
	r.SetStatus("web-1.cpu", errors.New("boom"))                  // not subscribed
	m, _ := c.waitMsg(t, "status failing", func(m msg) bool { return m.Type == "status" })
	if m.Topic != "web-1.disk.io" || m.Status != "failing" || m.Error != "permission denied" {
		t.Fatalf("status = %+v", m)
	}
	publish(r, "web-1.disk.io", 1)
	r.SetStatus("web-1.disk.io", nil)
	c.waitMsg(t, "status ok", func(m msg) bool { return m.Type == "status" && m.Status == "ok" })
	var statuses []msg
	for _, m := range c.messages() {
		if m.Type == "status" {
			statuses = append(statuses, m)
		}
	}
	if len(statuses) != 2 || statuses[1].Error != "" {
		t.Fatalf("status frames = %+v, want failing then ok", statuses)
	}
}

// A new subscriber of a failing topic learns it at once: a status frame
// before the topic's last value, as the change itself was sent to those
// already subscribed. Healthy topics get no status frame; a topic already
// flowing through another pattern gets none a second time.
func TestSubscribeToAFailingTopicSendsItsStatus(t *testing.T) {
	r := newRegistry(t)
	publish(r, "web-1.disk.io", 1)
	r.SetStatus("web-1.disk.io", errors.New("permission denied"))
	r.Declare(collectors.TopicInfo{Name: "web-1.mem", Interval: time.Second})
	r.SetStatus("web-1.mem", errors.New("no meminfo")) // failing before any value
	publish(r, "web-1.cpu", 1)
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["web-1.>"]}`)
	c.waitMsg(t, "web-1.cpu's snapshot", isUpdate("web-1.cpu", 1))
	_, upd := c.waitMsg(t, "web-1.disk.io's snapshot", isUpdate("web-1.disk.io", 1))
	st, at := c.waitMsg(t, "web-1.disk.io failing", func(m msg) bool { return m.Type == "status" && m.Topic == "web-1.disk.io" })
	if st.Status != "failing" || st.Error != "permission denied" || at > upd {
		t.Errorf("disk.io: %+v at frame %d, value at frame %d; want failing before the value", st, at, upd)
	}
	if st, _ := c.waitMsg(t, "web-1.mem failing", func(m msg) bool { return m.Type == "status" && m.Topic == "web-1.mem" }); st.Error != "no meminfo" {
		t.Errorf("mem: %+v", st)
	}
	mustHandle(t, s, `{"type":"subscribe","id":"2","topics":["*.disk.io"]}`)
	c.waitMsg(t, "subscribed 2", isReply("subscribed", "2"))
	n := 0
	for _, m := range c.messages() {
		if m.Type == "status" {
			n++
			if m.Topic == "web-1.cpu" {
				t.Errorf("a healthy topic got a status frame: %+v", m)
			}
		}
	}
	if n != 2 {
		t.Errorf("%d status frames, want 2 (disk.io once, mem)", n)
	}
}
