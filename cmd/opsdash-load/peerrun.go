package main

import (
	"bytes"
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

	"github.com/fasthttp/websocket"
)

// peerClient is one subscriber of a peers run, whatever the server.
type peerClient struct {
	id   int
	conn *websocket.Conn
	last atomic.Uint64 // newest pub_seq received (0: none)
	got  atomic.Int64  // values received during the measured window
	any  atomic.Bool   // received anything (snapshot or value) since subscribing
	done atomic.Bool   // the read loop ended
	buf  []byte
}

// peerShared is what the clients and the publisher of one run share.
type peerShared struct {
	measuring atomic.Bool
	start     time.Time // the publisher's first tick: value k is due at start + (k-1)·period
	period    time.Duration
	latency   histogram
	fromDue   histogram
	pub       *peerPublisher
}

// dialPeer connects one client of server s and subscribes it.
func dialPeer(ctx context.Context, s *peerServer, d *websocket.Dialer, id int) (*peerClient, error) {
	path := "/ws"
	switch s.kind.name {
	case "centrifugo":
		path = "/connection/websocket"
	case "node":
		path = "/"
	}
	conn, _, err := d.DialContext(ctx, "ws://"+s.addr+path, nil)
	if err != nil {
		return nil, err
	}
	c := &peerClient{id: id, conn: conn, buf: make([]byte, 0, 512)}
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	fail := func(err error) (*peerClient, error) { conn.Close(); return nil, err }
	switch s.kind.name {
	case "opsdash":
		if _, err := c.read(); err != nil { // hello
			return fail(err)
		}
		if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","id":"1","topics":["bench.t0"]}`)); err != nil {
			return fail(err)
		}
		if err := c.readUntil(`"type":"subscribed"`); err != nil {
			return fail(err)
		}
	case "centrifugo":
		if err := conn.WriteMessage(websocket.TextMessage, []byte("{\"id\":1,\"connect\":{}}\n{\"id\":2,\"subscribe\":{\"channel\":\"bench\"}}")); err != nil {
			return fail(err)
		}
		if err := c.readUntil(`"id":2`); err != nil {
			return fail(err)
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
	return c, nil
}

// read reads one message into c.buf, reusing it across messages.
func (c *peerClient) read() ([]byte, error) {
	b, err := readMessage(c.conn, c.buf)
	if err != nil {
		return nil, err
	}
	c.buf = b
	return b, nil
}

// readUntil reads frames until one holds key; an error frame fails.
func (c *peerClient) readUntil(key string) error {
	for {
		b, err := c.read()
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(key)) {
			return nil
		}
		if bytes.Contains(b, []byte(`"error"`)) {
			return fmt.Errorf("refused: %.200s", b)
		}
	}
}

// readLoop reads until the connection ends. A frame may hold several
// messages, one per line (Centrifugo's JSON protocol); an empty object is
// Centrifugo's ping, answered with one.
func (c *peerClient) readLoop(sh *peerShared) {
	defer c.done.Store(true)
	for {
		b, err := c.read()
		if err != nil {
			return
		}
		now := time.Now()
		for len(b) > 0 {
			msg := b
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				msg, b = b[:i], b[i+1:]
			} else {
				b = nil
			}
			if len(msg) == 2 && msg[0] == '{' && msg[1] == '}' {
				_ = c.conn.WriteMessage(websocket.TextMessage, []byte("{}"))
				continue
			}
			c.handle(sh, msg, now)
		}
	}
}

// handle accounts for one message received at now.
func (c *peerClient) handle(sh *peerShared, msg []byte, now time.Time) {
	var seq uint64
	var sent uint64
	var ok1, ok2 bool
	if i := bytes.Index(msg, keySent); i >= 0 {
		sent, ok1 = leadingUint(msg[i+len(keySent):])
	}
	if i := bytes.Index(msg, keyPubSeq); i >= 0 {
		seq, ok2 = leadingUint(msg[i+len(keyPubSeq):])
	}
	c.any.Store(true)
	if !ok1 || !ok2 {
		return
	}
	if seq > c.last.Load() {
		c.last.Store(seq)
	}
	if seq >= 1 && sh.measuring.Load() {
		c.got.Add(1)
		sh.latency.RecordAt(c.id, now.UnixNano()-int64(sent))
		due := sh.start.Add(time.Duration(seq-1) * sh.period)
		sh.fromDue.RecordAt(c.id, int64(now.Sub(due)))
	}
}

