package httpapi_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
	"github.com/opsdash/opsdash/stream/httpapi"
)

// GET /api/v1/culprits answers from the real culprit sampler: the newest
// second, the second nearest a time in Unix milliseconds or RFC 3339, and
// JSON errors for a bad time, a time nothing was recorded near, and a
// server without the sampler.
func TestCulpritsAPI(t *testing.T) {
	var apiErr apiError
	bare := newEnv(t)
	if code, _ := bare.httpJSON(t, "GET", "/api/v1/culprits", "", "", &apiErr); code != 404 || apiErr.Error.Code != "not_found" {
		t.Fatalf("without a sampler: %d %+v", code, apiErr)
	}

	sampler := collectors.NewCulprits(collectors.Config{HostID: testHost})
	e := newEnv(t, func(c *httpapi.Config, _ *stream.RegistryConfig) { c.Culprits = sampler.(httpapi.CulpritSource) })
	if code, _ := e.httpJSON(t, "GET", "/api/v1/culprits?host=Web.1", "", "", &apiErr); code != 400 || apiErr.Error.Code != stream.CodeBadRequest {
		t.Fatalf("a bad host id: %d %+v", code, apiErr)
	}
	if code, _ := e.httpJSON(t, "GET", "/api/v1/culprits", "", "", &apiErr); code != 404 || !strings.Contains(apiErr.Error.Message, "no culprits recorded yet") {
		t.Fatalf("before the first second: %d %+v", code, apiErr)
	}
	for range 2 { // the baseline, then a second
		if _, err := sampler.Collect(context.Background()); err != nil {
			t.Fatal(err)
		}
	}

	type answer struct {
		Host     string                  `json:"host"`
		At       int64                   `json:"at"`
		TS       int64                   `json:"ts"`
		OldestTS int64                   `json:"oldest_ts"`
		NewestTS int64                   `json:"newest_ts"`
		Culprits collectors.CulpritsData `json:"culprits"`
	}
	var newest answer
	if code, h := e.httpJSON(t, "GET", "/api/v1/culprits", "", "", &newest); code != 200 || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("newest: %d, Cache-Control %q", code, h.Get("Cache-Control"))
	}
	var raw map[string]json.RawMessage
	e.httpJSON(t, "GET", "/api/v1/culprits", "", "", &raw)
	for _, k := range []string{"host", "at", "ts", "oldest_ts", "newest_ts", "culprits"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("answer lacks %q: %v", k, raw)
		}
	}
	if newest.Host != testHost || newest.TS == 0 || newest.TS != newest.NewestTS || newest.At != newest.TS || newest.Culprits.Processes < 1 {
		t.Fatalf("newest second: %+v", newest)
	}
	for _, at := range []string{strconv.FormatInt(newest.TS+700, 10), time.UnixMilli(newest.TS - 500).UTC().Format(time.RFC3339Nano)} {
		var a answer
		if code, _ := e.httpJSON(t, "GET", "/api/v1/culprits?at="+at, "", "", &a); code != 200 || a.TS != newest.TS {
			t.Errorf("at %s: %d, second %d; want %d", at, code, a.TS, newest.TS)
		}
	}
	if code, _ := e.httpJSON(t, "GET", "/api/v1/culprits?at=yesterday", "", "", &apiErr); code != 400 || apiErr.Error.Code != stream.CodeBadRequest {
		t.Errorf("a bad time: %d %+v", code, apiErr)
	}
	var own answer
	if code, _ := e.httpJSON(t, "GET", "/api/v1/culprits?host="+testHost, "", "", &own); code != 200 || own.TS != newest.TS {
		t.Errorf("?host= this host: %d, second %d; want %d", code, own.TS, newest.TS)
	}
	if code, _ := e.httpJSON(t, "GET", "/api/v1/culprits?host=web-9", "", "", &apiErr); code != 404 || !strings.Contains(apiErr.Error.Message, "records host "+testHost+" only") {
		t.Errorf("another host: %d %+v", code, apiErr)
	}
	hourAgo := strconv.FormatInt(newest.TS-3600_000, 10)
	if code, _ := e.httpJSON(t, "GET", "/api/v1/culprits?at="+hourAgo, "", "", &apiErr); code != 404 || !strings.Contains(apiErr.Error.Message, "kept from") {
		t.Errorf("an hour before the record: %d %+v", code, apiErr)
	}
}
