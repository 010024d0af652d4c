package stream_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
)

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
	if stats := r.Stats(); stats.PublishedTopics != 2 || stats.Topics != 3 {
		t.Fatalf("topics %d published %d", stats.Topics, stats.PublishedTopics)
	}
	c.waitMsg(t, "app.a seq 2", isUpdate("app.a", 2))

	if n := r.ExpireAt(time.Now()); n != 0 {
		t.Fatalf("expired %d fresh topics", n)
	}
	if n := r.ExpireAt(time.Now().Add(time.Minute + time.Second)); n != 2 {
		t.Fatalf("expired %d topics, want 2", n)
	}
	var names []string
	for _, state := range r.Topics() {
		names = append(names, state.Name)
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
