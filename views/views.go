package views

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/opsdash/opsdash/stream"
)

// Source is what the pages read: the stream registry implements it.
type Source interface {
	// Host is the local host id, the first token of this host's topics.
	Host() string
	// Topics lists every topic, sorted by name, without data.
	Topics() []stream.TopicState
	// Topic returns one topic with its latest data and up to history
	// past values.
	Topic(name string, history int) (stream.TopicState, bool)
}

// TopicView is one topic as a page shows it.
type TopicView struct {
	// Name is the full topic name ("web-1.cpu").
	Name string
	// Description is the collector's one line for people.
	Description string
	// IntervalMS is how often it is collected; 0 for published topics.
	IntervalMS int64
	// Status is pending, ok, failing or idle.
	Status string
	// Error is a failing topic's error.
	Error string
	// Seq numbers the latest value; TS is its sample time (Unix ms, 0 if none).
	Seq uint64
	TS  int64
	// Raw is the latest payload as JSON; Data the same decoded (nil if none).
	Raw  json.RawMessage
	Data map[string]any
	// State is what the page shows first: Status, or "stale" when the
	// latest value is older than three intervals by the server's clock.
	State string
}

// newTopicView turns a registry topic into its view at time now.
func newTopicView(t stream.TopicState, now time.Time) *TopicView {
	v := newTopicMeta(t, now)
	v.Raw, v.Data = t.Data, decodeObject(t.Data)
	return v
}

// newTopicPreview is a topic's view for a row of the explorer: its value
// only as a preview of PreviewBytes (budget.go), and not decoded.
func newTopicPreview(t stream.TopicState, now time.Time) *TopicView {
	v := newTopicMeta(t, now)
	v.Raw = previewJSON(t.Data, PreviewBytes)
	return v
}

// newTopicMeta is a topic's view without its value.
func newTopicMeta(t stream.TopicState, now time.Time) *TopicView {
	v := &TopicView{
		Name: t.Name, Description: t.Description, IntervalMS: t.IntervalMS,
		Status: t.Status, Error: t.Error, Seq: t.Seq, TS: t.TS, State: t.Status,
	}
	if t.Status == "ok" && t.IntervalMS > 0 && t.TS > 0 && now.UnixMilli()-t.TS > 3*t.IntervalMS {
		v.State = "stale"
	}
	return v
}

// Items returns the objects of the array field of the topic's payload, at
// most limit of them (0: all).
func (t *TopicView) Items(field string, limit int) []map[string]any {
	if t == nil {
		return nil
	}
	arr, _ := t.Data[field].([]any)
	var out []map[string]any
	for _, it := range arr {
		if m, ok := it.(map[string]any); ok {
			out = append(out, m)
			if limit > 0 && len(out) == limit {
				break
			}
		}
	}
	return out
}

// Fmt formats the payload field key for people ("–" without a value).
func (t *TopicView) Fmt(key string) string {
	if t == nil {
		return "–"
	}
	return FmtValue(t.Data, key, "–")
}

// Str returns a string field of the payload, "" when absent.
func (t *TopicView) Str(key string) string {
	if t == nil {
		return ""
	}
	s, _ := t.Data[key].(string)
	return s
}

// FmtValue formats obj[key] by key's unit: strings as they are, null or a
// missing field as none.
func FmtValue(obj map[string]any, key, none string) string {
	switch v := obj[key].(type) {
	case string:
		return v
	case float64:
		return FormatField(key, v)
	}
	return none
}

// PageKind is which page is rendered. The layout uses it for the current
// navigation link and writes it to <body data-page>, which nothing reads
// today: it is a hook for page-specific styling and for debugging (which
// page is this?), not something static/app.js depends on.
type PageKind string

// The pages.
const (
	KindDashboard PageKind = "dashboard"
	KindTopics    PageKind = "topics"
	KindTopic     PageKind = "topic"
)

// Meta is what the shell of every page needs.
type Meta struct {
	// Title is the document title.
	Title string
	// Kind is the page.
	Kind PageKind
	// Host is the local host id.
	Host string
	// Subscribe lists the patterns the client subscribes to.
	Subscribe []string
	// Rendered is when the server rendered the page (the snapshot's time).
	Rendered time.Time
	// Fleet: the server shows a fleet (hub or replica); / is the fleet
	// overview, and the navigation says so.
	Fleet bool
	// Scripts and Styles are extra embedded assets of the page (static
	// names), after app.js and style.css.
	Scripts, Styles []string
	// MaxHz is how many values a second of each topic the page asks for
	// (the protocol's max_hz); 0 means 1, as often as charts move.
	MaxHz float64
}