// dialPeers connects n clients, parallel handshakes at a time, and starts
// their read loops.
func dialPeers(ctx context.Context, s *peerServer, sh *peerShared, n, parallel int) ([]*peerClient, *sync.WaitGroup, error) {
	d := newDialer(sourceAddrs((n+9999)/10000), 0)
	var readers sync.WaitGroup
	clients, failed, err := dialParallel(ctx, n, parallel,
		func(i int) (*peerClient, error) { return dialPeer(ctx, s, d, i) },
		func(c *peerClient) {
			readers.Add(1)
			go func() { defer readers.Done(); c.readLoop(sh) }()
		})
	if failed > 0 {
		err = fmt.Errorf("%d of %d clients failed to connect, first error: %v", failed, n, err)
	}
	return clients, &readers, err
}

// peerPublisher publishes one topic through a server's HTTP API.
type peerPublisher struct {
	kind    string
	url     string
	padding string
	client  *http.Client

	sendLog                 // when each pub_seq's request started
	completed atomic.Uint64 // newest pub_seq the server accepted
	posts     atomic.Int64
	postNanos atomic.Int64
	errors    atomic.Int64
	lastErr   atomic.Value
	// report, when set (the publisher process), is told of each request
	// (peerpub.go).
	report func(line string)
}

func newPeerPublisher(s *peerServer, payload int) *peerPublisher {
	p := &peerPublisher{kind: s.kind.name, padding: strings.Repeat("x", max(payload-64, 0)), sendLog: sendLog{sent: make([]int64, 1, 4096)},
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2, DisableCompression: true}}}
	switch s.kind.name {
	case "opsdash":
		p.url = "http://" + s.addr + "/api/v1/publish"
	case "centrifugo":
		p.url = "http://" + s.addr + "/api/publish"
	case "node":
		p.url = "http://" + s.addr + "/publish"
	}
	return p
}

