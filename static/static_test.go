package static_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/opsdash/opsdash/static"
)

var hashed = regexp.MustCompile(`^/static/(app|style|icon|fleet)\.[0-9a-f]{10}\.(js|css|svg)$`)

func TestAssetsServedUnderContentHashes(t *testing.T) {
	want := map[string]string{
		"app.js":    "text/javascript; charset=utf-8",
		"style.css": "text/css; charset=utf-8",
		"icon.svg":  "image/svg+xml",
		"fleet.js":  "text/javascript; charset=utf-8",
		"fleet.css": "text/css; charset=utf-8",
	}
	if got := len(static.Assets()); got != len(want) {
		t.Fatalf("%d assets, want %d", got, len(want))
	}
	for name, ct := range want {
		p := static.Path(name)
		if !hashed.MatchString(p) {
			t.Errorf("Path(%q) = %q, want a content-hashed name", name, p)
		}
		a, ok := static.Lookup(strings.TrimPrefix(p, static.Prefix))
		if !ok || a.Name != name || len(a.Body) == 0 || a.ContentType != ct {
			t.Errorf("Lookup(%q) = %+v, %v", p, a, ok)
		}
		if _, ok := static.Lookup(name); ok {
			t.Errorf("the plain name %q is served too", name)
		}
	}
}

func TestPathPanicsForUnknownAsset(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Path of an unknown asset did not panic")
		}
	}()
	static.Path("nope.js")
}