// Dashboard is the model of /, the dashboard of this host.
type Dashboard struct {
	Meta
	// Hostname is the host's name from the host topic, else the host id.
	Hostname string
	// Procs is the process table's order: "cpu", "mem" or "io".
	Procs string
	// ProcLimit is how many processes the table shows.
	ProcLimit int
	// Charts by ID: cpu, mem, net, disk.
	Charts map[string]*Chart
	// WorkloadsBy is the Workloads card's order, "cpu" or "mem"
	// (WithWorkloadsSort, workloads.go).
	WorkloadsBy string

	topics map[string]*TopicView
}

// T returns the host topic with suffix ("cpu", "net.io"), nil when this host
// has no such topic (no sensors, not in a container).
func (d Dashboard) T(suffix string) *TopicView {
	return d.topics[suffix]
}

// dashboardTopics are the host's topics the dashboard shows, by suffix.
var dashboardTopics = []string{
	"host", "cpu", "cpu.cores", "mem", "swap", "load", "disk.usage", "disk.io",
	"net.io", "net.conns", "sensors.temp", "cgroup", "proc.top", "workloads",
}

// chartDefs are the dashboard's charts; Fill completes them from history.
func chartDefs() []*Chart {
	return []*Chart{
		{ID: "cpu", Title: "CPU usage", Topic: "cpu", Max: 100, PeakField: "usage_pct",
			Series: []Series{{Spec: "usage_pct", Label: "busy"}}},
		{ID: "mem", Title: "Memory used", Topic: "mem", Max: 100, PeakField: "used_pct",
			Series: []Series{{Spec: "used_pct", Label: "used"}}},
		{ID: "net", Title: "Network traffic, all interfaces", Topic: "net.io", PeakField: "rx_bytes_per_s",
			Series: []Series{{Spec: "interfaces[].rx_bytes_per_s", Label: "received"}, {Spec: "interfaces[].tx_bytes_per_s", Label: "sent"}}},
		{ID: "disk", Title: "Disk throughput, all disks", Topic: "disk.io", PeakField: "read_bytes_per_s",
			Series: []Series{{Spec: "devices[].read_bytes_per_s", Label: "read"}, {Spec: "devices[].write_bytes_per_s", Label: "written"}}},
	}
}

// NewDashboard builds the dashboard from the registry's current state at
// time now; procs is the process order asked for ("mem", else by CPU).
// cache (may be nil) keeps chart values between page views.
func NewDashboard(src Source, cache *SeriesCache, procs string, now time.Time) Dashboard {
	host := src.Host()
	d := Dashboard{
		Meta:      Meta{Title: "opsdash · " + host, Kind: KindDashboard, Host: host, Rendered: now},
		Hostname:  host,
		Procs:     "cpu",
		ProcLimit: 10,
		Charts:    map[string]*Chart{},
		topics:    map[string]*TopicView{},
	}
	if procs == "mem" || procs == "io" {
		d.Procs = procs
	}
	known := map[string]stream.TopicState{}
	for _, t := range src.Topics() {
		known[t.Name] = t
	}
	charts := map[string]*Chart{}
	for _, c := range chartDefs() {
		charts[c.Topic] = c
	}
	for _, suffix := range dashboardTopics {
		if _, ok := known[host+"."+suffix]; !ok {
			continue
		}
		c := charts[suffix]
		hist := 0
		if c != nil {
			hist = chartHistory(known[host+"."+suffix].IntervalMS)
		}
		t, ok := src.Topic(host+"."+suffix, hist)
		if !ok {
			continue // gone since the list (an expired published topic)
		}
		d.topics[suffix] = newTopicView(t, now)
		d.Subscribe = append(d.Subscribe, t.Name)
		if c != nil {
			c.Topic, c.IntervalMS = t.Name, t.IntervalMS
			c.Fill(t.History, cache)
			d.Charts[c.ID] = c
		}
	}
	if h := d.T("host").Str("hostname"); h != "" {
		d.Hostname = h
		d.Title = "opsdash · " + h
	}
	return d
}

