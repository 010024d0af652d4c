package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/opsdash/opsdash/cmd/opsdash/internal/termline"
	"github.com/opsdash/opsdash/stream"
	"github.com/opsdash/opsdash/stream/httpapi"
)

// Timing of the watch client. The heartbeat itself comes from the server's
// hello, so that client and server agree on what "silent too long" means.
const (
	// watchHandshakeTimeout bounds the TCP connect, TLS and HTTP upgrade.
	watchHandshakeTimeout = 10 * time.Second
	// watchHelloTimeout bounds the wait for hello after the upgrade.
	watchHelloTimeout = 10 * time.Second
	// watchDefaultHeartbeat is used when hello carries no heartbeat_ms:
	// the server's default.
	watchDefaultHeartbeat = httpapi.DefaultHeartbeat
	// watchBackoffBase is the first reconnect delay's upper bound; it
	// doubles per failed attempt up to --max-backoff.
	watchBackoffBase = 500 * time.Millisecond
	// watchReadLimit caps one frame from the server: proc.top is the
	// largest payload and stays far below this.
	watchReadLimit = 16 << 20
	// watchSubscribeID is the request id of the (re)subscription.
	watchSubscribeID = "watch-subscribe"
)

// watchConfig is what `opsdash watch` is told.
type watchConfig struct {
	Server     string
	JSON       bool
	AuthToken  string
	Width      int
	MaxBackoff time.Duration
	MaxHz      float64 // subscribe's max_hz; 0: every value
	Patterns   []string
}

// watchMain subscribes to PATTERN... on a server's /ws (protocol v1) and
// prints every update as it arrives until ctx ends, reconnecting with
// backoff when the connection drops. Exit codes: 0 when ctx ends, 1 when the
// server refuses the client for good (auth, bad URL path, refused
// subscription), 2 on bad usage.
func watchMain(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	var cfg watchConfig
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Server, "server", defaultServer, "the server's http(s) base URL")
	fs.BoolVar(&cfg.JSON, "json", false, "print each update (and status) frame as one JSON line, as received")
	fs.StringVar(&cfg.AuthToken, "auth-token", "", "token sent as Authorization: Bearer (when the server has --auth-token)")
	fs.IntVar(&cfg.Width, "width", 200, "cut readable lines to this many characters (0 = never)")
	fs.DurationVar(&cfg.MaxBackoff, "max-backoff", 30*time.Second, "longest wait between reconnection attempts")
	fs.Float64Var(&cfg.MaxHz, "max-hz", 0, "at most this many values per second per topic, the newest each time (0 = every value)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: opsdash watch [--server URL] [--json] PATTERN...\n\n"+
			"Subscribes to topics matching each PATTERN (web-1.cpu, *.mem, web-1.>) and prints\n"+
			"the snapshot, then every update. Flags may also follow the patterns.\n\n")
		fs.PrintDefaults()
	}
	if err := parseWithEnv(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "watch: %v\n", err)
		return 2
	}
	// flag stops at the first non-flag; keep parsing after each pattern so
	// that `opsdash watch web-1.cpu --json` works as people type it.
	for rest := fs.Args(); len(rest) > 0; rest = fs.Args() {
		cfg.Patterns = append(cfg.Patterns, rest[0])
		if err := fs.Parse(rest[1:]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
	}
	wsURL, err := cfg.validate()
	if err != nil {
		fmt.Fprintf(stderr, "watch: %v\n", err)
		if len(cfg.Patterns) == 0 {
			fs.Usage()
		}
		return 2
	}
	w := &watcher{
		cfg:    cfg,
		url:    wsURL,
		stdout: stdout,
		stderr: stderr,
		last:   map[string]uint64{},
		dialer: &websocket.Dialer{
			Proxy:            http.ProxyFromEnvironment,
			HandshakeTimeout: watchHandshakeTimeout,
		},
	}
	return w.run(ctx)
}

