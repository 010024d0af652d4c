package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

// The peers scenario: opsdash beside Centrifugo and a plain Node `ws`
// broadcast server on the same load, one fresh server per run, the server
// pinned to one core (GOMAXPROCS=1 for the Go servers) and this tool to the
// other, so that what one costs does not blur what the other measures.
//
//	opsdash-load peers [--clients 1000,5000] [--rate 100] [--duration 20s] [--idle-clients 10000]
//
// Each traffic run: N clients subscribe to one topic (opsdash: bench.t0;
// Centrifugo: channel "bench", anonymous; Node: every client gets every
// message), then one publisher publishes a value of about 200 bytes at
// --rate through the server's HTTP publish API, one request in flight at a
// time (a tick that comes while the previous request is still running
// waits; two missed ticks drop one, as a time.Ticker does). The idle run
// connects --idle-clients subscribed clients to a fresh server and reports
// (RSS with them − RSS before) / N.

// peersOptions configures the peers scenario.
type peersOptions struct {
	Servers       []string
	Clients       []int
	Rate          float64
	Duration      time.Duration
	PayloadBytes  int
	IdleClients   int
	ServerCPU     int // -1: no pinning
	ToolCPU       int
	Settle        time.Duration
	DrainWait     time.Duration
	DialParallel  int
	OpsdashBin    string
	CentrifugoBin string
	NodeDir       string
	JSONOut       string
	Progress      io.Writer
}

// PeerRun is one server's result in one run.
type PeerRun struct {
	Server  string `json:"server"`
	Clients int    `json:"clients"`
	Kind    string `json:"kind"` // "traffic" or "idle"

	Connected    int     `json:"connected"`
	TargetHz     float64 `json:"target_hz,omitempty"`
	AchievedHz   float64 `json:"achieved_hz,omitempty"`
	Published    uint64  `json:"published,omitempty"`
	PostMeanMS   float64 `json:"post_mean_ms,omitempty"`
	Delivered    int64   `json:"delivered,omitempty"`
	DeliveredPct float64 `json:"delivered_pct,omitempty"`
	// Latency is receive time − the publish request's start; FromDue is
	// receive time − when the publisher's schedule said the value was
	// due, which adds the publisher's own lag (what a viewer feels).
	Latency   Percentiles `json:"latency"`
	FromDue   Percentiles `json:"from_due"`
	Freshness Percentiles `json:"freshness"`
	// MinPerClient is the fewest values a client received in the
	// window; Stale counts clients whose newest value was over 5 s old
	// when publishing stopped; Disconnected, clients the server dropped.
	MinPerClient int64 `json:"min_per_client"`
	Stale        int   `json:"stale_clients"`
	Disconnected int   `json:"disconnected"`
	// CaughtUp: every connected client held the last accepted value
	// within --drain-wait of the publisher stopping.
	CaughtUp bool `json:"caught_up"`

	ServerCPUSeconds float64  `json:"server_cpu_s"`
	CPUPerMsgUS      float64  `json:"server_cpu_per_msg_us,omitempty"`
	WriteSyscalls    int64    `json:"server_write_syscalls,omitempty"`
	MsgsPerWrite     float64  `json:"msgs_per_write,omitempty"`
	ToolCPUSeconds   float64  `json:"load_tool_cpu_s"`
	OtherCPUSeconds  float64  `json:"other_cpu_s"`
	RSSBefore        int64    `json:"server_rss_before_bytes"`
	RSSAfter         int64    `json:"server_rss_after_bytes"`
	IdleBytesPerConn float64  `json:"idle_bytes_per_conn,omitempty"`
	LoadAvgStart     float64  `json:"loadavg1_start"`
	Errors           []string `json:"errors,omitempty"`
}

// PeersReport is the peers scenario's report.
type PeersReport struct {
	Scenario string    `json:"scenario"`
	CPUs     int       `json:"cpus"`
	Pinned   string    `json:"pinned"`
	Runs     []PeerRun `json:"runs"`
}

func (o peersOptions) logf(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "opsdash-load peers: "+format+"\n", args...)
	}
}

