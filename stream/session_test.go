package stream_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
)

func TestHelloFirst(t *testing.T) {
	r := newRegistry(t)
	publish(r, "web-1.cpu", 1)
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{ID: "conn-7", Heartbeat: 15 * time.Second})
	if s.ID() != "conn-7" {
		t.Fatalf("ID() = %q", s.ID())
	}
	s.Hello()
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["web-1.cpu"]}`)
	c.waitMsg(t, "snapshot", isUpdate("web-1.cpu", 1))
	ms := c.messages()
	h := ms[0]
	if h.Type != "hello" || h.Protocol != 1 || h.Session != "conn-7" || h.Instance != "inst-1" ||
		h.Host != "web-1" || h.HeartbeatMS != 15000 {
		t.Fatalf("first frame = %+v, want hello", h)
	}
}

func TestSessionIDsAreUnique(t *testing.T) {
	r := newRegistry(t)
	a := openSession(t, r, newFakeConn(t), stream.SessionConfig{})
	b := openSession(t, r, newFakeConn(t), stream.SessionConfig{})
	if a.ID() == "" || a.ID() == b.ID() {
		t.Fatalf("session ids %q and %q", a.ID(), b.ID())
	}
}

func TestSubscribeSnapshotThenLive(t *testing.T) {
	r := newRegistry(t)
	publish(r, "web-1.cpu", 1)
	publish(r, "web-1.cpu", 2)
	publish(r, "web-1.mem", 1)
	publish(r, "web-2.cpu", 1) // not subscribed
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"a","topics":["web-1.cpu","*.mem"]}`)
	c.waitMsg(t, "snapshot of web-1.mem", isUpdate("web-1.mem", 1))
	ms := c.messages()
	if ms[0].Type != "subscribed" || ms[0].ID != "a" || string(ms[0].Topics) != `["web-1.cpu","*.mem"]` {
		t.Fatalf("first frame = %+v, want subscribed a with the patterns as sent", ms[0])
	}
	_, i := c.waitMsg(t, "snapshot of web-1.cpu", isUpdate("web-1.cpu", 2))
	if string(ms[i].Data) != `{"v":2}` || ms[i].TS == 0 {
		t.Fatalf("snapshot = %+v, want the latest value", ms[i])
	}
	publish(r, "web-1.cpu", 3)
	c.waitMsg(t, "live update", isUpdate("web-1.cpu", 3))
	publish(r, "web-2.mem", 1) // appears later, matches *.mem
	c.waitMsg(t, "new topic via wildcard", isUpdate("web-2.mem", 1))
	ms = c.messages()
	if got := updates(ms, "web-2.cpu"); len(got) != 0 {
		t.Fatalf("got updates of an unsubscribed topic: %v", got)
	}
	if got := updates(ms, "web-1.cpu"); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("web-1.cpu seqs = %v, want [2 3]", got)
	}
}

// Sessions subscribe while topics are published hot: on every connection
// "subscribed" comes first, seqs rise strictly and the newest seq arrives.
func TestSubscribeDuringPublishOrdering(t *testing.T) {
	r := newRegistry(t)
	topics := []string{"app.a", "app.b", "app.c"}
	const n = 2000
	var wg sync.WaitGroup
	for _, tp := range topics {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				publish(r, tp, i)
			}
		}()
	}
	var conns []*fakeConn
	for range 20 {
		c := newFakeConn(t)
		s := openSession(t, r, c, stream.SessionConfig{})
		mustHandle(t, s, `{"type":"subscribe","id":"s","topics":["app.*"]}`)
		conns = append(conns, c)
	}
	wg.Wait()
	for _, c := range conns {
		for _, tp := range topics {
			c.waitMsg(t, "newest value of "+tp, isUpdate(tp, n))
		}
		ms := c.messages()
		if ms[0].Type != "subscribed" {
			t.Fatalf("first frame %+v, want subscribed", ms[0])
		}
		assertRising(t, ms)
	}
}

