package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/cmd/opsdash/internal/auth"
	"github.com/opsdash/opsdash/cmd/opsdash/internal/metrics"
	"github.com/opsdash/opsdash/cmd/opsdash/internal/pages"
	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
	"github.com/opsdash/opsdash/stream/httpapi"
)

// serveMain parses serve's configuration and runs the server until ctx ends.
// When started is not nil, the bound address is sent on it once the server
// accepts connections (tests listen on :0 and need the port).
func serveMain(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string, started chan<- string) int {
	var cfg serveConfig
	fs := newServeFlags(&cfg)
	fs.SetOutput(stderr)
	if err := parseWithEnv(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "opsdash: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "opsdash: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(stderr, "opsdash: invalid configuration:\n%v\n", err)
		return 2
	}
	log := newLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	if err := serve(ctx, cfg, log, getenv, started); err != nil {
		log.Error("opsdash stopped", "err", err)
		return 1
	}
	return 0
}

// drainForceAfter is when, into a drain of timeout, the connections still
// open are closed: early enough that fasthttp (which looks every 100 ms)
// sees them gone before the timeout, on a busy machine too: a tenth of it
// before, between 500 ms and 1 s (at most half of it).
func drainForceAfter(timeout time.Duration) time.Duration {
	margin := min(max(timeout/10, 500*time.Millisecond), time.Second, timeout/2)
	return timeout - margin
}

