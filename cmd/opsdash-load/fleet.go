package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/opsdash/opsdash/cmd/internal/fleet"
)

// The fleet scenario: a NATS server as its own process (the hub's embedded
// server, run by this binary as `opsdash-load fleet-nats`, so its CPU is
// NATS's alone), --hosts simulated agents in this process (real NATS
// clients, each with its own credentials, publishing the 12 topics of a
// host at their intervals), --replicas opsdash replicas as processes, and
// --clients browser-like WebSocket clients spread over the replicas, each
// subscribed as the fleet overview (*.summary) plus one host's dashboard
// (<host>.>). Halfway through, the first replica is killed (SIGKILL): its
// clients fail over to the next one.

// FleetReport is the fleet scenario's part of the report.
type FleetReport struct {
	Hosts         int `json:"hosts"`
	TopicsPerHost int `json:"topics_per_host"`
	Replicas      int `json:"replicas"`

	AgentValues   uint64  `json:"agent_values"` // published by the simulated agents during the window
	AgentValuesPS float64 `json:"agent_values_per_s"`
	AgentDropped  uint64  `json:"agent_dropped"`

	Delivered    int64       `json:"delivered_messages"` // updates the clients received in the window
	MessagesPerS float64     `json:"messages_per_s"`
	Latency      Percentiles `json:"latency"`   // agent's sample time → client's receipt
	Freshness    Percentiles `json:"freshness"` // newest sample of a host's cpu − newest a client holds
	Gaps         int64       `json:"seq_gaps"`  // values skipped between two received, outside failovers
	Regressions  int64       `json:"seq_regressions"`
	// MissingAtReplicas counts topics whose last seq on a replica, after the
	// agents stopped, is not the agent's last: values lost on the way.
	MissingAtReplicas int `json:"missing_at_replicas"`

	ReplicaReadyS   []float64   `json:"replica_ready_s"` // process start → /readyz 200, joining the running fleet
	FailoverClients int         `json:"failover_clients"`
	Failover        Percentiles `json:"failover"` // connection lost → full snapshot from another replica
	FailoverGaps    int64       `json:"failover_seq_gaps"`
	NewInstance     int         `json:"failover_new_instance"` // clients told another instance (must be 0)

	NATSCPUPct      float64   `json:"nats_cpu_pct_of_core"`
	NATSRSS         int64     `json:"nats_rss_bytes"`
	ReplicaCPUPct   []float64 `json:"replica_cpu_pct_of_core"`
	ReplicaRSS      []int64   `json:"replica_rss_bytes"`
	LoadToolCPUPct  float64   `json:"load_tool_cpu_pct_of_core"`
	OtherCPUPct     float64   `json:"other_cpu_pct_of_core"`
	PageHTMLBytes   int       `json:"page_html_bytes"`
	PageTotalBytes  int       `json:"page_total_bytes,omitempty"` // HTML + scripts + styles, from Chromium
	PageRenderMS    float64   `json:"page_dom_content_loaded_ms,omitempty"`
	PagePaintMS     float64   `json:"page_first_contentful_paint_ms,omitempty"`
	PageServerMS    float64   `json:"page_server_ms"`
	LoadAvg1Start   float64   `json:"loadavg1_start"`
	WindowS         float64   `json:"window_s"`
	ClientsPerProcs string    `json:"clients_per_replica"`
}

