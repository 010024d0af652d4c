// Package metrics is the server's Prometheus exposition at GET /metrics:
// the Go runtime and process, the build, the stream and edge counters
// (read from stream.Registry.Stats and httpapi.Server.Stats at scrape
// time, so they cost nothing on the hot path), and what those do not
// count, recorded as it happens: auth failures, collector runs, write
// latency, the TLS certificate's expiry. docs/deploy.md ("Metrics") lists
// the series.
package metrics

import (
	"crypto/tls"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	promcollectors "github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/opsdash/opsdash/cmd/opsdash/internal/auth"
	"github.com/opsdash/opsdash/cmd/opsdash/internal/certs"
	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
	"github.com/opsdash/opsdash/stream/httpapi"
)

// Histogram buckets. Writes are one corked syscall on a healthy connection
// (tens of microseconds) and up to the write timeout (10 s by default) on
// a stuck one; collector runs take a millisecond or so up to their timeout.
var (
	writeBuckets     = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	batchBuckets     = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}
	collectorBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
)

// Metrics owns the process's Prometheus registry and serves it (Handler).
// Build it with New, then hand its hooks to what it observes
// (ObserveWrite, CollectorObserver, AuthFailure) and register the sources
// read at scrape time (ExportStream, WatchCertificate).
type Metrics struct {
	registry *prometheus.Registry

	authFailures  *prometheus.CounterVec
	collectorDur  *prometheus.HistogramVec
	collectorErrs *prometheus.CounterVec
	writeDur      prometheus.Histogram
	writeFrames   prometheus.Histogram
}

// Build names the running build, for opsdash_build_info.
type Build struct {
	Version, Commit string
}

// New builds the registry: Go runtime and process collectors, the build's
// info, and the instruments fed by AuthFailure, CollectorObserver and
// ObserveWrite.
func New(build Build) *Metrics {
	m := &Metrics{
		// A registry of our own rather than prometheus.DefaultRegisterer:
		// no library can add metrics behind our back, and tests can run
		// several servers in one process.
		registry: prometheus.NewRegistry(),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsdash_auth_failures_total",
			Help: "Requests refused (401) for a wrong token, by token (auth, publish); requests without credentials are not counted.",
		}, []string{"token"}),
		collectorDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "opsdash_collector_duration_seconds",
			Help:    "Duration of collector runs, failed and timed-out ones included.",
			Buckets: collectorBuckets,
		}, []string{"collector"}),
		collectorErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsdash_collector_errors_total",
			Help: "Collector runs that failed or timed out.",
		}, []string{"collector"}),
		writeDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "opsdash_write_duration_seconds",
			Help:    "Duration of one batched write of frames to a WebSocket or SSE client, failed ones included.",
			Buckets: writeBuckets,
		}),
		writeFrames: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "opsdash_write_batch_frames",
			Help:    "Frames sent per batched write (conflation and batching at work when above 1).",
			Buckets: batchBuckets,
		}),
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "opsdash_build_info",
		Help: "Always 1; the labels say which build runs.",
		ConstLabels: prometheus.Labels{
			"version": build.Version, "commit": build.Commit, "goversion": runtime.Version(),
		},
	})
	buildInfo.Set(1)
	for _, tok := range []string{auth.TokenAuth, auth.TokenPublish} {
		m.authFailures.WithLabelValues(tok) // both series exist from the start, at 0
	}
	m.registry.MustRegister(
		promcollectors.NewGoCollector(),
		promcollectors.NewProcessCollector(promcollectors.ProcessCollectorOpts{}),
		buildInfo,
		m.authFailures, m.collectorDur, m.collectorErrs, m.writeDur, m.writeFrames,
	)
	return m
}

// ExportStream exports the stream and edge counters: regStats and apiStats
// (a stream.Registry's and an httpapi.Server's Stats) are called once each
// per scrape. Call it once.
func (m *Metrics) ExportStream(regStats func() stream.Stats, apiStats func() httpapi.Stats) {
	m.registry.MustRegister(newStreamCollector(regStats, apiStats))
}

