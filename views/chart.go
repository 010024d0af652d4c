package views

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"sync"

	"github.com/opsdash/opsdash/stream"
)

// Charts are SVG polylines in a fixed viewBox of (seconds, percent of the
// chart's height): x runs from 0 (ChartWindowS ago) to ChartWindowS (the
// newest value) in whole seconds, y from 0 to -100 (SVG's y grows
// downwards) with one decimal, inside a small margin (ChartViewBox). The server
// draws them from the registry's history for the first paint; static/app.js
// (drawChart) redraws them with the same arithmetic as values arrive.

// ChartWindowS is how many seconds of history a chart shows.
const ChartWindowS = 300

// ChartViewBox is every chart's SVG viewBox: the drawing area (y 0 to
// -100) plus a margin above and below, so that a line at 100% (a CPU busy
// to the full) or at 0 is drawn whole rather than cut in half by the
// chart's edge. The margins are a few pixels at the chart's height.
var ChartViewBox = "0 " + strconv.Itoa(-100-chartMarginTop) + " " + strconv.Itoa(ChartWindowS) + " " + strconv.Itoa(100+chartMarginTop+chartMarginBottom)

// chartMarginTop and chartMarginBottom are the viewBox's margins, in
// percent of the drawing area's height.
const (
	chartMarginTop    = 6
	chartMarginBottom = 4
)

// chartMaxPoints bounds the points of one polyline: a chart is a few hundred
// pixels wide, and every point costs page weight.
const chartMaxPoints = 100

// Series is one line of a chart.
type Series struct {
	// Spec selects the value from a payload: a field ("usage_pct"), or the
	// sum of a field over an array ("interfaces[].rx_bytes_per_s").
	Spec string
	// Label names the line in the legend ("received").
	Label string
	// Points is the polyline's points attribute.
	Points string
}

// Chart is a small time series of one topic.
type Chart struct {
	// ID is the chart's short name, used in test ids ("cpu", "net").
	ID string
	// Title is what the chart shows, for people and screen readers.
	Title string
	// Topic is the topic the values come from.
	Topic string
	// IntervalMS is the topic's interval; the client asks for
	// ChartWindowS worth of history after a reconnect.
	IntervalMS int64
	// Max is a fixed top of the y axis (100 for percentages); 0 scales to
	// the peak.
	Max float64
	// PeakField names the unit the peak is formatted in ("rx_bytes_per_s").
	PeakField string
	// Series are the chart's lines.
	Series []Series
	// Peak is the largest value shown, formatted ("peak 12.3 MiB/s"), ""
	// without values.
	Peak string
}

// Specs is the chart's series specs separated by spaces (data-series).
func (c Chart) Specs() string {
	s := make([]string, len(c.Series))
	for i, x := range c.Series {
		s[i] = x.Spec
	}
	return strings.Join(s, " ")
}

// SeriesValue evaluates a series spec against a decoded payload; ok is
// false when the value is missing.
func SeriesValue(data map[string]any, spec string) (float64, bool) {
	field, elem, isSum := strings.Cut(spec, "[].")
	if !isSum {
		return Field(data, spec)
	}
	arr, ok := data[field].([]any)
	if !ok {
		return 0, false
	}
	sum := 0.0
	for _, it := range arr {
		if m, ok := it.(map[string]any); ok {
			if v, ok := Field(m, elem); ok {
				sum += v
			}
		}
	}
	return sum, true
}

// SeriesCache remembers the series values of history entries already
// decoded, so that a page view decodes only the values that arrived since
// the previous one: decoding five minutes of a large host's history is
// nine tenths of a first paint's cost otherwise. History entries never
// change, and a (seq, ts) pair names one. Safe for concurrent use; it holds
// one map per chart, as long as the history.
type SeriesCache struct {
	mu     sync.Mutex
	charts map[string]map[seriesKey][]float64
}

type seriesKey struct {
	seq uint64
	ts  int64
}

// NewSeriesCache returns an empty cache.
func NewSeriesCache() *SeriesCache {
	return &SeriesCache{charts: map[string]map[seriesKey][]float64{}}
}

// chartPoint is one sample of every series of a chart; a missing value is NaN.
type chartPoint struct {
	ts int64
	v  []float64
}

// values computes (or recalls from cache) the series values of history.
func (c *Chart) values(history []stream.HistoryEntry, cache *SeriesCache) []chartPoint {
	key := c.Topic + " " + c.Specs()
	var old map[seriesKey][]float64
	if cache != nil {
		cache.mu.Lock()
		old = cache.charts[key] // never mutated once stored: safe to read unlocked
		cache.mu.Unlock()
	}
	fresh := make(map[seriesKey][]float64, len(history))
	var pts []chartPoint
	for _, h := range history {
		if n := len(pts); n > 0 && pts[n-1].ts >= h.TS {
			continue // out of order or repeated; history is sorted by the registry
		}
		k := seriesKey{h.Seq, h.TS}
		v, ok := old[k]
		if !ok {
			var data map[string]any
			if json.Unmarshal(h.Data, &data) != nil {
				continue
			}
			v = make([]float64, len(c.Series))
			for i, s := range c.Series {
				if x, ok := SeriesValue(data, s.Spec); ok {
					v[i] = x
				} else {
					v[i] = math.NaN()
				}
			}
		}
		fresh[k] = v
		pts = append(pts, chartPoint{ts: h.TS, v: v})
	}
	if cache != nil {
		cache.mu.Lock()
		cache.charts[key] = fresh
		cache.mu.Unlock()
	}
	return pts
}

// Fill draws c from history, the topic's values oldest first. cache may be
// nil.
func (c *Chart) Fill(history []stream.HistoryEntry, cache *SeriesCache) {
	pts := c.values(history, cache)
	if len(pts) == 0 {
		return
	}
	end := pts[len(pts)-1].ts
	for len(pts) > 0 && pts[0].ts < end-ChartWindowS*1000 {
		pts = pts[1:]
	}
	peak := 0.0
	for _, p := range pts {
		for i := range p.v {
			if p.v[i] > peak { // false for NaN
				peak = p.v[i]
			}
		}
	}
	top := c.Max
	if top == 0 {
		top = niceMax(peak)
	}
	const w = float64(ChartWindowS)
	step := w / chartMaxPoints
	for i := range c.Series {
		var b strings.Builder
		lastX := -1e9
		for j, p := range pts {
			if math.IsNaN(p.v[i]) {
				continue
			}
			x := w - float64(end-p.ts)/1000
			if x-lastX < step && j != len(pts)-1 {
				continue
			}
			lastX = x
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(fixed(x, 0))
			b.WriteByte(',')
			b.WriteString(fixed(-p.v[i]/top*100, 1))
		}
		c.Series[i].Points = b.String()
	}
	c.Peak = "peak " + FormatField(c.PeakField, peak)
}

// niceMax is the top of an auto-scaled chart: the peak plus headroom, and
// never 0 (a flat zero line sits at the bottom).
func niceMax(peak float64) float64 {
	if peak > 0 {
		return peak * 1.15
	}
	return 1
}
