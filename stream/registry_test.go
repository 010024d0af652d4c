package stream_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
	st, ok := r.Topic(name, 0)
	if !ok {
		t.Fatalf("topic %s unknown", name)
	}
	return st.Status
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

func TestPublishJSON(t *testing.T) {
	r := stream.NewRegistry(stream.RegistryConfig{Host: "web-1"})
	tests := []struct {
		topic, data string
		want        error
	}{
		{"billing.orders", `{"count": 3,  "sum_eur": 10.5}`, nil},
		{"web-1.cpu", `{"usage_pct":1}`, stream.ErrReservedTopic},
		{"web-1", `{"usage_pct":1}`, stream.ErrReservedTopic},
		{"web-10.cpu", `{"usage_pct":1}`, nil},
		{"Billing", `{}`, stream.ErrInvalidTopic},
		{"billing.*", `{}`, stream.ErrInvalidTopic},
		{"billing.x", `[1]`, stream.ErrInvalidData},
		{"billing.x", `{"a":`, stream.ErrInvalidData},
		{"billing.x", `{} {}`, stream.ErrInvalidData},
		{"billing.x", ``, stream.ErrInvalidData},
	}
	for _, tt := range tests {
		err := r.PublishJSON(tt.topic, time.Time{}, json.RawMessage(tt.data))
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("PublishJSON(%q, %s) = %v, want %v", tt.topic, tt.data, err, tt.want)
		}
	}
	st, ok := r.Topic("billing.orders", 0)
	if !ok || string(st.Data) != `{"count":3,"sum_eur":10.5}` || st.Seq != 1 || st.Status != "ok" || st.TS == 0 {
		t.Fatalf("billing.orders = %+v, %v", st, ok)
	}
	if _, ok := r.Topic("billing.x", 0); ok {
		t.Fatal("refused publish created a topic")
	}
}

func TestPublishedTopicCapAndTTL(t *testing.T) {
	r := stream.NewRegistry(stream.RegistryConfig{Host: "web-1", MaxTopics: 2, PublishedTTL: time.Minute})
	r.Declare(collectors.TopicInfo{Name: "web-1.cpu", Interval: time.Second}) // not capped, never expires
	pub := func(topic string) error { return r.PublishJSON(topic, time.Now(), json.RawMessage(`{"n":1}`)) }
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["app.>"]}`)
	for _, tp := range []string{"app.a", "app.b", "app.a"} {
		if err := pub(tp); err != nil {
			t.Fatalf("publish %s: %v", tp, err)
		}
	}
	if err := pub("app.c"); !errors.Is(err, stream.ErrTooManyTopics) {
		t.Fatalf("third topic: %v, want ErrTooManyTopics", err)
	}
	if st := r.Stats(); st.PublishedTopics != 2 || st.Topics != 3 {
		t.Fatalf("topics %d published %d", st.Topics, st.PublishedTopics)
	}
	c.waitMsg(t, "app.a seq 2", isUpdate("app.a", 2))

	if n := r.ExpireAt(time.Now()); n != 0 {
		t.Fatalf("expired %d fresh topics", n)
	}
	if n := r.ExpireAt(time.Now().Add(time.Minute + time.Second)); n != 2 {
		t.Fatalf("expired %d topics, want 2", n)
	}
	var names []string
	for _, st := range r.Topics() {
		names = append(names, st.Name)
	}
	if !slices.Equal(names, []string{"web-1.cpu"}) {
		t.Fatalf("topics after expiry = %v", names)
	}
	if r.Stats().TopicsExpired != 2 {
		t.Fatal("TopicsExpired not counted")
	}
	// Room again; a reappearing topic reaches the waiting pattern and its seq goes on.
	if err := pub("app.c"); err != nil {
		t.Fatal(err)
	}
	if err := pub("app.a"); err != nil {
		t.Fatal(err)
	}
	c.waitMsg(t, "app.a after it reappeared", isUpdate("app.a", 3))
	assertRising(t, c.messages())
}

func TestRunExpires(t *testing.T) {
	r := stream.NewRegistry(stream.RegistryConfig{PublishedTTL: time.Nanosecond})
	if err := r.PublishJSON("app.a", time.Now(), json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := contextWithCancel(t)
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	waitFor(t, "Run to expire app.a", func() bool { _, ok := r.Topic("app.a", 0); return !ok })
	cancel()
	<-done
}

func TestHistoryBound(t *testing.T) {
	r := stream.NewRegistry(stream.RegistryConfig{HistoryLen: 5})
	for i := 1; i <= 12; i++ {
		publish(r, "app.a", i)
	}
	st, _ := r.Topic("app.a", 100)
	var seqs []uint64
	for _, h := range st.History {
		seqs = append(seqs, h.Seq)
	}
	if !slices.Equal(seqs, []uint64{8, 9, 10, 11, 12}) {
		t.Fatalf("history seqs = %v", seqs)
	}
	if string(st.History[4].Data) != `{"v":12}` || string(st.Data) != `{"v":12}` {
		t.Fatalf("latest = %s / %s", st.History[4].Data, st.Data)
	}
	st, _ = r.Topic("app.a", 2)
	if len(st.History) != 2 || st.History[0].Seq != 11 {
		t.Fatalf("history(2) = %+v", st.History)
	}
	if st, _ := r.Topic("app.a", 0); st.History != nil {
		t.Fatal("history without asking")
	}

	// The byte bound drops the oldest values first but keeps the latest.
	r = stream.NewRegistry(stream.RegistryConfig{HistoryLen: 100, HistoryBytes: 22})
	for i := 1; i <= 10; i++ {
		publish(r, "app.a", i) // {"v":N} is 7-8 bytes
	}
	st, _ = r.Topic("app.a", 100)
	if len(st.History) != 3 || st.History[2].Seq != 10 {
		t.Fatalf("byte-bounded history = %+v", st.History)
	}
	r.Publish(collectors.Sample{Topic: "app.big", Data: map[string]string{"s": "more than twenty-two bytes of payload"}})
	if st, _ := r.Topic("app.big", 10); len(st.History) != 1 {
		t.Fatalf("oversized latest value not kept: %+v", st.History)
	}
}

func TestPublishRejectsBadSamples(t *testing.T) {
	r := stream.NewRegistry(stream.RegistryConfig{Logger: slog.New(slog.DiscardHandler)})
	r.Publish(collectors.Sample{Topic: "app.a", Data: make(chan int)})
	r.Publish(collectors.Sample{Topic: "App.a", Data: 1})
	if st := r.Stats(); st.EncodeErrors != 2 || st.Topics != 0 {
		t.Fatalf("EncodeErrors = %d, Topics = %d", st.EncodeErrors, st.Topics)
	}
}

func TestUpdateFrameEncoding(t *testing.T) {
	r := stream.NewRegistry(stream.RegistryConfig{})
	ts := time.UnixMilli(1763740000123)
	r.Publish(collectors.Sample{Topic: "web-1.cpu", Time: ts, Data: map[string]any{"usage_pct": 12.5, "s": "a\nb"}})
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["web-1.cpu"]}`)
	c.waitMsg(t, "update", isUpdate("web-1.cpu", 1))
	c.mu.Lock()
	got := string(c.frames[1].JSON)
	c.mu.Unlock()
	want := `{"type":"update","topic":"web-1.cpu","seq":1,"ts":1763740000123,"data":{"s":"a\nb","usage_pct":12.5}}`
	if got != want {
		t.Fatalf("update frame\n got %s\nwant %s", got, want)
	}
}