func TestUnsubscribe(t *testing.T) {
	r := newRegistry(t)
	c := newGatedConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["web-1.cpu","*.cpu","web-1.mem"]}`)
	waitFor(t, "writer blocked", c.blocked)
	publish(r, "web-1.cpu", 1)
	publish(r, "web-1.mem", 1) // pending while the reader stalls
	mustHandle(t, s, `{"type":"unsubscribe","id":"2","topics":["web-1.cpu","web-1.mem","nope.*"]}`)
	c.open()
	_, iu := c.waitMsg(t, "unsubscribed", isReply("unsubscribed", "2"))
	if got := string(c.messages()[iu].Topics); got != `["web-1.cpu","web-1.mem","nope.*"]` {
		t.Fatalf("unsubscribed topics = %s", got)
	}
	// web-1.cpu still matches *.cpu and keeps flowing; web-1.mem stops.
	publish(r, "web-1.mem", 2)
	publish(r, "web-1.cpu", 2)
	c.waitMsg(t, "web-1.cpu via *.cpu", isUpdate("web-1.cpu", 2))
	ms := c.messages()
	if got := updates(ms, "web-1.mem"); len(got) != 0 {
		t.Fatalf("web-1.mem updates after unsubscribe: %v", got)
	}
	if d := r.Stats().Dropped.Unsubscribed; d != 1 {
		t.Fatalf("Dropped.Unsubscribed = %d, want 1 (the pending web-1.mem value)", d)
	}
	if n := r.SubscriberCount("web-1.mem"); n != 0 {
		t.Fatalf("web-1.mem still routed to %d sessions", n)
	}
	if stats := r.Stats(); stats.Subscriptions != 1 {
		t.Fatalf("Subscriptions = %d, want 1 (*.cpu)", stats.Subscriptions)
	}
	assertRising(t, ms)
}

func TestNoSecondSnapshot(t *testing.T) {
	r := newRegistry(t)
	publish(r, "web-1.cpu", 1)
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["web-1.cpu"]}`)
	c.waitMsg(t, "snapshot", isUpdate("web-1.cpu", 1))
	mustHandle(t, s, `{"type":"subscribe","id":"2","topics":["*.cpu","web-1.>"]}`)
	// A snapshot would be queued together with "subscribed" and written in
	// the same batch, so once the reply is there it would be too.
	_, i := c.waitMsg(t, "second subscribed", isReply("subscribed", "2"))
	if got := updates(c.messages()[i:], "web-1.cpu"); len(got) != 0 {
		t.Fatalf("second snapshot of web-1.cpu: %v", got)
	}
	// Unsubscribing one of three patterns keeps it flowing without a new snapshot either.
	mustHandle(t, s, `{"type":"unsubscribe","id":"3","topics":["web-1.cpu"]}`)
	c.waitMsg(t, "unsubscribed", isReply("unsubscribed", "3"))
	publish(r, "web-1.cpu", 2)
	c.waitMsg(t, "live", isUpdate("web-1.cpu", 2))
	if got := updates(c.messages(), "web-1.cpu"); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("web-1.cpu seqs = %v, want [1 2]", got)
	}
}

