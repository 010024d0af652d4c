package stream_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/opsdash/opsdash/stream"
)

func TestValidTopic(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"web-1.cpu", true},
		{"web-1.cpu.cores", true},
		{"billing.orders", true},
		{"a", true},
		{"a_b-c.0_9", true},
		{"", false},
		{".", false},
		{"a.", false},
		{".a", false},
		{"a..b", false},
		{"Web-1.cpu", false},
		{"web 1.cpu", false},
		{"web-1.*", false},
		{"web-1.>", false},
		{"wéb.cpu", false},
		{strings.Repeat("a", stream.MaxTopicLen), true},
		{strings.Repeat("a", stream.MaxTopicLen+1), false},
	}
	for _, tt := range tests {
		if got := stream.ValidTopic(tt.name); got != tt.want {
			t.Errorf("ValidTopic(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestParsePattern(t *testing.T) {
	valid := []string{"web-1.cpu", "*", ">", "*.cpu", "web-1.>", "*.*", "*.>", "a.*.c", "a.b.c.>"}
	for _, p := range valid {
		got, err := stream.ParsePattern(p)
		if err != nil {
			t.Errorf("ParsePattern(%q): %v", p, err)
			continue
		}
		if got.String() != p {
			t.Errorf("ParsePattern(%q).String() = %q", p, got.String())
		}
	}
	invalid := []string{"", ".", "a.", ".a", "a..b", ">.a", "a.>.b", "a>", "a*", "*a.b", "A.b", "a b", "a.>>",
		strings.Repeat("a", stream.MaxTopicLen+1)}
	for _, p := range invalid {
		if _, err := stream.ParsePattern(p); !errors.Is(err, stream.ErrInvalidTopic) {
			t.Errorf("ParsePattern(%q) error = %v, want ErrInvalidTopic", p, err)
		}
	}
}

func TestPatternLiteral(t *testing.T) {
	for p, want := range map[string]bool{"a.b": true, "a.*": false, "a.>": false, "*": false} {
		pat, err := stream.ParsePattern(p)
		if err != nil {
			t.Fatal(err)
		}
		if pat.Literal() != want {
			t.Errorf("%q.Literal() = %v, want %v", p, pat.Literal(), want)
		}
	}
	if (stream.Pattern{}).Match("a") {
		t.Error("zero Pattern matched a topic")
	}
}

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern, topic string
		want           bool
	}{
		{"web-1.cpu", "web-1.cpu", true},
		{"web-1.cpu", "web-1.cpu.cores", false},
		{"web-1.cpu", "web-1.cp", false},
		{"*.cpu", "web-1.cpu", true},
		{"*.cpu", "web-2.cpu", true},
		{"*.cpu", "web-1.cpu.cores", false},
		{"*.cpu", "cpu", false},
		{"*", "web-1", true},
		{"*", "web-1.cpu", false},
		{">", "web-1", true},
		{">", "web-1.cpu.cores", true},
		{"web-1.>", "web-1.cpu", true},
		{"web-1.>", "web-1.cpu.cores", true},
		{"web-1.>", "web-1", false},
		{"web-1.>", "web-2.cpu", false},
		{"*.>", "a", false},
		{"*.>", "a.b", true},
		{"a.*.c", "a.b.c", true},
		{"a.*.c", "a.b.d", false},
		{"a.*.c", "a.c", false},
		{"*.*", "a.b", true},
		{"*.*", "a.b.c", false},
		{"*.cpu", "web..cpu", false}, // invalid topic matches nothing
		{">", "", false},
		{">", "A", false},
	}
	for _, tt := range tests {
		p, err := stream.ParsePattern(tt.pattern)
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", tt.pattern, err)
		}
		if got := p.Match(tt.topic); got != tt.want {
			t.Errorf("%q.Match(%q) = %v, want %v", tt.pattern, tt.topic, got, tt.want)
		}
	}
}

// refMatch is a straightforward NATS matcher to check Match against.
func refMatch(pattern, topic string) bool {
	if !stream.ValidTopic(topic) {
		return false
	}
	pt, tt := strings.Split(pattern, "."), strings.Split(topic, ".")
	for i, p := range pt {
		if p == ">" {
			return len(tt) > i
		}
		if i >= len(tt) || p != "*" && p != tt[i] {
			return false
		}
	}
	return len(pt) == len(tt)
}

func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{"web-1.cpu", "*.cpu", "web-1.>", ">", "*", "a..b", "a.>.b", "", "A", "a.*.c.>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := stream.ParsePattern(s)
		if err != nil {
			if !errors.Is(err, stream.ErrInvalidTopic) {
				t.Fatalf("ParsePattern(%q) error %v does not wrap ErrInvalidTopic", s, err)
			}
			return
		}
		if p.String() != s {
			t.Fatalf("String() = %q, want %q", p.String(), s)
		}
		if len(s) > stream.MaxTopicLen {
			t.Fatalf("accepted %d bytes", len(s))
		}
		// A literal pattern is exactly a valid topic, and matches itself.
		if p.Literal() != stream.ValidTopic(s) {
			t.Fatalf("%q: Literal() = %v but ValidTopic = %v", s, p.Literal(), stream.ValidTopic(s))
		}
		if p.Literal() && !p.Match(s) {
			t.Fatalf("literal %q does not match itself", s)
		}
	})
}

func FuzzMatch(f *testing.F) {
	f.Add("*.cpu", "web-1.cpu")
	f.Add("web-1.>", "web-1.cpu.cores")
	f.Add(">", "a")
	f.Add("a.*", "a")
	f.Add("*.>", "a.b.c")
	f.Fuzz(func(t *testing.T, pattern, topic string) {
		p, err := stream.ParsePattern(pattern)
		if err != nil {
			return
		}
		if got, want := p.Match(topic), refMatch(pattern, topic); got != want {
			t.Fatalf("%q.Match(%q) = %v, reference says %v", pattern, topic, got, want)
		}
	})
}
