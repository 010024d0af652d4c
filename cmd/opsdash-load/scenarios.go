package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// options is one run's configuration (see main.go for the flags).
type options struct {
	Scenario     string
	ServerBin    string
	ServerArgs   []string
	Clients      int
	Topics       int
	Rate         float64
	Duration     time.Duration
	PayloadBytes int
	SlowFraction float64
	SlowRcvbuf   int
	ResumeWindow time.Duration
	Settle       time.Duration
	DrainWait    time.Duration
	SampleEvery  time.Duration
	SourceAddrs  int
	DialParallel int
	SkipBaseline bool      // slow: do not run the comparison without slow clients
	Stagger      bool      // one POST per topic, phases spread over the period
	Progress     io.Writer // progress lines (stderr); nil: none
	JSONOut      string    // also write the JSON report here
	Token        string
	Hosts        int // fleet: simulated hosts
	Replicas     int // fleet: replica processes
	// RealIntervals: fleet hosts publish at the collectors' intervals
	// rather than every topic every second.
	RealIntervals bool
}

const topicPrefix = "bench.t"

// logf writes a progress line, so a long run shows where it is.
func (o options) logf(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "opsdash-load: "+format+"\n", args...)
	}
}

// topicNames returns bench.t0 … bench.t<n-1>.
func topicNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = topicPrefix + strconv.Itoa(i)
	}
	return names
}

// run executes o.Scenario and returns its report.
func run(ctx context.Context, o options) (*Report, error) {
	switch o.Scenario {
	case "fanout", "freshness":
		return runTraffic(ctx, o, 0)
	case "slow":
		return runSlow(ctx, o)
	case "idle":
		return runIdle(ctx, o)
	case "fleet":
		return runFleet(ctx, o) // fleet.go
	}
	return nil, fmt.Errorf("unknown scenario %q (want fanout, freshness, idle, slow or fleet)", o.Scenario)
}

// newClientConfig prepares what the clients of one run against srv share.
func newClientConfig(o options, srv *server, rcvbuf int) *clientConfig {
	return &clientConfig{
		url:      "ws://" + srv.addr + "/ws",
		prefix:   []byte(topicPrefix),
		topics:   o.Topics,
		latency:  &histogram{},
		measured: &atomic.Bool{},
		dialer:   newDialer(sourceAddrs(o.SourceAddrs), rcvbuf),
	}
}

// runTraffic is fanout and freshness, and each phase of slow: clients
// subscribe to bench.>, a publisher publishes every topic at o.Rate for
// o.Duration, clients record latency and a sampler records freshness. When
// slowEvery > 0, every slowEvery-th client stops reading after subscribing
// and is resumed at the end (see resumeSlow).
func runTraffic(ctx context.Context, o options, slowEvery int) (*Report, error) {
	r := newReport(o)
	srv, pub, err := startWithTopics(ctx, o, r)
	if err != nil {
		return nil, err
	}
	defer func() { r.noteServerExit(srv.stop()) }()
	pid := srv.pid()

	// Slow clients get their own small receive buffer: a separate dialer.
	fast := newClientConfig(o, srv, 0)
	fast.slowDialer = newDialer(sourceAddrs(o.SourceAddrs), o.SlowRcvbuf)
	isSlow := func(i int) bool { return slowEvery > 0 && i%slowEvery == slowEvery-1 }
	dialStart := time.Now()
	set, failed, err := dialAll(ctx, fast, o.Clients, o.DialParallel,
		func(int) []string { return []string{"bench.>"} }, isSlow)
	r.ConnectSeconds = time.Since(dialStart).Seconds()
	r.ConnectFailures = failed
	if err != nil {
		r.addError("connect: %d of %d clients failed, first error: %v", failed, o.Clients, err)
	}
	if len(set.clients) == 0 {
		return r, errors.New("no client connected")
	}
	defer set.closeAll()
	readers := set.readers()
	r.Connected = len(set.clients)
	r.SlowClients = len(set.clients) - len(readers)
	o.logf("%d connected (%d not reading) in %.1fs; publishing for %v", r.Connected, r.SlowClients, r.ConnectSeconds, o.Duration)

	if err := sleepCtx(ctx, o.Settle); err != nil {
		return r, err
	}
	before := mustProc(pid)
	metricsBefore := scrapeMetrics(srv.addr)
	selfBefore := selfCPU()
	busyBefore := machineBusy()
	r.LoadAvgStart = loadAvg()
	fast.measured.Store(true)

	fresh := &histogram{}
	rss := newRSSWatch(pid)
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); sampleFreshness(sampleCtx, pub, readers, o.Topics, o.SampleEvery, fresh) }()
	go func() { defer bg.Done(); rss.run(sampleCtx) }()

	start := time.Now()
	r.Published = pub.run(ctx, o.Rate, o.Duration, o.Stagger)
	r.PublishSeconds = time.Since(start).Seconds()
	finals := make([]uint64, o.Topics)
	for i, tp := range pub.topics {
		finals[i] = tp.latest.Load()
	}
	caughtUp := waitCaughtUp(ctx, readers, finals, o.DrainWait)
	r.DrainSeconds = time.Since(start).Seconds() - r.PublishSeconds
	stopSampling()
	bg.Wait()
	fast.measured.Store(false)

	after := mustProc(pid)
	r.SelfCPUSeconds = (selfCPU() - selfBefore).Seconds()
	// Clamped: the counters tick at 10 ms and are read at slightly different instants.
	r.OtherCPUSeconds = max(0, (machineBusy()-busyBefore).Seconds()-r.SelfCPUSeconds-(after.CPU-before.CPU).Seconds())
	r.ServerRSSBefore = before.RSS
	r.ServerRSSAfter = after.RSS
	r.ServerRSSPeak = max(rss.peak(), after.RSS)
	r.ServerCPUSeconds = (after.CPU - before.CPU).Seconds()
	r.ServerThreads = after.Threads
	r.ServerWriteSyscalls = after.WriteSyscalls - before.WriteSyscalls
	r.Metrics = diffMetrics(metricsBefore, scrapeMetrics(srv.addr))
	if !caughtUp {
		r.addError("not every reading client held the last published value of every topic %v after the publisher stopped", o.DrainWait)
	}

	// Slow readers resume while the publisher goes on, before anything is closed.
	if r.SlowClients > 0 {
		o.logf("resuming %d slow readers", r.SlowClients)
		r.Slow = resumeSlow(ctx, o, fast, set, pub)
	}

	set.closeAll()
	r.collect(readers, fast.latency, fresh, finals)
	r.PublishErrors = pub.errors.Load()
	if e := pub.lastError(); e != "" {
		r.addError("publish: %s", e)
	}
	r.PostMeanMillis = float64(pub.postNanos.Load()) / float64(max(pub.posts.Load(), 1)) / 1e6
	if !srv.alive() {
		r.addError("the server exited during the run:\n%s", srv.log.String())
	}
	return r, nil
}

