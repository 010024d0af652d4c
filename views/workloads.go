package views

import (
	"cmp"
	"net/url"
	"time"

	"github.com/opsdash/opsdash/stream"
)

// KindWorkload is the page of one workload.
const KindWorkload PageKind = "workload"

// HostPath is where the paths of the page's host's own pages start: ""
// on a single host's server (its dashboard is /), /hosts/{host} in a
// fleet, whose / is the overview.
func (m Meta) HostPath() string {
	if m.Fleet {
		return "/hosts/" + url.PathEscape(m.Host)
	}
	return ""
}

// DashboardURL is the dashboard of the page's host: / or /hosts/{host}.
func (m Meta) DashboardURL() string { return cmp.Or(m.HostPath(), "/") }

// CulpritsAPI is where the dashboard's charts ask who was on top at a
// second: GET /api/v1/culprits, for the page's host in a fleet.
func (m Meta) CulpritsAPI() string {
	if m.Fleet {
		return "/api/v1/culprits?host=" + url.QueryEscape(m.Host)
	}
	return "/api/v1/culprits"
}

// WorkloadURL is the page of the workload with id on the page's host:
// /workloads/{id}, or /hosts/{host}/workloads/{id} in a fleet. The
// dashboard's Workloads card links there.
func (m Meta) WorkloadURL(id string) string { return m.HostPath() + "/workloads/" + url.PathEscape(id) }

// workloadSorts are the orders of the Workloads card: the payload field
// each sorts by, descending.
var workloadSorts = map[string]string{"cpu": "cpu_cores", "mem": "mem_bytes"}

// WithWorkloadsSort sets the Workloads card's order from the page's
// ?workloads= parameter: "mem" by memory, anything else by CPU.
func (d Dashboard) WithWorkloadsSort(q string) Dashboard {
	d.WorkloadsBy = "cpu"
	if q == "mem" {
		d.WorkloadsBy = "mem"
	}
	return d
}

// WorkloadsField is the payload field the card's rows are sorted by.
func (d Dashboard) WorkloadsField() string {
	if d.WorkloadsBy == "mem" {
		return workloadSorts["mem"]
	}
	return workloadSorts["cpu"]
}

// WorkloadRows are the card's first rows, sorted as the page asked: the
// collector sends them by CPU, the script re-sorts them as they arrive.
func (d Dashboard) WorkloadRows() []map[string]any {
	rows := d.T("workloads").Items("workloads", 0)
	SortItems(rows, d.WorkloadsField())
	if len(rows) > WorkloadRowsShown {
		rows = rows[:WorkloadRowsShown]
	}
	return rows
}

// WorkloadRowsShown is how many workloads the card shows, in the order
// chosen; every one is in the <host>.workloads topic and has its page.
const WorkloadRowsShown = 6

// SortItems orders items by field, largest first, a missing or null value
// last; ties keep their order. The script sorts the same way
// (fillList's data-sort).
func SortItems(items []map[string]any, field string) {
	val := func(m map[string]any) (float64, bool) { return Field(m, field) }
	// Insertion sort: stable, and the card has tens of rows.
	for i := 1; i < len(items); i++ {
		for j := i; j > 0; j-- {
			a, aok := val(items[j-1])
			b, bok := val(items[j])
			if aok && (!bok || a >= b) {
				break
			}
			items[j-1], items[j] = items[j], items[j-1]
		}
	}
}

// WorkloadPage is the model of /workloads/{id} (/hosts/{host}/workloads/{id}
// in a fleet): one workload's figures and charts, live.
type WorkloadPage struct {
	Meta
	// ID is the workload's id; Found is false when no such workload is
	// listed (it never existed, or stopped more than the retention ago).
	ID    string
	Found bool
	// Topic is the workload's topic.
	Topic *TopicView
	// Charts by ID: cpu, mem, io, net.
	Charts map[string]*Chart
}

// workloadChartDefs are a workload page's charts.
func workloadChartDefs() []*Chart {
	return []*Chart{
		{ID: "cpu", Title: "CPU", PeakField: "cpu_cores", Series: []Series{{Spec: "cpu_cores", Label: "cores"}}},
		{ID: "mem", Title: "Memory", PeakField: "mem_bytes", Series: []Series{{Spec: "mem_bytes", Label: "charged"}, {Spec: "mem_anon_bytes", Label: "anonymous"}}},
		{ID: "io", Title: "Block I/O", PeakField: "io_read_bytes_per_s", Series: []Series{{Spec: "io_read_bytes_per_s", Label: "read"}, {Spec: "io_write_bytes_per_s", Label: "written"}}},
		{ID: "net", Title: "Network", PeakField: "net_rx_bytes_per_s", Series: []Series{{Spec: "net_rx_bytes_per_s", Label: "received"}, {Spec: "net_tx_bytes_per_s", Label: "sent"}}},
	}
}

// NewWorkloadPage builds the page of workload id from the registry at
// time now; cache (may be nil) keeps chart values between views.
func NewWorkloadPage(src Source, cache *SeriesCache, id string, now time.Time) WorkloadPage {
	host := src.Host()
	p := WorkloadPage{
		Meta:   Meta{Title: id + " · opsdash · " + host, Kind: KindWorkload, Host: host, Rendered: now},
		ID:     id,
		Charts: map[string]*Chart{},
	}
	name := host + ".workload." + id
	if !stream.ValidTopic(name) {
		p.Topic = &TopicView{Name: name}
		return p
	}
	var interval int64
	for _, t := range src.Topics() {
		if t.Name == name {
			interval = t.IntervalMS
		}
	}
	t, ok := src.Topic(name, chartHistory(interval))
	if !ok {
		p.Topic = &TopicView{Name: name}
		return p
	}
	p.Found = true
	p.Topic = newTopicView(t, now)
	p.Subscribe = []string{name}
	if n := p.Topic.Str("name"); n != "" {
		p.Title = n + " · opsdash · " + host
	}
	for _, c := range workloadChartDefs() {
		c.Topic, c.IntervalMS = name, t.IntervalMS
		c.Fill(t.History, cache)
		p.Charts[c.ID] = c
	}
	return p
}

// Label describes the workload beside its name: its kind, namespace and
// image ("pod in shop", "docker · nginx:1.27").
func (p WorkloadPage) Label() string {
	t := p.Topic
	label := t.Str("kind")
	if ns := t.Str("namespace"); ns != "" {
		label += " in " + ns
	}
	if img := t.Str("image"); img != "" {
		label += " · " + img
	}
	return label
}

// StateWords is a workload state for people.
func StateWords(state string) string {
	switch state {
	case "oom_killed":
		return "stopped: OOM-killed"
	case "":
		return "–"
	}
	return state
}

// Present is "" for a null or missing field and the field's value
// otherwise, for data-v attributes that the stylesheet reads (a limit
// that exists, a state).
func Present(obj map[string]any, key string) string {
	switch v := obj[key].(type) {
	case string:
		return v
	case float64:
		return FormatField(key, v)
	case bool:
		if v {
			return "true"
		}
		return "false"
	}
	return ""
}