// newLogger builds the process logger: text on a terminal, JSON otherwise.
func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level)) // validated before
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: readableDuration}
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// readableDuration writes a time.Duration attribute as Go prints it ("10s",
// "1.5ms"): the JSON handler would write nanoseconds (10000000000), which
// nobody reading a log line can take in at a glance. The text handler already
// does this; with it both formats say the same.
func readableDuration(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// serve wires collectors, registry and HTTP surface together and runs them
// until ctx ends, then drains: readiness goes false, every client connection
// is closed with 1001, the HTTP server shuts down, the collectors stop.
func serve(ctx context.Context, cfg serveConfig, log *slog.Logger, getenv func(string) string, started chan<- string) error {
	hostID := collectors.HostID(cfg.HostID)
	hostRoot := getenv("HOST_ROOT")

	// Built in the order they depend on each other, each handed what it
	// needs as it is built: metrics first (they observe everything), then
	// the registry, the collectors that feed it, the HTTP edge in front of
	// it. The one loop, the registry telling the scheduler which on-demand
	// topics have subscribers, is closed with OnDemand before anything runs.
	met := metrics.New(metrics.Build{Version: version, Commit: commit})
	replica := ""
	if cfg.Fleet.mode() != "" {
		replica = replicaName(cfg, hostID)
	}
	reg := stream.NewRegistry(stream.RegistryConfig{
		Host:          hostID,
		Replica:       replica,
		HistoryLen:    cfg.HistoryLen,
		MaxTopics:     limitFlag(cfg.MaxTopics),
		MaxValueBytes: limitFlag(cfg.MaxValueBytes),
		PublishedTTL:  cfg.TopicTTL,
		Logger:        log,
		WriteObserver: met.ObserveWrite,
	})
	var draining atomic.Bool
	var sched *collectors.Scheduler // single mode: this host's collectors feed reg
	var fl *fleetNode               // hub or replica: NATS feeds reg (fleet.go)
	var readyz fiber.Handler
	var culprits httpapi.CulpritSource // GET /api/v1/culprits: this host's sampler, or in a fleet each host's agent
	if cfg.Fleet.mode() != "" {
		var err error
		if fl, err = startFleet(cfg, reg, hostID, hostRoot, met.CollectorObserver(), log); err != nil {
			return err
		}
		defer fl.close()
		readyz = fl.readyzHandler(&draining)
		culprits = fl.replica
	} else {
		set := collectors.Default(collectors.Config{HostID: hostID, HostRoot: hostRoot, NetInclude: cfg.NetInclude, Intervals: cfg.Intervals, Logger: log,
			Workloads: cfg.Workloads.collectors()})
		collectors.UseRuntimeTopics(set, reg) // one topic per workload, declared and removed as they come and go
		sched = collectors.NewScheduler(collectors.SchedulerConfig{Sink: reg, Logger: log, Observer: met.CollectorObserver()}, set...)
		culprits = culpritSource(set)
		reg.OnDemand(sched.SetDemand)
		readyz = readyzHandler(&draining, sched)
	}

	proxies := cfg.proxies // who a request comes from: per-IP limits, the auth guard's failure limiter, logs
	var api *httpapi.Server
	guard := auth.New(auth.Config{
		Token:        cfg.Auth.Token,
		PublishToken: cfg.PublishToken,
		SessionTTL:   cfg.Auth.SessionTTL,
		Logger:       log,
		OnFailure:    met.AuthFailure,
		ClientIP:     proxies.ClientIP,
		SameOrigin:   func(c *fiber.Ctx) bool { return api.SameOrigin(c) },
		Sessions:     fl.sessionStore(), // nil: in memory
	})
	api = httpapi.New(httpapi.Config{
		Registry:         reg,
		Logger:           log,
		AllowedOrigins:   cfg.AllowedOrigins,
		PublishToken:     cfg.PublishToken,
		PublishAuth:      guard.AuthorizePublish,
		MaxFrameBytes:    cfg.MaxFrameBytes,
		MaxConns:         limitFlag(cfg.MaxConns),
		MaxConnsPerIP:    limitFlag(cfg.MaxConnsPerIP),
		HandshakeTimeout: cfg.HandshakeTimeout,
		WriteTimeout:     cfg.WriteTimeout,
		Heartbeat:        cfg.Heartbeat,
		ClientIP:         proxies.ClientIP,
		TrustedProxy:     proxies.TrustedPeer(),
		// DNS rebinding: without a token, only requests naming this
		// machine are served; with one, a rebound page has no session.
		CheckHost:    cfg.Auth.Token == "",
		Hosts:        append(httpapi.LocalNames(), hostID),
		AllowedHosts: cfg.AllowedHosts,
		Culprits:     culprits,
		Session: stream.SessionConfig{
			Heartbeat:         cfg.Heartbeat,
			MaxSubscriptions:  limitFlag(cfg.MaxSubs),
			RequestsPerSecond: limitFlag(cfg.RequestRate),
		},
	})
	met.ExportStream(reg.Stats, api.Stats)

	// FiberConfig sets the handshake (read) timeout, turns off Fiber's
	// WriteTimeout (it would cut long SSE streams; httpapi sets a deadline
	// per write instead) and answers every error as JSON.
	// The proxies' FiberConfig makes Fiber believe X-Forwarded-* only from
	// the trusted proxies.
	app := fiber.New(proxies.FiberConfig(api.FiberConfig(fiber.Config{
		DisableStartupMessage: true,
		AppName:               "opsdash",
		IdleTimeout:           2 * time.Minute,
	})))
	api.LimitBodies(app) // a body is read only as far as its request may send one
	// First the Host check (the probes stay open), then the token.
	app.Use(api.HostGuard("/healthz", "/readyz"))
	guard.Install(app) // before every route it protects
	app.Get("/healthz", func(c *fiber.Ctx) error { return c.SendString("ok") })
	app.Get("/readyz", readyz)
	if cfg.Metrics.Auth {
		app.Get("/metrics", guard.Require(), met.Handler())
	} else {
		app.Get("/metrics", met.Handler())
	}
	if fl != nil {
		fl.register(app, reg, log) // / is the fleet overview, /hosts/{host} a host's dashboard; history from the store
	} else {
		pages.Register(app, reg, log)
	}
	api.Register(app)

	fdLimit := raiseFileLimit()
	maxOpen, lowered := openConnsCap(cfg.MaxOpenConns, fdLimit)
	if lowered {
		log.Warn("--max-open-conns lowered to fit the file descriptor limit (raise it with ulimit -n, LimitNOFILE or the container's nofile)",
			"max_open_conns", cfg.MaxOpenConns, "now", maxOpen, "fd_limit", fdLimit)
	}
	lc := net.ListenConfig{}
	rawLn, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	// Under TLS and corking: the cap on open connections, the back-off on
	// accept errors and the first-byte deadline see every connection.
	acceptLn := httpapi.LimitListener(rawLn, httpapi.AcceptConfig{MaxOpen: maxOpen, FirstByteTimeout: cfg.HandshakeTimeout, Logger: log})
	met.ExportListener(acceptLn.Stats)
	ln, reloader, err := cfg.TLS.listen(acceptLn, cfg.SendBuffer, log)
	if err != nil {
		acceptLn.Close()
		return err
	}
	if reloader != nil {
		met.WatchCertificate(reloader.Current)
	}
	addr := ln.Addr().String()
	log.Info("opsdash serving", "addr", addr, "host_id", hostID, "version", version, "tls", cfg.TLS.enabled(), "host_env", hostEnv(),
		"max_open_conns", max(maxOpen, 0), "fd_limit", fdLimit)
	if cfg.AddrFile != "" {
		if err := writeAddrFile(cfg.AddrFile, addr, cfg.TLS.CertFile); err != nil {
			log.Warn("cannot write --addr-file: opsdash healthcheck falls back to --listen", "path", cfg.AddrFile, "err", err)
		} else {
			defer os.Remove(cfg.AddrFile)
		}
	}
	if !loopbackOnly(cfg.Listen) && cfg.Auth.Token == "" {
		log.Warn("SERVING BEYOND LOOPBACK WITHOUT AUTHENTICATION: anyone who can reach " + addr +
			" sees this host's metrics; bind to 127.0.0.1 or put it behind an authenticating proxy")
	}

	collectCtx, stopCollectors := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); reg.Run(collectCtx) }()
	if fl != nil {
		fl.run(collectCtx)
	} else {
		wg.Go(func() { _ = sched.Run(collectCtx) })
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- app.Listener(ln) }()
	if started != nil {
		started <- addr
	}

	select {
	case err = <-serveErr:
		// The listener failed on its own; nothing to drain.
	case <-ctx.Done():
		log.Info("draining", "timeout", cfg.DrainTimeout)
		draining.Store(true)
		drainCtx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
		// fasthttp waits for every connection it serves, and one can be
		// stuck (a request arriving byte by byte, a client that does not
		// read its response) for longer than the drain has: shortly before
		// the drain timeout, whatever is still open is closed.
		force := time.AfterFunc(drainForceAfter(cfg.DrainTimeout), func() {
			if n := acceptLn.CloseAll(); n > 0 {
				log.Info("drain: closed the connections still open", "connections", n)
			}
		})
		// fasthttp neither tracks nor closes hijacked WebSocket connections
		// and waits for open streams, so close our own first.
		api.Drain(drainCtx)
		err = app.ShutdownWithContext(drainCtx)
		force.Stop()
		cancel()
	}
	stopCollectors()
	wg.Wait()
	log.Info("opsdash stopped")
	return err
}
