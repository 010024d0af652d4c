package httpapi

import (
	"strings"
	"testing"
)

func TestDecodePublish(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    []string // topics
		wantErr string   // substring of the error
	}{
		{"one object", `{"topic":"app.orders","data":{"count":3}}`, []string{"app.orders"}, ""},
		{"array", ` [{"topic":"a.b","data":{}},{"topic":"a.c","data":{"x":[1,2]}}] `, []string{"a.b", "a.c"}, ""},
		{"with ts", `{"topic":"a.b","data":{},"ts":1763740000123}`, []string{"a.b"}, ""},
		{"empty body", ``, nil, "empty body"},
		{"empty array", `[]`, nil, "empty"},
		{"not JSON", `hello`, nil, "item 0: not a JSON object"},
		{"broken JSON", `{"topic":"a.b","data":{}`, nil, "item 0: invalid JSON"},
		{"broken array", `[{"topic":"a.b","data":{}}`, nil, "not a JSON array"},
		{"array of scalars", `[1]`, nil, "item 0: not a JSON object"},
		{"missing topic", `{"data":{}}`, nil, `item 0: "topic" must be a string`},
		{"topic not string", `{"topic":7,"data":{}}`, nil, `"topic" must be a string`},
		{"missing data", `{"topic":"a.b"}`, nil, `item 0: "data" must be a JSON object`},
		{"data scalar", `[{"topic":"a.b","data":{}},{"topic":"a.c","data":5}]`, nil, `item 1: "data" must be a JSON object`},
		{"data array", `{"topic":"a.b","data":[1]}`, nil, `"data" must be a JSON object`},
		{"unknown field", `{"topic":"a.b","data":{},"tpoic":"x"}`, nil, `item 0: unknown field "tpoic"`},
		{"bad ts", `{"topic":"a.b","data":{},"ts":"now"}`, nil, `"ts" must be a positive integer`},
		{"negative ts", `{"topic":"a.b","data":{},"ts":-1}`, nil, `"ts" must be a positive integer`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items, err := decodePublish([]byte(tt.body))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, it := range items {
				got = append(got, it.Topic)
				if len(it.Data) == 0 || it.Data[0] != '{' || strings.ContainsAny(string(it.Data), "\n ") {
					t.Errorf("data %q not a compact object", it.Data)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("topics = %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzDecodePublish(f *testing.F) {
	f.Add(`{"topic":"app.orders","data":{"count":3}}`)
	f.Add(`[{"topic":"a.b","data":{}},{"topic":"a.c","data":{"x":[1,2]},"ts":5}]`)
	f.Add(`[{"topic":"a.b","data":5}]`)
	f.Fuzz(func(t *testing.T, body string) {
		items, err := decodePublish([]byte(body))
		if err != nil {
			return
		}
		if len(items) == 0 {
			t.Fatal("no error and no items")
		}
		for _, it := range items {
			if len(it.Data) == 0 || it.Data[0] != '{' {
				t.Fatalf("accepted data %q that is not an object", it.Data)
			}
			if it.TS != nil && *it.TS <= 0 {
				t.Fatalf("accepted ts %d", *it.TS)
			}
		}
	})
}
