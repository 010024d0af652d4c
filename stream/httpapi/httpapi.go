// Package httpapi is the HTTP edge of the stream: the WebSocket endpoint
// (protocol v1, see docs/protocol.md), Server-Sent Events, the REST snapshot
// API and the publish API, on Fiber v2.
//
// Package stream does the work (topics, subscriptions, conflating mailboxes,
// the protocol); this package adapts Fiber and fasthttp to stream's
// write-side Conn interface and enforces the limits that belong at the edge:
// Origin and Host (hostcheck.go), connections in total and per client IP,
// frame size, UTF-8, binary frames, liveness, handshake and write timeouts,
// request bodies (bodylimit.go), what a publish may carry
// (publishcheck.go), and, under everything, the listener's cap on open
// connections, back-off on accept errors and first-byte deadline
// (accept.go). Refusals are logged at most once a minute per client and
// cause (loglimit.go).
//
// fasthttp neither tracks nor closes hijacked (WebSocket) connections, and an
// SSE stream outlives its handler, so Server keeps its own registry of live
// connections: Drain ends them, Conns counts them.
//
// Wiring:
//
//	srv := httpapi.New(httpapi.Config{Registry: reg, Logger: log})
//	app := fiber.New(srv.FiberConfig(fiber.Config{}))
//	srv.LimitBodies(app) // body limits decided before bodies are read
//	srv.Register(app)
//	app.Use(srv.HostGuard("/healthz", "/readyz")) // with Config.CheckHost
//	ln, _ := httpapi.Listen("tcp", ":8080", httpapi.DefaultSendBuffer) // caps SO_SNDBUF, enables corking
//	// (cmd/opsdash puts LimitListener under it: net.Listen, LimitListener, WrapListener)
//	go app.Listener(ln)
//	…
//	srv.Drain(ctx) // WebSockets closed with 1001, SSE streams ended
//	app.ShutdownWithContext(ctx)
package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/stream"
)

// Defaults of Config's zero fields (the zero rule: see stream.NoLimit).
const (
	DefaultMaxFrameBytes    = 64 << 10
	DefaultMaxConns         = 10000
	DefaultMaxConnsPerIP    = 100
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultHeartbeat        = 15 * time.Second
	DefaultMaxPublishBytes  = 1 << 20
	DefaultMaxHistory       = 1000
)

// drainWorkers is how many connections Drain closes at once.
const drainWorkers = 32

