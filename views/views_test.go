package views_test

import (
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"

	"github.com/opsdash/opsdash/static"
	"github.com/opsdash/opsdash/stream"
	"github.com/opsdash/opsdash/views"
)

func TestDashboardShowsFormattedValues(t *testing.T) {
	reg := newHost(t, hostOpts{cores: 4, mounts: 2, ifaces: 2, disks: 1, procs: 20, history: 300, temps: true, cgroup: true})
	doc, _ := render(t, views.DashboardPage(views.NewDashboard(reg, nil, "", now)))

	for id, want := range map[string]string{
		"hostname":          "web-1.example.com",
		"os":                "debian 12.8 · linux 6.1.0-28-amd64 · x86_64",
		"uptime":            "3d 4h",
		"cpu-usage":         "12.3%",
		"mem-used":          "1.5 GiB",
		"swap-used":         "512 MiB",
		"load1":             "0.50",
		"conns-established": "42",
		"proc-total":        "321",
	} {
		if got := text(t, doc, id); got != want {
			t.Errorf("[data-testid=%s] = %q, want %q", id, got, want)
		}
	}
	if got := text(t, doc, "conn"); !strings.HasPrefix(got, "snapshot ") {
		t.Errorf("connection state on first paint = %q, want the snapshot time", got)
	}

	// Lists: one row per item, keyed, in the payload's order.
	rows := func(id string) []string {
		var keys []string
		doc.Find(`[data-testid="` + id + `"] > [data-key]`).Each(func(_ int, s *goquery.Selection) {
			keys = append(keys, s.AttrOr("data-key", ""))
		})
		return keys
	}
	if got := rows("cores"); strings.Join(got, ",") != "0,1,2,3" {
		t.Errorf("per-core bars keyed %v", got)
	}
	if got := rows("net-rows"); strings.Join(got, ",") != "eth0,eth1" {
		t.Errorf("interface rows %v", got)
	}
	if got := rows("mount-rows"); strings.Join(got, ",") != "/,/srv/data01" {
		t.Errorf("mount rows %v", got)
	}
	if got := rows("proc-rows"); len(got) != 10 || got[0] != "1000" || got[9] != "1009" {
		t.Errorf("process rows by CPU = %v, want the first 10 of by_cpu", got)
	}
	eth0 := doc.Find(`[data-testid="net-rows"] > [data-key="eth0"]`)
	if got := eth0.Find(`[data-f="rx_bytes_per_s"]`).Text(); got != "812 B/s" {
		t.Errorf("eth0 received = %q", got)
	}
	if got := eth0.Find(`[data-f="tx_bytes_per_s"]`).Text(); got != "1.5 KiB/s" {
		t.Errorf("eth0 sent = %q", got)
	}
	if got := doc.Find(`[data-testid="cores"] > [data-key="1"] meter`).AttrOr("value", ""); got != "37.5" {
		t.Errorf("core 1 bar value = %q, want 37.5", got)
	}
	temps := doc.Find(`[data-testid="temp-rows"] > [data-key="coretemp_package_id_0"] td`)
	if got := strings.Join(temps.Map(func(_ int, s *goquery.Selection) string { return s.Text() }), "|"); got != "45.0 °C|80.0 °C|105.0 °C" {
		t.Errorf("temperature row = %q", got)
	}
	if got := doc.Find(`[data-testid="temp-rows"] > [data-key="nvme_composite"] [data-f="high_c"]`).Text(); got != "–" {
		t.Errorf("a sensor without a high threshold shows %q, want –", got)
	}
	cg := doc.Find(`[data-testid="card-cgroup"]`)
	if got := strings.Join(strings.Fields(cg.Find(`dd`).Eq(2).Text()), " "); !strings.HasSuffix(got, "· limit none · –") {
		t.Errorf("cgroup without a memory limit shows %q, want \"… · limit none · –\"", got)
	}
	if got := cg.Find(`[data-f="cpu_limit_cores"]`).Text(); got != "1.50" {
		t.Errorf("cgroup CPU limit shows %q", got)
	}
	// Every list has the template the script clones new rows from.
	doc.Find(`[data-list]`).Each(func(_ int, s *goquery.Selection) {
		if s.ChildrenFiltered("template").Length() != 1 {
			t.Errorf("list %s has no <template>", s.AttrOr("data-list", ""))
		}
	})
}

