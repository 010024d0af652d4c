package termline

import (
	"encoding/json"
	"testing"
)

func TestRenderData(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"usage_pct":12.73,"user_pct":5.99,"cores":2}`, "usage_pct=12.73 user_pct=5.99 cores=2"},
		{`{"b":1,"a":2}`, "b=1 a=2"}, // the server's order, not sorted
		{`{"cores":[{"core":0,"usage_pct":13.64},{"core":1,"usage_pct":11.85}]}`, "cores=[{core=0 usage_pct=13.64} {core=1 usage_pct=11.85}]"},
		{`{"hostname":"vm","platform":"debian linux","empty":"","eq":"a=b","ok":true,"none":null}`,
			`hostname=vm platform="debian linux" empty="" eq="a=b" ok=true none=null`},
		{`{"big":25276510208,"tiny":1e-7}`, "big=25276510208 tiny=1e-7"},
		{`{"name":"tab\there"}`, `name="tab\there"`},
		{`{}`, ""},
		{`[1,2,"x"]`, "[1 2 x]"},
		{`42`, "42"},
		{``, "-"},
		{`{"broken":`, `{"broken":`},
	} {
		if got := Render(json.RawMessage(tc.in)); got != tc.want {
			t.Errorf("Render(%s) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		in    string
		width int
		want  string
	}{
		{"abcdef", 0, "abcdef"},
		{"abcdef", 6, "abcdef"},
		{"abcdef", 5, "abcd…"},
		{"äöüßé", 3, "äö…"},
		{"a", 1, "a"},
	} {
		if got := Truncate(tc.in, tc.width); got != tc.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tc.in, tc.width, got, tc.want)
		}
	}
}