// WatchCertificate exports the expiry of the TLS certificate that new
// handshakes get (current is asked at each scrape, so a reloaded certificate
// shows at once). An alert on it catches a renewal that never happened or
// that the server could not load: the reload keeps serving the old pair.
func (m *Metrics) WatchCertificate(current func() *tls.Certificate) {
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "opsdash_tls_certificate_expiry_timestamp_seconds",
		Help: "Unix time at which the TLS certificate served to new connections expires (--tls-cert; reloaded when its files change).",
	}, func() float64 {
		t := certs.NotAfter(current())
		if t.IsZero() {
			return 0
		}
		return float64(t.Unix())
	}))
}

// CollectorObserver is told about every collector run: pass it as
// collectors.SchedulerConfig.Observer.
func (m *Metrics) CollectorObserver() collectors.Observer { return collectorRuns{m} }

// collectorRuns feeds the collector histogram and error counter.
type collectorRuns struct{ m *Metrics }

// CollectorRun implements collectors.Observer.
func (o collectorRuns) CollectorRun(name string, took time.Duration, err error) {
	o.m.collectorDur.WithLabelValues(name).Observe(took.Seconds())
	// Touched on every run so that each collector's error counter exists
	// (at 0) from its first run: rate() and alerts need the series.
	errs := o.m.collectorErrs.WithLabelValues(name)
	if err != nil {
		errs.Inc()
	}
}

// AuthFailure counts a refused token (auth.TokenAuth or TokenPublish):
// pass it as auth.Config.OnFailure.
func (m *Metrics) AuthFailure(token string) { m.authFailures.WithLabelValues(token).Inc() }

// ExportListener exports the counters of the server's listener (an
// httpapi.AcceptListener's Stats, called at each scrape). Call it once.
func (m *Metrics) ExportListener(stats func() httpapi.AcceptStats) {
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "opsdash_tcp_connections_open",
			Help: "TCP connections open, of every kind (HTTP, WebSocket, SSE).",
		}, func() float64 { return float64(stats().Open) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "opsdash_tcp_connections_limit",
			Help: "The cap on open TCP connections (--max-open-conns, lowered to fit the file descriptor limit); 0: none.",
		}, func() float64 { return float64(stats().Limit) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "opsdash_accept_errors_total",
			Help: "Failed accepts (such as EMFILE: out of file descriptors), each backed off from and retried.",
		}, func() float64 { return float64(stats().Errors) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "opsdash_accept_cap_waits_total",
			Help: "Times new connections had to wait because the connection cap was reached.",
		}, func() float64 { return float64(stats().CapWaits) }),
	)
}

// ObserveWrite records one Conn.WriteFrames call: pass it as
// stream.RegistryConfig.WriteObserver. It runs once per write on the
// writer goroutines and does not allocate.
func (m *Metrics) ObserveWrite(d time.Duration, frames int) {
	m.writeDur.Observe(d.Seconds())
	m.writeFrames.Observe(float64(frames))
}

// Handler serves the registry: client_golang's promhttp (content
// negotiation, gzip, OpenMetrics) adapted to fasthttp.
func (m *Metrics) Handler() fiber.Handler {
	h := promhttp.InstrumentMetricHandler(m.registry, promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		Registry: m.registry, // counts its own errors in promhttp_metric_handler_errors_total
		// OpenMetrics when the scraper asks for it, as Prometheus does
		// first; text/plain 0.0.4 otherwise (curl, a browser). _created
		// samples stay off: a Prometheus without created-timestamp
		// ingestion would store each as one more series.
		EnableOpenMetrics: true,
		// A failing collector (say /proc unreadable) costs its own metrics,
		// not the whole scrape.
		ErrorHandling: promhttp.ContinueOnError,
		// Scrapes are cheap but visit every session; a burst of them is
		// answered 503 rather than piled up.
		MaxRequestsInFlight: 4,
		// No Timeout: promhttp implements it with a context derived from
		// the request's, which fasthttpadaptor makes fasthttp's RequestCtx;
		// that is recycled after the handler while the derived context's
		// goroutine still reads it (a data race). Gathering reads
		// in-process counters only, and scrapers time out on their side.
	}))
	serve := fasthttpadaptor.NewFastHTTPHandler(h)
	return func(c *fiber.Ctx) error {
		serve(c.Context())
		return nil
	}
}