func TestDashboardCardsFollowTopics(t *testing.T) {
	d := views.NewDashboard(newHost(t, typical), nil, "", now)
	doc, _ := render(t, views.DashboardPage(d))

	// One card (or sub-card) per topic, carrying the topic and its interval.
	for suffix, interval := range map[string]string{
		"host": "60000", "cpu": "1000", "cpu.cores": "1000", "mem": "1000", "swap": "1000", "load": "1000",
		"disk.usage": "10000", "disk.io": "1000", "net.io": "1000", "net.conns": "5000", "proc.top": "2000",
	} {
		s := doc.Find(`[data-topic="web-1.` + suffix + `"]`)
		if s.Length() != 1 {
			t.Errorf("%d elements for topic %s, want 1", s.Length(), suffix)
			continue
		}
		if got := s.AttrOr("data-interval", ""); got != interval {
			t.Errorf("%s data-interval = %q, want %s", suffix, got, interval)
		}
	}
	// Families this host lacks have no card at all.
	for _, id := range []string{"card-temps", "card-cgroup"} {
		if doc.Find(`[data-testid="`+id+`"]`).Length() != 0 {
			t.Errorf("%s rendered for a host without it", id)
		}
	}
	// The script subscribes to exactly the topics shown.
	sub := strings.Fields(doc.Find("body").AttrOr("data-subscribe", ""))
	if len(sub) != 11 || sub[0] != "web-1.host" {
		t.Errorf("data-subscribe = %v", sub)
	}
}

func TestDashboardProcessOrder(t *testing.T) {
	reg := newHost(t, typical)
	for _, tc := range []struct {
		procs, list, first, current string
	}{
		{"", "by_cpu", "1000", "procs-by-cpu"},
		{"cpu", "by_cpu", "1000", "procs-by-cpu"},
		{"mem", "by_mem", "1019", "procs-by-mem"},
		{"bogus", "by_cpu", "1000", "procs-by-cpu"},
	} {
		doc, _ := render(t, views.DashboardPage(views.NewDashboard(reg, nil, tc.procs, now)))
		tbody := doc.Find(`[data-testid="proc-rows"]`)
		if got := tbody.AttrOr("data-list", ""); got != tc.list {
			t.Errorf("procs=%q: table bound to %q, want %q", tc.procs, got, tc.list)
		}
		if got := tbody.Children().Filter("[data-key]").First().AttrOr("data-key", ""); got != tc.first {
			t.Errorf("procs=%q: first pid %q, want %q", tc.procs, got, tc.first)
		}
		if got := doc.Find(`[data-testid="`+tc.current+`"]`).AttrOr("aria-current", ""); got != "true" {
			t.Errorf("procs=%q: %s aria-current=%q", tc.procs, tc.current, got)
		}
	}
}

func TestDashboardStates(t *testing.T) {
	t.Run("failing", func(t *testing.T) {
		reg := newHost(t, hostOpts{cores: 2, history: 1, cpuStatus: errors.New("read /proc/stat: permission denied")})
		doc, _ := render(t, views.DashboardPage(views.NewDashboard(reg, nil, "", now)))
		card := doc.Find(`[data-testid="card-cpu"]`)
		if got := card.AttrOr("data-state", ""); got != "failing" {
			t.Errorf("data-state = %q", got)
		}
		if got := card.Find("[data-badge]").Text(); got != "failing: read /proc/stat: permission denied" {
			t.Errorf("badge = %q", got)
		}
	})
	t.Run("stale by the server clock", func(t *testing.T) {
		reg := newHost(t, hostOpts{cores: 2, history: 1, staleCPU: true})
		doc, _ := render(t, views.DashboardPage(views.NewDashboard(reg, nil, "", now)))
		card := doc.Find(`[data-testid="card-cpu"]`)
		if got := card.AttrOr("data-state", ""); got != "stale" {
			t.Errorf("data-state = %q", got)
		}
		if got := card.Find("[data-badge]").Text(); got != "stale" {
			t.Errorf("badge = %q", got)
		}
		if _, hidden := doc.Find(`[data-testid="card-mem"] [data-badge]`).Attr("hidden"); !hidden {
			t.Error("a fresh card shows its badge")
		}
	})
	t.Run("idle process table", func(t *testing.T) {
		reg := newHost(t, hostOpts{cores: 2, history: 1})
		doc, _ := render(t, views.DashboardPage(views.NewDashboard(reg, nil, "", now)))
		card := doc.Find(`[data-testid="card-procs"]`)
		if got := card.Find("[data-badge]").Text(); got != "idle until subscribed" {
			t.Errorf("badge = %q", got)
		}
		if _, hidden := card.Find("#empty-procs").Attr("hidden"); hidden {
			t.Error("empty process table without its note")
		}
		if got := text(t, doc, "proc-total"); got != "–" {
			t.Errorf("process count without data = %q", got)
		}
	})
}

