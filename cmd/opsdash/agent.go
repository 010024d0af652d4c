package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/cmd/internal/fleet"
	"github.com/opsdash/opsdash/cmd/opsdash/internal/envflag"
	"github.com/opsdash/opsdash/cmd/opsdash/internal/metrics"
	"github.com/opsdash/opsdash/collectors"
)

// defaultAgentListen is `opsdash agent`'s probe address: not serve's
// :8080, so an agent and a server run side by side on one host.
const defaultAgentListen = ":8081"

// agentConfig is everything `opsdash agent` can be told.
type agentConfig struct {
	NATS            envflag.List
	HostID          string
	Listen          string
	Credentials     string
	CredentialsFile string
	NetInclude      envflag.List
	Intervals       envflag.DurationMap
	LogFormat       string
	LogLevel        string
	Workloads       workloadsConfig

	creds fleet.Credentials
}

func newAgentFlags(cfg *agentConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.Var(&cfg.NATS, "nats", "comma-separated NATS URLs of the fleet (nats://hub:4222); required")
	fs.StringVar(&cfg.HostID, "host-id", "", "host id, the first token of this host's topics (default: the hostname, or $HOST_ETC/hostname)")
	fs.StringVar(&cfg.Listen, "listen", defaultAgentListen, "address of /healthz, /readyz and /metrics (nothing else is served)")
	fs.StringVar(&cfg.Credentials, "nats-credentials", "", "this host's NATS credentials, USER:PASSWORD as printed by 'opsdash credentials --host-id ID' on the hub (prefer the variable or the file)")
	fs.StringVar(&cfg.CredentialsFile, "nats-credentials-file", "", "file holding --nats-credentials; not together with --nats-credentials")
	fs.Var(&cfg.NetInclude, "net-include", "comma-separated interface name patterns to report although virtual or loopback")
	fs.Var(&cfg.Intervals, "intervals", "per-collector intervals, e.g. 'cpu=2s,disk.usage=30s'")
	fs.StringVar(&cfg.LogFormat, "log-format", "auto", "log format: text, json, or auto")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	cfg.Workloads.register(fs)
	return fs
}

func (c *agentConfig) validate() error {
	var errs []error
	if len(c.NATS) == 0 {
		errs = append(errs, errors.New("--nats is required: the fleet's NATS, e.g. nats://hub:4222"))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: %v", c.Listen, err))
	}
	var err error
	if c.creds, err = readCredentials(c.Credentials, c.CredentialsFile); err != nil {
		errs = append(errs, err)
	}
	if err := collectors.CheckIntervals(c.Intervals); err != nil {
		errs = append(errs, fmt.Errorf("--intervals: %v", err))
	}
	errs = append(errs, logFlagErrors(c.LogFormat, c.LogLevel)...)
	errs = append(errs, c.Workloads.validate()...)
	return errors.Join(errs...)
}

// logFlagErrors checks --log-format and --log-level (serve's and agent's).
func logFlagErrors(format, level string) []error {
	var errs []error
	switch format {
	case "auto", "text", "json":
	default:
		errs = append(errs, fmt.Errorf("--log-format %q: want auto, text or json", format))
	}
	switch strings.ToLower(level) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", level))
	}
	return errs
}

// agentMain runs `opsdash agent`: this host's collectors publishing to the
// fleet's NATS, and nothing but probes on --listen. When started is not
// nil the probe address is sent on it once it listens.
func agentMain(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string, started chan<- string) int {
	var cfg agentConfig
	fs := newAgentFlags(&cfg)
	fs.SetOutput(stderr)
	if err := parseWithEnv(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "opsdash agent: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "opsdash agent: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(stderr, "opsdash agent: invalid configuration:\n%v\n", err)
		return 2
	}
	log := newLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	hostID := collectors.HostID(cfg.HostID)
	log = log.With("host_id", hostID)

	met := metrics.New(metrics.Build{Version: version, Commit: commit})
	a, err := fleet.DialAgent(fleet.ConnConfig{URLs: cfg.NATS, Credentials: cfg.creds, Name: "opsdash agent " + hostID, Logger: log},
		fleet.AgentConfig{Host: hostID, Version: version, Logger: log})
	if err != nil {
		log.Error("opsdash agent stopped", "err", err)
		return 1
	}
	defer a.Close()
	set := collectors.Default(collectors.Config{HostID: hostID, HostRoot: getenv("HOST_ROOT"), NetInclude: cfg.NetInclude, Intervals: cfg.Intervals, Logger: log,
		Workloads: cfg.Workloads.collectors()})
	collectors.UseRuntimeTopics(set, a) // workload topics travel in the descriptor, so replicas drop them when they go
	if rec := collectors.FindCulprits(set); rec != nil {
		if err := a.ServeCulprits(rec); err != nil { // replicas' GET /api/v1/culprits?host=…
			log.Error("opsdash agent stopped", "err", err)
			return 1
		}
	}
	sched := collectors.NewScheduler(collectors.SchedulerConfig{Sink: a, Logger: log, Observer: met.CollectorObserver()}, set...)
	a.OnDemand(sched.SetDemand)

	app := fiber.New(fiber.Config{DisableStartupMessage: true, AppName: "opsdash agent", ReadTimeout: 10 * time.Second, IdleTimeout: time.Minute})
	app.Get("/healthz", func(c *fiber.Ctx) error { return c.SendString("ok") })
	app.Get("/readyz", func(c *fiber.Ctx) error {
		switch {
		case a.Duplicate() != "":
			return c.Status(fiber.StatusServiceUnavailable).SendString("duplicate host id: " + a.Duplicate())
		case !a.Ready():
			return c.Status(fiber.StatusServiceUnavailable).SendString("NATS unreachable")
		case !sched.Ready():
			return c.Status(fiber.StatusServiceUnavailable).SendString("collectors starting")
		}
		return c.SendString("ready")
	})
	app.Get("/metrics", met.Handler())
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		log.Error("opsdash agent stopped", "err", fmt.Errorf("listen on %s: %w", cfg.Listen, err))
		return 1
	}
	go func() { _ = app.Listener(ln) }()
	defer func() { _ = app.ShutdownWithTimeout(5 * time.Second) }()
	if started != nil {
		started <- ln.Addr().String()
	}
	log.Info("opsdash agent starting", "nats", strings.Join(cfg.NATS, ","), "probes", ln.Addr().String(), "version", version)

	if err := a.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return 0
		}
		log.Error("opsdash agent stopped", "err", err)
		return 1
	}
	log.Info("opsdash agent publishing")
	var wg sync.WaitGroup
	wg.Go(func() { a.Run(ctx) })
	_ = sched.Run(ctx)
	wg.Wait()
	log.Info("opsdash agent stopped", "published", a.Stats().Published, "dropped", a.Stats().Dropped)
	return 0
}