// Config configures a Server. Zero fields take the defaults above (the
// zero rule: see stream.NoLimit); the limits that can be turned off say so.
type Config struct {
	// Registry is the stream registry served. Required.
	Registry *stream.Registry
	// Logger receives connection-level logs (debug) and refusals (info).
	// nil means slog.Default().
	Logger *slog.Logger
	// AllowedOrigins are browser origins allowed to open /ws and /sse
	// besides the serving host itself: exact origins
	// ("https://dash.example.com:8443"), hosts on http or https
	// ("dash.example.com"), subdomain wildcards ("https://*.example.com",
	// "*.example.com") or "*" for any. Requests without an Origin header
	// (programs) are always allowed.
	AllowedOrigins []string
	// PublishToken enables POST /api/v1/publish with
	// "Authorization: Bearer <PublishToken>". "" answers 404.
	PublishToken string
	// PublishAuth, when set, checks a publish request's credentials in
	// place of comparing its bearer token with PublishToken: it returns
	// true to let the request through, or false once it has answered it
	// itself (401, 429). cmd/opsdash passes its auth guard's, which limits
	// and counts wrong tokens per client. PublishToken still enables the
	// API and decides, before the body is read, who may send a large one
	// (LimitBodies).
	PublishAuth func(c *fiber.Ctx) bool
	// MaxFrameBytes is the largest client frame read; a larger one closes
	// the connection with 1009. Default 64 KiB.
	MaxFrameBytes int
	// MaxConns caps WebSocket and SSE connections together: a WebSocket
	// over it is upgraded and closed with 1013, an SSE request answered
	// 503. Default 10000; stream.NoLimit turns it off.
	MaxConns int
	// MaxConnsPerIP caps them per client IP (see ClientIP): WebSocket
	// close 1008, SSE 429. Default 100; stream.NoLimit turns it off, as a
	// load test from one loopback address needs.
	MaxConnsPerIP int
	// HandshakeTimeout bounds reading a request, the WebSocket upgrade
	// included. It is enforced by fasthttp's read timeout: FiberConfig
	// sets it. Default 10 s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds how long a client may leave the server's writes
	// unsent: a WebSocket whose socket stays full that long (sendconn.go),
	// or an SSE stream whose write blocks that long, is closed (the session
	// with 4008). Writes on a listener from WrapListener never block the
	// server meanwhile. Without it, a WebSocket write blocks under a
	// deadline moved only when less than half of it is left, so it is cut
	// after between half of it and all of it. Default 10 s.
	WriteTimeout time.Duration
	// Heartbeat is the WebSocket ping period and the SSE comment period;
	// a WebSocket that sends nothing (no pong, no frame) for 2.5 heartbeats
	// is closed. Advertised to clients as heartbeat_ms. Default 15 s.
	Heartbeat time.Duration
	// Session holds the per-connection limits, passed to the registry as
	// they are (Heartbeat is set from Heartbeat above); its zero fields
	// take stream's defaults.
	Session stream.SessionConfig
	// MaxPublishBytes caps a publish request's body (413). Default 1 MiB.
	// Only a publish with the right token may send that much; every other
	// request may send 16 KiB (LimitBodies).
	MaxPublishBytes int
	// MaxHistory caps ?history=N of GET /api/v1/topics/{topic}. Default
	// 1000 (the registry keeps fewer by default).
	MaxHistory int
	// ClientIP returns the client address the per-IP limit counts. nil
	// means c.IP(), the peer address (or Fiber's trusted proxy header).
	ClientIP func(c *fiber.Ctx) string
	// TrustedProxy reports whether a peer (the address of the TCP
	// connection) is a proxy of this deployment. Only such a peer's
	// X-Forwarded-Host is believed by the Origin and Host checks; anyone
	// else's is ignored and the Host header counts. nil trusts nobody.
	TrustedProxy func(peer net.IP) bool
	// CheckHost turns on the Host check of HostGuard (hostcheck.go): a
	// request naming a host that is not this machine's is refused with
	// 403 forbidden_host, so that a web page cannot rebind its own name to
	// this server and read it. cmd/opsdash sets it when no auth token is
	// configured. Off by default.
	CheckHost bool
	// Hosts are this machine's own names the Host check allows besides
	// loopback and the interfaces' addresses: its hostname and FQDN
	// (LocalNames) and host id.
	Hosts []string
	// AllowedHosts are more hosts the Host check allows: names, IP
	// addresses, "*.example.com" (its subdomains) or "*" (any host).
	AllowedHosts []string
	// Culprits answers GET /api/v1/culprits (culprits.go); nil answers
	// 404.
	Culprits CulpritSource
}

// Server is the HTTP edge of one stream.Registry. Create it with New and
// mount it with Register.
type Server struct {
	cfg     Config
	reg     *stream.Registry
	log     *slog.Logger
	origins originPolicy
	hosts   *hostPolicy
	conns   *connSet
	wsPool  websocket.BufferPool // shared write buffers of every WebSocket
	publish Secret               // PublishToken
	// detachWS: Register made fasthttp keep hijacked connections open, so
	// a WebSocket may outlive its upgrade handler (detach.go).
	detachWS bool
	// pinger pings the WebSockets (pinger.go), made on first use.
	pingerOnce sync.Once
	pinger     *pinger

	statsMu sync.Mutex
	closes  map[int]uint64    // WebSocket close codes the server sent
	refused map[string]uint64 // refusals by reason
	opened  atomic.Uint64

	// logLimit keeps one client's repeated refusals from flooding the log.
	logLimit logLimiter
}