// templCall is a templ component call that templ took for text (a call in
// the middle of a line).
var templCall = regexp.MustCompile(`@[a-zA-Z]+\(`)

var pointRE = regexp.MustCompile(`^(\d+),(-?\d+\.\d)$`)

func TestDashboardChartsFromHistory(t *testing.T) {
	d := views.NewDashboard(newHost(t, typical), nil, "", now)
	doc, _ := render(t, views.DashboardPage(d))
	for id, want := range map[string]struct {
		peak  string
		lines int // one per series: busy; used; received, sent; read, written
	}{
		"cpu":  {"peak 18.3%", 1},      // 12.345 + 6
		"mem":  {"peak 9.4%", 1},       // 9.375 rounds half up
		"net":  {"peak 3.0 KiB/s", 2},  // 2 × 1536 sent beats 2 × (812.4 + 299) received
		"disk": {"peak 25.0 MiB/s", 2}, // 2 disks × 5 × 2.5 MiB/s read
	} {
		fig := doc.Find(`[data-testid="chart-` + id + `"]`)
		if got := fig.Find("[data-peak]").Text(); got != want.peak {
			t.Errorf("chart %s: %q, want %q", id, got, want.peak)
		}
		// Counted first, so that the checks of each line below cannot pass
		// on a chart that drew none.
		if got := fig.Find("polyline").Length(); got != want.lines {
			t.Errorf("chart %s: %d lines, want %d", id, got, want.lines)
		}
		fig.Find("polyline").Each(func(i int, s *goquery.Selection) {
			pts := strings.Fields(s.AttrOr("points", ""))
			if len(pts) < 75 || len(pts) > 101 {
				t.Errorf("chart %s line %d: %d points from 300 values, want 75–101", id, i, len(pts))
			}
			for _, p := range pts {
				m := pointRE.FindStringSubmatch(p)
				if m == nil {
					t.Fatalf("chart %s: bad point %q", id, p)
				}
				x, _ := strconv.ParseFloat(m[1], 64)
				y, _ := strconv.ParseFloat(m[2], 64)
				if x < 0 || x > views.ChartWindowS || y > 0 || y < -100 {
					t.Errorf("chart %s: point %q outside the viewBox", id, p)
				}
			}
			if last := pts[len(pts)-1]; !strings.HasPrefix(last, "300,") {
				t.Errorf("chart %s ends at %q, want the newest value at x=300", id, last)
			}
		})
	}
}

func TestSeriesValue(t *testing.T) {
	var data map[string]any
	if err := json.Unmarshal([]byte(`{"usage_pct":12.5,"name":"x","interfaces":[{"rx_bytes_per_s":1},{"rx_bytes_per_s":2.5},{"other":1}],"empty":[]}`), &data); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		spec string
		want float64
		ok   bool
	}{
		{"usage_pct", 12.5, true},
		{"missing", 0, false},
		{"name", 0, false},
		{"interfaces[].rx_bytes_per_s", 3.5, true},
		{"empty[].rx_bytes_per_s", 0, true},
		{"nothere[].rx_bytes_per_s", 0, false},
	} {
		got, ok := views.SeriesValue(data, tc.spec)
		if got != tc.want || ok != tc.ok {
			t.Errorf("SeriesValue(%q) = %v, %v; want %v, %v", tc.spec, got, ok, tc.want, tc.ok)
		}
	}
}

