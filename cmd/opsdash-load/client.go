package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fasthttp/websocket"
	"golang.org/x/sys/unix"
)

// client is one WebSocket subscriber. Its read loop is the only writer of
// its fields except last, which the freshness sampler reads concurrently.
type client struct {
	id   int
	conn *websocket.Conn
	slow bool // stops reading after subscribing, until resumed

	// last[t] is the newest pub_seq received on topic t (0: none yet).
	last []atomic.Uint64
	// got counts every update frame, snapshots included.
	got atomic.Int64

	// Read-loop counters, read by others only after the loop has ended.
	updates    int64    // measured updates received (pub_seq ≥ 1)
	gaps       int64    // pub_seqs skipped between consecutive updates of a topic
	regress    int64    // updates whose server seq did not rise (protocol breach)
	errFrames  int64    // "error" frames
	otherTypes int64    // frames that are neither updates nor expected replies
	closeCode  int      // close code the server sent, 0 if none / we closed
	readErr    error    // what ended the loop (a closed-connection error when we closed it)
	seq        []uint64 // last server seq per topic

	buf []byte
}

// clientConfig is what every client of a run shares.
type clientConfig struct {
	url      string // ws://127.0.0.1:port/ws
	prefix   []byte // topic name before the index: "bench.t"
	topics   int
	latency  *histogram // publish-to-receive, measured updates only
	measured *atomic.Bool
	dialer   *websocket.Dialer
	// slowDialer dials the clients that stop reading (small SO_RCVBUF).
	slowDialer *websocket.Dialer
}

// sourceAddrs returns n loopback source addresses 127.0.0.1..127.0.0.n.
func sourceAddrs(n int) []*net.TCPAddr {
	addrs := make([]*net.TCPAddr, n)
	for i := range addrs {
		addrs[i] = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(i+1))}
	}
	return addrs
}

// newDialer returns a WebSocket dialer whose TCP connections come from src
// (chosen round-robin per dial, so more than ~28,000 clients fit in the
// ephemeral port range) and, when rcvbuf > 0, have SO_RCVBUF set before
// connecting (the window is negotiated at the handshake, so it must be set
// before, not after).
func newDialer(src []*net.TCPAddr, rcvbuf int) *websocket.Dialer {
	var next atomic.Uint64
	control := func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			// Pick the port at connect() rather than bind(), so each source
			// address offers its whole ephemeral range per destination.
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
			if serr == nil && rcvbuf > 0 {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
			}
		})
		return errors.Join(err, serr)
	}
	return &websocket.Dialer{
		HandshakeTimeout: 15 * time.Second,
		// Frames are a few hundred bytes; small buffers keep 10,000 clients cheap.
		ReadBufferSize:  4096,
		WriteBufferSize: 512,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: 10 * time.Second, Control: control}
			if len(src) > 0 {
				d.LocalAddr = src[next.Add(1)%uint64(len(src))]
			}
			return d.DialContext(ctx, network, addr)
		},
	}
}

// connect dials, checks the hello frame and subscribes to patterns, reading
// until the "subscribed" reply. Snapshot updates that follow are left for
// the read loop.
func connect(ctx context.Context, cfg *clientConfig, id int, patterns []string, slow bool) (*client, error) {
	d := cfg.dialer
	if slow && cfg.slowDialer != nil {
		d = cfg.slowDialer
	}
	conn, resp, err := d.DialContext(ctx, cfg.url, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial: %w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	c := &client{id: id, conn: conn, slow: slow, last: make([]atomic.Uint64, cfg.topics), seq: make([]uint64, cfg.topics),
		buf: make([]byte, 0, 512)}
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	frame, err := c.readFrame()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("read hello: %w", err)
	}
	if frameType(frame) != "hello" {
		conn.Close()
		return nil, fmt.Errorf("first frame is not hello: %.200s", frame)
	}
	req := `{"type":"subscribe","id":"s` + strconv.Itoa(id) + `","topics":[`
	for i, p := range patterns {
		if i > 0 {
			req += ","
		}
		req += strconv.Quote(p)
	}
	req += "]}"
	if err := conn.WriteMessage(websocket.TextMessage, []byte(req)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("send subscribe: %w", err)
	}
	for {
		frame, err := c.readFrame()
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("wait for subscribed: %w", err)
		}
		switch frameType(frame) {
		case "subscribed":
			_ = conn.SetReadDeadline(time.Time{})
			return c, nil
		case "error":
			conn.Close()
			return nil, fmt.Errorf("subscribe refused: %.200s", frame)
		}
		// Anything else before the reply (a status frame) is ignored.
	}
}

// readFrame reads one message into c.buf, reusing it across messages.
func (c *client) readFrame() ([]byte, error) {
	b, err := readMessage(c.conn, c.buf)
	if err != nil {
		return nil, err
	}
	c.buf = b
	return b, nil
}

