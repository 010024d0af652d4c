package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"

	"github.com/opsdash/opsdash/cmd/internal/fleet"
	"github.com/opsdash/opsdash/cmd/opsdash/internal/auth"
	"github.com/opsdash/opsdash/cmd/opsdash/internal/envflag"
	"github.com/opsdash/opsdash/cmd/opsdash/internal/flagfile"
	"github.com/opsdash/opsdash/cmd/opsdash/internal/pages"
	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
)

// Fleet modes of `opsdash serve` (docs/fleet.md): with --nats-listen a hub
// (an embedded NATS server with JetStream, its own host collected like an
// agent's), with --nats a replica of a fleet on an existing NATS. Without
// either, serve is the single-host server it always was.

// fleetConfig holds serve's fleet flags.
type fleetConfig struct {
	NATS            envflag.List // --nats: a replica on these servers
	Listen          string       // --nats-listen: a hub's embedded server
	Data            string       // --nats-data: its JetStream store
	SecretFile      string       // --nats-secret-file: the hub's secret elsewhere than --nats-data
	Credentials     string       // --nats-credentials: USER:PASSWORD of a replica
	CredentialsFile string       // --nats-credentials-file
	ReplicaName     string       // --replica-name: hello "replica"

	creds fleet.Credentials // parsed by validate
}

func (f *fleetConfig) register(fs *flag.FlagSet) {
	fs.Var(&f.NATS, "nats", "comma-separated NATS URLs (nats://host:4222): serve the fleet on that NATS as a replica (docs/fleet.md)")
	fs.StringVar(&f.Listen, "nats-listen", "", "run the fleet's NATS server in this process on host:port (e.g. :4222), a hub; needs --nats-data")
	fs.StringVar(&f.Data, "nats-data", "", "the hub's writable directory: JetStream's store and, unless --nats-secret-file, the fleet's secret")
	fs.StringVar(&f.SecretFile, "nats-secret-file", "", "the hub's secret (hex), from which every host's credentials derive (default: fleet.secret in --nats-data, made on first start)")
	fs.StringVar(&f.Credentials, "nats-credentials", "", "a replica's NATS credentials, USER:PASSWORD as printed by 'opsdash credentials --replica NAME' (prefer the variable or the file)")
	fs.StringVar(&f.CredentialsFile, "nats-credentials-file", "", "file holding --nats-credentials, e.g. a mounted Kubernetes Secret; not together with --nats-credentials")
	fs.StringVar(&f.ReplicaName, "replica-name", "", "this process's name in hello \"replica\" (default: <host-id>-<pid>)")
}

// mode is "", "hub" or "replica".
func (f *fleetConfig) mode() string {
	switch {
	case f.Listen != "":
		return "hub"
	case len(f.NATS) > 0:
		return "replica"
	}
	return ""
}

func (f *fleetConfig) validate() []error {
	var errs []error
	if f.Listen != "" && len(f.NATS) > 0 {
		errs = append(errs, errors.New("--nats and --nats-listen are both set: a hub runs its own NATS (--nats-listen), a replica uses an existing one (--nats); choose one"))
	}
	if f.Listen != "" {
		if _, _, err := net.SplitHostPort(f.Listen); err != nil {
			errs = append(errs, fmt.Errorf("--nats-listen %q: %v", f.Listen, err))
		}
		if f.Data == "" {
			errs = append(errs, errors.New("--nats-listen needs --nats-data: a writable directory for the hub's store (docs/deploy.md)"))
		}
	} else if f.Data != "" || f.SecretFile != "" {
		errs = append(errs, errors.New("--nats-data and --nats-secret-file belong to a hub: set --nats-listen too"))
	}
	if len(f.NATS) == 0 && (f.Credentials != "" || f.CredentialsFile != "") {
		errs = append(errs, errors.New("--nats-credentials belong to a replica: set --nats too"))
	}
	var err error
	if f.creds, err = readCredentials(f.Credentials, f.CredentialsFile); err != nil {
		errs = append(errs, err)
	}
	if f.ReplicaName != "" && !validName(f.ReplicaName) {
		errs = append(errs, fmt.Errorf("--replica-name %q: use [a-z0-9_-]", f.ReplicaName))
	}
	return errs
}

