package views

import (
	"encoding/json"
	"unicode/utf8"
)

// What one page render may cost. A page is rendered into one buffer before
// it is sent, so its size is server memory for as long as the client takes
// to read it, per request: the explorer used to render every topic's full
// value, and 300 published topics of 64 KiB made one /topics page 75 MiB
// (JSON quotes escaped in HTML) and the server hundreds of MiB while a few
// browsers loaded it. Now a row shows a preview of its value, the rows
// stop at a byte budget, and a topic's own page shows its value up to a
// bound; the full value is at /api/v1/topics/{topic} and arrives live
// over /ws.
const (
	// PreviewBytes is the most of a topic's JSON the explorer shows in
	// its row (cut at a character boundary, then "…"). static/app.js cuts
	// live updates to as many characters (data-json-max).
	PreviewBytes = 160
	// ExplorerBudget bounds the HTML of the explorer's rows; the topics
	// past it are counted (Explorer.Hidden), not shown.
	ExplorerBudget = 512 << 10
	// TopicValueBytes bounds the indented JSON a topic's page shows.
	TopicValueBytes = 256 << 10
	// rowOverhead is the markup of one explorer row besides its texts.
	rowOverhead = 640
)

// preview returns at most max bytes of s, cut at a character boundary,
// with "…" when something was cut.
func preview(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// previewJSON is preview for a raw JSON value.
func previewJSON(raw json.RawMessage, max int) json.RawMessage {
	if len(raw) <= max {
		return raw
	}
	return json.RawMessage(preview(string(raw), max))
}

// htmlLen is the length of s once escaped into HTML text or an attribute,
// as templ escapes it (&, <, >, " and ' grow to entities of 5 bytes).
func htmlLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '&', '<', '>', '"', '\'':
			n += 4
		}
	}
	return n
}

// rowCost estimates the HTML of the explorer's row for t: its name three
// times (attribute, link, text), description, error and preview.
func rowCost(t *TopicView) int {
	return rowOverhead + 3*htmlLen(t.Name) + htmlLen(t.Description) + htmlLen(t.Error) + htmlLen(string(t.Raw))
}