// chartHistory is how many past values fill ChartWindowS at interval ms.
func chartHistory(intervalMS int64) int {
	if intervalMS <= 0 {
		intervalMS = 1000
	}
	return int(ChartWindowS*1000/intervalMS) + 1
}

// OS describes the host's system in one line ("ubuntu 24.04 · linux
// 6.8.0 · x86_64"), "" without the host topic.
func (d Dashboard) OS() string {
	h := d.T("host")
	if h == nil || h.Data == nil {
		return ""
	}
	var parts []string
	if p := strings.TrimSpace(h.Str("platform") + " " + h.Str("platform_version")); p != "" {
		parts = append(parts, p)
	}
	if k := strings.TrimSpace(h.Str("os") + " " + h.Str("kernel_version")); k != "" {
		parts = append(parts, k)
	}
	if a := h.Str("kernel_arch"); a != "" {
		parts = append(parts, a)
	}
	return strings.Join(parts, " · ")
}

// Explorer is the model of /topics, the topic explorer.
type Explorer struct {
	Meta
	// Pattern is the filter (NATS syntax), ">" for everything.
	Pattern string
	// PatternError says why Pattern was refused; Topics is then empty.
	PatternError string
	// Topics are the matching topics, sorted by name, each with a preview
	// of its value, as many as ExplorerBudget allows.
	Topics []*TopicView
	// Hidden is the number of matching topics past the budget, not shown.
	Hidden int
	// Total is the number of topics before filtering.
	Total int
}

// NewExplorer lists the topics matching pattern ("" means ">", all).
func NewExplorer(src Source, pattern string, now time.Time) Explorer {
	pattern = strings.TrimSpace(pattern)
	if pattern == "" {
		pattern = ">"
	}
	e := Explorer{
		Meta:    Meta{Title: "Topics · opsdash · " + src.Host(), Kind: KindTopics, Host: src.Host(), Rendered: now},
		Pattern: pattern,
	}
	p, err := stream.ParsePattern(pattern)
	if err != nil {
		e.PatternError = "not a valid pattern: " + err.Error()
		return e // and nothing to subscribe to
	}
	all := src.Topics()
	e.Total = len(all)
	budget := ExplorerBudget
	for _, t := range all {
		if !p.Match(t.Name) {
			continue
		}
		full, ok := src.Topic(t.Name, 0)
		if !ok {
			continue
		}
		v := newTopicPreview(full, now)
		if cost := rowCost(v); cost <= budget && e.Hidden == 0 {
			budget -= cost
			e.Topics = append(e.Topics, v)
		} else {
			e.Hidden++ // the rows stay in name order: the rest is counted
		}
	}
	sort.Slice(e.Topics, func(i, j int) bool { return e.Topics[i].Name < e.Topics[j].Name })
	e.Subscribe = []string{pattern}
	return e
}

// TopicDetail is the model of /topics/{topic}: one topic, watched live.
type TopicDetail struct {
	Meta
	// Topic is the topic watched.
	Topic *TopicView
	// Pretty is its latest value as indented JSON, "" without one, cut
	// at TopicValueBytes (Cut says so).
	Pretty string
	// Cut: Pretty is not the whole value, which /api/v1/topics/{topic}
	// serves.
	Cut bool
	// Found is false for a topic the registry does not know.
	Found bool
	// BaseURL is the server's URL as the browser reached it
	// ("http://web-1:8080"), for the copy-and-paste examples.
	BaseURL string
}

// NewTopicDetail shows topic name; Found is false when it does not exist.
// baseURL is the server's URL for the examples.
func NewTopicDetail(src Source, name, baseURL string, now time.Time) TopicDetail {
	d := TopicDetail{Meta: Meta{Title: name + " · opsdash", Kind: KindTopic, Host: src.Host(), Rendered: now}, BaseURL: baseURL}
	t, ok := src.Topic(name, 0)
	if !ok {
		d.Topic = &TopicView{Name: name}
		return d
	}
	d.Found = true
	d.Topic = newTopicView(t, now)
	d.Subscribe = []string{t.Name}
	if len(t.Data) > 0 {
		var b bytes.Buffer
		if json.Indent(&b, t.Data, "", "  ") == nil {
			d.Pretty = preview(b.String(), TopicValueBytes)
			d.Cut = len(d.Pretty) != b.Len()
		}
	}
	return d
}