// readCredentials parses --nats-credentials or the file it is in.
func readCredentials(value, file string) (fleet.Credentials, error) {
	if value != "" && file != "" {
		return fleet.Credentials{}, errors.New("--nats-credentials and --nats-credentials-file are both set: set only one")
	}
	if file != "" {
		v, err := flagfile.ReadToken("--nats-credentials-file", file)
		if err != nil {
			return fleet.Credentials{}, err
		}
		value = v
	}
	c, err := fleet.ParseCredentials(value)
	if err != nil {
		return c, fmt.Errorf("--nats-credentials: %w", err)
	}
	return c, nil
}

// validName reports whether s is one topic token.
func validName(s string) bool {
	return s != "" && stream.ValidTopic(s) && !strings.Contains(s, ".")
}

// fleetNode is a hub's or a replica's fleet side, started before the
// registry is used.
type fleetNode struct {
	mode       string
	log        *slog.Logger
	server     *fleet.Server // hub only
	replica    *fleet.Replica
	nc         *nats.Conn
	natsURL    string // what an agent dials (the add-a-host hint)
	secretFlag string // how `opsdash credentials` finds the hub's secret

	// The hub collects its own host as an agent does.
	agent *fleet.Agent
	sched *collectors.Scheduler

	sessions *fleet.SessionStore
	runDone  sync.WaitGroup
	agentErr atomic.Pointer[string] // the hub's own agent could not start
}

// replicaName is hello "replica": --replica-name or <host-id>-<pid>.
func replicaName(cfg serveConfig, hostID string) string {
	if cfg.Fleet.ReplicaName != "" {
		return cfg.Fleet.ReplicaName
	}
	return fmt.Sprintf("%s-%d", hostID, os.Getpid())
}

// startFleet starts the hub's NATS server (hub) and connects the replica
// feeding reg. It must run before reg is used: the replica wires the
// registry's demand, publish API and reserved sources.
func startFleet(cfg serveConfig, reg *stream.Registry, hostID, hostRoot string, obs collectors.Observer, log *slog.Logger) (*fleetNode, error) {
	n := &fleetNode{mode: cfg.Fleet.mode(), log: log}
	name := replicaName(cfg, hostID)
	var b [3]byte
	_, _ = rand.Read(b[:])
	n.replica = fleet.NewReplica(fleet.ReplicaConfig{
		Registry: reg, Name: name + "-" + hex.EncodeToString(b[:]), // leases need a name no other process has
		SessionTTL: cfg.Auth.SessionTTL, Logger: log,
	})
	conn := fleet.ConnConfig{URLs: cfg.Fleet.NATS, Credentials: cfg.Fleet.creds, Name: "opsdash replica " + name, OnState: n.replica.ConnState, Logger: log}
	if n.mode == "hub" {
		var secret fleet.Secret
		if cfg.Fleet.SecretFile != "" {
			var err error
			if secret, err = fleet.ReadSecret(cfg.Fleet.SecretFile); err != nil {
				return nil, fmt.Errorf("--nats-secret-file: %w", err)
			}
		}
		s, err := fleet.StartServer(fleet.ServerConfig{Listen: cfg.Fleet.Listen, DataDir: cfg.Fleet.Data, Secret: secret, Logger: log})
		if err != nil {
			return nil, err
		}
		n.server = s
		n.natsURL = hubURL(cfg.Fleet.Listen, s.Addr())
		n.secretFlag = " --nats-data " + cfg.Fleet.Data
		if cfg.Fleet.SecretFile != "" {
			n.secretFlag = " --nats-secret-file " + cfg.Fleet.SecretFile
		}
		conn.InProcess, conn.Credentials = s, s.HubCredentials()
		log.Info("fleet hub: NATS listening", "addr", s.Addr().String(), "store", cfg.Fleet.Data,
			"credentials_required", !loopbackOnly(cfg.Fleet.Listen))
	} else {
		n.natsURL = cfg.Fleet.NATS[0]
	}
	nc, err := fleet.Connect(conn)
	if err != nil {
		n.close()
		return nil, err
	}
	n.nc = nc
	if cfg.Auth.Token != "" {
		n.sessions = fleet.NewSessionStore(nc, cfg.Auth.SessionTTL)
	}
	if n.mode == "hub" {
		agentConn := fleet.ConnConfig{InProcess: n.server, Credentials: n.server.HubCredentials(), Name: "opsdash hub agent " + hostID, Logger: log}
		if n.agent, err = fleet.DialAgent(agentConn, fleet.AgentConfig{Host: hostID, Version: version, Logger: log}); err != nil {
			n.close()
			return nil, err
		}
		set := collectors.Default(collectors.Config{HostID: hostID, HostRoot: hostRoot, NetInclude: cfg.NetInclude, Intervals: cfg.Intervals, Logger: log, Workloads: cfg.Workloads.collectors()})
		collectors.UseRuntimeTopics(set, n.agent)
		if rec := collectors.FindCulprits(set); rec != nil {
			if err := n.agent.ServeCulprits(rec); err != nil {
				n.close()
				return nil, err
			}
		}
		n.sched = collectors.NewScheduler(collectors.SchedulerConfig{Sink: n.agent, Logger: log, Observer: obs}, set...)
		n.agent.OnDemand(n.sched.SetDemand)
	}
	return n, nil
}

