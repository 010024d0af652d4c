package views_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
	"github.com/opsdash/opsdash/views"
)

// bigValue is a JSON object of about n bytes, mostly quotes (which HTML
// escaping makes five times longer) and some multi-byte characters.
func bigValue(n int) json.RawMessage {
	var items []string
	for size := 0; size < n-32; size += 8 {
		items = append(items, `"é"`)
	}
	return json.RawMessage(`{"items":[` + strings.Join(items, ",") + `]}`)
}

// TestExplorerIsBounded: however many large topics there are, the
// explorer's page stays within its budget: each row shows a preview of
// its value, and the rows past the budget are counted, not shown.
func TestExplorerIsBounded(t *testing.T) {
	reg := stream.NewRegistry(stream.RegistryConfig{Host: "web-1", MaxTopics: stream.NoLimit, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	const n = 1000
	v := bigValue(60 << 10)
	for i := range n {
		if err := reg.PublishJSON(fmt.Sprintf("app-%04d.%s", i, strings.Repeat("x", 200)), now, v); err != nil {
			t.Fatal(err)
		}
	}
	e := views.NewExplorer(reg, "", now)
	doc, page := render(t, views.TopicsPage(e))
	rows := doc.Find(`[data-testid="topic-rows"] > [data-testid="topic-row"]`)
	t.Logf("%d rows shown, %d hidden, page %d KiB", rows.Length(), e.Hidden, len(page)>>10)
	if len(page) > views.ExplorerBudget+64<<10 {
		t.Fatalf("the page is %d KiB, over its budget of %d KiB", len(page)>>10, views.ExplorerBudget>>10)
	}
	if e.Hidden == 0 || rows.Length()+e.Hidden != n {
		t.Fatalf("%d rows and %d hidden, want %d in all, some hidden", rows.Length(), e.Hidden, n)
	}
	if !strings.Contains(text(t, doc, "topics-hidden"), fmt.Sprintf("%d more topics match", e.Hidden)) {
		t.Error("the page does not say topics are hidden")
	}
	json := rows.First().Find("[data-json]")
	if got := json.Text(); len(got) > views.PreviewBytes+len("…") || !strings.HasSuffix(got, "…") || !utf8.ValidString(got) {
		t.Errorf("preview %q: want at most %d bytes, cut at a character, ending in …", got, views.PreviewBytes)
	}
	if json.AttrOr("data-json-max", "") != fmt.Sprint(views.PreviewBytes) {
		t.Error("the row does not tell the script how much to show")
	}
}

// TestTopicPageIsBounded: a topic's own page shows its value up to
// TopicValueBytes and links to the whole of it.
func TestTopicPageIsBounded(t *testing.T) {
	reg := stream.NewRegistry(stream.RegistryConfig{Host: "web-1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	reg.Publish(collectors.Sample{Topic: "web-1.big", Time: now, Data: bigValue(400 << 10)})
	reg.Publish(collectors.Sample{Topic: "web-1.small", Time: now.Add(time.Second), Data: map[string]int{"x": 1}})
	doc, _ := render(t, views.TopicPage(views.NewTopicDetail(reg, "web-1.big", "", now)))
	if got := text(t, doc, "latest"); len(got) > views.TopicValueBytes+len("…") || !strings.HasSuffix(got, "…") {
		t.Errorf("the value shown has %d bytes, want at most %d", len(got), views.TopicValueBytes)
	}
	if !strings.Contains(text(t, doc, "value-cut"), "/api/v1/topics/web-1.big") {
		t.Error("no link to the whole value")
	}
	doc, _ = render(t, views.TopicPage(views.NewTopicDetail(reg, "web-1.small", "", now)))
	if doc.Find(`[data-testid="value-cut"]`).Length() != 0 {
		t.Error("a small value is said to be cut")
	}
}