// natsMain runs `opsdash-load fleet-nats --listen ADDR --data DIR`: the
// fleet's NATS server alone, until SIGTERM.
func natsMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fleet-nats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "address")
	data := fs.String("data", "", "store directory")
	if err := fs.Parse(args); err != nil || *data == "" {
		return 2
	}
	s, err := fleet.StartServer(fleet.ServerConfig{Listen: *listen, DataDir: *data, Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintln(stdout, "ready", s.Addr())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
	<-ch
	s.Shutdown()
	return 0
}

// child is a process of the scenario.
type child struct {
	cmd  *exec.Cmd
	log  *tailBuffer
	done chan struct{}
}

func startChild(bin string, args ...string) (*child, error) {
	c := &child{log: newTailBuffer(32 << 10), done: make(chan struct{})}
	c.cmd = exec.Command(bin, args...)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// waitOK polls url until it answers 200; it returns how long that took.
func waitOK(ctx context.Context, url string, within time.Duration) (time.Duration, error) {
	t0 := time.Now()
	hc := &http.Client{Timeout: time.Second}
	for time.Since(t0) < within {
		if resp, err := hc.Get(url); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Since(t0), nil
			}
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("%s not 200 within %s", url, within)
}

// replica is one opsdash replica process.
type replica struct {
	name, addr string
	args       []string
	proc       *child
}

func (r *replica) base() string { return "http://" + r.addr }

// start runs the replica and returns how long until it was ready.
func (r *replica) start(ctx context.Context, bin string) (time.Duration, error) {
	var err error
	t0 := time.Now()
	if r.proc, err = startChild(bin, r.args...); err != nil {
		return 0, err
	}
	if _, err := waitOK(ctx, r.base()+"/readyz", 30*time.Second); err != nil {
		return 0, fmt.Errorf("replica %s: %w\n%s", r.name, err, r.proc.log.String())
	}
	return time.Since(t0), nil
}

// fleetClient is a browser-like client: it fails over to the next replica
// when its connection drops and starts over when the instance changes.
type fleetClient struct {
	urls     []string
	patterns []string
	host     string // the host whose cpu topic freshness is sampled

	mu          sync.Mutex
	seqs        map[string]uint64
	cpuTS       int64 // ts (ms) of the newest <host>.cpu held
	instance    string
	afterHello  map[string]bool // topics received since the last hello
	topicsHeld  int             // topics held before the connection was lost
	lostAt      time.Time
	reconnected bool // a hello after a loss, until the snapshot is complete

	delivered, gaps, regressions, failoverGaps atomic.Int64
	failover                                   time.Duration
	newInstance                                bool
}

var (
	kTopic = []byte(`"topic":"`)
	kSeq   = []byte(`"seq":`)
	kTS    = []byte(`"ts":`)
	kInst  = []byte(`"instance":"`)
)

func fieldAfter(frame, key []byte) []byte {
	i := bytes.Index(frame, key)
	if i < 0 {
		return nil
	}
	return frame[i+len(key):]
}

func (c *fleetClient) run(ctx context.Context, latency *histogram, start int) {
	for i := start; ctx.Err() == nil; i++ {
		c.session(ctx, c.urls[i%len(c.urls)], latency)
		c.mu.Lock()
		if c.lostAt.IsZero() && ctx.Err() == nil {
			c.lostAt, c.topicsHeld = time.Now(), len(c.seqs)
		}
		c.mu.Unlock()
		_ = sleepCtx(ctx, 50*time.Millisecond)
	}
}

func (c *fleetClient) session(ctx context.Context, base string, latency *histogram) {
	d := websocket.Dialer{HandshakeTimeout: 2 * time.Second}
	ws, _, err := d.DialContext(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
	if err != nil {
		return
	}
	defer ws.Close()
	stop := context.AfterFunc(ctx, func() { ws.Close() })
	defer stop()
	sub := `{"type":"subscribe","id":"1","topics":["` + strings.Join(c.patterns, `","`) + `"]}`
	if ws.WriteMessage(websocket.TextMessage, []byte(sub)) != nil {
		return
	}
	for {
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, b, err := ws.ReadMessage()
		if err != nil {
			return
		}
		c.onFrame(b, latency)
	}
}

func (c *fleetClient) onFrame(b []byte, latency *histogram) {
	now := time.Now()
	switch frameType(b) {
	case "hello":
		inst := fieldAfter(b, kInst)
		if j := bytes.IndexByte(inst, '"'); j >= 0 {
			inst = inst[:j]
		}
		c.mu.Lock()
		if c.instance != "" && c.instance != string(inst) {
			c.newInstance = true
			c.seqs = map[string]uint64{}
		}
		c.instance = string(inst)
		c.afterHello = map[string]bool{}
		c.reconnected = !c.lostAt.IsZero()
		c.mu.Unlock()
	case "update":
		t := fieldAfter(b, kTopic)
		j := bytes.IndexByte(t, '"')
		if j < 0 {
			return
		}
		topic := string(t[:j])
		seq, _ := leadingUint(fieldAfter(b, kSeq))
		ts, _ := leadingUint(fieldAfter(b, kTS))
		c.delivered.Add(1)
		c.mu.Lock()
		last, had := c.seqs[topic]
		if had && seq == last+1 && c.afterHello[topic] {
			// A live value (not a snapshot's, which may be minutes old).
			latency.Record(now.UnixNano() - int64(ts)*int64(time.Millisecond))
		}
		switch {
		case had && seq < last:
			c.regressions.Add(1)
		case had && seq > last+1 && c.afterHello != nil && !c.afterHello[topic] && c.reconnected:
			c.failoverGaps.Add(int64(seq - last - 1)) // the snapshot after a failover: newer values only
		case had && seq > last+1:
			c.gaps.Add(int64(seq - last - 1))
		}
		if seq > last {
			c.seqs[topic] = seq
			if topic == c.host+".cpu" {
				c.cpuTS = int64(ts)
			}
		}
		c.afterHello[topic] = true
		if c.reconnected && len(c.afterHello) >= c.topicsHeld {
			c.failover = now.Sub(c.lostAt)
			c.reconnected, c.lostAt = false, time.Time{}
		}
		c.mu.Unlock()
	}
}

// runFleet runs the fleet scenario.
func runFleet(ctx context.Context, o options) (*Report, error) {
	r := newReport(o)
	fr := &FleetReport{Hosts: o.Hosts, Replicas: o.Replicas, TopicsPerHost: len(fleet.SimTopics) + 1, LoadAvg1Start: loadAvg()}
	r.Fleet = fr
	dir, err := os.MkdirTemp("", "opsdash-fleet-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	natsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	natsAddr := "127.0.0.1:" + strconv.Itoa(natsPort)
	nats, err := startChild(self, "fleet-nats", "--listen", natsAddr, "--data", dir)
	if err != nil {
		return nil, err
	}
	defer nats.stop()
	for t0 := time.Now(); ; {
		if c, err := net.Dial("tcp", natsAddr); err == nil {
			c.Close()
			break
		}
		if time.Since(t0) > 20*time.Second {
			return nil, fmt.Errorf("NATS not up: %s", nats.log.String())
		}
		_ = sleepCtx(ctx, 20*time.Millisecond)
	}
	secret, err := fleet.ReadSecret(filepath.Join(dir, fleet.SecretFile))
	if err != nil {
		return nil, err
	}
	natsURL := "nats://" + natsAddr

	// Agents.
	o.logf("fleet: %d simulated hosts", o.Hosts)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	agentLog := quiet // an agent's warnings (a dropped value) on the progress output
	if o.Progress != nil {
		agentLog = slog.New(slog.NewTextHandler(o.Progress, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	simCtx, stopSims := context.WithCancel(ctx)
	var simWG sync.WaitGroup
	defer func() { stopSims(); simWG.Wait() }()
	agents := make([]*fleet.Agent, o.Hosts)
	lastCPU := make([]atomic.Int64, o.Hosts) // ms of each host's newest cpu sample
	for i := range agents {
		host := fmt.Sprintf("sim-%03d", i)
		a, err := fleet.DialAgent(fleet.ConnConfig{URLs: []string{natsURL}, Credentials: secret.Agent(host), Name: host, Logger: quiet},
			fleet.AgentConfig{Host: host, Version: "sim", Logger: agentLog})
		if err != nil {
			return nil, err
		}
		defer a.Close()
		if err := a.Start(ctx); err != nil {
			return nil, err
		}
		fleet.SimDeclare(a)
		agents[i] = a
		simWG.Go(func() {
			fleet.SimRun(simCtx, a, i, time.Duration(i)*time.Second/time.Duration(o.Hosts), !o.RealIntervals, func(t time.Time) { lastCPU[i].Store(t.UnixMilli()) })
		})
		simWG.Go(func() { a.Run(simCtx) })
	}
	if err := sleepCtx(ctx, 3*time.Second); err != nil {
		return r, err
	}

	// Replicas, started into the running fleet: how soon each is ready.
	reps := make([]*replica, o.Replicas)
	for i := range reps {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		name := "r" + strconv.Itoa(i)
		rp := &replica{name: name, addr: "127.0.0.1:" + strconv.Itoa(port)}
		rp.args = []string{"serve", "--nats", natsURL, "--nats-credentials", secret.Replica(name).String(), "--listen", rp.addr,
			"--replica-name", name, "--host-id", "loadhost", "--max-conns", "0", "--max-conns-per-ip", "0", "--max-subscriptions", "0",
			"--request-rate", "0", "--log-format", "json", "--log-level", "warn"}
		rp.args = append(rp.args, o.ServerArgs...)
		d, err := rp.start(ctx, o.ServerBin)
		if err != nil {
			return r, err
		}
		defer func() { rp.proc.stop() }()
		fr.ReplicaReadyS = append(fr.ReplicaReadyS, d.Seconds())
		reps[i] = rp
	}
	o.logf("fleet: %d replicas ready in %v s", o.Replicas, fr.ReplicaReadyS)

	// Clients, round robin over the replicas; each fails over to the next.
	latency, fresh := &histogram{}, &histogram{}
	clients := make([]*fleetClient, o.Clients)
	cctx, stopClients := context.WithCancel(ctx)
	var cwg sync.WaitGroup
	defer func() { stopClients(); cwg.Wait() }()
	perReplica := make([]int, o.Replicas)
	for i := range clients {
		urls := make([]string, len(reps))
		for k := range reps {
			urls[k] = reps[(i+k)%len(reps)].base()
		}
		perReplica[i%len(reps)]++
		host := fmt.Sprintf("sim-%03d", i%o.Hosts)
		c := &fleetClient{urls: urls, patterns: []string{"*.summary", host + ".>"}, host: host, seqs: map[string]uint64{}}
		clients[i] = c
		cwg.Go(func() { c.run(cctx, latency, 0) })
	}
	fr.ClientsPerProcs = fmt.Sprint(perReplica)
	if err := sleepCtx(ctx, o.Settle+2*time.Second); err != nil {
		return r, err
	}
	// The window.
	latency.reset() // the clients record into it all along
	for _, c := range clients {
		c.delivered.Store(0)
		c.gaps.Store(0)
	}
	pubBefore := totalPublished(agents)
	natsBefore := mustProc(nats.pid())
	repBefore := make([]procStat, len(reps))
	for i, rp := range reps {
		repBefore[i] = mustProc(rp.proc.pid())
	}
	selfBefore, busyBefore, t0 := selfCPU(), machineBusy(), time.Now()
	sampleCtx, stopSample := context.WithCancel(ctx)
	var swg sync.WaitGroup
	swg.Go(func() { sampleFleetFreshness(sampleCtx, clients, lastCPU, o.SampleEvery, fresh) })

	if err := sleepCtx(ctx, o.Duration/2); err != nil {
		stopSample()
		return r, err
	}
	// Kill the first replica; its clients move on.
	var killedRestart time.Duration
	if len(reps) > 1 {
		o.logf("fleet: kill -9 replica %s", reps[0].name)
		_ = reps[0].proc.cmd.Process.Kill()
		<-reps[0].proc.done
		if err := sleepCtx(ctx, o.Duration/2); err != nil {
			stopSample()
			return r, err
		}
	} else if err := sleepCtx(ctx, o.Duration/2); err != nil {
		stopSample()
		return r, err
	}
	stopSample()
	swg.Wait()
	window := time.Since(t0)
	fr.WindowS = window.Seconds()
	natsAfter := mustProc(nats.pid())
	pct := func(d time.Duration) float64 { return 100 * d.Seconds() / window.Seconds() }
	fr.NATSCPUPct, fr.NATSRSS = pct(natsAfter.CPU-natsBefore.CPU), natsAfter.RSS
	var repCPU time.Duration
	for i, rp := range reps {
		if i == 0 && len(reps) > 1 {
			fr.ReplicaCPUPct = append(fr.ReplicaCPUPct, -1) // killed halfway
			fr.ReplicaRSS = append(fr.ReplicaRSS, repBefore[0].RSS)
			continue
		}
		after := mustProc(rp.proc.pid())
		repCPU += after.CPU - repBefore[i].CPU
		fr.ReplicaCPUPct = append(fr.ReplicaCPUPct, pct(after.CPU-repBefore[i].CPU))
		fr.ReplicaRSS = append(fr.ReplicaRSS, after.RSS)
	}
	used := selfCPU() - selfBefore
	fr.LoadToolCPUPct = pct(used)
	fr.OtherCPUPct = pct(machineBusy() - busyBefore - used - (natsAfter.CPU - natsBefore.CPU) - repCPU)
	fr.AgentValues = totalPublished(agents) - pubBefore
	fr.AgentValuesPS = float64(fr.AgentValues) / window.Seconds()
	for _, a := range agents {
		fr.AgentDropped += a.Stats().Dropped
	}
	var fo histogram
	for _, c := range clients {
		fr.Delivered += c.delivered.Load()
		fr.Gaps += c.gaps.Load()
		fr.Regressions += c.regressions.Load()
		fr.FailoverGaps += c.failoverGaps.Load()
		c.mu.Lock()
		if c.failover > 0 {
			fr.FailoverClients++
			fo.Record(int64(c.failover))
		}
		if c.newInstance {
			fr.NewInstance++
		}
		c.mu.Unlock()
	}
	fr.MessagesPerS = float64(fr.Delivered) / window.Seconds()
	fr.Latency, fr.Freshness, fr.Failover = latency.Summary(), fresh.Summary(), fo.Summary()

	// The killed replica joins again: another ready time.
	if len(reps) > 1 {
		if killedRestart, err = reps[0].start(ctx, o.ServerBin); err == nil {
			fr.ReplicaReadyS = append(fr.ReplicaReadyS, killedRestart.Seconds())
		}
	}
	// The overview of every host, as a browser gets it.
	page := reps[len(reps)-1].base() + "/"
	t1 := time.Now()
	if resp, err := http.Get(page); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fr.PageServerMS = float64(time.Since(t1).Microseconds()) / 1000
		fr.PageHTMLBytes = len(b)
	}
	if path := chromiumPath(); path != "" {
		if m, err := pageInChromium(ctx, path, page); err == nil {
			fr.PageTotalBytes, fr.PageRenderMS, fr.PagePaintMS = m.bytes, m.domContentLoaded, m.firstPaint
		} else {
			r.addError("chromium: %v", err)
		}
	}

	// Nothing lost: once the agents stop, every replica holds each
	// topic's last seq.
	stopSims()
	simWG.Wait()
	for _, a := range agents {
		_ = a.Flush()
	}
	final := map[string]uint64{}
	for _, a := range agents {
		for t, s := range a.Seqs() {
			final[t] = s
		}
	}
	_ = sleepCtx(ctx, time.Second)
	for _, rp := range reps {
		fr.MissingAtReplicas += missingAt(rp.base(), final)
	}
	stopClients()
	cwg.Wait()
	if fr.Regressions > 0 {
		r.addError("%d seq regressions", fr.Regressions)
	}
	if fr.NewInstance > 0 {
		r.addError("%d clients saw another instance after failing over", fr.NewInstance)
	}
	return r, nil
}

func totalPublished(agents []*fleet.Agent) uint64 {
	var n uint64
	for _, a := range agents {
		n += a.Stats().Published
	}
	return n
}

// missingAt counts topics of final whose seq at the replica base differs.
func missingAt(base string, final map[string]uint64) int {
	resp, err := http.Get(base + "/api/v1/topics")
	if err != nil {
		return len(final)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	got := map[string]uint64{}
	for _, item := range bytes.Split(b, []byte(`{"name":"`))[1:] {
		j := bytes.IndexByte(item, '"')
		if j < 0 {
			continue
		}
		seq, _ := leadingUint(fieldAfter(item, kSeq))
		got[string(item[:j])] = seq
	}
	missing := 0
	for t, s := range final {
		if got[t] != s {
			missing++
		}
	}
	return missing
}

// sampleFleetFreshness samples, every period, how far each client's newest
// value of its host's cpu topic is behind the newest sample of it.
func sampleFleetFreshness(ctx context.Context, clients []*fleetClient, lastCPU []atomic.Int64, period time.Duration, h *histogram) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for i, c := range clients {
			newest := lastCPU[i%len(lastCPU)].Load()
			c.mu.Lock()
			held, away := c.cpuTS, !c.lostAt.IsZero()
			c.mu.Unlock()
			if held == 0 || away {
				continue // not connected: failover is measured on its own
			}
			h.Record(max(newest-held, 0) * int64(time.Millisecond))
		}
	}
}

// chromiumPath finds Chromium, "" when there is none.
func chromiumPath() string {
	if p := os.Getenv("OPSDASH_CHROMIUM"); p != "" {
		return p
	}
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}
