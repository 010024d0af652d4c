package static_test

import (
	"os"
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

// TestScriptsAreServedStripped: served scripts and stylesheets carry no
// comment lines, indentation or blank lines, and the sources have nothing
// that would make dropping a line unsafe (a template literal or a line
// continuation could hold a line that starts with //).
func TestScriptsAreServedStripped(t *testing.T) {
	for _, a := range static.Assets() {
		if !strings.HasSuffix(a.Name, ".js") && !strings.HasSuffix(a.Name, ".css") {
			continue
		}
		src, err := os.ReadFile(a.Name)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(a.Name, ".js") && (strings.Contains(string(src), "`") || strings.Contains(string(src), "\\\n")) {
			t.Errorf("%s has a template literal or a line continuation: stripping its lines is not safe", a.Name)
		}
		if len(a.Body) >= len(src) {
			t.Errorf("%s: served %d bytes of %d: nothing stripped", a.Name, len(a.Body), len(src))
		}
		for i, line := range strings.Split(string(a.Body), "\n") {
			if line != strings.TrimSpace(line) || strings.HasPrefix(line, "//") || line == "" && i < strings.Count(string(a.Body), "\n") {
				t.Errorf("%s: served line %d %q is blank, indented or a comment", a.Name, i+1, line)
				break
			}
		}
	}
}