// New returns a Server for cfg.Registry. It panics when Registry is nil,
// a wiring error.
func New(cfg Config) *Server {
	if cfg.Registry == nil {
		panic("httpapi: Config.Registry is nil")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxFrameBytes <= 0 {
		cfg.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.MaxPublishBytes <= 0 {
		cfg.MaxPublishBytes = DefaultMaxPublishBytes
	}
	if cfg.MaxHistory <= 0 {
		cfg.MaxHistory = DefaultMaxHistory
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxConnsPerIP == 0 {
		cfg.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if cfg.ClientIP == nil {
		cfg.ClientIP = func(c *fiber.Ctx) string { return c.IP() }
	}
	cfg.Session.Heartbeat = cfg.Heartbeat
	origins, bad := newOriginPolicy(cfg.AllowedOrigins)
	for _, e := range bad {
		cfg.Logger.Warn("ignoring an allowed origin that cannot be parsed", "origin", e)
	}
	s := &Server{
		cfg:     cfg,
		reg:     cfg.Registry,
		log:     cfg.Logger,
		origins: origins,
		hosts:   newHostPolicy(cfg.Hosts, cfg.AllowedHosts),
		conns:   newConnSet(max(cfg.MaxConns, 0), max(cfg.MaxConnsPerIP, 0)),
		wsPool:  &sync.Pool{},
		closes:  make(map[int]uint64),
		refused: make(map[string]uint64),
	}
	s.publish = NewSecret(cfg.PublishToken)
	return s
}

// FiberConfig returns base with what the edge needs from the Fiber app:
//   - ReadTimeout = HandshakeTimeout when base has none: fasthttp's read
//     timeout is what bounds reading a request, the WebSocket handshake
//     included (upgraded connections clear it);
//   - IdleTimeout 60 s when unset;
//   - BodyLimit, when unset, one byte above MaxPublishBytes (not Fiber's
//     4 MiB), so an oversized publish gets this package's JSON 413;
//     LimitBodies lowers it per request;
//   - an error handler when unset: ErrorHandler, so errors Fiber and
//     fasthttp raise themselves (unknown route, body too large, timeouts)
//     are JSON too, and a publish refused for its body size is asked for
//     its token first (bodylimit.go);
//   - WriteTimeout = WriteTimeout when base has none: writing a response
//     (a page, a JSON answer, a WebSocket upgrade) to a client that does
//     not read it is cut then, rather than holding the connection and the
//     response forever. fasthttp sets it once per response; an SSE stream
//     sets it again before each of its writes (every heartbeat at least)
//     and a WebSocket before each of its own, so neither is cut while it
//     is written to;
//   - ReduceMemoryUsage: otherwise fasthttp hands its 4 KiB request reader
//     over to every upgraded WebSocket for its whole life (measured: 20 KiB
//     per idle subscribed connection instead of 16 KiB; see
//     BenchmarkIdleConnMemory). Set it back to false after this call to
//     trade that memory for a little less allocation per HTTP request.
func (s *Server) FiberConfig(base fiber.Config) fiber.Config {
	if base.ReadTimeout <= 0 {
		base.ReadTimeout = s.cfg.HandshakeTimeout
	}
	if base.IdleTimeout <= 0 {
		base.IdleTimeout = 60 * time.Second
	}
	if base.BodyLimit <= s.cfg.MaxPublishBytes {
		base.BodyLimit = s.cfg.MaxPublishBytes + 1
	}
	if base.ErrorHandler == nil {
		base.ErrorHandler = s.handleError
	}
	if base.WriteTimeout <= 0 {
		base.WriteTimeout = s.cfg.WriteTimeout
	}
	base.ReduceMemoryUsage = true
	return base
}

// answerDraining refuses a request that arrives while the server drains:
// 503 with Retry-After, so a load balancer retries elsewhere, and counted.
func (s *Server) answerDraining(c *fiber.Ctx) error {
	s.countRefused(refuseDraining.String())
	c.Set(fiber.HeaderRetryAfter, "1")
	return WriteError(c, fiber.StatusServiceUnavailable, "draining", "the server is shutting down")
}

// Register mounts the endpoints on r:
//
//	GET  /ws                   WebSocket, protocol v1
//	GET  /sse?topics=a,b       Server-Sent Events
//	GET  /api/v1/topics        topic list
//	GET  /api/v1/topics/:topic one topic's latest value (?history=N)
//	POST /api/v1/publish       publish API (404 unless PublishToken)
//	GET  /api/v1/culprits?at=T who was on top at T (404 unless Culprits)
func (s *Server) Register(r fiber.Router) {
	s.keepHijacked(r) // detach.go
	r.Get("/ws", s.checkOrigin, s.wsHandler())
	r.Get("/sse", s.checkOrigin, s.handleSSE)
	r.Get("/api/v1/topics", s.handleTopics)
	r.Get("/api/v1/topics/:topic", s.handleTopic)
	r.Post("/api/v1/publish", s.handlePublish)
	r.Get("/api/v1/culprits", s.handleCulprits)
}

// Drain closes every WebSocket with 1001 and ends every SSE stream, and
// refuses new ones (503) from then on. It waits until they are all gone or
// ctx ends, and returns ctx's error in that case. REST endpoints keep
// answering.
func (s *Server) Drain(ctx context.Context) error {
	conns, empty := s.conns.drain()
	// Closing one connection may wait up to closeTimeout for a close frame
	// to get past a stuck writer, so they are closed by a few workers
	// rather than one after the other.
	work := make(chan liveConn)
	var wg sync.WaitGroup
	for i := 0; i < min(len(conns), drainWorkers); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				c.shutdown(closeGoingAway, "server going away")
			}
		}()
	}
	for _, c := range conns {
		work <- c
	}
	close(work)
	wg.Wait()
	select {
	case <-empty:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Conns returns the number of live WebSocket and SSE connections, counting
// those being set up or torn down.
func (s *Server) Conns() int { return s.conns.count() }

// Stats are the edge's counters, for /metrics.
type Stats struct {
	// WebSockets and SSEStreams are the live connections by kind.
	WebSockets, SSEStreams int
	// Opened counts connections admitted since start.
	Opened uint64
	// Refused counts connections refused by reason: "origin", "capacity",
	// "per_ip", "draining", and requests refused by the Host check: "host".
	Refused map[string]uint64
	// Closes counts WebSocket close codes sent by the server.
	Closes map[int]uint64
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		WebSockets: int(s.conns.ws.Load()),
		SSEStreams: int(s.conns.sse.Load()),
		Opened:     s.opened.Load(),
		Refused:    make(map[string]uint64),
		Closes:     make(map[int]uint64),
	}
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	for k, v := range s.refused {
		st.Refused[k] = v
	}
	for k, v := range s.closes {
		st.Closes[k] = v
	}
	return st
}

// CloseCodes returns the codes of Stats.Closes in order, for stable output.
func (st Stats) CloseCodes() []int {
	codes := make([]int, 0, len(st.Closes))
	for c := range st.Closes {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	return codes
}

func (s *Server) countRefused(reason string) {
	s.statsMu.Lock()
	s.refused[reason]++
	s.statsMu.Unlock()
}

func (s *Server) countClose(code int) {
	s.statsMu.Lock()
	s.closes[code]++
	s.statsMu.Unlock()
}

// checkOrigin refuses a browser handshake from a foreign origin with 403
// before anything is upgraded or streamed.
func (s *Server) checkOrigin(c *fiber.Ctx) error {
	origin := c.Get(fiber.HeaderOrigin)
	host := s.requestHost(c)
	if s.origins.allows(origin, host) {
		return c.Next()
	}
	s.countRefused("origin")
	ip := s.cfg.ClientIP(c)
	if ok, held := s.logLimit.allow(ip, "origin", time.Now()); ok {
		s.log.Info("refused a cross-origin stream", "origin", origin, "host", host, "path", c.Path(), "client_ip", ip, "held_back", held)
	}
	return WriteError(c, fiber.StatusForbidden, "forbidden", "origin "+origin+" is not allowed")
}

// asCloseError returns err as a *stream.CloseError, if it is one.
func asCloseError(err error) (*stream.CloseError, bool) {
	var ce *stream.CloseError
	ok := errors.As(err, &ce)
	return ce, ok
}
