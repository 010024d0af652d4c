// Command opsdash-load measures opsdash end to end over loopback WebSockets.
//
// It starts an opsdash server as a child process on 127.0.0.1 (building
// ./cmd/opsdash unless --server-bin is given), with a publish token and every
// per-connection and per-IP limit off, connects WebSocket clients to it,
// publishes through POST /api/v1/publish, and reports what the clients saw
// and what the server process spent (RSS from /proc/<pid>/status, CPU from
// /proc/<pid>/stat). It never targets another host, and every run is bounded
// in clients and time.
//
// Usage:
//
//	opsdash-load [flags] fanout|freshness|idle|slow|fleet
//	opsdash-load peers [flags]
//
// Scenarios:
//
//	fanout     N clients subscribe to bench.> (T topics bench.t0…), one batched
//	           POST per tick publishes every topic at --rate Hz for --duration;
//	           reports msg/s, publish-to-receive latency, freshness, seq gaps,
//	           server CPU per delivered message and RSS.
//	freshness  the same run; its headline is the freshness distribution (every
//	           100 ms, each client's and topic's age of the newest value held).
//	idle       N clients each subscribed to one topic, no traffic but
//	           heartbeats: (RSS with them − RSS before) / N.
//	slow       the fanout run twice on fresh servers, first with every client
//	           reading, then with --slow-fraction of them not reading (small
//	           SO_RCVBUF); reports RSS growth, the readers' p99 against the
//	           first run, and how soon resumed readers hold fresh values.
//	fleet      --hosts simulated agents (real NATS clients, own credentials)
//	           through one NATS process to --replicas replica processes and
//	           --clients browser-like clients (*.summary plus one host's
//	           topics); kills a replica halfway (fleet.go).
//	peers      opsdash beside Centrifugo and a Node ws server on the same
//	           load, server and tool pinned to separate cores (peers.go;
//	           `opsdash-load peers -h`).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Bounds that keep a mistyped flag from turning the tool into something else.
const (
	maxClients  = 50000
	maxDuration = 10 * time.Minute
	maxRate     = 1000
	maxTopics   = 1000
	maxPayload  = 32 << 10
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := mainCode(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// mainCode runs the command line args and returns the exit code.
func mainCode(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "fleet-nats" { // the fleet scenario's NATS process
		return natsMain(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "peers" {
		return peersMain(ctx, args[1:], stdout, stderr) // peers.go
	}
	if len(args) > 0 && args[0] == "peers-publisher" {
		return peersPublisherMain(ctx, args[1:], stdout, stderr) // peerpub.go
	}
	o, asJSON, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "opsdash-load: %v\n", err)
		return 2
	}
	if o.ServerBin == "" {
		dir, err := os.MkdirTemp("", "opsdash-load-")
		if err != nil {
			fmt.Fprintf(stderr, "opsdash-load: %v\n", err)
			return 1
		}
		defer os.RemoveAll(dir)
		fmt.Fprintln(stderr, "opsdash-load: building ./cmd/opsdash")
		if o.ServerBin, err = buildServer(ctx, dir); err != nil {
			fmt.Fprintf(stderr, "opsdash-load: %v\n", err)
			return 1
		}
	}
	// Each client is one descriptor here and one in the server, which
	// inherits the limit (each process has its own count).
	if got, err := raiseNofile(uint64(o.Clients + 1024)); err != nil || got < uint64(o.Clients+256) {
		if got < uint64(o.Clients+256) {
			fmt.Fprintf(stderr, "opsdash-load: %d clients need RLIMIT_NOFILE of at least %d, have %d: %v\n", o.Clients, o.Clients+256, got, err)
			return 1
		}
		fmt.Fprintf(stderr, "opsdash-load: note: %v\n", err)
	}
	o.Progress = stderr
	r, err := run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "opsdash-load: %s: %v\n", o.Scenario, err)
		if r == nil {
			return 1
		}
	}
	if o.JSONOut != "" {
		b, jerr := json.MarshalIndent(r, "", "  ")
		if jerr == nil {
			jerr = os.WriteFile(o.JSONOut, append(b, '\n'), 0o644)
		}
		if jerr != nil {
			fmt.Fprintf(stderr, "opsdash-load: --json-out: %v\n", jerr)
			return 1
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			fmt.Fprintf(stderr, "opsdash-load: %v\n", err)
			return 1
		}
	} else {
		printTable(stdout, r)
	}
	if err != nil || len(r.Errors) > 0 {
		return 1
	}
	return 0
}

