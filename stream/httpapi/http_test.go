package httpapi_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
	"github.com/opsdash/opsdash/stream/httpapi"
)

func TestSSESnapshotUpdatesStatusHeartbeat(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config, _ *stream.RegistryConfig) { c.Heartbeat = 100 * time.Millisecond })
	e.reg.Declare(collectors.TopicInfo{Name: "web-1.cpu", Interval: time.Second})
	e.publish("web-1.cpu", map[string]any{"usage_pct": 5})
	e.publish("web-1.cpu", map[string]any{"usage_pct": 6})
	s := e.openSSE(t, "topics=web-1.cpu,app.*")
	if s.resp.StatusCode != 200 || !strings.HasPrefix(s.resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, content type %q", s.resp.StatusCode, s.resp.Header.Get("Content-Type"))
	}

	ev := s.nextEvent() // the snapshot
	var u frame
	if ev.Event != "update" || ev.ID != "web-1.cpu:2" || json.Unmarshal([]byte(ev.Data), &u) != nil ||
		u.Type != "update" || u.Topic != "web-1.cpu" || u.Seq != 2 || string(u.Data) != `{"usage_pct":6}` {
		t.Fatalf("snapshot event %+v, want update web-1.cpu:2 with the WebSocket frame as data", ev)
	}

	e.publish("app.orders", map[string]any{"count": 1}) // matches app.* and appears later
	ev = s.nextEvent()
	if ev.Event != "update" || ev.ID != "app.orders:1" {
		t.Fatalf("event %+v, want update app.orders:1", ev)
	}

	e.reg.SetStatus("web-1.cpu", errors.New("no /proc/stat"))
	ev = s.nextEvent()
	var st frame
	if ev.Event != "status" || json.Unmarshal([]byte(ev.Data), &st) != nil || st.Topic != "web-1.cpu" ||
		st.Status != "failing" || st.Error != "no /proc/stat" {
		t.Fatalf("event %+v, want a failing status", ev)
	}

	// Heartbeat comments.
	for {
		ev, err := s.next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Comment == "ping" {
			break
		}
	}
	if e.srv.Stats().SSEStreams != 1 {
		t.Fatal("the stream is not counted")
	}

	// The client goes away: the stream and its session end.
	s.conn.Close()
	eventually(t, "the stream to end after its client left", func() bool {
		return e.srv.Conns() == 0 && e.reg.Sessions() == 0
	})
}

func TestSSEConflatesForASlowReader(t *testing.T) {
	e := newEnv(t)
	s := e.openSSE(t, "topics=load.x")
	if s.resp.StatusCode != 200 {
		t.Fatal(s.resp.StatusCode)
	}
	const n = 5000
	blob := strings.Repeat("y", 2000)
	for i := 0; i < n; i++ {
		e.publish("load.x", map[string]any{"blob": blob})
	}
	var frames int
	var last uint64
	for last < n {
		ev := s.nextEvent()
		var u frame
		if err := json.Unmarshal([]byte(ev.Data), &u); err != nil || u.Seq <= last {
			t.Fatalf("event %q after seq %d", ev.ID, last)
		}
		last = u.Seq
		frames++
	}
	if frames >= n {
		t.Fatal("every value was delivered: no conflation")
	}
}

func TestSSEBadRequests(t *testing.T) {
	e := newEnv(t)
	for _, q := range []string{"", "topics=", "topics=Bad", "topics=a.b,a..b", "topics=%3E.a"} {
		var body apiError
		code, _ := e.httpJSON(t, "GET", "/sse?"+q, "", "", &body)
		if code != 400 || body.Error.Code != stream.CodeInvalidTopic || body.Error.Message == "" {
			t.Errorf("/sse?%s: %d %+v, want 400 invalid_topic", q, code, body)
		}
	}
	if e.srv.Conns() != 0 || e.reg.Sessions() != 0 {
		t.Fatal("a refused stream left a connection or session behind")
	}
}

func TestSSEOriginCheck(t *testing.T) {
	e := newEnv(t)
	var body apiError
	status := doRaw(t, e, "GET", "/sse?topics=a.b", map[string]string{"Origin": "https://evil.example"}, &body)
	if status != 403 || body.Error.Code != "forbidden" {
		t.Fatalf("cross-origin SSE: %d %+v, want 403 forbidden", status, body)
	}
}