// sampleFreshness records, about every period, the age of the newest value
// each client holds of each topic: 0 when it holds the newest published
// pub_seq, else the time since the first pub_seq it has not got was
// published. The sampling instants are jittered (uniform in 0.5–1.5 periods)
// so they do not lock onto the publisher's ticks: a sampler in phase with a
// 1 Hz publisher would only ever look just before each publish, when every
// client is up to date, and report a freshness of zero.
func sampleFreshness(ctx context.Context, pub *publisher, clients []*client, topics int, period time.Duration, h *histogram) {
	newest := make([]uint64, topics)
	sent := make([][]int64, topics)
	for {
		if sleepCtx(ctx, period/2+rand.N(period)) != nil {
			return
		}
		for i := range topics {
			newest[i] = pub.topics[i].latest.Load()
			sent[i] = pub.sentTable(i)
		}
		now := time.Now().UnixNano()
		for _, c := range clients {
			for i := range topics {
				if newest[i] == 0 {
					continue
				}
				got := c.last[i].Load()
				if got >= newest[i] {
					h.Record(0)
				} else {
					h.Record(now - sent[i][got+1])
				}
			}
		}
	}
}

// waitCaughtUp polls until every client holds pub_seq finals[t] of every
// topic t, or d passes. It reports whether they all did.
func waitCaughtUp(ctx context.Context, clients []*client, finals []uint64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		all := true
	scan:
		for _, c := range clients {
			for i, last := range finals {
				if c.last[i].Load() < last {
					all = false
					break scan
				}
			}
		}
		if all {
			return true
		}
		if time.Now().After(deadline) || sleepCtx(ctx, 20*time.Millisecond) != nil {
			return false
		}
	}
}