// stringsFlag collects a repeatable flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return fmt.Sprint(*s) }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// parseArgs reads the scenario (first argument or after the flags) and flags.
func parseArgs(args []string, stderr io.Writer) (options, bool, error) {
	o := options{Token: "load-test-token-0123"}
	var asJSON bool
	var serverArgs stringsFlag
	fs := flag.NewFlagSet("opsdash-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: opsdash-load [flags] fanout|freshness|idle|slow|fleet")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.ServerBin, "server-bin", "", "opsdash binary to run (default: go build ./cmd/opsdash of this module into a temporary directory)")
	fs.Var(&serverArgs, "server-arg", "extra flag for the server, repeatable (e.g. --server-arg=--write-timeout=30s)")
	fs.IntVar(&o.Clients, "clients", 1000, "WebSocket clients")
	fs.IntVar(&o.Topics, "topics", 10, "topics bench.t0 … bench.t<n-1>")
	fs.Float64Var(&o.Rate, "rate", 1, "publishes per second per topic (one batched POST per tick)")
	fs.DurationVar(&o.Duration, "duration", 20*time.Second, "how long the publisher runs")
	fs.IntVar(&o.PayloadBytes, "payload-bytes", 200, "approximate size of each value's data object")
	fs.Float64Var(&o.SlowFraction, "slow-fraction", 0.1, "slow: fraction of clients that stop reading")
	fs.IntVar(&o.SlowRcvbuf, "slow-rcvbuf", 4096, "slow: SO_RCVBUF of the clients that stop reading")
	fs.DurationVar(&o.ResumeWindow, "resume-window", 5*time.Second, "slow: how long resumed readers have to reach fresh values")
	fs.BoolVar(&o.Stagger, "stagger", false, "publish each topic in its own POST, phases spread over the period (default: one batched POST per tick with every topic)")
	fs.BoolVar(&o.SkipBaseline, "no-baseline", false, "slow: skip the comparison run without slow clients")
	fs.DurationVar(&o.Settle, "settle", 0, "pause after connecting before measuring (default 1s; idle: 3s)")
	fs.DurationVar(&o.DrainWait, "drain-wait", 5*time.Second, "after the last publish, how long readers may take to receive it")
	fs.DurationVar(&o.SampleEvery, "sample-every", 100*time.Millisecond, "freshness sampling period")
	fs.IntVar(&o.SourceAddrs, "source-addrs", 0, "loopback source addresses 127.0.0.1..n to spread clients over (default: one per 10,000 clients)")
	fs.IntVar(&o.DialParallel, "dial-parallel", 64, "handshakes in flight while connecting")
	fs.IntVar(&o.Hosts, "hosts", 200, "fleet: simulated hosts (12 topics each)")
	fs.IntVar(&o.Replicas, "replicas", 3, "fleet: replica processes")
	fs.BoolVar(&o.RealIntervals, "real-intervals", false, "fleet: topics at the collectors' intervals (host 60 s, disk.usage 10 s…) instead of all 12 at 1 Hz")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.StringVar(&o.JSONOut, "json-out", "", "also write the JSON report to this file")
	// Accept the scenario before or after the flags.
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		o.Scenario, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return o, false, err
	}
	if o.Scenario == "" && fs.NArg() > 0 {
		// The flag package stops at the first argument that is not a
		// flag: parse the flags after the scenario too.
		o.Scenario = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return o, false, err
		}
	}
	if fs.NArg() > 0 {
		return o, false, fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	o.ServerArgs = serverArgs
	if o.Settle == 0 {
		o.Settle = time.Second
		if o.Scenario == "idle" {
			o.Settle = 3 * time.Second
		}
	}
	if o.SourceAddrs == 0 {
		o.SourceAddrs = (o.Clients + 9999) / 10000
	}
	return o, asJSON, o.validate()
}

// validate keeps a run within the tool's bounds.
func (o options) validate() error {
	var errs []error
	switch o.Scenario {
	case "fanout", "freshness", "idle", "slow", "fleet":
	case "":
		errs = append(errs, errors.New("no scenario: want fanout, freshness, idle, slow or fleet"))
	default:
		errs = append(errs, fmt.Errorf("unknown scenario %q: want fanout, freshness, idle, slow or fleet", o.Scenario))
	}
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(o.Clients >= 1 && o.Clients <= maxClients, "--clients must be 1..%d", maxClients)
	check(o.Topics >= 1 && o.Topics <= maxTopics, "--topics must be 1..%d", maxTopics)
	check(o.Rate > 0 && o.Rate <= maxRate, "--rate must be in (0, %d]", maxRate)
	check(o.Duration > 0 && o.Duration <= maxDuration, "--duration must be in (0, %v]", maxDuration)
	check(o.PayloadBytes >= 0 && o.PayloadBytes <= maxPayload, "--payload-bytes must be 0..%d", maxPayload)
	check(o.SlowFraction >= 0 && o.SlowFraction < 1, "--slow-fraction must be in [0, 1)")
	check(o.SlowRcvbuf >= 0, "--slow-rcvbuf must not be negative")
	check(o.ResumeWindow > 0 && o.ResumeWindow <= maxDuration, "--resume-window must be in (0, %v]", maxDuration)
	check(o.Settle >= 0 && o.Settle <= time.Minute, "--settle must be 0..1m")
	check(o.DrainWait > 0 && o.DrainWait <= time.Minute, "--drain-wait must be in (0, 1m]")
	check(o.SampleEvery >= time.Millisecond, "--sample-every must be at least 1ms")
	check(o.SourceAddrs >= 1 && o.SourceAddrs <= 254, "--source-addrs must be 1..254")
	check(o.DialParallel >= 1 && o.DialParallel <= 1024, "--dial-parallel must be 1..1024")
	check(o.Hosts >= 1 && o.Hosts <= 1000, "--hosts must be 1..1000")
	check(o.Replicas >= 1 && o.Replicas <= 10, "--replicas must be 1..10")
	return errors.Join(errs...)
}