// readMessage reads one message of conn into buf's space (growing it when
// needed) and returns it: a reader of thousands of frames a second
// allocates nothing per frame.
func readMessage(conn *websocket.Conn, buf []byte) ([]byte, error) {
	_, r, err := conn.NextReader()
	if err != nil {
		return nil, err
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// handle accounts for one received frame at receive time nowNS and returns
// the parsed update (isUpdate false for other frames).
func (c *client) handle(cfg *clientConfig, frame []byte, nowNS int64) update {
	u := scanFrame(frame, cfg.prefix)
	if !u.isUpdate {
		switch frameType(frame) {
		case "error":
			c.errFrames++
		case "pong", "subscribed", "unsubscribed", "status", "topics":
		default:
			c.otherTypes++
		}
		return u
	}
	c.got.Add(1)
	if u.topic < 0 || u.topic >= len(c.last) {
		return u
	}
	if u.seq <= c.seq[u.topic] && c.seq[u.topic] != 0 {
		c.regress++
	}
	c.seq[u.topic] = u.seq
	if !u.hasPub {
		return u
	}
	prev := c.last[u.topic].Load()
	if u.pubSeq > prev {
		if prev > 0 && u.pubSeq > prev+1 {
			c.gaps += int64(u.pubSeq - prev - 1)
		}
		c.last[u.topic].Store(u.pubSeq)
	}
	if u.pubSeq >= 1 && cfg.measured.Load() {
		c.updates++
		cfg.latency.RecordAt(c.id, nowNS-u.sentNS)
	}
	return u
}

// readLoop reads and accounts for frames until the connection ends.
func (c *client) readLoop(cfg *clientConfig) {
	for {
		frame, err := c.readFrame()
		if err != nil {
			c.noteEnd(err)
			return
		}
		c.handle(cfg, frame, time.Now().UnixNano())
	}
}

// noteEnd records why the read loop ended.
func (c *client) noteEnd(err error) {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		c.closeCode = ce.Code
	}
	c.readErr = err
}

// clientSet is every client of a run, with the goroutines reading them.
type clientSet struct {
	cfg     *clientConfig
	clients []*client
	wg      sync.WaitGroup
}

// dialAll connects n clients with at most parallel handshakes in flight,
// retrying each up to three times. patterns(i) gives client i's patterns,
// slow(i) whether it stops reading after subscribing. Readers start at once.
func dialAll(ctx context.Context, cfg *clientConfig, n, parallel int, patterns func(int) []string, slow func(int) bool) (*clientSet, int, error) {
	set := &clientSet{cfg: cfg}
	clients, failed, err := dialParallel(ctx, n, parallel,
		func(i int) (*client, error) { return connect(ctx, cfg, i, patterns(i), slow(i)) },
		func(c *client) {
			if !c.slow {
				set.wg.Add(1)
				go func() { defer set.wg.Done(); c.readLoop(cfg) }()
			}
		})
	set.clients = clients
	return set, failed, err
}

// dialParallel makes n connections with dial, at most parallel handshakes
// in flight, each tried up to three times with a growing pause between
// tries (cut short when ctx ends). started is called with each connection
// that came up (to start its reader). It returns the connections that
// came up, in order of i, how many did not, and the first failure.
func dialParallel[C any](ctx context.Context, n, parallel int, dial func(i int) (C, error), started func(C)) ([]C, int, error) {
	conns := make([]C, n)
	up := make([]bool, n)
	var failed atomic.Int64
	var firstErr atomic.Value
	jobs := make(chan int)
	var dialers sync.WaitGroup
	for range parallel {
		dialers.Add(1)
		go func() {
			defer dialers.Done()
			for i := range jobs {
				var c C
				var err error
				for attempt := range 3 {
					if attempt > 0 {
						select {
						case <-ctx.Done():
						case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
						}
					}
					if ctx.Err() != nil {
						err = ctx.Err()
						break
					}
					if c, err = dial(i); err == nil {
						break
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				conns[i], up[i] = c, true
				started(c)
			}
		}()
	}
	for i := range n {
		select {
		case jobs <- i:
		case <-ctx.Done():
		}
	}
	close(jobs)
	dialers.Wait()
	// Keep only the connections that came up, in order.
	ok := conns[:0]
	for i, c := range conns {
		if up[i] {
			ok = append(ok, c)
		}
	}
	var err error
	if s, _ := firstErr.Load().(string); s != "" {
		err = errors.New(s)
	}
	return ok, int(failed.Load()), err
}

// closeAll closes every connection and waits for the read loops.
func (s *clientSet) closeAll() {
	for _, c := range s.clients {
		_ = c.conn.Close()
	}
	s.wg.Wait()
}

// readers returns the clients that read all along.
func (s *clientSet) readers() []*client {
	var out []*client
	for _, c := range s.clients {
		if !c.slow {
			out = append(out, c)
		}
	}
	return out
}
