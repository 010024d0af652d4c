package views

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// KindFleet is the fleet overview, / of a hub or replica.
const KindFleet PageKind = "fleet"

// summarySuffix is the per-host topic the overview shows (published by
// every agent; cmd/internal/fleet's SummarySuffix).
const summarySuffix = "summary"

// FleetMaxHz is how often the overview asks for each host's summary
// (max_hz): every other second, so that 200 hosts cost a browser 100
// values a second. The page says it to app.js (body[data-max-hz]).
const FleetMaxHz = 0.5

// SparkPoints is how many CPU values a host's sparkline shows, one per
// value the page receives (every 2 s: the last minute; 200 rows of 60
// points would add 70 KB).
const SparkPoints = 30

// sparkStep is how many of the summary's values (one a second) a point
// stands for: the rendered sparkline steps as far as the live one.
const sparkStep = int(1 / FleetMaxHz)

// Fleet is the model of the fleet overview: one row per host, hosts that
// are silent or failing first, then by name.
type Fleet struct {
	Meta
	// Hosts are the rows, in the order shown.
	Hosts []FleetHost
	// Filter is the ?q= substring hosts are filtered by ("" shows all).
	Filter string
	// Silent and Failing count the hosts in those states (of all hosts,
	// not only the filtered ones); Total is the number of hosts.
	Total, Silent, Failing int
	// AddHost are the lines of the exact commands that add a host; shown
	// open when the fleet has only its hub.
	AddHost []string
}

// FleetHost is one host's row.
type FleetHost struct {
	// ID is the host id; Href its dashboard (/hosts/{id}).
	ID, Href string
	// T is the host's summary topic.
	T *TopicView
	// State is silent (no value for too long, or the live feed is lost),
	// failing (a collector fails), pending (no summary yet) or ok.
	State string
	// Failing lists the host's failing topics (suffixes).
	Failing []string
	// Spark is the CPU sparkline's polyline points, x one per value, y
	// 100 − CPU %.
	Spark string
}

// stateRank orders rows: what needs attention first.
var stateRank = map[string]int{"silent": 0, "failing": 1, "pending": 2, "ok": 3}

// NewFleet builds the overview of hosts from src at now; filter keeps the
// hosts whose id contains it.
func NewFleet(src Source, hosts []string, filter string, addHost []string, now time.Time) Fleet {
	filter = strings.ToLower(strings.TrimSpace(filter))
	f := Fleet{
		Meta:    Meta{Title: "Fleet · opsdash", Kind: KindFleet, Host: src.Host(), Subscribe: []string{"*." + summarySuffix}, Rendered: now, Fleet: true, MaxHz: FleetMaxHz},
		Filter:  filter,
		AddHost: addHost,
		Total:   len(hosts),
	}
	for _, id := range hosts {
		h := newFleetHost(src, id, now)
		switch h.State {
		case "silent":
			f.Silent++
		case "failing":
			f.Failing++
		}
		if filter == "" || strings.Contains(id, filter) {
			f.Hosts = append(f.Hosts, h)
		}
	}
	slices.SortStableFunc(f.Hosts, func(a, b FleetHost) int {
		if d := stateRank[a.State] - stateRank[b.State]; d != 0 {
			return d
		}
		return strings.Compare(a.ID, b.ID)
	})
	return f
}

// ShowAddHost reports whether the add-a-host commands are shown open: a
// fleet of the hub alone has nothing else to show.
func (f Fleet) ShowAddHost() bool { return f.Total <= 1 }

func newFleetHost(src Source, id string, now time.Time) FleetHost {
	h := FleetHost{ID: id, Href: "/hosts/" + id, State: "pending"}
	st, ok := src.Topic(id+"."+summarySuffix, (SparkPoints-1)*sparkStep+1)
	if !ok {
		st.Name, st.Status, st.IntervalMS = id+"."+summarySuffix, "pending", 1000
	}
	h.T = newTopicView(st, now)
	if items, ok := h.T.Data["failing"].([]any); ok {
		for _, it := range items {
			if s, ok := it.(string); ok {
				h.Failing = append(h.Failing, s)
			}
		}
	}
	switch {
	case h.T.State == "failing" || h.T.State == "stale":
		h.State = "silent"
	case h.T.Data == nil:
		h.State = "pending"
	case len(h.Failing) > 0:
		h.State = "failing"
	default:
		h.State = "ok"
	}
	// Every sparkStep-th value back from the newest, which is the last point.
	var pts []string
	for i, x := len(st.History)-1, SparkPoints-1; i >= 0 && x >= 0; i, x = i-sparkStep, x-1 {
		v, ok := decodeObject(st.History[i].Data)["cpu_pct"].(float64)
		if !ok {
			continue
		}
		y := 100 - min(max(v, 0), 100)
		pts = append(pts, strconv.Itoa(x)+","+strconv.FormatFloat(y, 'f', 0, 64))
	}
	slices.Reverse(pts)
	h.Spark = strings.Join(pts, " ")
	return h
}

// FailingText is the row's list of failing topics in words.
func (h FleetHost) FailingText() string {
	if len(h.Failing) == 0 {
		return ""
	}
	return "failing: " + strings.Join(h.Failing, ", ")
}

// HostSource is src seen as host's own: the dashboard of one fleet host
// (/hosts/{host}) is today's dashboard with Host() answering host.
type HostSource struct {
	Source
	ID string
}

// Host returns the host shown.
func (s HostSource) Host() string { return s.ID }