func TestChartFill(t *testing.T) {
	entry := func(sec int64, v float64) stream.HistoryEntry {
		return stream.HistoryEntry{TS: 1_000_000 + sec*1000, Data: json.RawMessage(`{"v":` + strconv.FormatFloat(v, 'f', -1, 64) + `}`)}
	}
	t.Run("old values leave the window", func(t *testing.T) {
		c := &views.Chart{PeakField: "v_bytes", Series: []views.Series{{Spec: "v"}}}
		c.Fill([]stream.HistoryEntry{entry(0, 1000), entry(500, 10), entry(700, 20)}, nil)
		// The value at 0 s is 700 s old: out of a 300 s window, and not the peak.
		if got := c.Series[0].Points; got != "100,-43.5 300,-87.0" {
			t.Errorf("points = %q", got)
		}
		if c.Peak != "peak 20 B" {
			t.Errorf("peak = %q", c.Peak)
		}
	})
	t.Run("fixed top and out of order", func(t *testing.T) {
		c := &views.Chart{Max: 100, PeakField: "v_pct", Series: []views.Series{{Spec: "v"}}}
		c.Fill([]stream.HistoryEntry{entry(10, 50), entry(5, 99), entry(12, 25)}, nil)
		if got := c.Series[0].Points; got != "298,-50.0 300,-25.0" {
			t.Errorf("points = %q", got)
		}
	})
	t.Run("all zero", func(t *testing.T) {
		c := &views.Chart{PeakField: "v_bytes_per_s", Series: []views.Series{{Spec: "v"}}}
		c.Fill([]stream.HistoryEntry{entry(1, 0), entry(2, 0)}, nil)
		if got := c.Series[0].Points; got != "299,0.0 300,0.0" {
			t.Errorf("points = %q", got)
		}
		if c.Peak != "peak 0 B/s" {
			t.Errorf("peak = %q", c.Peak)
		}
	})
	t.Run("cached values give the same chart", func(t *testing.T) {
		var hist []stream.HistoryEntry
		for i := int64(0); i < 400; i++ {
			e := entry(i, float64(i%17))
			e.Seq = uint64(i + 1)
			hist = append(hist, e)
		}
		cache := views.NewSeriesCache()
		for _, upto := range []int{200, 201, 300, 400} { // the second view sees one new value, ...
			cold := &views.Chart{Topic: "t", PeakField: "v_pct", Series: []views.Series{{Spec: "v"}}}
			warm := &views.Chart{Topic: "t", PeakField: "v_pct", Series: []views.Series{{Spec: "v"}}}
			cold.Fill(hist[:upto], nil)
			warm.Fill(hist[:upto], cache)
			if cold.Series[0].Points != warm.Series[0].Points || cold.Peak != warm.Peak || cold.Series[0].Points == "" {
				t.Fatalf("%d values: cached chart %q %q, uncached %q %q", upto, warm.Series[0].Points, warm.Peak, cold.Series[0].Points, cold.Peak)
			}
		}
	})
	t.Run("no history", func(t *testing.T) {
		c := &views.Chart{PeakField: "v", Series: []views.Series{{Spec: "v"}}}
		c.Fill(nil, nil)
		if c.Series[0].Points != "" || c.Peak != "" {
			t.Errorf("empty chart drew %q, %q", c.Series[0].Points, c.Peak)
		}
	})
}

func TestExplorer(t *testing.T) {
	reg := newHost(t, typical)
	t.Run("all topics", func(t *testing.T) {
		doc, _ := render(t, views.TopicsPage(views.NewExplorer(reg, "", now)))
		rows := doc.Find(`[data-testid="topic-rows"] > [data-testid="topic-row"]`)
		if rows.Length() != 11 {
			t.Fatalf("%d rows, want 11", rows.Length())
		}
		cpu := rows.Filter(`[data-topic="web-1.cpu"]`)
		if got := cpu.Find("[data-iv]").Text(); got != "1s" {
			t.Errorf("interval = %q", got)
		}
		if got := cpu.Find("[data-badge]").Text(); got != "ok" {
			t.Errorf("status = %q", got)
		}
		if got := cpu.Find("[data-seq]").Text(); got != "300" {
			t.Errorf("seq = %q", got)
		}
		if got := cpu.Find("[data-ts]").Text(); got != "15:46:40 UTC" {
			t.Errorf("sampled = %q", got)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(cpu.Find("[data-json]").Text()), &v); err != nil || v["usage_pct"] != 12.345 {
			t.Errorf("latest value %q (%v)", cpu.Find("[data-json]").Text(), err)
		}
		if got := cpu.Find("a").AttrOr("href", ""); got != "/topics/web-1.cpu" {
			t.Errorf("link %q", got)
		}
		if got := rows.Filter(`[data-topic="web-1.proc.top"]`).Find("[data-iv]").Text(); got != "2s" {
			t.Errorf("proc.top interval = %q", got)
		}
		if got := doc.Find("body").AttrOr("data-subscribe", ""); got != ">" {
			t.Errorf("explorer subscribes to %q", got)
		}
	})
	t.Run("filtered", func(t *testing.T) {
		doc, _ := render(t, views.TopicsPage(views.NewExplorer(reg, "*.disk.>", now)))
		var names []string
		doc.Find(`[data-testid="topic-rows"] > [data-testid="topic-row"]`).Each(func(_ int, s *goquery.Selection) { names = append(names, s.AttrOr("data-topic", "")) })
		if strings.Join(names, ",") != "web-1.disk.io,web-1.disk.usage" {
			t.Errorf("rows %v", names)
		}
		if got := text(t, doc, "topic-count"); !strings.HasPrefix(got, "2 of 11 topics match") {
			t.Errorf("count %q", got)
		}
		if doc.Find("#pattern").AttrOr("value", "") != "*.disk.>" {
			t.Error("the filter does not keep the pattern")
		}
	})
	t.Run("invalid pattern", func(t *testing.T) {
		doc, _ := render(t, views.TopicsPage(views.NewExplorer(reg, "web-1.>.cpu", now)))
		if _, hidden := doc.Find(`[data-testid="pattern-error"]`).Attr("hidden"); hidden {
			t.Error("pattern error hidden")
		}
		if n := doc.Find(`[data-testid="topic-rows"] > [data-testid="topic-row"]`).Length(); n != 0 {
			t.Errorf("%d rows for an invalid pattern", n)
		}
	})
}

