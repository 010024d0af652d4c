// Package views holds the server-rendered pages of opsdash as templ
// components: the dashboard of this host (/), one of its workloads
// (/workloads/{id}), the topic explorer (/topics), one topic watched live
// (/topics/{topic}) and, in a fleet, the overview (/) with each host's
// dashboard and workloads under /hosts/{host}. Views receive plain model
// structs built from the stream registry (NewDashboard, NewWorkloadPage,
// NewExplorer, NewTopicDetail, NewFleet); the handlers in
// cmd/opsdash/internal/pages hold no rendering logic. Generated *_templ.go files are committed; regenerate them with
// `go tool templ generate`.
//
// # First paint, then live
//
// Every page is complete when it arrives: templ renders the registry's
// latest values (and five minutes of history for the charts), formatted for
// people, so the page is readable with JavaScript off and shows values
// before any script runs. Then static/app.js connects to /ws (protocol v1),
// subscribes to the topics the page shows (body[data-subscribe]) and applies
// each update frame's JSON to the DOM.
//
// # How updates reach the DOM, and why JSON
//
// Updates arrive as the protocol's JSON frames, applied by one small generic
// script, rather than as HTML fragments rendered by templ per update:
//
//   - The registry encodes an update once per publish and shares the bytes
//     with every subscriber; programs need that JSON anyway. Fragments would
//     be a second encoding per publish, larger on the wire, and a second
//     stream endpoint to keep in step with the protocol.
//   - The markup says where each value goes, so the script has no per-topic
//     code: a card or row carries data-topic and data-interval, a value
//     carries its payload field (data-f="used_bytes"), a bar its field
//     (meter[data-m]), a list the array it shows (data-list, keyed by
//     data-key, new rows cloned from its <template>), a chart its series
//     (svg[data-chart], data-series). A new card is a templ change only.
//
// # Formatting in two places, on purpose
//
// The cost of JSON is that a value is formatted by Go for the first paint
// (FormatField, format.go) and by JavaScript for updates (fmt, app.js). Both
// are needed: the server because the page must read without JavaScript, the
// script because updates are raw numbers. To keep them one rule, not two:
//
//   - the rules are a short table keyed by the field name's unit suffix
//     (_bytes, _bytes_per_s, _pct, _per_s, _s, _ms, _c), the same in both;
//   - both round with floor(v·10^d + 0.5) in IEEE doubles, not strconv's or
//     toFixed's tie rules, so they cannot differ on a half;
//   - testdata/format_cases.json is run against both: by TestFormatCases in
//     Go and by the browser test against app.js in Chromium. A change to one
//     side without the other fails CI.
//
// The chart geometry (chart.go, drawChart) and the state badge words
// (BadgeText, StateText; BADGE in app.js) are mirrored too, but with less
// cover: the Go geometry is tested by TestChartFill, while app.js charting is
// only smoke-tested by the browser test (a CPU line with points is drawn).
//
// # Liveness on the page
//
//   - Header state: "snapshot <time>" as rendered, then connecting, live,
//     stale (connected, but some card is stale), reconnecting (with the next
//     retry), or "login required". Colour is never the only signal.
//   - A card is stale when nothing arrived for its topic for 3 intervals by
//     the browser's own clock (the server's ts is another clock), or
//     failing with its error. The server renders the same judgement at first
//     paint by its own clock. Right after subscribing the script asks for
//     the topic list and takes every card's status from it (the snapshot
//     carries values only; status frames carry changes after it), so a
//     topic that turned failing, or pending on demand, between render and
//     subscription shows it.
//   - The script sends a protocol ping every heartbeat_ms and treats twice
//     that without any frame as a dead connection; it then reconnects with
//     full-jitter exponential backoff (random in [0, min(30 s, 0.5 s·2^n)]),
//     resubscribes, refetches chart history over GET /api/v1/topics/{topic}
//     and, when the server's hello carries a new instance, accepts seqs that
//     start over. When it cannot connect at all it asks /api/v1/topics: a
//     401 shows the login (a browser cannot read a refused handshake's
//     status).
//   - While the tab is hidden the script keeps the connection and the newest
//     value per topic but touches no DOM; it renders once when shown.
//
// # Assets and headers
//
// static/ embeds app.js, style.css and icon.svg; pages link them under
// content-hashed names served with a one-year immutable cache, so a browser
// never runs an old script after an upgrade. The pages carry a CSP without
// inline script or style ('self' only, frame-ancestors 'none'), which is
// why bars are <meter> elements and charts SVG attributes, not style
// attributes. TestPageWeight keeps HTML + JS + CSS of each page under
// 100 KiB for a large host (64 cores, 20 filesystems, 16 disks and NICs).
package views