// hubURL is the URL an agent on another machine dials: the listen
// address, with this machine's name when it listens on every interface.
func hubURL(listen string, addr net.Addr) string {
	host, _, _ := net.SplitHostPort(listen)
	_, port, _ := net.SplitHostPort(addr.String())
	if host == "" || host == "0.0.0.0" || host == "::" {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return "nats://" + net.JoinHostPort(host, port)
}

// run runs the replica and, on a hub, its own host's agent and collectors
// until ctx ends.
func (n *fleetNode) run(ctx context.Context) {
	n.runDone.Go(func() { _ = n.replica.Run(ctx, n.nc) })
	if n.agent == nil {
		return
	}
	n.runDone.Go(func() {
		if err := n.agent.Start(ctx); err != nil {
			if ctx.Err() == nil {
				msg := err.Error()
				n.agentErr.Store(&msg)
				n.log.Error("the hub cannot collect its own host", "err", err)
			}
			return
		}
		var wg sync.WaitGroup
		wg.Go(func() { n.agent.Run(ctx) })
		_ = n.sched.Run(ctx)
		wg.Wait()
	})
}

// close stops what run started (after ctx ended) and the server.
func (n *fleetNode) close() {
	n.runDone.Wait()
	if n.agent != nil {
		n.agent.Close()
	}
	if n.nc != nil {
		n.nc.Close()
	}
	if n.server != nil {
		n.server.Shutdown()
	}
}

// sessionStore is the guard's store: shared by every replica when signing
// in is on; nil (the guard's own, in memory) otherwise.
func (n *fleetNode) sessionStore() auth.SessionStore {
	if n == nil || n.sessions == nil {
		return nil
	}
	return n.sessions
}

// readyzHandler answers GET /readyz of a hub or replica: 503 while
// draining, while NATS is unreachable, before every topic's last value is
// loaded, and on a hub before its own collectors' first run.
func (n *fleetNode) readyzHandler(draining *atomic.Bool) fiber.Handler {
	return func(c *fiber.Ctx) error {
		unavailable := func(why string) error { return c.Status(fiber.StatusServiceUnavailable).SendString(why) }
		switch {
		case draining.Load():
			return unavailable("draining")
		case !n.replica.Ready():
			return unavailable(n.replica.NotReady())
		case n.sched != nil && !n.sched.Ready():
			return unavailable("collectors starting")
		}
		return c.SendString("ready")
	}
}

// register mounts the fleet's pages (pages.RegisterFleet, in place of a
// single host's) and loads history from the store for ?history=N (before
// the API answers it).
func (n *fleetNode) register(app *fiber.App, reg *stream.Registry, log *slog.Logger) {
	app.Get("/api/v1/topics/:topic", func(c *fiber.Ctx) error {
		if h := c.QueryInt("history"); h > 1 {
			n.replica.Backfill(c.UserContext(), c.Params("topic"), h)
		}
		return c.Next()
	})
	pages.RegisterFleet(app, reg, pages.FleetSite{Fleet: n.replica, AddHost: n.addHostCommands()}, log)
}

// addHostCommands are the exact commands the overview shows for adding a
// host: issue its credentials on the hub, run the agent on the host.
func (n *fleetNode) addHostCommands() []string {
	creds := "opsdash credentials --host-id NEW-HOST" + n.secretFlag
	return []string{
		"# on the hub: print the new host's NATS credentials",
		creds,
		"# on the new host: run the agent with them",
		fmt.Sprintf("OPSDASH_NATS_CREDENTIALS='<printed above>' opsdash agent --nats %s --host-id NEW-HOST", n.natsURL),
	}
}