// What a topic created through the publish API holds is bounded: a value
// over MaxValueBytes is refused (nothing published), and its history is
// bounded by PublishedHistoryBytes while a collector's topic keeps
// HistoryBytes.
func TestPublishedTopicMemoryBound(t *testing.T) {
	r := stream.NewRegistry(stream.RegistryConfig{HistoryLen: 100, HistoryBytes: 1000, MaxValueBytes: 40, PublishedHistoryBytes: 50})
	err := r.PublishJSON("app.big", time.Time{}, json.RawMessage(`{"s":"`+strings.Repeat("x", 40)+`"}`))
	if !errors.Is(err, stream.ErrValueTooLarge) || !strings.Contains(err.Error(), "the limit is 40") {
		t.Fatalf("PublishJSON of 48 bytes = %v, want ErrValueTooLarge naming the limit", err)
	}
	if _, ok := r.Topic("app.big", 0); ok {
		t.Fatal("a refused value created its topic")
	}
	// Size is counted on compact JSON: spaces do not count against it.
	if err := r.PublishJSON("app.spaced", time.Time{}, json.RawMessage(`{ "v" :  1 ,  "w" :  2 ,  "x" :  3 ,  "y" :  4 }`)); err != nil {
		t.Fatalf("a 25-byte compact value sent as 48 bytes with spaces: %v", err)
	}
	for i := 1; i <= 20; i++ {
		if err := r.PublishJSON("app.a", time.Time{}, json.RawMessage(fmt.Sprintf(`{"v":%d}`, 10+i))); err != nil { // 8 bytes
			t.Fatal(err)
		}
		publish(r, "web-1.cpu", 10+i) // a collector's topic: {"v":NN}, 8 bytes
	}
	if st, _ := r.Topic("app.a", 100); len(st.History) != 6 || st.History[5].Seq != 20 {
		t.Fatalf("published topic history: %d values ending at %d, want the newest 6 (48 of 50 bytes)", len(st.History), st.History[len(st.History)-1].Seq)
	}
	if st, _ := r.Topic("web-1.cpu", 100); len(st.History) != 20 {
		t.Fatalf("collector topic history: %d values, want all 20 (HistoryBytes 1000)", len(st.History))
	}
	// MaxValueBytes < 0: no cap.
	r = stream.NewRegistry(stream.RegistryConfig{MaxValueBytes: -1})
	if err := r.PublishJSON("app.big", time.Time{}, json.RawMessage(`{"s":"`+strings.Repeat("x", 100<<10)+`"}`)); err != nil {
		t.Fatalf("no cap: %v", err)
	}
}