// streamCollector exports stream.Registry.Stats and httpapi.Server.Stats
// as Prometheus metrics. Each scrape takes one snapshot of each (Stats
// visits every session, so it is called once per scrape, not per metric).
type streamCollector struct {
	regStats func() stream.Stats
	apiStats func() httpapi.Stats

	scalars  []scalarMetric
	connOpen *prometheus.Desc // {kind}
	closed   *prometheus.Desc // {code}
	refused  *prometheus.Desc // {reason}
	sent     *prometheus.Desc // {type}
	dropped  *prometheus.Desc // {reason}
}

// scalarMetric is an unlabelled metric read from the snapshots.
type scalarMetric struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
	val  func(*stream.Stats, *httpapi.Stats) float64
}

// refusalReasons are httpapi's refusal reasons, exported at 0 before the
// first refusal so that the series exist for rate() and alerts.
var refusalReasons = []string{"origin", "host", "capacity", "per_ip", "draining"}

func newStreamCollector(regStats func() stream.Stats, apiStats func() httpapi.Stats) *streamCollector {
	counter := func(name, help string, val func(*stream.Stats, *httpapi.Stats) float64) scalarMetric {
		return scalarMetric{prometheus.NewDesc(name, help, nil, nil), prometheus.CounterValue, val}
	}
	gauge := func(name, help string, val func(*stream.Stats, *httpapi.Stats) float64) scalarMetric {
		return scalarMetric{prometheus.NewDesc(name, help, nil, nil), prometheus.GaugeValue, val}
	}
	type (
		rs = stream.Stats
		as = httpapi.Stats
	)
	return &streamCollector{
		regStats: regStats,
		apiStats: apiStats,
		scalars: []scalarMetric{
			counter("opsdash_connections_opened_total", "WebSocket and SSE connections admitted.",
				func(_ *rs, a *as) float64 { return float64(a.Opened) }),
			gauge("opsdash_sessions", "Open stream sessions (one per live WebSocket or SSE connection).",
				func(r *rs, _ *as) float64 { return float64(r.Sessions) }),
			counter("opsdash_sessions_opened_total", "Stream sessions opened.",
				func(r *rs, _ *as) float64 { return float64(r.SessionsOpened) }),
			counter("opsdash_sessions_closed_total", "Stream sessions closed.",
				func(r *rs, _ *as) float64 { return float64(r.SessionsClosed) }),
			gauge("opsdash_subscriptions", "Subscribed patterns across open sessions.",
				func(r *rs, _ *as) float64 { return float64(r.Subscriptions) }),
			gauge("opsdash_topics", "Topics known (declared by collectors or published).",
				func(r *rs, _ *as) float64 { return float64(r.Topics) }),
			gauge("opsdash_published_topics", "Topics created through the publish API.",
				func(r *rs, _ *as) float64 { return float64(r.PublishedTopics) }),
			counter("opsdash_published_total", "Values published on any topic (collectors and publish API).",
				func(r *rs, _ *as) float64 { return float64(r.Published) }),
			counter("opsdash_encode_errors_total", "Samples dropped because their topic or data was invalid.",
				func(r *rs, _ *as) float64 { return float64(r.EncodeErrors) }),
			counter("opsdash_topics_expired_total", "Published topics removed after their TTL.",
				func(r *rs, _ *as) float64 { return float64(r.TopicsExpired) }),
			counter("opsdash_updates_offered_total", "Update values offered to session mailboxes: each published value once per subscribed session, and each value of a subscription's snapshot. Each is then sent (opsdash_messages_sent_total{type=\"update\"}), dropped (opsdash_updates_dropped_total) or still pending.",
				func(r *rs, _ *as) float64 { return float64(r.UpdatesOffered) }),
			gauge("opsdash_mailbox_depth", "Topics with a pending update or status, all sessions.",
				func(r *rs, _ *as) float64 { return float64(r.MailboxDepth) }),
			gauge("opsdash_reply_queue_depth", "Replies waiting to be written, all sessions.",
				func(r *rs, _ *as) float64 { return float64(r.ReplyQueueDepth) }),
			gauge("opsdash_reply_queue_bytes", "JSON bytes of the replies waiting to be written, all sessions.",
				func(r *rs, _ *as) float64 { return float64(r.ReplyQueueBytes) }),
			gauge("opsdash_sessions_reading_paused", "Sessions whose requests are not read because their reply queue is full (the client does not read).",
				func(r *rs, _ *as) float64 { return float64(r.ReadingPaused) }),
			gauge("opsdash_writers", "Sessions with something to write (queued on a flush loop, writing, in their window or parked on a full socket).",
				func(r *rs, _ *as) float64 { return float64(r.Writers) }),
			counter("opsdash_write_batches_total", "Successful batched writes (one per Conn.WriteFrames call).",
				func(r *rs, _ *as) float64 { return float64(r.WriteBatches) }),
			counter("opsdash_write_errors_total", "Failed batched writes; each closes its session.",
				func(r *rs, _ *as) float64 { return float64(r.WriteErrors) }),
			counter("opsdash_write_timeouts_total", "Failed writes that hit the write timeout (a subset of write errors).",
				func(r *rs, _ *as) float64 { return float64(r.WriteTimeouts) }),
			counter("opsdash_rate_limited_total", "Requests refused with rate_limited.",
				func(r *rs, _ *as) float64 { return float64(r.RateLimited) }),
			counter("opsdash_rate_limit_closes_total", "Connections closed (1008) for going on past rate_limited.",
				func(r *rs, _ *as) float64 { return float64(r.RateLimitCloses) }),
		},
		connOpen: prometheus.NewDesc("opsdash_connections_open",
			"Live connections by kind (ws, sse).", []string{"kind"}, nil),
		closed: prometheus.NewDesc("opsdash_connections_closed_total",
			"WebSocket connections closed by the server, by close code (1000 normal, 1001 going away, 1002 protocol error, 1003 binary frame, 1007 invalid UTF-8, 1008 policy, 1009 too big, 1011 internal, 1013 over capacity, 4008 write timeout).",
			[]string{"code"}, nil),
		refused: prometheus.NewDesc("opsdash_connections_refused_total",
			"Connections refused, by reason (origin, capacity, per_ip, draining), and requests refused for a foreign Host (host).", []string{"reason"}, nil),
		sent: prometheus.NewDesc("opsdash_messages_sent_total",
			"Frames written to clients, by message type.", []string{"type"}, nil),
		dropped: prometheus.NewDesc("opsdash_updates_dropped_total",
			"Update values never sent, by reason: stale (replaced by a newer value: conflation), unsubscribed, closed.",
			[]string{"reason"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, s := range c.scalars {
		ch <- s.desc
	}
	for _, d := range []*prometheus.Desc{c.connOpen, c.closed, c.refused, c.sent, c.dropped} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	rs, as := c.regStats(), c.apiStats()
	for _, s := range c.scalars {
		ch <- prometheus.MustNewConstMetric(s.desc, s.typ, s.val(&rs, &as))
	}
	gauge := func(d *prometheus.Desc, v float64, label string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, label)
	}
	count := func(d *prometheus.Desc, v uint64, label string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), label)
	}
	gauge(c.connOpen, float64(as.WebSockets), "ws")
	gauge(c.connOpen, float64(as.SSEStreams), "sse")
	for _, code := range as.CloseCodes() {
		count(c.closed, as.Closes[code], strconv.Itoa(code))
	}
	for _, r := range refusalReasons {
		count(c.refused, as.Refused[r], r)
	}
	for r, n := range as.Refused { // a reason added to httpapi later
		if !slices.Contains(refusalReasons, r) {
			count(c.refused, n, r)
		}
	}
	sent := rs.Sent
	for _, m := range []struct {
		typ string
		n   uint64
	}{
		{"hello", sent.Hello}, {"subscribed", sent.Subscribed}, {"unsubscribed", sent.Unsubscribed},
		{"topics", sent.Topics}, {"pong", sent.Pong}, {"error", sent.Error},
		{"status", sent.Status}, {"update", sent.Update},
	} {
		count(c.sent, m.n, m.typ)
	}
	count(c.dropped, rs.Dropped.Stale, "stale")
	count(c.dropped, rs.Dropped.Unsubscribed, "unsubscribed")
	count(c.dropped, rs.Dropped.Closed, "closed")
}