func TestTopicDetail(t *testing.T) {
	reg := newHost(t, typical)
	doc, _ := render(t, views.TopicPage(views.NewTopicDetail(reg, "web-1.load", "http://web-1:8080", now)))
	latest := text(t, doc, "latest")
	var v map[string]any
	if err := json.Unmarshal([]byte(latest), &v); err != nil || v["load1"] != 0.5 {
		t.Errorf("latest value %q: %v", latest, err)
	}
	if !strings.Contains(doc.Find(`[data-testid="latest"]`).Text(), "\n  \"load1\": 0.5") {
		t.Error("latest value not indented")
	}
	if !strings.Contains(doc.Text(), "curl -N 'http://web-1:8080/sse?topics=web-1.load'") {
		t.Error("no SSE example")
	}
	if got := doc.Find("body").AttrOr("data-subscribe", ""); got != "web-1.load" {
		t.Errorf("subscribes to %q", got)
	}

	d := views.NewTopicDetail(reg, "web-1.nope", "", now)
	if d.Found {
		t.Fatal("unknown topic found")
	}
	doc, _ = render(t, views.TopicPage(d))
	if doc.Find(`[data-testid="not-found"]`).Length() != 1 || doc.Find("[data-frames]").Length() != 0 {
		t.Error("unknown topic page")
	}
}

// TestNoInlineScriptOrStyle keeps the pages compatible with a CSP without
// 'unsafe-inline': no inline script, style attribute or event handler.
func TestNoInlineScriptOrStyle(t *testing.T) {
	reg := newHost(t, hostOpts{cores: 4, mounts: 2, ifaces: 2, disks: 2, procs: 20, history: 300, temps: true, cgroup: true})
	pages := map[string]*goquery.Document{}
	pages["dashboard"], _ = render(t, views.DashboardPage(views.NewDashboard(reg, nil, "", now)))
	pages["topics"], _ = render(t, views.TopicsPage(views.NewExplorer(reg, "", now)))
	pages["topic"], _ = render(t, views.TopicPage(views.NewTopicDetail(reg, "web-1.cpu", "", now)))
	for name, doc := range pages {
		doc.Find("script").Each(func(_ int, s *goquery.Selection) {
			src, ok := s.Attr("src")
			if !ok || strings.TrimSpace(s.Text()) != "" || !strings.HasPrefix(src, static.Prefix) {
				t.Errorf("%s: inline or foreign script %q", name, src)
			}
		})
		if html := doc.Text(); templCall.MatchString(html) {
			t.Errorf("%s: a component call rendered as text: %q", name, templCall.FindString(html))
		}
		if n := doc.Find("style").Length(); n != 0 {
			t.Errorf("%s: %d <style> elements", name, n)
		}
		doc.Find("*").Each(func(_ int, s *goquery.Selection) {
			for _, a := range s.Nodes[0].Attr {
				if a.Key == "style" || strings.HasPrefix(a.Key, "on") {
					t.Errorf("%s: <%s %s=%q>", name, goquery.NodeName(s), a.Key, a.Val)
				}
			}
		})
		// Every image and form control is labelled for screen readers.
		doc.Find("img").Each(func(_ int, s *goquery.Selection) {
			if _, ok := s.Attr("alt"); !ok {
				t.Errorf("%s: img without alt", name)
			}
		})
		doc.Find("input:not([hidden])").Each(func(_ int, s *goquery.Selection) {
			if id := s.AttrOr("id", ""); id == "" || doc.Find(`label[for="`+id+`"]`).Length() != 1 {
				t.Errorf("%s: input %q without a label", name, id)
			}
		})
		if doc.Find(`html[lang="en"]`).Length() != 1 {
			t.Errorf("%s: no document language", name)
		}
	}
}
