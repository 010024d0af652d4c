package views

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
)

// Values are formatted for people by their field name's unit suffix
// (DESIGN.md: every payload field carries its unit in its name). The same
// rules exist twice, here for the server-rendered first paint (readable with
// JavaScript off) and in static/app.js (fmt) for live updates; the shared
// table views/testdata/format_cases.json is run against both, by
// TestFormatField here and by the browser test in Chromium, so the two cannot
// drift apart. See docs in views/doc.go for why there are two.

// FormatField formats value v of the payload field named field.
//
//	*_bytes_per_s  1.5 MiB/s (IEC units)
//	*_bytes        1.5 GiB
//	*_pct          12.3%
//	*_per_s        12.5/s, 1.2k/s
//	*_ms           250 ms, 1.5s, then as *_s
//	*_s            45s, 12m 5s, 4h 12m, 3d 4h (durations)
//	*_c, *_celsius 45.0 °C
//	anything else  integers as they are, other numbers with 2 decimals
//
// NaN and infinities give "–".
func FormatField(field string, v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	switch {
	case strings.HasSuffix(field, "_bytes_per_s"):
		return FormatBytes(v) + "/s"
	case strings.HasSuffix(field, "_bytes"):
		return FormatBytes(v)
	case strings.HasSuffix(field, "_pct"):
		return fixed(v, 1) + "%"
	case strings.HasSuffix(field, "_per_s"):
		return si(v) + "/s"
	case strings.HasSuffix(field, "_ms"):
		return FormatMillis(v)
	case strings.HasSuffix(field, "_s"):
		return FormatDuration(v)
	case strings.HasSuffix(field, "_c"), strings.HasSuffix(field, "_celsius"):
		return fixed(v, 1) + " °C"
	}
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fixed(v, 0) // not FormatFloat: -0 must print "0", as in app.js
	}
	return fixed(v, 2)
}

// iec are the binary unit prefixes of FormatBytes.
var iec = []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}

// FormatBytes formats a byte count in IEC units: "512 B", "1.5 KiB",
// "152 GiB" (one decimal below 100, none from 100, never "1024 KiB").
func FormatBytes(v float64) string {
	if math.Abs(v) < 1023.5 { // 1023.5 and up would print as "1024 B"
		return fixed(v, 0) + " B"
	}
	i := 0
	for math.Abs(v) >= 1023.5 && i < len(iec)-1 {
		v /= 1024
		i++
	}
	return fixed(v, decimals(v)) + " " + iec[i]
}

// FormatDuration formats seconds as the two largest units, the second left
// out when zero: "45s", "12m 5s", "1m", "4h 12m", "3d 4h", "3d".
func FormatDuration(sec float64) string {
	// Clamped before the int64 conversion, which is undefined beyond
	// the int64 range (a huge *_s value would wrap to a negative count).
	sec = math.Min(math.Max(sec, 0), maxDurationSec)
	s := int64(math.Floor(sec))
	switch {
	case s < 60:
		return strconv.FormatInt(s, 10) + "s"
	case s < 3600:
		return twoUnits(s/60, "m", s%60, "s")
	case s < 86400:
		return twoUnits(s/3600, "h", s%3600/60, "m")
	}
	return twoUnits(s/86400, "d", s%86400/3600, "h")
}

// maxDurationSec is the largest duration FormatDuration shows: 2^53 s, the
// largest range in which float64 (and JavaScript) hold every whole second,
// far inside int64.
const maxDurationSec = 1 << 53

func twoUnits(a int64, ua string, b int64, ub string) string {
	if b == 0 {
		return strconv.FormatInt(a, 10) + ua
	}
	return strconv.FormatInt(a, 10) + ua + " " + strconv.FormatInt(b, 10) + ub
}

// FormatMillis formats milliseconds: "250 ms", "1.5s", "30s", then as
// FormatDuration ("2m").
func FormatMillis(ms float64) string {
	switch {
	case math.Abs(ms) < 1000:
		return fixed(ms, 0) + " ms"
	case ms < 60000:
		return strings.TrimSuffix(fixed(ms/1000, 1), ".0") + "s"
	}
	return FormatDuration(ms / 1000)
}

// FormatInterval formats a topic's collection interval; 0 is a topic that
// changes when an application publishes it.
func FormatInterval(ms int64) string {
	if ms <= 0 {
		return "on publish"
	}
	return FormatMillis(float64(ms))
}

// FormatTime formats a Unix time in milliseconds as a UTC clock time with
// seconds ("15:04:05 UTC"), or "–" for 0 (no value yet).
func FormatTime(ms int64) string {
	if ms <= 0 {
		return "–"
	}
	return time.UnixMilli(ms).UTC().Format("15:04:05") + " UTC"
}

// si formats a plain rate with k/M/G prefixes: "0.5", "12.5", "120", "1.2k".
func si(v float64) string {
	units := []string{"", "k", "M", "G", "T"}
	i := 0
	for math.Abs(v) >= 999.5 && i < len(units)-1 {
		v /= 1000
		i++
	}
	return fixed(v, decimals(v)) + units[i]
}

// decimals is how many decimals a scaled value gets: one below 100, none
// from 100 ("1.5", "15.2", "152"); 99.95 and up would print as "100.0".
func decimals(v float64) int {
	if math.Abs(v) < 99.95 {
		return 1
	}
	return 0
}

// fixed rounds half up to d decimals and prints exactly d. It rounds with
// floor(v·10^d + 0.5), the same IEEE 754 operations as app.js, and not with
// strconv's round-half-even (or JavaScript's toFixed, which differs on exact
// ties): 0.25 is "0.3" on both sides.
func fixed(v float64, d int) string {
	p := math.Pow10(d)
	r := math.Floor(v*p+0.5) / p
	if r == 0 {
		r = 0 // no "-0.0"
	}
	return strconv.FormatFloat(r, 'f', d, 64)
}

// Field returns the number at key in a decoded JSON object, and whether it
// is there and a number.
func Field(obj map[string]any, key string) (float64, bool) {
	v, ok := obj[key].(float64)
	return v, ok
}

// decodeObject decodes a JSON object payload; nil when it is not one.
func decodeObject(raw json.RawMessage) map[string]any {
	if len(raw) == 0 {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil
	}
	return m
}
