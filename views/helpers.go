package views

import (
	"strconv"
)

// badgeTexts say a topic's state in words; "" for a healthy topic. The
// client script has the same table (BADGE in static/app.js).
var badgeTexts = map[string]string{
	"ok":      "",
	"pending": "waiting for first value",
	"idle":    "idle until subscribed",
	"stale":   "stale",
	"failing": "failing",
}

// BadgeText is a topic state for people: "" when all is well, "stale",
// "failing: <error>", "waiting for first value".
func BadgeText(state, err string) string {
	if state == "failing" && err != "" {
		return StateText(state, err) // one "failing: <error>" rule for badge and explorer
	}
	if t, ok := badgeTexts[state]; ok {
		return t
	}
	return state
}

// Num is obj[key] as an attribute value ("0" when missing).
func Num(obj map[string]any, key string) string {
	v, _ := Field(obj, key)
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// current is aria-current for a navigation link.
func current(here bool) string {
	if here {
		return "page"
	}
	return "false"
}

// ms is a millisecond count as an attribute value.
func ms(v int64) string { return strconv.FormatInt(v, 10) }

// StateText is a topic state as the explorer shows it: the protocol's
// status word ("ok", "pending", "idle", "stale"), with the error of a
// failing one. The client script builds the same text.
func StateText(state, err string) string {
	if state == "failing" && err != "" {
		return "failing: " + err
	}
	return state
}