func TestRESTTopics(t *testing.T) {
	e := newEnv(t, func(_ *httpapi.Config, r *stream.RegistryConfig) { r.HistoryLen = 5 })
	e.reg.Declare(collectors.TopicInfo{Name: "web-1.mem", Interval: 2 * time.Second, Description: "memory"})
	e.reg.Declare(collectors.TopicInfo{Name: "web-1.cpu", Interval: time.Second, Description: "cpu"})
	for i := 1; i <= 8; i++ {
		e.publish("web-1.cpu", map[string]any{"usage_pct": i})
	}

	var list []stream.TopicState
	if code, _ := e.httpJSON(t, "GET", "/api/v1/topics", "", "", &list); code != 200 || len(list) != 2 {
		t.Fatalf("list: %d %+v", code, list)
	}
	if list[0].Name != "web-1.cpu" || list[0].Status != "ok" || list[0].IntervalMS != 1000 ||
		list[1].Name != "web-1.mem" || list[1].Status != "pending" || list[1].Description != "memory" {
		t.Fatalf("list %+v: want web-1.cpu ok and web-1.mem pending, sorted", list)
	}

	type one struct {
		Topic   string          `json:"topic"`
		Seq     uint64          `json:"seq"`
		TS      int64           `json:"ts"`
		Status  string          `json:"status"`
		Data    json.RawMessage `json:"data"`
		History []struct {
			Seq  uint64          `json:"seq"`
			TS   int64           `json:"ts"`
			Data json.RawMessage `json:"data"`
		} `json:"history"`
	}
	var got one
	if code, _ := e.httpJSON(t, "GET", "/api/v1/topics/web-1.cpu", "", "", &got); code != 200 ||
		got.Topic != "web-1.cpu" || got.Seq != 8 || got.TS == 0 || got.Status != "ok" ||
		string(got.Data) != `{"usage_pct":8}` || got.History != nil {
		t.Fatalf("one topic: %d %+v", code, got)
	}
	got = one{}
	e.httpJSON(t, "GET", "/api/v1/topics/web-1.cpu?history=3", "", "", &got)
	if len(got.History) != 3 || got.History[0].Seq != 6 || got.History[2].Seq != 8 ||
		string(got.History[2].Data) != `{"usage_pct":8}` {
		t.Fatalf("history=3: %+v, want seqs 6,7,8", got.History)
	}
	got = one{}
	e.httpJSON(t, "GET", "/api/v1/topics/web-1.cpu?history=100000", "", "", &got)
	if len(got.History) != 5 {
		t.Fatalf("history=100000: %d entries, want the 5 kept", len(got.History))
	}
	got = one{}
	if code, _ := e.httpJSON(t, "GET", "/api/v1/topics/web-1.mem", "", "", &got); code != 200 ||
		got.Status != "pending" || got.Seq != 0 || string(got.Data) != "null" {
		t.Fatalf("pending topic: %d %+v", code, got)
	}

	for _, tt := range []struct {
		path   string
		status int
		code   string
	}{
		{"/api/v1/topics/web-1.nope", 404, "not_found"},
		{"/api/v1/topics/Web-1.CPU", 400, stream.CodeInvalidTopic},
		{"/api/v1/topics/web-1..cpu", 400, stream.CodeInvalidTopic},
		{"/api/v1/topics/web-1.*", 400, stream.CodeInvalidTopic},
		{"/api/v1/topics/web-1.cpu?history=-1", 400, stream.CodeBadRequest},
		{"/api/v1/topics/web-1.cpu?history=ten", 400, stream.CodeBadRequest},
	} {
		var body apiError
		if code, _ := e.httpJSON(t, "GET", tt.path, "", "", &body); code != tt.status || body.Error.Code != tt.code {
			t.Errorf("GET %s: %d %+v, want %d %s", tt.path, code, body, tt.status, tt.code)
		}
	}
}

func TestPublishOffByDefault(t *testing.T) {
	e := newEnv(t)
	var body apiError
	code, _ := e.httpJSON(t, "POST", "/api/v1/publish", "Bearer x", `{"topic":"app.a","data":{}}`, &body)
	if code != 404 || body.Error.Code != "not_found" {
		t.Fatalf("publish without a token configured: %d %+v, want 404", code, body)
	}
}