// resumeSlow lets the slow clients read again while the publisher goes on for
// o.ResumeWindow, and measures how soon each holds every topic's value as of
// the moment it resumed: frames older than that are stale (kernel buffers,
// or a backlog the server should not have kept).
func resumeSlow(ctx context.Context, o options, cfg *clientConfig, set *clientSet, pub *publisher) *SlowReport {
	sr := &SlowReport{Clients: 0}
	pubCtx, stopPub := context.WithCancel(ctx)
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); pub.run(pubCtx, o.Rate, o.ResumeWindow+time.Second, o.Stagger) }()
	defer func() { stopPub(); <-pubDone }()

	// Values the server had accepted before the resume are what a resumed
	// reader must reach.
	resumeAt := time.Now()
	target := make([]uint64, o.Topics)
	for i, tp := range pub.topics {
		target[i] = tp.completed.Load()
	}
	sr.TargetPubSeq = target[0]
	slowCfg := *cfg
	slowCfg.latency = &histogram{}
	slowCfg.measured = &atomic.Bool{}

	var slow []*client
	for _, c := range set.clients {
		if c.slow {
			slow = append(slow, c)
		}
	}
	sr.Clients = len(slow)
	results := make([]resumeResult, len(slow))
	var wg sync.WaitGroup
	deadline := resumeAt.Add(o.ResumeWindow)
	for k, c := range slow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[k] = c.resume(&slowCfg, o.Topics, target, resumeAt, deadline)
		}()
	}
	wg.Wait()
	sr.summarize(results)
	return sr
}

// resumeResult is what one slow client saw after resuming.
type resumeResult struct {
	fresh     bool          // reached target on every topic before the deadline
	after     time.Duration // time from resume until then
	stale     int64         // updates older than target read before its topic was fresh
	frames    int64         // all frames read until fresh (or the deadline)
	maxJump   uint64        // largest pub_seq step between consecutive updates of a topic
	closeCode int           // the server closed the connection with this code
	err       string
}

// resume reads until every topic t has reached pub_seq target[t] (then
// returns) or the deadline passes.
func (c *client) resume(cfg *clientConfig, topics int, target []uint64, at, deadline time.Time) resumeResult {
	var res resumeResult
	fresh := make([]bool, topics)
	left := topics
	prev := make([]uint64, topics)
	seen := make([]bool, topics)
	_ = c.conn.SetReadDeadline(deadline)
	for left > 0 {
		frame, err := c.readFrame()
		if err != nil {
			c.noteEnd(err)
			res.closeCode = c.closeCode
			res.err = err.Error()
			return res
		}
		res.frames++
		u := c.handle(cfg, frame, time.Now().UnixNano())
		if !u.isUpdate || !u.hasPub || u.topic < 0 || u.topic >= topics {
			continue
		}
		if seen[u.topic] && u.pubSeq > prev[u.topic] {
			res.maxJump = max(res.maxJump, u.pubSeq-prev[u.topic])
		}
		seen[u.topic], prev[u.topic] = true, u.pubSeq
		if fresh[u.topic] {
			continue
		}
		if u.pubSeq < target[u.topic] {
			res.stale++
			continue
		}
		fresh[u.topic] = true
		left--
	}
	res.fresh = true
	res.after = time.Since(at)
	_ = c.conn.SetReadDeadline(time.Time{})
	return res
}

// runSlow runs the traffic scenario twice on fresh servers: without slow
// clients (the baseline), then with o.SlowFraction of them not reading.
func runSlow(ctx context.Context, o options) (*Report, error) {
	every := 0
	if o.SlowFraction > 0 {
		every = max(int(1/o.SlowFraction+0.5), 1)
	}
	var base *Report
	if !o.SkipBaseline {
		var err error
		if base, err = runTraffic(ctx, o, 0); err != nil {
			return nil, fmt.Errorf("baseline run (no slow clients): %w", err)
		}
	}
	r, err := runTraffic(ctx, o, every)
	if err != nil {
		return nil, err
	}
	if r.Slow == nil {
		r.Slow = &SlowReport{}
	}
	r.Slow.RSSGrowth = r.ServerRSSAfter - r.ServerRSSBefore
	if base != nil {
		r.Slow.Baseline = base
		r.Slow.BaselineRSSGrowth = base.ServerRSSAfter - base.ServerRSSBefore
		r.Slow.RSSExcess = r.Slow.RSSGrowth - r.Slow.BaselineRSSGrowth
		if base.Latency.P99 > 0 {
			r.Slow.P99ChangePct = (r.Latency.P99 - base.Latency.P99) / base.Latency.P99 * 100
		}
	}
	return r, nil
}

