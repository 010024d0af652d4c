package fleet

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testHub is an embedded server in dir on listen ("127.0.0.1:0" picks a
// port; give the same address again to restart it in place).
func testHub(t *testing.T, dir, listen string) *Server {
	t.Helper()
	s, err := StartServer(ServerConfig{Listen: listen, DataDir: dir, Logger: quiet})
	if err != nil {
		t.Fatalf("StartServer: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// connect opens a TCP connection to s with creds, closed at cleanup.
func connect(t *testing.T, url string, creds Credentials, inbox string, state func(bool)) *nats.Conn {
	t.Helper()
	nc, err := Connect(ConnConfig{URLs: []string{url}, Credentials: creds, InboxPrefix: inbox, OnState: state, Logger: quiet, Name: t.Name()})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// testAgent is a started agent of host on s (its own credentials), run
// until the test ends.
func testAgent(t *testing.T, s *Server, host string) *Agent {
	t.Helper()
	a, err := DialAgent(ConnConfig{URLs: []string{s.ClientURL()}, Credentials: s.Secret().Agent(host), Logger: quiet, Name: host},
		AgentConfig{Host: host, Version: "test", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatalf("agent %s: Start: %v", host, err)
	}
	run(t, a.Run)
	return a
}

// run runs f until the test ends, and waits for it.
func run(t *testing.T, f func(context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { f(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// testReplica is a replica named name on url with a registry of its own.
func testReplica(t *testing.T, url string, creds Credentials, name string) (*Replica, *stream.Registry) {
	t.Helper()
	reg := stream.NewRegistry(stream.RegistryConfig{Replica: name, Logger: quiet})
	r := NewReplica(ReplicaConfig{Registry: reg, Name: name, SessionTTL: time.Hour, Logger: quiet})
	nc := connect(t, url, creds, "", r.ConnState)
	run(t, func(ctx context.Context) { _ = r.Run(ctx, nc) })
	return r, reg
}

// sample publishes one value of topic through a.
func sample(a *Agent, topic string, v float64) {
	a.Publish(collectors.Sample{Topic: topic, Time: time.Now(), Data: map[string]float64{"usage_pct": v}})
}

// waitFor polls cond until it holds or 15 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// seqOf is topic's seq in reg (0 if absent).
func seqOf(reg *stream.Registry, topic string) uint64 {
	st, _ := reg.Topic(topic, 0)
	return st.Seq
}

// freePort returns a loopback address nobody listens on (for a server
// that must restart on the same address).
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// wsConn is a stream.Conn that records frames, for sessions in tests.
type wsConn struct {
	mu     sync.Mutex
	frames []string
	code   int
}

func (c *wsConn) WriteFrames(fs []stream.Frame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range fs {
		c.frames = append(c.frames, string(f.JSON))
	}
	return nil
}

func (c *wsConn) Close(code int, reason string) error {
	c.mu.Lock()
	c.code = code
	c.mu.Unlock()
	return nil
}

func (c *wsConn) closedWith() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code
}