func TestPublish(t *testing.T) {
	const token = "Bearer t0ken"
	e := newEnv(t, func(c *httpapi.Config, r *stream.RegistryConfig) {
		c.PublishToken = "t0ken"
		c.MaxPublishBytes = 2048
		r.MaxTopics = 3
		r.MaxValueBytes = 100
	})
	c := e.dialHello(t)
	c.send(`{"type":"subscribe","id":"1","topics":["billing.>"]}`)
	c.nextOf("subscribed", nil)

	for _, tt := range []struct {
		name, auth, body string
		status           int
		code, msg        string
	}{
		{"no auth", "", `{"topic":"billing.a","data":{}}`, 401, "unauthorized", ""},
		{"wrong token", "Bearer nope", `{"topic":"billing.a","data":{}}`, 401, "unauthorized", ""},
		{"basic auth", "Basic dDBrZW4=", `{"topic":"billing.a","data":{}}`, 401, "unauthorized", ""},
		{"not JSON", token, `hello`, 400, "bad_request", "item 0"},
		{"data not object", token, `[{"topic":"billing.a","data":{}},{"topic":"billing.b","data":3}]`, 400, "bad_request", "item 1"},
		{"invalid topic", token, `[{"topic":"billing.a","data":{}},{"topic":"Billing A","data":{}}]`, 400, "invalid_topic", "item 1"},
		{"host topic", token, `{"topic":"web-1.cpu","data":{"usage_pct":0}}`, 403, "reserved_topic", "item 0"},
		{"too large", token, `{"topic":"billing.a","data":{"x":"` + strings.Repeat("a", 2100) + `"}}`, 413, "payload_too_large", ""},
		// One value over MaxValueBytes (100) refuses the whole batch,
		// the small value before it included.
		{"value too large", token, `[{"topic":"billing.a","data":{}},{"topic":"billing.b","data":{"x":"` + strings.Repeat("a", 100) + `"}}]`,
			413, "payload_too_large", "item 1 (billing.b)"},
	} {
		var body apiError
		code, hdr := e.httpJSON(t, "POST", "/api/v1/publish", tt.auth, tt.body, &body)
		if code != tt.status || body.Error.Code != tt.code || !strings.Contains(body.Error.Message, tt.msg) {
			t.Errorf("%s: %d %+v, want %d %s mentioning %q", tt.name, code, body, tt.status, tt.code, tt.msg)
		}
		if tt.status == 401 && hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", tt.name)
		}
	}
	if _, ok := e.reg.Topic("billing.a", 0); ok {
		t.Fatal("a refused request published something")
	}

	var ok struct{ Published int }
	code, _ := e.httpJSON(t, "POST", "/api/v1/publish", token,
		`[{"topic":"billing.orders","data":{"count":3}},{"topic":"billing.refunds","data":{"count":1},"ts":1763740000123}]`, &ok)
	if code != 200 || ok.Published != 2 {
		t.Fatalf("publish: %d %+v", code, ok)
	}
	got := map[string]frame{}
	for len(got) < 2 {
		f := c.nextOf("update", nil)
		got[f.Topic] = f
	}
	if f := got["billing.orders"]; f.Seq != 1 || string(f.Data) != `{"count":3}` {
		t.Fatalf("published value over WebSocket: %s", f.raw)
	}
	if f := got["billing.refunds"]; f.TS != 1763740000123 {
		t.Fatalf("ts not kept: %s", f.raw)
	}

	// The topic cap (3): one more new topic fits, the next is refused.
	var body apiError
	code, _ = e.httpJSON(t, "POST", "/api/v1/publish", token,
		`[{"topic":"billing.orders","data":{"count":4}},{"topic":"billing.c","data":{}},{"topic":"billing.d","data":{}}]`, &body)
	if code != 429 || body.Error.Code != "too_many_topics" || body.Published == nil || *body.Published != 2 {
		t.Fatalf("over the topic cap: %d %+v, want 429 too_many_topics after 2 published", code, body)
	}
}

// doRaw does a request with extra headers and decodes the JSON answer.
func doRaw(t *testing.T, e *env, method, path string, headers map[string]string, out any) int {
	t.Helper()
	req, err := newRequest(method, e.url(path), headers)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %d: %v", method, path, resp.StatusCode, err)
		}
	}
	return resp.StatusCode
}

func TestFiberErrorsAreJSON(t *testing.T) {
	e := newEnv(t)
	var body apiError
	if code, _ := e.httpJSON(t, "GET", "/api/v1/nope", "", "", &body); code != 404 || body.Error.Code != "not_found" {
		t.Fatalf("unknown route: %d %+v, want a JSON 404 not_found", code, body)
	}
}
