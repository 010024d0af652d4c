package stream

import "testing"

// Patterns come back as sent, readable: ">" is not HTML-escaped to "\u003e".
func TestRepliesAreNotHTMLEscaped(t *testing.T) {
	got := string(encodeTopicsReply("subscribed", "1", []string{"web-1.>", "*.cpu"}))
	want := `{"type":"subscribed","id":"1","topics":["web-1.>","*.cpu"]}`
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}