// validate checks the configuration before anything connects and returns
// the WebSocket URL to dial.
func (c *watchConfig) validate() (string, error) {
	var errs []error
	if len(c.Patterns) == 0 {
		errs = append(errs, errors.New("no PATTERN given (e.g. opsdash watch 'web-1.cpu' '*.mem')"))
	}
	for _, p := range c.Patterns {
		if _, err := stream.ParsePattern(p); err != nil {
			errs = append(errs, fmt.Errorf("pattern %q: %v", p, err))
		}
	}
	if c.Width < 0 {
		errs = append(errs, fmt.Errorf("--width must not be negative (got %d)", c.Width))
	}
	if c.MaxHz < 0 || math.IsInf(c.MaxHz, 0) || math.IsNaN(c.MaxHz) {
		errs = append(errs, fmt.Errorf("--max-hz must be a positive number, or 0 for every value (got %v)", c.MaxHz))
	}
	if c.MaxBackoff <= 0 {
		errs = append(errs, fmt.Errorf("--max-backoff must be positive (got %v)", c.MaxBackoff))
	}
	u, err := websocketURL(c.Server)
	if err != nil {
		errs = append(errs, fmt.Errorf("--server: %v", err))
	}
	return u, errors.Join(errs...)
}

// websocketURL turns the server's base URL (http://host:port, possibly with
// a path prefix when behind a proxy) into the URL of its /ws endpoint.
func websocketURL(server string) (string, error) {
	u, err := url.Parse(server)
	if err != nil {
		return "", fmt.Errorf("%v: want an http:// or https:// URL, e.g. http://127.0.0.1:8080", err)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	case "ws", "wss":
	default:
		return "", fmt.Errorf("%q: want an http:// or https:// URL, e.g. http://127.0.0.1:8080", server)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q: no host", server)
	}
	u.Path = strings.TrimRight(u.Path, "/") + "/ws"
	u.RawPath, u.RawQuery, u.Fragment, u.User = "", "", "", nil
	return u.String(), nil
}

// watcher is one `opsdash watch` run: its connection attempts and what it
// has printed so far.
type watcher struct {
	cfg    watchConfig
	url    string
	dialer *websocket.Dialer
	stdout io.Writer
	stderr io.Writer

	// instance is the server process start the seqs in last belong to.
	instance string
	// last is the seq of the newest update printed per topic: gaps in it
	// are reported, and a snapshot repeating it after a reconnect is not
	// printed twice.
	last map[string]uint64
	// sessions counts connections that got as far as a subscription.
	sessions int
}

// fatalError is a refusal that retrying cannot fix (a wrong token, a URL
// that is not an opsdash server, a refused subscription).
type fatalError struct{ err error }

func (e fatalError) Error() string { return e.err.Error() }
func (e fatalError) Unwrap() error { return e.err }

// run connects, and reconnects after every drop, until ctx ends.
func (w *watcher) run(ctx context.Context) int {
	attempt := 0
	for {
		subscribed, err := w.session(ctx)
		if ctx.Err() != nil {
			return 0
		}
		var fatal fatalError
		if errors.As(err, &fatal) {
			fmt.Fprintf(w.stderr, "watch: %v\n", err)
			return 1
		}
		if subscribed {
			// The server took us back: the next drop starts the
			// backoff afresh.
			attempt = 0
		}
		delay := backoff(attempt, watchBackoffBase, w.cfg.MaxBackoff, rand.Int64N)
		attempt++
		fmt.Fprintf(w.stderr, "watch: %v; reconnecting in %v\n", err, delay.Round(time.Millisecond))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0
		case <-t.C:
		}
	}
}

// backoff is the delay before reconnection attempt n (0-based): exponential
// with full jitter, a uniformly random duration in [0, min(max, base·2^n)],
// so that clients dropped together by a restart do not come back together.
// randN is rand.Int64N (a parameter for tests).
func backoff(n int, base, max time.Duration, randN func(int64) int64) time.Duration {
	ceil := max
	if n < 62 && base<<n > 0 && base<<n < max {
		ceil = base << n
	}
	return time.Duration(randN(int64(ceil) + 1))
}

