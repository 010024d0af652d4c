package httpapi

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
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
		{"bad ts", `{"topic":"a.b","data":{},"ts":"now"}`, nil, `"ts" must be an integer`},
		{"negative ts", `{"topic":"a.b","data":{},"ts":-1}`, nil, `"ts" -1 is not a sample time`},
		{"ts in seconds", `{"topic":"a.b","data":{},"ts":1763740000}`, nil, `this looks like seconds`},
		{"ts far ahead", `{"topic":"a.b","data":{},"ts":4102444800000}`, nil, `"ts" 4102444800000 is not a sample time`},
		{"ts a few hours ahead", `{"topic":"a.b","data":{},"ts":1763750000000}`, []string{"a.b"}, ""},
		{"pretty data", "{\"topic\":\"a.b\",\"data\":{\n  \"x\": [1, 2],\n  \"s\": \"a b\"\n}}", []string{"a.b"}, ""},
		{"invalid UTF-8", "{\"topic\":\"a.b\",\"data\":{\"s\":\"\xff\xfe\"}}", nil, "not valid UTF-8"},
		{"number too large", `{"topic":"a.b","data":{"x":1e400}}`, nil, `"data": the number 1e400 is out of range`},
		{"negative number too large", `{"topic":"a.b","data":{"x":[1,-2E+309]}}`, nil, `the number -2E+309 is out of range`},
		{"number too small is 0", `{"topic":"a.b","data":{"x":1e-400,"y":"1e400"}}`, []string{"a.b"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items, err := decodePublish([]byte(tt.body), testNow)
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
				var compact bytes.Buffer
				if json.Compact(&compact, it.Data) != nil || !bytes.Equal(compact.Bytes(), it.Data) || it.Data[0] != '{' {
					t.Errorf("data %q not a compact object", it.Data)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("topics = %v, want %v", got, tt.want)
			}
		})
	}
}

// testNow is the clock of the publish decoding tests: 2025-11-21.
var testNow = time.UnixMilli(1763740000123)

// FuzzDecodePublish: whatever decodePublish accepts holds only what a
// publish may hold: valid UTF-8, one or more items, each data a compact
// JSON object whose numbers all fit a float64, each ts a sample time
// between 2000-01-01 and one day after now.
func FuzzDecodePublish(f *testing.F) {
	f.Add(`{"topic":"app.orders","data":{"count":3}}`)
	f.Add(`[{"topic":"a.b","data":{}},{"topic":"a.c","data":{"x":[1,2]},"ts":1763740000000}]`)
	f.Add(`[{"topic":"a.b","data":5}]`)
	f.Add("{\"topic\":\"a.b\",\"data\":{\"s\":\"\xc3\x28\"}}")
	f.Add(`{"topic":"a.b","data":{"n":1e400,"m":-0.0e-999,"s":"\u00e9\"1e999"}}`)
	f.Add(`{"topic":"a.b","data":{ "x" : [ 1 , 2.5e3 ] },"ts":1763740000}`)
	f.Add(`{"topic":"a.b","data":{},"ts":9223372036854775807}`)
	f.Fuzz(func(t *testing.T, body string) {
		items, err := decodePublish([]byte(body), testNow)
		if err != nil {
			return
		}
		if len(items) == 0 {
			t.Fatal("no error and no items")
		}
		if !utf8.ValidString(body) {
			t.Fatalf("accepted a body that is not UTF-8: %q", body)
		}
		for _, it := range items {
			var compact bytes.Buffer
			if len(it.Data) == 0 || it.Data[0] != '{' || json.Compact(&compact, it.Data) != nil || !bytes.Equal(compact.Bytes(), it.Data) {
				t.Fatalf("accepted data %q that is not a compact object", it.Data)
			}
			dec := json.NewDecoder(bytes.NewReader(it.Data))
			dec.UseNumber()
			for {
				tok, err := dec.Token()
				if err != nil {
					break
				}
				if n, ok := tok.(json.Number); ok {
					if f, err := strconv.ParseFloat(string(n), 64); err != nil || math.IsInf(f, 0) {
						t.Fatalf("accepted the number %s", n)
					}
				}
			}
			if it.TS != nil && (*it.TS < minPublishTS || *it.TS > testNow.Add(maxPublishAhead).UnixMilli()) {
				t.Fatalf("accepted ts %d", *it.TS)
			}
		}
	})
}
