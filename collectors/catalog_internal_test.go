package collectors

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// topicsDocHeader opens the table of docs/topics.md that lists the catalog.
const topicsDocHeader = "| collector | topics | default interval |"

// catalogDocTable renders the catalog as docs/topics.md lists it.
func catalogDocTable() string {
	var b strings.Builder
	b.WriteString(topicsDocHeader + "\n|---|---|---|\n")
	for _, e := range catalog {
		topics := make([]string, len(e.topics))
		for i, t := range e.topics {
			topics[i] = "`<host>." + t + "`"
		}
		col := strings.Join(topics, ", ")
		if e.onDemand {
			col += " (on demand)"
		}
		if e.onlyWith != "" {
			col += " (only with " + e.onlyWith + ")"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %g s |\n", e.name, col, e.every.Seconds())
	}
	return b.String()
}

// The interval table of docs/topics.md is the catalog's: a collector added,
// renamed or given another interval fails here until the docs say so.
func TestTopicsDocListsTheCatalog(t *testing.T) {
	doc, err := os.ReadFile("../docs/topics.md")
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(doc), topicsDocHeader)
	if start < 0 {
		t.Fatalf("docs/topics.md has no line %q", topicsDocHeader)
	}
	got, _, _ := strings.Cut(string(doc[start:]), "\n\n")
	if want := catalogDocTable(); got+"\n" != want {
		t.Errorf("docs/topics.md's collector table differs from the catalog; it should read:\n\n%s", want)
	}
}

// What the catalog documents is what the collectors declare: topic names,
// interval and demand. Collectors this machine lacks (sensors, cgroup) are
// checked where they exist.
func TestCatalogMatchesDeclaredTopics(t *testing.T) {
	cfg := Config{HostID: "h"}
	for _, e := range catalog {
		c, ok := e.construct(cfg)
		if !ok {
			if e.onlyWith == "" {
				t.Errorf("%s: not built, but the catalog says every machine has it", e.name)
			}
			continue
		}
		if c.Name() != e.name || c.Interval() != e.every {
			t.Errorf("%s: Name/Interval = %q/%v, want %q/%v", e.name, c.Name(), c.Interval(), e.name, e.every)
		}
		var names []string
		for _, tp := range c.Topics() {
			names = append(names, strings.TrimPrefix(tp.Name, "h."))
			if tp.Interval != e.every || tp.OnDemand != e.onDemand {
				t.Errorf("%s: topic %s declared every %v, on demand %v; catalog: %v, %v", e.name, tp.Name, tp.Interval, tp.OnDemand, e.every, e.onDemand)
			}
		}
		// Topics that come and go at run time ("workload.<id>") are
		// documented by their pattern and not declared at start.
		static := slices.DeleteFunc(slices.Clone(e.topics), func(t string) bool { return strings.Contains(t, "<") })
		if !slices.Equal(names, static) {
			t.Errorf("%s: declares topics %q, catalog documents %q", e.name, names, e.topics)
		}
	}
}
