package views_test

import (
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"

	"github.com/a-h/templ"

	"github.com/opsdash/opsdash/static"
	"github.com/opsdash/opsdash/views"
)

// pageBudget is DESIGN.md's page budget: HTML + JS + CSS under 100 KiB,
// uncompressed.
const pageBudget = 100 << 10

// assetBytes is the size of everything page links besides its HTML: the
// stylesheets, scripts and icon under /static/ (the fleet's script and
// stylesheet only where a page links them).
func assetBytes(t testing.TB, page *goquery.Document) int {
	t.Helper()
	n := 0
	page.Find(`link[href^="/static/"], script[src^="/static/"]`).Each(func(_ int, s *goquery.Selection) {
		ref := s.AttrOr("href", s.AttrOr("src", ""))
		a, ok := static.Lookup(strings.TrimPrefix(ref, static.Prefix))
		if !ok {
			t.Errorf("the page links %s, which is not an asset", ref)
			return
		}
		n += len(a.Body)
	})
	return n
}

// TestPageWeight renders every page for a typical host, a large one (64
// cores, 16 disks and interfaces, 20 filesystems, full charts) and the
// large one as a node running 60 workloads, and keeps each under the
// budget.
func TestPageWeight(t *testing.T) {
	for _, host := range []struct {
		name string
		opts hostOpts
	}{
		{"typical", typical},
		{"large", hostOpts{cores: 64, mounts: 20, ifaces: 16, disks: 16, procs: 20, history: 300, temps: true, cgroup: true}},
		// A Kubernetes node: the large host with 60 workloads. Its /topics
		// is not held to the budget: the explorer prints every topic's
		// raw value in full, and the workloads table alone is about 25 KB
		// of escaped JSON there (docs/benchmarks.md).
		{"node", hostOpts{cores: 64, mounts: 20, ifaces: 16, disks: 16, procs: 20, history: 300, temps: true, cgroup: true, workloads: 60}},
	} {
		reg := newHost(t, host.opts)
		for _, p := range []struct {
			path string
			page templ.Component
		}{
			{"/", views.DashboardPage(views.NewDashboard(reg, nil, "", now))},
			{"/topics", views.TopicsPage(views.NewExplorer(reg, "", now))},
			{"/topics/web-1.proc.top", views.TopicPage(views.NewTopicDetail(reg, "web-1.proc.top", "http://web-1:8080", now))},
			{"/workloads/pod-0d8c1a8e2b43", views.WorkloadPageView(views.NewWorkloadPage(reg, nil, "pod-0d8c1a8e2b43", now))},
		} {
			if host.name == "node" && p.path == "/topics" {
				continue
			}
			doc, html := render(t, p.page)
			assets := assetBytes(t, doc)
			total := len(html) + assets
			t.Logf("%-7s %-22s HTML %6d B + assets %6d B = %6d B (budget %d B)", host.name, p.path, len(html), assets, total, pageBudget)
			if total >= pageBudget {
				t.Errorf("%s host: %s weighs %d bytes, over the %d byte budget", host.name, p.path, total, pageBudget)
			}
		}
	}
}

// BenchmarkDashboard is the server's cost of one first paint of /: reading
// the registry (with five minutes of chart history) and rendering. "warm"
// reuses the chart values of earlier views, as the server does; "cold" is
// the first view after a start, which decodes the whole history.
func BenchmarkDashboard(b *testing.B) {
	hosts := []struct {
		name string
		opts hostOpts
	}{
		{"typical", typical},
		{"large", hostOpts{cores: 64, mounts: 20, ifaces: 16, disks: 16, procs: 20, history: 300, temps: true, cgroup: true, workloads: 60}},
	}
	for _, h := range hosts {
		reg := newHost(b, h.opts)
		for _, warm := range []bool{true, false} {
			name := h.name + "/cold"
			if warm {
				name = h.name + "/warm"
			}
			b.Run(name, func(b *testing.B) {
				var cache *views.SeriesCache
				if warm {
					cache = views.NewSeriesCache()
				}
				b.ReportAllocs()
				for b.Loop() {
					d := views.NewDashboard(reg, cache, "", now)
					if err := views.DashboardPage(d).Render(b.Context(), discard{}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