// runIdle measures the server's memory per idle subscribed connection: RSS
// before, then with o.Clients connections each subscribed to one topic that
// is not published again (so only heartbeats flow).
func runIdle(ctx context.Context, o options) (*Report, error) {
	r := newReport(o)
	srv, _, err := startWithTopics(ctx, o, r)
	if err != nil {
		return nil, err
	}
	defer func() { r.noteServerExit(srv.stop()) }()
	pid := srv.pid()
	// Let the collectors' first runs and start-up garbage settle.
	if err := sleepCtx(ctx, o.Settle); err != nil {
		return r, err
	}
	before := mustProc(pid)
	cfg := newClientConfig(o, srv, 0)
	start := time.Now()
	set, failed, err := dialAll(ctx, cfg, o.Clients, o.DialParallel,
		func(i int) []string { return []string{topicPrefix + strconv.Itoa(i%o.Topics)} },
		func(int) bool { return false })
	r.ConnectSeconds = time.Since(start).Seconds()
	r.ConnectFailures = failed
	if err != nil {
		r.addError("connect: %d of %d clients failed, first error: %v", failed, o.Clients, err)
	}
	defer set.closeAll()
	r.Connected = len(set.clients) // each one counted its "subscribed" reply
	o.logf("%d connected and subscribed in %.1fs; settling", r.Connected, r.ConnectSeconds)
	if r.Connected == 0 {
		return r, errors.New("no client connected")
	}
	// Every client must have had its snapshot, then the server is idle.
	ok := waitSnapshots(ctx, set.clients, 10*time.Second)
	if !ok {
		r.addError("not every client received its snapshot within 10s")
	}
	if err := sleepCtx(ctx, o.Settle); err != nil {
		return r, err
	}
	// Take the median of a few readings a moment apart, so one GC cycle
	// caught mid-way does not decide the result.
	var rs []int64
	for range 5 {
		rs = append(rs, mustProc(pid).RSS)
		if err := sleepCtx(ctx, 300*time.Millisecond); err != nil {
			return r, err
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i] < rs[j] })
	after := mustProc(pid)
	r.ServerRSSBefore = before.RSS
	r.ServerRSSAfter = rs[len(rs)/2]
	r.ServerRSSPeak = after.HWM
	r.ServerCPUSeconds = (after.CPU - before.CPU).Seconds()
	r.ServerThreads = after.Threads
	per := float64(r.ServerRSSAfter-r.ServerRSSBefore) / float64(r.Connected)
	r.IdleBytesPerConn = &per
	set.closeAll()
	r.collect(set.clients, cfg.latency, &histogram{}, nil)
	return r, nil
}

// waitSnapshots polls until every client has received an update: the
// snapshot of its topic's warm-up value, sent right after "subscribed".
func waitSnapshots(ctx context.Context, clients []*client, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		all := true
		for _, c := range clients {
			if c.got.Load() == 0 {
				all = false
				break
			}
		}
		if all {
			return true
		}
		if time.Now().After(deadline) || sleepCtx(ctx, 20*time.Millisecond) != nil {
			return false
		}
	}
}

// rssWatch samples a process's RSS to find its peak during a window
// (VmHWM covers the whole life of the process, not just the window).
type rssWatch struct {
	pid int
	max atomic.Int64
}

func newRSSWatch(pid int) *rssWatch { return &rssWatch{pid: pid} }

func (w *rssWatch) run(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if st, err := readProc(w.pid); err == nil && st.RSS > w.max.Load() {
			w.max.Store(st.RSS)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *rssWatch) peak() int64 { return w.max.Load() }

// mustProc reads the child's /proc entries; a failure (the child died) reads
// as zeros and shows up in the report as an exited server.
func mustProc(pid int) procStat {
	st, _ := readProc(pid)
	return st
}

// sleepCtx sleeps for d unless ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// scrapeMetrics reads the server's Prometheus counters (opsdash_* samples
// only). Missing or unreadable metrics give an empty map: they are extra
// context in the report, never the measurement itself.
func scrapeMetrics(addr string) map[string]float64 {
	out := map[string]float64{}
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + addr + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "opsdash_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// diffMetrics keeps the message, drop and close counters that changed
// during the window, as after − before.
func diffMetrics(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if !(strings.Contains(k, "message") || strings.Contains(k, "drop") || strings.Contains(k, "close")) {
			continue
		}
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// startWithTopics starts the server child, records its starting RSS in r
// and publishes one warm-up value (pub_seq 0) on every topic: it creates
// the topics, so clients get a snapshot and the measured publishes do not
// pay for topic creation. The caller stops the server.
func startWithTopics(ctx context.Context, o options, r *Report) (*server, *publisher, error) {
	srv, err := startServer(ctx, o.ServerBin, o.Token, o.ServerArgs)
	if err != nil {
		return nil, nil, err
	}
	o.logf("%s: server pid %d on %s; connecting %d clients", o.Scenario, srv.pid(), srv.addr, o.Clients)
	r.ServerRSSStart = mustProc(srv.pid()).RSS
	pub := newPublisher("http://"+srv.addr, o.Token, topicNames(o.Topics), o.PayloadBytes)
	if err := pub.warmUp(ctx); err != nil {
		r.noteServerExit(srv.stop())
		return nil, nil, fmt.Errorf("warm-up publish: %w", err)
	}
	return srv, pub, nil
}