func TestResubscribeGetsSnapshot(t *testing.T) {
	r := newRegistry(t)
	publish(r, "web-1.cpu", 1)
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["web-1.cpu"]}`)
	mustHandle(t, s, `{"type":"unsubscribe","id":"2","topics":["web-1.cpu"]}`)
	publish(r, "web-1.cpu", 2)
	mustHandle(t, s, `{"type":"subscribe","id":"3","topics":["web-1.cpu"]}`)
	c.waitMsg(t, "snapshot after resubscribe", isUpdate("web-1.cpu", 2))
}

func TestInvalidRequests(t *testing.T) {
	tests := []struct {
		name, req, code, id string
	}{
		{"not json", `subscribe web-1.cpu`, stream.CodeBadRequest, ""},
		{"not an object", `["subscribe"]`, stream.CodeBadRequest, ""},
		{"id not a string", `{"type":"subscribe","id":1,"topics":["app.a"]}`, stream.CodeBadRequest, ""},
		{"topics missing", `{"type":"subscribe","id":"t1"}`, stream.CodeBadRequest, "t1"},
		{"topics not strings", `{"type":"subscribe","id":"t2","topics":[["app.a"]]}`, stream.CodeBadRequest, "t2"},
		{"unknown type", `{"type":"publish","id":"t3","topics":["app.a"]}`, stream.CodeUnknownType, "t3"},
		{"invalid pattern refuses whole request", `{"type":"subscribe","id":"t4","topics":["app.a","app..b"]}`, stream.CodeInvalidTopic, "t4"},
		{"invalid unsubscribe", `{"type":"unsubscribe","id":"t5","topics":["App"]}`, stream.CodeInvalidTopic, "t5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRegistry(t)
			publish(r, "app.a", 1)
			c := newFakeConn(t)
			s := openSession(t, r, c, stream.SessionConfig{})
			mustHandle(t, s, tt.req)
			m, _ := c.waitMsg(t, "error", func(m msg) bool { return m.Type == "error" })
			if m.Code != tt.code || m.ID != tt.id || m.Message == "" {
				t.Fatalf("error = %+v, want code %q id %q with a message", m, tt.code, tt.id)
			}
			// Nothing subscribed, the connection carries on.
			mustHandle(t, s, `{"type":"ping","id":"p"}`)
			c.waitMsg(t, "pong", isReply("pong", "p"))
			if got := updates(c.messages(), "app.a"); len(got) != 0 {
				t.Fatalf("refused request subscribed: %v", got)
			}
			if stats := r.Stats(); stats.Subscriptions != 0 {
				t.Fatalf("Subscriptions = %d, want 0", stats.Subscriptions)
			}
			// A frame is counted once its write returns, which can be
			// after the connection has recorded it.
			waitFor(t, "the error reply to be counted", func() bool { return r.Stats().Sent.Error >= 1 })
			if n := r.Stats().Sent.Error; n != 1 {
				t.Fatalf("Sent.Error = %d, want 1", n)
			}
		})
	}
}

func TestListAndPing(t *testing.T) {
	r := newRegistry(t)
	r.Declare(collectors.TopicInfo{Name: "web-1.mem", Interval: 2 * time.Second, Description: "memory"})
	r.Declare(collectors.TopicInfo{Name: "web-1.cpu", Interval: time.Second, Description: "cpu"})
	r.Declare(collectors.TopicInfo{Name: "web-1.proc.top", Interval: 3 * time.Second, Description: "top", OnDemand: true})
	publish(r, "web-1.cpu", 1)
	r.SetStatus("web-1.mem", errors.New("no /proc/meminfo"))
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	mustHandle(t, s, `{"type":"list","id":"3"}`)
	mustHandle(t, s, `{"type":"ping","id":"4"}`)
	m, _ := c.waitMsg(t, "topics", isReply("topics", "3"))
	c.waitMsg(t, "pong", isReply("pong", "4"))
	var got []map[string]any
	if err := json.Unmarshal(m.Topics, &got); err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"name": "web-1.cpu", "interval_ms": 1000.0, "description": "cpu", "status": "ok", "seq": 1.0},
		{"name": "web-1.mem", "interval_ms": 2000.0, "description": "memory", "status": "failing", "error": "no /proc/meminfo", "seq": 0.0, "ts": 0.0},
		{"name": "web-1.proc.top", "interval_ms": 3000.0, "description": "top", "status": "idle", "seq": 0.0, "ts": 0.0},
	}
	if len(got) != len(want) {
		t.Fatalf("topics = %v", got)
	}
	for i, w := range want {
		for k, v := range w {
			if got[i][k] != v {
				t.Errorf("topics[%d][%q] = %v, want %v", i, k, got[i][k], v)
			}
		}
		if _, ok := got[i]["data"]; ok {
			t.Errorf("topics[%d] carries data", i)
		}
	}
}

func TestTooManySubscriptions(t *testing.T) {
	r := newRegistry(t)
	publish(r, "app.a", 1)
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{MaxSubscriptions: 2})
	mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["app.a","app.b","app.c"]}`)
	m, _ := c.waitMsg(t, "error 1", isReply("error", "1"))
	if m.Code != stream.CodeTooManySubscriptions {
		t.Fatalf("error = %+v", m)
	}
	if stats := r.Stats(); stats.Subscriptions != 0 || r.SubscriberCount("app.a") != 0 {
		t.Fatalf("refused subscribe left %d patterns", stats.Subscriptions)
	}
	mustHandle(t, s, `{"type":"subscribe","id":"2","topics":["app.a","app.b","app.a"]}`) // duplicates count once
	c.waitMsg(t, "subscribed 2", isReply("subscribed", "2"))
	mustHandle(t, s, `{"type":"subscribe","id":"3","topics":["app.b"]}`) // already subscribed: no-op
	c.waitMsg(t, "subscribed 3", isReply("subscribed", "3"))
	mustHandle(t, s, `{"type":"subscribe","id":"4","topics":["app.c"]}`)
	m, _ = c.waitMsg(t, "error 4", isReply("error", "4"))
	if m.Code != stream.CodeTooManySubscriptions {
		t.Fatalf("error = %+v", m)
	}
	if err := s.Subscribe([]string{"app.d"}); !errors.Is(err, stream.ErrTooManySubscriptions) {
		t.Fatalf("Subscribe past the limit = %v", err)
	}
	if stats := r.Stats(); stats.Subscriptions != 2 {
		t.Fatalf("Subscriptions = %d, want 2", stats.Subscriptions)
	}
}