// peersMain runs `opsdash-load peers`.
func peersMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, asJSON, err := parsePeersArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "opsdash-load peers: %v\n", err)
		return 2
	}
	o.Progress = stderr
	if o.ToolCPU >= 0 {
		if err := pinProcess(o.ToolCPU); err != nil {
			fmt.Fprintf(stderr, "opsdash-load peers: pin to CPU %d: %v\n", o.ToolCPU, err)
			return 1
		}
	}
	maxClients := o.IdleClients
	for _, n := range o.Clients {
		maxClients = max(maxClients, n)
	}
	if got, err := raiseNofile(uint64(maxClients + 1024)); got < uint64(maxClients+256) {
		fmt.Fprintf(stderr, "opsdash-load peers: %d clients need RLIMIT_NOFILE of at least %d, have %d: %v\n", maxClients, maxClients+256, got, err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "opsdash-load-peers-")
	if err != nil {
		fmt.Fprintf(stderr, "opsdash-load peers: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	kinds := make([]*peerKind, 0, len(o.Servers))
	for _, name := range o.Servers {
		k, err := preparePeer(ctx, o, name, tmp)
		if err != nil {
			fmt.Fprintf(stderr, "opsdash-load peers: %s: %v\n", name, err)
			return 1
		}
		kinds = append(kinds, k)
	}

	rep := &PeersReport{Scenario: "peers", CPUs: runtime.NumCPU(), Pinned: "none"}
	if o.ServerCPU >= 0 {
		rep.Pinned = fmt.Sprintf("server on CPU %d (GOMAXPROCS=1 for Go servers), load tool on CPU %d", o.ServerCPU, o.ToolCPU)
	}
	// Interleaved: each client count runs every server before the next
	// count, and the order rotates, so drifting machine load spreads over
	// all of them.
	for i, n := range o.Clients {
		for j := range kinds {
			k := kinds[(i+j)%len(kinds)]
			if ctx.Err() != nil {
				break
			}
			o.logf("%s: %d clients at %g Hz for %v", k.name, n, o.Rate, o.Duration)
			rep.Runs = append(rep.Runs, runPeerTraffic(ctx, o, k, n))
		}
	}
	if o.IdleClients > 0 {
		for _, k := range kinds {
			if ctx.Err() != nil {
				break
			}
			o.logf("%s: %d idle subscribed clients", k.name, o.IdleClients)
			rep.Runs = append(rep.Runs, runPeerIdle(ctx, o, k, o.IdleClients))
		}
	}
	if o.JSONOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(o.JSONOut, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintf(stderr, "opsdash-load peers: --json-out: %v\n", err)
			return 1
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		printPeers(stdout, rep)
	}
	for _, r := range rep.Runs {
		if len(r.Errors) > 0 {
			return 1
		}
	}
	return 0
}

func parsePeersArgs(args []string, stderr io.Writer) (peersOptions, bool, error) {
	o := peersOptions{}
	var asJSON bool
	var servers, clients string
	fs := flag.NewFlagSet("opsdash-load peers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: opsdash-load peers [flags]: opsdash, Centrifugo v6.9.1 and a Node ws server on the same load")
		fs.PrintDefaults()
	}
	fs.StringVar(&servers, "servers", "opsdash,centrifugo,node", "servers to compare, in order")
	fs.StringVar(&clients, "clients", "1000,5000", "subscriber counts, one traffic run per count and server")
	fs.Float64Var(&o.Rate, "rate", 100, "publishes per second (one topic)")
	fs.DurationVar(&o.Duration, "duration", 20*time.Second, "how long the publisher runs")
	fs.IntVar(&o.PayloadBytes, "payload-bytes", 200, "approximate size of each value")
	fs.IntVar(&o.IdleClients, "idle-clients", 10000, "idle run: subscribed clients that then stay idle (0: no idle run)")
	fs.IntVar(&o.ServerCPU, "server-cpu", 0, "CPU the server is pinned to (-1: no pinning)")
	fs.IntVar(&o.ToolCPU, "tool-cpu", 1, "CPU this tool is pinned to (-1: no pinning)")
	fs.DurationVar(&o.Settle, "settle", 2*time.Second, "pause after connecting before measuring")
	fs.DurationVar(&o.DrainWait, "drain-wait", 5*time.Second, "after the last publish, how long clients may take to receive it")
	fs.IntVar(&o.DialParallel, "dial-parallel", 64, "handshakes in flight while connecting")
	fs.StringVar(&o.OpsdashBin, "server-bin", "", "opsdash binary (default: go build ./cmd/opsdash)")
	fs.StringVar(&o.CentrifugoBin, "centrifugo-bin", "", "centrifugo binary (default: go install github.com/centrifugal/centrifugo/v6@"+centrifugoVersion+" into a temporary GOBIN)")
	fs.StringVar(&o.NodeDir, "node-dir", "", "directory holding server.js with ws installed (default: cmd/opsdash-load/node copied and npm-installed into a temporary directory)")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.StringVar(&o.JSONOut, "json-out", "", "also write the JSON report to this file")
	if err := fs.Parse(args); err != nil {
		return o, false, err
	}
	if fs.NArg() > 0 {
		return o, false, fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	var errs []error
	for _, s := range strings.Split(servers, ",") {
		switch s = strings.TrimSpace(s); s {
		case "opsdash", "centrifugo", "node":
			o.Servers = append(o.Servers, s)
		default:
			errs = append(errs, fmt.Errorf("--servers: unknown server %q (want opsdash, centrifugo, node)", s))
		}
	}
	for _, s := range strings.Split(clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > maxClients {
			errs = append(errs, fmt.Errorf("--clients: %q is not 1..%d", s, maxClients))
			continue
		}
		o.Clients = append(o.Clients, n)
	}
	if len(o.Servers) == 0 {
		errs = append(errs, errors.New("--servers names none"))
	}
	if !(o.Rate > 0 && o.Rate <= maxRate) {
		errs = append(errs, fmt.Errorf("--rate must be in (0, %d]", maxRate))
	}
	if o.Duration <= 0 || o.Duration > maxDuration {
		errs = append(errs, fmt.Errorf("--duration must be in (0, %v]", maxDuration))
	}
	if o.PayloadBytes < 0 || o.PayloadBytes > maxPayload {
		errs = append(errs, fmt.Errorf("--payload-bytes must be 0..%d", maxPayload))
	}
	if o.IdleClients < 0 || o.IdleClients > maxClients {
		errs = append(errs, fmt.Errorf("--idle-clients must be 0..%d", maxClients))
	}
	if o.DialParallel < 1 || o.DialParallel > 1024 {
		errs = append(errs, errors.New("--dial-parallel must be 1..1024"))
	}
	if o.DrainWait <= 0 || o.DrainWait > time.Minute || o.Settle < 0 || o.Settle > time.Minute {
		errs = append(errs, errors.New("--drain-wait must be in (0, 1m] and --settle in [0, 1m]"))
	}
	if (o.ServerCPU < 0) != (o.ToolCPU < 0) || o.ServerCPU >= 0 && o.ServerCPU == o.ToolCPU {
		errs = append(errs, errors.New("--server-cpu and --tool-cpu: two different CPUs, or both -1"))
	}
	return o, asJSON, errors.Join(errs...)
}

// pinProcess pins every thread of this process to cpu; threads started
// later inherit it from the thread that starts them.
func pinProcess(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return err
		}
	}
	return nil
}

