package fleete2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/opsdash/opsdash/stream"
)

// bin is the opsdash binary TestMain built.
var bin string

// budget bounds the whole package: CI must stay well inside its time.
const budget = 4 * time.Minute

var deadline time.Time

func TestMain(m *testing.M) {
	deadline = time.Now().Add(budget)
	dir, err := os.MkdirTemp("", "opsdash-fleet-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "opsdash")
	build := exec.Command("go", "build", "-o", bin, "github.com/opsdash/opsdash/cmd/opsdash")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building opsdash:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is one opsdash process.
type proc struct {
	name string
	args []string
	env  []string
	cmd  *exec.Cmd
	log  *syncBuf
	done chan struct{}
	err  error
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs opsdash with args; it is killed when the test ends, and its
// log printed when the test failed.
func start(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, args: args, env: env}
	p.run(t)
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("---- %s log:\n%s", p.name, tail(p.log.String(), 40))
		}
	})
	return p
}

func (p *proc) run(t *testing.T) {
	t.Helper()
	p.cmd = exec.Command(bin, p.args...)
	p.cmd.Env = append(append(os.Environ(), "OPSDASH_LOG_FORMAT=text"), p.env...)
	if p.log == nil {
		p.log = &syncBuf{}
	}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.done = make(chan struct{})
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
}

// restart runs the process again with the same arguments.
func (p *proc) restart(t *testing.T) { p.run(t) }

// kill ends the process with SIGKILL (kill -9) and waits for it.
func (p *proc) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// stop ends the process with SIGTERM (a clean shutdown) and waits.
func (p *proc) stop(t *testing.T) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not stop on SIGTERM", p.name)
	}
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// freeAddr is a loopback address nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// eventually polls cond every 50 ms until it holds or within passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	t0 := time.Now()
	end := t0.Add(within)
	if end.After(deadline) {
		end = deadline
	}
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(t0)
}

var httpc = &http.Client{Timeout: 5 * time.Second}

// get returns the status and body of GET url with the bearer token.
func get(url, token string) (int, string) {
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// topicState is GET /api/v1/topics/{topic}.
func topicState(base, token, topic string) stream.TopicState {
	var st stream.TopicState
	if code, body := get(base+"/api/v1/topics/"+topic, token); code == 200 {
		_ = json.Unmarshal([]byte(body), &st)
	}
	return st
}

// client is a program on the WebSocket protocol that fails over between
// replicas: on a lost connection it dials the next one, as a browser
// behind a load balancer would land on another replica.
type client struct {
	urls    []string
	token   string
	pattern []string

	mu        sync.Mutex
	instances []string          // hello instance of every connection, in order
	replicas  []string          // hello replica of every connection
	seqs      map[string]uint64 // newest seq per topic under the current instance
	backwards []string          // seq regressions seen under one instance
	snapshot  map[string]bool   // topics received since the last hello
	helloAt   time.Time
	conns     int
	lostAt    time.Time
	failover  []time.Duration // lost → full snapshot on the next replica
	want      int             // topics that make a full snapshot
	pending   bool            // lost, waiting for the next full snapshot
	stopped   bool
	ws        *websocket.Conn
}

func newClient(urls []string, token string, patterns ...string) *client {
	return &client{urls: urls, token: token, pattern: patterns, seqs: map[string]uint64{}, snapshot: map[string]bool{}}
}

// run keeps the client connected until ctx ends.
func (c *client) run(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		c.session(ctx, c.urls[i%len(c.urls)])
		c.mu.Lock()
		if !c.pending {
			c.pending, c.lostAt = true, time.Now()
		}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *client) session(ctx context.Context, base string) {
	h := http.Header{}
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
	d := websocket.Dialer{HandshakeTimeout: 2 * time.Second}
	ws, _, err := d.DialContext(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", h)
	if err != nil {
		return
	}
	defer ws.Close()
	stop := context.AfterFunc(ctx, func() { ws.Close() })
	defer stop()
	sub, _ := json.Marshal(map[string]any{"type": "subscribe", "id": "1", "topics": c.pattern})
	if err := ws.WriteMessage(websocket.TextMessage, sub); err != nil {
		return
	}
	for {
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var m stream.ServerMessage
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		c.onFrame(m)
	}
}

func (c *client) onFrame(m stream.ServerMessage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch m.Type {
	case "hello":
		if n := len(c.instances); n > 0 && c.instances[n-1] != m.Instance {
			c.seqs = map[string]uint64{} // a new epoch: seqs start over, as app.js does
		}
		c.instances = append(c.instances, m.Instance)
		c.replicas = append(c.replicas, m.Replica)
		c.snapshot = map[string]bool{}
		c.conns++
	case "update":
		if last, ok := c.seqs[m.Topic]; ok && m.Seq < last {
			c.backwards = append(c.backwards, fmt.Sprintf("%s %d after %d", m.Topic, m.Seq, last))
		}
		if m.Seq > c.seqs[m.Topic] {
			c.seqs[m.Topic] = m.Seq
		}
		c.snapshot[m.Topic] = true
		if c.pending && c.want > 0 && len(c.snapshot) >= c.want {
			c.pending = false
			c.failover = append(c.failover, time.Since(c.lostAt))
		}
	}
}

// state returns a copy of what the client saw.
func (c *client) state() (instances, replicas []string, seqs map[string]uint64, backwards []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seqs = make(map[string]uint64, len(c.seqs))
	for k, v := range c.seqs {
		seqs[k] = v
	}
	return append([]string(nil), c.instances...), append([]string(nil), c.replicas...), seqs, append([]string(nil), c.backwards...)
}
