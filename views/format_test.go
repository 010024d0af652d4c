package views_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/opsdash/opsdash/views"
)

// formatCase is one row of testdata/format_cases.json, which the browser
// test runs against static/app.js too: the Go and JavaScript formatters must
// agree on every row.
type formatCase struct {
	Field string  `json:"field"`
	Fn    string  `json:"fn"`
	Value float64 `json:"value"`
	Want  string  `json:"want"`
}

func TestFormatCases(t *testing.T) {
	b, err := os.ReadFile("testdata/format_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []formatCase
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 20 {
		t.Fatalf("only %d format cases", len(cases))
	}
	for _, c := range cases {
		var got string
		switch c.Fn {
		case "":
			got = views.FormatField(c.Field, c.Value)
		case "interval":
			got = views.FormatInterval(int64(c.Value))
		case "time":
			got = views.FormatTime(int64(c.Value))
		default:
			t.Fatalf("unknown fn %q", c.Fn)
		}
		if got != c.Want {
			t.Errorf("%s%s(%v) = %q, want %q", c.Fn, c.Field, c.Value, got, c.Want)
		}
	}
}