// frame is any server frame of protocol v1, decoded.
type frame = stream.ServerMessage

// session runs one connection: dial, hello, subscribe, then print frames
// until the connection fails or ctx ends. subscribed reports whether the
// server accepted the subscription.
func (w *watcher) session(ctx context.Context) (subscribed bool, err error) {
	header := http.Header{}
	if w.cfg.AuthToken != "" {
		header.Set("Authorization", "Bearer "+w.cfg.AuthToken)
	}
	conn, resp, err := w.dialer.DialContext(ctx, w.url, header)
	if err != nil {
		return false, handshakeError(w.url, resp, err)
	}
	defer conn.Close()
	conn.SetReadLimit(watchReadLimit)
	// Ending ctx closes the connection politely, which also unblocks the
	// read below.
	stopClose := context.AfterFunc(ctx, func() {
		_ = conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		_ = conn.Close()
	})
	defer stopClose()

	_ = conn.SetReadDeadline(time.Now().Add(watchHelloTimeout))
	var hello frame
	raw, err := readText(conn)
	if err == nil {
		err = json.Unmarshal(raw, &hello)
	}
	if err != nil {
		return false, fmt.Errorf("waiting for hello: %w", err)
	}
	if hello.Type != "hello" {
		return false, fatalError{fmt.Errorf("%s: first frame is %q, not hello: not an opsdash server?", w.url, hello.Type)}
	}
	if hello.Protocol != 1 {
		return false, fatalError{fmt.Errorf("%s speaks protocol %d; this watch speaks protocol 1", w.url, hello.Protocol)}
	}
	heartbeat := time.Duration(hello.HeartbeatMS) * time.Millisecond
	if heartbeat <= 0 {
		heartbeat = watchDefaultHeartbeat
	}
	if w.instance != "" && hello.Instance != w.instance {
		fmt.Fprintf(w.stderr, "watch: the server restarted (instance %s): sequence numbers start over\n", hello.Instance)
		clear(w.last)
	}
	w.instance = hello.Instance

	sub, _ := json.Marshal(stream.Request{Type: stream.TypeSubscribe, ID: watchSubscribeID, Topics: w.cfg.Patterns, MaxHz: w.cfg.MaxHz})
	_ = conn.SetWriteDeadline(time.Now().Add(watchHandshakeTimeout))
	if err := conn.WriteMessage(websocket.TextMessage, sub); err != nil {
		return false, fmt.Errorf("subscribing: %w", err)
	}

	// Liveness: any frame, ping or pong pushes the deadline 2×heartbeat
	// out; a protocol ping every heartbeat makes the server answer even
	// when no topic changes.
	dead := 2 * heartbeat
	alive := func() { _ = conn.SetReadDeadline(time.Now().Add(dead)) }
	alive()
	conn.SetPingHandler(func(data string) error {
		alive()
		err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	conn.SetPongHandler(func(string) error { alive(); return nil })
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.ping(conn, heartbeat, done)
	}()
	// Closing the connection first unblocks a ping stuck in a write.
	defer func() { conn.Close(); close(done); wg.Wait() }()

	for {
		raw, err := readText(conn)
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				err = fmt.Errorf("no frame from the server for %v (2 × heartbeat): connection presumed dead", dead)
			}
			return subscribed, err
		}
		alive()
		var f frame
		if err := json.Unmarshal(raw, &f); err != nil {
			// A server bug, not a reason to drop a working connection.
			fmt.Fprintf(w.stderr, "watch: ignoring a frame that is not JSON (%v): %.200s\n", err, raw)
			continue
		}
		switch f.Type {
		case "subscribed":
			if f.ID != watchSubscribeID {
				continue
			}
			subscribed = true
			w.sessions++
			verb := "connected to"
			if w.sessions > 1 {
				verb = "reconnected to"
			}
			fmt.Fprintf(w.stderr, "watch: %s %s (host %s), subscribed to %s\n",
				verb, w.url, hello.Host, strings.Join(w.cfg.Patterns, " "))
		case "update":
			w.printUpdate(f, raw)
		case "status":
			w.printStatus(f, raw)
		case "error":
			if f.ID == watchSubscribeID && f.Code != "rate_limited" {
				return subscribed, fatalError{fmt.Errorf("the server refused the subscription: %s: %s", f.Code, f.Message)}
			}
			fmt.Fprintf(w.stderr, "watch: server error %s: %s\n", f.Code, f.Message)
			if f.ID == watchSubscribeID {
				return subscribed, fmt.Errorf("subscription %s: %s", f.Code, f.Message)
			}
		}
	}
}