// printPeers prints the runs as two tables: traffic and idle.
func printPeers(w io.Writer, rep *PeersReport) {
	fmt.Fprintf(w, "peers: %d CPUs, %s\n\n", rep.CPUs, rep.Pinned)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	runs := append([]PeerRun(nil), rep.Runs...)
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].Clients < runs[j].Clients })
	fmt.Fprintln(tw, "server\tclients\tHz achieved\tdelivered\tCPU/msg µs\tmsgs/write\tlatency p50/p99 ms\tfrom due p99 ms\tfreshness p50/p99 ms\tmin/client\tstale\tdropped\tcaught up\terrors")
	for _, r := range runs {
		if r.Kind != "traffic" {
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f%%\t%.2f\t%.2f\t%.1f / %.1f\t%.1f\t%.1f / %.1f\t%d\t%d\t%d\t%v\t%d\n",
			r.Server, r.Connected, r.AchievedHz, r.DeliveredPct, r.CPUPerMsgUS, r.MsgsPerWrite,
			r.Latency.P50, r.Latency.P99, r.FromDue.P99, r.Freshness.P50, r.Freshness.P99,
			r.MinPerClient, r.Stale, r.Disconnected, r.CaughtUp, len(r.Errors))
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, r := range runs {
		if r.Kind == "idle" {
			fmt.Fprintf(w, "idle %-10s %d connections: %.1f KiB per connection (RSS %s → %s)\n",
				r.Server, r.Connected, r.IdleBytesPerConn/1024, mib(r.RSSBefore), mib(r.RSSAfter))
		}
	}
	for _, r := range runs {
		for _, e := range r.Errors {
			fmt.Fprintf(w, "error: %s %d clients: %s\n", r.Server, r.Clients, e)
		}
	}
}
