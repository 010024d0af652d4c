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

// newLogger builds the process logger: text on a terminal, JSON otherwise.
func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level)) // validated before
	opts := &slog.HandlerOptions{Level: lv}
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
	reg := stream.NewRegistry(stream.RegistryConfig{
		Host:          hostID,
		HistoryLen:    cfg.HistoryLen,
		MaxTopics:     limitFlag(cfg.MaxTopics),
		MaxValueBytes: limitFlag(cfg.MaxValueBytes),
		PublishedTTL:  cfg.TopicTTL,
		Logger:        log,
		WriteObserver: met.ObserveWrite,
	})
	set := collectors.Default(collectors.Config{HostID: hostID, HostRoot: hostRoot, NetInclude: cfg.NetInclude, Intervals: cfg.Intervals, Logger: log,
		Workloads: cfg.Workloads.collectors()})
	collectors.UseRuntimeTopics(set, reg) // one topic per workload, declared and removed as they come and go
	sched := collectors.NewScheduler(collectors.SchedulerConfig{Sink: reg, Logger: log, Observer: met.CollectorObserver()}, set...)
	reg.OnDemand(sched.SetDemand)

	proxies := cfg.proxies // who a request comes from: per-IP limits, the auth guard's failure limiter, logs
	api := httpapi.New(httpapi.Config{
		Registry:       reg,
		Logger:         log,
		AllowedOrigins: cfg.AllowedOrigins,
		PublishToken:   cfg.PublishToken,
		MaxFrameBytes:  cfg.MaxFrameBytes,
		MaxConns:       limitFlag(cfg.MaxConns),
		MaxConnsPerIP:  limitFlag(cfg.MaxConnsPerIP),
		WriteTimeout:   cfg.WriteTimeout,
		Heartbeat:      cfg.Heartbeat,
		ClientIP:       proxies.ClientIP,
		TrustedProxy:   proxies.TrustedPeer(),
		Culprits:       culpritSource(set),
		Session: stream.SessionConfig{
			Heartbeat:         cfg.Heartbeat,
			MaxSubscriptions:  limitFlag(cfg.MaxSubs),
			RequestsPerSecond: limitFlag(cfg.RequestRate),
		},
	})
	met.ExportStream(reg.Stats, api.Stats)

	var draining atomic.Bool
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
	guard := auth.New(auth.Config{
		Token:      cfg.Auth.Token,
		SessionTTL: cfg.Auth.SessionTTL,
		Logger:     log,
		OnFailure:  met.AuthFailure,
		ClientIP:   proxies.ClientIP,
	})
	guard.Install(app) // before every route it protects
	app.Get("/healthz", func(c *fiber.Ctx) error { return c.SendString("ok") })
	app.Get("/readyz", readyzHandler(&draining, sched))
	if cfg.Metrics.Auth {
		app.Get("/metrics", guard.Require(), met.Handler())
	} else {
		app.Get("/metrics", met.Handler())
	}
	pages.Register(app, reg, log)
	api.Register(app)

	lc := net.ListenConfig{}
	rawLn, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	ln, reloader, err := cfg.TLS.listen(rawLn, cfg.SendBuffer, log)
	if err != nil {
		rawLn.Close()
		return err
	}
	if reloader != nil {
		met.WatchCertificate(reloader.Current)
	}
	addr := ln.Addr().String()
	log.Info("opsdash serving", "addr", addr, "host_id", hostID, "version", version, "tls", cfg.TLS.enabled(), "host_env", hostEnv())
	if !loopbackOnly(cfg.Listen) && cfg.Auth.Token == "" {
		log.Warn("SERVING BEYOND LOOPBACK WITHOUT AUTHENTICATION: anyone who can reach " + addr +
			" sees this host's metrics; bind to 127.0.0.1 or put it behind an authenticating proxy")
	}

	collectCtx, stopCollectors := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = sched.Run(collectCtx) }()
	go func() { defer wg.Done(); reg.Run(collectCtx) }()

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
		// fasthttp neither tracks nor closes hijacked WebSocket connections
		// and waits for open streams, so close our own first.
		api.Drain(drainCtx)
		err = app.ShutdownWithContext(drainCtx)
		cancel()
	}
	stopCollectors()
	wg.Wait()
	log.Info("opsdash stopped")
	return err
}
