package stream_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
)

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
	state, ok := r.Topic("billing.orders", 0)
	if !ok || string(state.Data) != `{"count":3,"sum_eur":10.5}` || state.Seq != 1 || state.Status != "ok" || state.TS == 0 {
		t.Fatalf("billing.orders = %+v, %v", state, ok)
	}
	if _, ok := r.Topic("billing.x", 0); ok {
		t.Fatal("refused publish created a topic")
	}
}

func TestPublishRejectsBadSamples(t *testing.T) {
	r := stream.NewRegistry(stream.RegistryConfig{Logger: slog.New(slog.DiscardHandler)})
	r.Publish(collectors.Sample{Topic: "app.a", Data: make(chan int)})
	r.Publish(collectors.Sample{Topic: "App.a", Data: 1})
	if stats := r.Stats(); stats.EncodeErrors != 2 || stats.Topics != 0 {
		t.Fatalf("EncodeErrors = %d, Topics = %d", stats.EncodeErrors, stats.Topics)
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
	if state, _ := r.Topic("app.a", 100); len(state.History) != 6 || state.History[5].Seq != 20 {
		t.Fatalf("published topic history: %d values ending at %d, want the newest 6 (48 of 50 bytes)", len(state.History), state.History[len(state.History)-1].Seq)
	}
	if state, _ := r.Topic("web-1.cpu", 100); len(state.History) != 20 {
		t.Fatalf("collector topic history: %d values, want all 20 (HistoryBytes 1000)", len(state.History))
	}
	// MaxValueBytes < 0: no cap.
	r = stream.NewRegistry(stream.RegistryConfig{MaxValueBytes: -1})
	if err := r.PublishJSON("app.big", time.Time{}, json.RawMessage(`{"s":"`+strings.Repeat("x", 100<<10)+`"}`)); err != nil {
		t.Fatalf("no cap: %v", err)
	}
}
