package stream_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
)

// callsAfter returns how many WriteFrames calls c has seen.
func (c *fakeConn) callCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// A batch publish reaches an idle subscriber in one write: its writer
// starts after the last value of the batch, not at the first.
func TestPublishJSONBatchIsOneWrite(t *testing.T) {
	r := newRegistry(t)
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["app.>"]}`)
	c.waitMsg(t, "subscribed", isReply("subscribed", "1"))
	waitFor(t, "writer idle", func() bool { return r.Stats().Writers == 0 })
	before := c.callCount()

	var items []stream.JSONItem
	for i := range 10 {
		items = append(items, stream.JSONItem{Topic: fmt.Sprintf("app.t%d", i), Data: json.RawMessage(`{"v":1}`)})
	}
	n, err := r.PublishJSONBatch(items)
	if err != nil || n != 10 {
		t.Fatalf("PublishJSONBatch = %d, %v", n, err)
	}
	for i := range 10 {
		c.waitMsg(t, "batch update", isUpdate(fmt.Sprintf("app.t%d", i), 1))
	}
	if got := c.callCount() - before; got != 1 {
		t.Fatalf("batch of 10 values took %d writes, want 1", got)
	}
}

// A batch stops at its first bad item and says how many went through.
func TestPublishJSONBatchStopsAtError(t *testing.T) {
	r := newRegistry(t)
	n, err := r.PublishJSONBatch([]stream.JSONItem{
		{Topic: "app.ok", Data: json.RawMessage(`{"v":1}`)},
		{Topic: "web-1.cpu", Data: json.RawMessage(`{"v":1}`)}, // the local host id: reserved
		{Topic: "app.never", Data: json.RawMessage(`{"v":1}`)},
	})
	if n != 1 || !errors.Is(err, stream.ErrReservedTopic) {
		t.Fatalf("PublishJSONBatch = %d, %v; want 1, ErrReservedTopic", n, err)
	}
	if _, ok := r.Topic("app.never", 0); ok {
		t.Fatal("an item after the error was published")
	}
}

// PublishBatch (a collector run's samples) also goes out in one write.
func TestPublishBatchIsOneWrite(t *testing.T) {
	r := newRegistry(t)
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["web-1.>"]}`)
	c.waitMsg(t, "subscribed", isReply("subscribed", "1"))
	waitFor(t, "writer idle", func() bool { return r.Stats().Writers == 0 })
	before := c.callCount()
	now := time.Now()
	r.PublishBatch([]collectors.Sample{
		{Topic: "web-1.mem", Time: now, Data: map[string]int{"used_bytes": 1}},
		{Topic: "web-1.swap", Time: now, Data: map[string]int{"used_bytes": 0}},
	})
	c.waitMsg(t, "mem", isUpdate("web-1.mem", 1))
	c.waitMsg(t, "swap", isUpdate("web-1.swap", 1))
	if got := c.callCount() - before; got != 1 {
		t.Fatalf("batch of 2 samples took %d writes, want 1", got)
	}
}

// The registry takes a collector run's samples as one batch.
var _ collectors.BatchSink = (*stream.Registry)(nil)