// ping sends a protocol ping every heartbeat until done is closed or a
// write fails (the reader then notices the dead connection).
func (w *watcher) ping(conn *websocket.Conn, heartbeat time.Duration, done <-chan struct{}) {
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-done:
			return
		case <-t.C:
		}
		_ = conn.SetWriteDeadline(time.Now().Add(heartbeat))
		msg := `{"type":"ping","id":"watch-ping-` + strconv.Itoa(n) + `"}`
		if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			return
		}
	}
}

// readText reads the next text frame.
func readText(conn *websocket.Conn) ([]byte, error) {
	typ, msg, err := conn.ReadMessage()
	if err != nil {
		return nil, err
	}
	if typ != websocket.TextMessage {
		return nil, errors.New("unexpected binary frame from the server")
	}
	return msg, nil
}

// handshakeError explains a failed dial. A refusal no retry can change
// (401, 403, 404…) is fatal; 429 and 5xx (a draining or overloaded server)
// and network errors are retried.
func handshakeError(u string, resp *http.Response, err error) error {
	if resp == nil {
		return fmt.Errorf("cannot connect to %s: %w", u, err)
	}
	var body []byte
	if resp.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
	}
	msg := strings.TrimSpace(string(body))
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		msg = e.Error.Code + ": " + e.Error.Message
	}
	err = fmt.Errorf("%s refused the connection: %s %s", u, resp.Status, msg)
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return fatalError{fmt.Errorf("%w (set --auth-token or OPSDASH_AUTH_TOKEN)", err)}
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		return err
	case resp.StatusCode >= 400:
		return fatalError{err}
	}
	return err
}

// printUpdate prints one update, unless it repeats the last one printed
// for its topic (the snapshot after a reconnect to the same server).
func (w *watcher) printUpdate(f frame, raw []byte) {
	prev, seen := w.last[f.Topic]
	if seen && f.Seq == prev {
		return
	}
	w.last[f.Topic] = f.Seq
	if w.cfg.JSON {
		w.printJSON(raw)
		return
	}
	var b strings.Builder
	b.WriteString(time.UnixMilli(f.TS).Format("15:04:05.000"))
	b.WriteByte(' ')
	b.WriteString(f.Topic)
	b.WriteString(" #")
	b.WriteString(strconv.FormatUint(f.Seq, 10))
	// seq only grows on one server; a smaller one means the topic was
	// created anew (a published topic that expired), not a gap.
	if seen && f.Seq > prev+1 {
		fmt.Fprintf(&b, " (%d skipped)", f.Seq-prev-1)
	}
	b.WriteByte(' ')
	b.WriteString(termline.Render(f.Data))
	fmt.Fprintln(w.stdout, termline.Truncate(b.String(), w.cfg.Width))
}

// printStatus prints a topic's status change (pending, ok, failing, idle).
func (w *watcher) printStatus(f frame, raw []byte) {
	if w.cfg.JSON {
		w.printJSON(raw)
		return
	}
	line := time.Now().Format("15:04:05.000") + " " + f.Topic + " STATUS " + f.Status
	if f.Error != "" {
		line += ": " + f.Error
	}
	fmt.Fprintln(w.stdout, termline.Truncate(line, w.cfg.Width))
}

// printJSON prints a frame on one line (frames are compact already; this
// makes sure of it).
func (w *watcher) printJSON(raw []byte) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		buf.Reset()
		buf.Write(raw)
	}
	buf.WriteByte('\n')
	_, _ = w.stdout.Write(buf.Bytes())
}