// publish sends pub_seq seq.
func (p *peerPublisher) publish(ctx context.Context, seq uint64) error {
	now := time.Now()
	p.record(seq, now.UnixNano())
	if p.report != nil {
		p.report("S " + strconv.FormatUint(seq, 10) + " " + strconv.FormatInt(now.UnixNano(), 10))
	}
	data := `{"sent_unix_ns":` + strconv.FormatInt(now.UnixNano(), 10) + `,"pub_seq":` + strconv.FormatUint(seq, 10) + `,"pad":"` + p.padding + `"}`
	var body string
	switch p.kind {
	case "opsdash":
		body = `{"topic":"bench.t0","data":` + data + `}`
	case "centrifugo":
		body = `{"channel":"bench","data":` + data + `}`
	default:
		body = data
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+peerToken)
	req.Header.Set("X-API-Key", peerToken)
	resp, err := p.client.Do(req)
	p.posts.Add(1)
	p.postNanos.Add(int64(time.Since(now)))
	if err != nil {
		if ctx.Err() == nil {
			p.fail(seq, err.Error())
		}
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 || bytes.Contains(msg, []byte(`"error"`)) {
		err := fmt.Errorf("publish: %s: %s", resp.Status, bytes.TrimSpace(msg))
		p.fail(seq, err.Error())
		return err
	}
	p.completed.Store(seq)
	if p.report != nil {
		p.report("C " + strconv.FormatUint(seq, 10) + " " + strconv.FormatInt(int64(time.Since(now)), 10))
	}
	return nil
}

func (p *peerPublisher) fail(seq uint64, msg string) {
	p.errors.Add(1)
	p.lastErr.Store(msg)
	if p.report != nil {
		p.report("E " + strconv.FormatUint(seq, 10) + " " + strings.ReplaceAll(msg, "\n", " "))
	}
}

// run publishes at rate for d from start, one request in flight.
func (p *peerPublisher) run(ctx context.Context, start time.Time, period, d time.Duration) uint64 {
	tick := time.NewTicker(period)
	defer tick.Stop()
	end := start.Add(d)
	var n uint64
	for seq := uint64(1); ; seq++ {
		if p.publish(ctx, seq) == nil {
			n++
		}
		select {
		case <-ctx.Done():
			return n
		case now := <-tick.C:
			if !now.Before(end) {
				return n
			}
		}
	}
}

// startPeerRun starts a fresh server of kind k and publishes the warm-up
// value (pub_seq 0), which creates the topic (opsdash) and checks the
// publish API. The caller stops the server.
func startPeerRun(ctx context.Context, o peersOptions, k *peerKind, period time.Duration) (*peerServer, *peerShared, error) {
	srv, err := k.start(ctx, o.ServerCPU)
	if err != nil {
		return nil, nil, fmt.Errorf("start: %w", err)
	}
	sh := &peerShared{period: period, pub: newPeerPublisher(srv, o.PayloadBytes)}
	if err := sh.pub.publish(ctx, 0); err != nil {
		srv.stop()
		return nil, nil, fmt.Errorf("warm-up publish: %w", err)
	}
	return srv, sh, nil
}

// connect dials n clients, notes in r how many connected and any failure,
// and returns them with the function that closes them all.
func (r *PeerRun) connect(ctx context.Context, o peersOptions, srv *peerServer, sh *peerShared, n int) ([]*peerClient, func()) {
	clients, readers, err := dialPeers(ctx, srv, sh, n, o.DialParallel)
	if err != nil {
		r.Errors = append(r.Errors, err.Error())
	}
	r.Connected = len(clients)
	if len(clients) == 0 {
		r.Errors = append(r.Errors, "no client connected")
	}
	return clients, func() {
		for _, c := range clients {
			c.conn.Close()
		}
		readers.Wait()
	}
}

// runPeerTraffic is one traffic run of server kind k with n clients.
func runPeerTraffic(ctx context.Context, o peersOptions, k *peerKind, n int) PeerRun {
	r := PeerRun{Server: k.name, Clients: n, Kind: "traffic", TargetHz: o.Rate}
	fail := func(format string, args ...any) PeerRun {
		r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
		return r
	}
	srv, sh, err := startPeerRun(ctx, o, k, time.Duration(float64(time.Second)/o.Rate))
	if err != nil {
		return fail("%v", err)
	}
	defer srv.stop()
	clients, closeAll := r.connect(ctx, o, srv, sh, n)
	defer closeAll()
	if len(clients) == 0 {
		return r
	}
	if sleepCtx(ctx, o.Settle) != nil {
		return r
	}
	pid := srv.pid()
	before := mustProc(pid)
	selfBefore, busyBefore := selfCPU(), machineBusy()
	r.LoadAvgStart = loadAvg()
	fresh := &histogram{}
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { defer bg.Done(); samplePeerFreshness(sampleCtx, sh.pub, clients, fresh) }()

	sh.start = time.Now() // the child's first tick is a few ms later: from-due latencies include that
	sh.measuring.Store(true)
	r.Published, err = sh.pub.runExternal(ctx, srv, o.Rate, o.Duration, o.PayloadBytes)
	if err != nil {
		r.Errors = append(r.Errors, "publisher: "+err.Error())
	}
	elapsed := time.Since(sh.start)
	final := sh.pub.completed.Load()
	stopAt := time.Now()
	for _, c := range clients {
		if sent := sh.pub.at(c.last.Load() + 1); c.last.Load() < final && sent != 0 && stopAt.UnixNano()-sent > int64(5*time.Second) {
			r.Stale++
		}
	}
	deadline := time.Now().Add(o.DrainWait)
	for time.Now().Before(deadline) {
		all := true
		for _, c := range clients {
			if c.last.Load() < final && !c.done.Load() {
				all = false
				break
			}
		}
		if all {
			r.CaughtUp = true
			break
		}
		if sleepCtx(ctx, 20*time.Millisecond) != nil {
			break
		}
	}

	sh.measuring.Store(false)
	stopSampling()
	bg.Wait()
	after := mustProc(pid)

	r.AchievedHz = float64(r.Published) / elapsed.Seconds()
	r.PostMeanMS = float64(sh.pub.postNanos.Load()) / float64(max(sh.pub.posts.Load(), 1)) / 1e6
	r.ServerCPUSeconds = (after.CPU - before.CPU).Seconds()
	r.ToolCPUSeconds = (selfCPU() - selfBefore).Seconds()
	r.OtherCPUSeconds = max(0, (machineBusy()-busyBefore).Seconds()-r.ToolCPUSeconds-r.ServerCPUSeconds)
	r.WriteSyscalls = after.WriteSyscalls - before.WriteSyscalls
	r.RSSBefore, r.RSSAfter = before.RSS, after.RSS
	r.MinPerClient = -1
	for _, c := range clients {
		got := c.got.Load()
		r.Delivered += got
		if r.MinPerClient < 0 || got < r.MinPerClient {
			r.MinPerClient = got
		}
		if c.done.Load() {
			r.Disconnected++
		}
	}
	if r.Published > 0 {
		r.DeliveredPct = float64(r.Delivered) / float64(r.Published*uint64(len(clients))) * 100
	}
	if r.Delivered > 0 {
		r.CPUPerMsgUS = r.ServerCPUSeconds / float64(r.Delivered) * 1e6
	}
	if r.WriteSyscalls > 0 {
		r.MsgsPerWrite = float64(r.Delivered) / float64(r.WriteSyscalls)
	}
	r.Latency, r.FromDue, r.Freshness = sh.latency.Summary(), sh.fromDue.Summary(), fresh.Summary()
	if e, _ := sh.pub.lastErr.Load().(string); e != "" {
		r.Errors = append(r.Errors, fmt.Sprintf("%d publishes failed, last: %s", sh.pub.errors.Load(), e))
	}
	if !srv.alive() {
		r.Errors = append(r.Errors, "the server exited during the run:\n"+srv.log.String())
	}
	return r
}

// samplePeerFreshness records, about every 100 ms (jittered), the age of
// each client's newest value: 0 when it holds the newest published one,
// else the time since the first value it lacks was published.
func samplePeerFreshness(ctx context.Context, pub *peerPublisher, clients []*peerClient, h *histogram) {
	const period = 100 * time.Millisecond
	for sleepCtx(ctx, period/2+rand.N(period)) == nil {
		newest := pub.latest.Load()
		if newest == 0 {
			continue
		}
		now := time.Now().UnixNano()
		for _, c := range clients {
			got := c.last.Load()
			if got >= newest {
				h.Record(0)
			} else if sent := pub.at(got + 1); sent != 0 {
				h.Record(now - sent)
			}
		}
	}
}

// runPeerIdle measures memory per idle subscribed connection of server k.
func runPeerIdle(ctx context.Context, o peersOptions, k *peerKind, n int) PeerRun {
	r := PeerRun{Server: k.name, Clients: n, Kind: "idle"}
	fail := func(format string, args ...any) PeerRun {
		r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
		return r
	}
	srv, sh, err := startPeerRun(ctx, o, k, time.Second)
	if err != nil {
		return fail("%v", err)
	}
	defer srv.stop()
	if sleepCtx(ctx, 3*time.Second) != nil { // start-up garbage settles
		return r
	}
	pid := srv.pid()
	before := mustProc(pid)
	clients, closeAll := r.connect(ctx, o, srv, sh, n)
	defer closeAll()
	if len(clients) == 0 {
		return r
	}
	if sleepCtx(ctx, 3*time.Second) != nil {
		return r
	}
	var rs []int64
	for range 5 {
		rs = append(rs, mustProc(pid).RSS)
		if sleepCtx(ctx, 300*time.Millisecond) != nil {
			return r
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i] < rs[j] })
	r.RSSBefore, r.RSSAfter = before.RSS, rs[len(rs)/2]
	r.IdleBytesPerConn = float64(r.RSSAfter-r.RSSBefore) / float64(r.Connected)
	if !srv.alive() {
		r.Errors = append(r.Errors, errors.New("the server exited during the run").Error())
	}
	return r
}