func TestRateLimit(t *testing.T) {
	r := newRegistry(t)
	c := newFakeConn(t)
	// A rate this low refills nothing during the test: exactly Burst requests pass.
	s := openSession(t, r, c, stream.SessionConfig{RequestsPerSecond: 0.0001, RequestBurst: 2, RateLimitStrikes: 3})
	mustHandle(t, s, `{"type":"ping","id":"1"}`)
	mustHandle(t, s, `{"type":"ping","id":"2"}`)
	for i := 3; i <= 5; i++ {
		mustHandle(t, s, fmt.Sprintf(`{"type":"ping","id":"%d"}`, i))
		m, _ := c.waitMsg(t, "rate_limited", isReply("error", fmt.Sprint(i)))
		if m.Code != stream.CodeRateLimited {
			t.Fatalf("reply to request %d = %+v", i, m)
		}
	}
	err := s.Handle([]byte(`{"type":"ping","id":"6"}`))
	var ce *stream.CloseError
	if !errors.As(err, &ce) || ce.Code != 1008 {
		t.Fatalf("Handle after %d strikes = %v, want *CloseError 1008", 3, err)
	}
	c.waitMsg(t, "pong 2", isReply("pong", "2"))
	if stats := r.Stats(); stats.RateLimited != 4 || stats.RateLimitCloses != 1 {
		t.Fatalf("RateLimited = %d, RateLimitCloses = %d; want 4, 1", stats.RateLimited, stats.RateLimitCloses)
	}
}

func TestRateLimitStrikesResetOnAcceptedRequest(t *testing.T) {
	r := newRegistry(t)
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{RequestsPerSecond: 10, RequestBurst: 1, RateLimitStrikes: 2})
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	s.SetClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	send := func(id string) error { return s.Handle([]byte(`{"type":"ping","id":"` + id + `"}`)) }
	// Per round: one accepted request, then two refused ones (the tolerated
	// strikes); the token that comes back 100 ms later resets the count.
	for round := range 5 {
		for i, want := range []string{"pong", "error", "error"} {
			id := fmt.Sprintf("%d-%d", round, i)
			if err := send(id); err != nil {
				t.Fatalf("request %s: %v", id, err)
			}
			m, _ := c.waitMsg(t, "reply "+id, func(m msg) bool { return m.ID == id })
			if m.Type != want {
				t.Fatalf("reply to %s = %+v, want %s", id, m, want)
			}
		}
		advance(100 * time.Millisecond)
	}
	// Without a token, the third strike in a row asks for 1008.
	for _, id := range []string{"x1", "x2", "x3"} {
		if err := send(id); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	var ce *stream.CloseError
	if err := send("x4"); !errors.As(err, &ce) || ce.Code != 1008 {
		t.Fatalf("= %v, want *CloseError 1008", err)
	}
}

func TestSubscribeWithoutReply(t *testing.T) {
	r := newRegistry(t)
	publish(r, "web-1.cpu", 1)
	c := newFakeConn(t)
	s := openSession(t, r, c, stream.SessionConfig{})
	if err := s.Subscribe([]string{"web-1.cpu", "bad..x"}); !errors.Is(err, stream.ErrInvalidTopic) {
		t.Fatalf("Subscribe with an invalid pattern = %v", err)
	}
	if err := s.Subscribe([]string{"*.cpu"}); err != nil {
		t.Fatal(err)
	}
	c.waitMsg(t, "snapshot", isUpdate("web-1.cpu", 1))
	publish(r, "web-1.cpu", 2)
	c.waitMsg(t, "live", isUpdate("web-1.cpu", 2))
	for _, m := range c.messages() {
		if m.Type != "update" {
			t.Fatalf("SSE-style subscription got a %q frame", m.Type)
		}
	}
	s.Close(1000, "")
	if err := s.Subscribe([]string{"x"}); !errors.Is(err, stream.ErrSessionClosed) {
		t.Fatalf("Subscribe on a closed session = %v", err)
	}
}

// 1,000 open/subscribe/close cycles, with publishes racing, leave no
// goroutine, session, pattern or route behind.
func TestCyclesLeaveNothingBehind(t *testing.T) {
	var demandMu sync.Mutex
	demand := map[string]bool{}
	r := stream.NewRegistry(stream.RegistryConfig{Host: "web-1", Demand: func(topic string, on bool) {
		demandMu.Lock()
		demand[topic] = on
		demandMu.Unlock()
	}})
	publish(r, "web-1.cpu", 0)
	base := runtime.NumGoroutine()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
				publish(r, "web-1.cpu", i)
				publish(r, "web-1.mem", i)
			}
		}
	}()
	for i := range 1000 {
		c := newFakeConn(t)
		if i%10 == 0 {
			c.gate = make(chan struct{}) // some never read: Close must still end their writer
		}
		s := r.Open(c, stream.SessionConfig{})
		s.Hello()
		mustHandle(t, s, `{"type":"subscribe","id":"1","topics":["web-1.cpu","*.mem","web-1.>"]}`)
		if i%2 == 0 {
			mustHandle(t, s, `{"type":"unsubscribe","id":"2","topics":["*.mem"]}`)
		}
		s.Close(1000, "bye")
	}
	close(stop)
	wg.Wait()
	// Writers of sessions closed mid-write end when their write returns.
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= base && r.Stats().Writers == 0 })
	stats := r.Stats()
	if stats.Sessions != 0 || stats.Subscriptions != 0 || stats.Writers != 0 || stats.MailboxDepth != 0 || stats.ReplyQueueDepth != 0 {
		t.Fatalf("left behind: %+v", stats)
	}
	if stats.SessionsOpened != 1000 || stats.SessionsClosed != 1000 {
		t.Fatalf("opened %d closed %d", stats.SessionsOpened, stats.SessionsClosed)
	}
	if r.PatternCount() != 0 || r.SubscriberCount("web-1.cpu") != 0 || r.SubscriberCount("web-1.mem") != 0 {
		t.Fatal("patterns or routes left behind")
	}
	waitFor(t, "demand off", func() bool {
		demandMu.Lock()
		defer demandMu.Unlock()
		return !demand["web-1.cpu"] && !demand["web-1.mem"]
	})
}
