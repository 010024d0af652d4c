package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

func TestOpenConnsCap(t *testing.T) {
	for _, tt := range []struct {
		want    int
		limit   uint64
		got     int
		lowered bool
	}{
		{12000, 0, 12000, false},       // limit unknown: the flag as it is
		{12000, 1 << 20, 12000, false}, // room enough
		{12000, 256, 128, true},        // 256 less 64 for files and 64 (a quarter) for the culprit sampler
		{12000, 4096, 2560, true},      // 4096 less an eighth and a quarter
		{12000, 1 << 16, 12000, false}, // 65536 less 8192 and the sampler's most, 4096
		{100, 256, 100, false},
		{0, 256, -1, false}, // 0 = off, whatever the limit (stream.NoLimit)
	} {
		got, lowered := openConnsCap(tt.want, tt.limit)
		if got != tt.got || lowered != tt.lowered {
			t.Errorf("openConnsCap(%d, %d) = %d, %v, want %d, %v", tt.want, tt.limit, got, lowered, tt.got, tt.lowered)
		}
	}
}

// buildBinary builds opsdash (static, as the image's) into a temporary
// directory and returns its path; the build cache makes the second build
// of a test run quick.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "opsdash")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// fdLimitedServer builds the binary and runs it with a hard descriptor
// limit of 256 (the limit Go raises the soft one to), as `ulimit -n 256;
// exec opsdash serve …` would: the way to run out of descriptors without
// opening tens of thousands of sockets.
func fdLimitedServer(t *testing.T, args ...string) *process {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	bin := buildBinary(t)
	argv := append([]string{"-c", `ulimit -n 256 && exec "$0" serve "$@"`, bin,
		"--listen", "127.0.0.1:0", "--log-format", "json", "--host-id", "fdtest", "--max-conns-per-ip", "0"}, args...)
	cmd := exec.Command("/bin/sh", argv...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	return startProcess(t, cmd)
}

// idleConns opens n connections to addr that never send a byte.
func idleConns(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		// The kernel completes the handshake from its backlog even while
		// the server does not accept, so the dial itself succeeds.
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns)+1, err)
		}
		conns = append(conns, c)
	}
	return conns
}

// alive fails the test when the process has exited.
func (p *process) alive(t *testing.T) {
	t.Helper()
	select {
	case err := <-p.waited:
		p.waited <- err
		t.Fatalf("the server exited (%v):\n%s", err, p.logs.String())
	default:
	}
}

// pingPong sends a protocol ping on ws and waits for its pong.
func pingPong(t *testing.T, ws *websocket.Conn, id string) {
	t.Helper()
	if err := ws.WriteJSON(map[string]string{"type": "ping", "id": id}); err != nil {
		t.Fatalf("ping %s: %v", id, err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		var f struct{ Type, ID string }
		if err := ws.ReadJSON(&f); err != nil {
			t.Fatalf("waiting for pong %s: %v", id, err)
		}
		if f.Type == "pong" && f.ID == id {
			return
		}
	}
}

// logCount counts the log lines whose msg is msg.
func logCount(logs string, msg string) int {
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		var rec struct{ Msg string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == msg {
			n++
		}
	}
	return n
}

// TestConnectionCapKeepsDescriptors (finding 1): 400 connections that
// never send a byte against a server limited to 256 descriptors. The
// connection cap (256 less the reserves for files and the culprit sampler) keeps the process from ever running
// out: it keeps serving its subscriber, times the idle connections out at
// the first-byte deadline, and accepts the waiting ones and new requests
// as they go. Before, the process exited (EMFILE) and idle connections
// were never timed out.
func TestConnectionCapKeepsDescriptors(t *testing.T) {
	p := fdLimitedServer(t, "--handshake-timeout", "2s")
	base := "http://" + p.addr
	if !strings.Contains(p.logs.String(), `"max_open_conns":128,"fd_limit":256`) {
		t.Errorf("the cap was not fitted to the descriptor limit:\n%s", p.logs.String())
	}
	ws := subscribeWS(t, base, "fdtest.cpu")

	idle := idleConns(t, p.addr, 400)
	p.alive(t)
	pingPong(t, ws, "during")
	// The server closes what never sent a byte (the first connections were
	// accepted at once; others wait for a slot, then get their deadline).
	_ = idle[0].SetReadDeadline(time.Now().Add(15 * time.Second))
	if n, err := idle[0].Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("an idle connection was not closed by the server: %d, %v", n, err)
	}
	// A new request is served once the idle ones have timed out.
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(base + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz after the flood: %v", err)
	}
	resp.Body.Close()
	p.alive(t)
	fams := mustScrape(t, base)
	if v := value(fams, "opsdash_accept_errors_total"); v != 0 {
		t.Errorf("%v failed accepts: the cap should keep the process off its limit", v)
	}
	if v := value(fams, "opsdash_accept_cap_waits_total"); v < 1 {
		t.Error("the cap was never reached")
	}
	if n := logCount(p.logs.String(), "connection cap reached: new connections wait until open ones close"); n != 1 {
		t.Errorf("the cap was logged %d times, want once (a minute)", n)
	}
	pingPong(t, ws, "after")
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t, 15*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}

// TestAcceptErrorsAreSurvived (finding 1): with the cap turned off, the
// same flood uses up the descriptors and accept fails with EMFILE. The
// server backs off and keeps serving its subscriber, counts and logs the
// errors once per burst, and accepts again when descriptors come back.
func TestAcceptErrorsAreSurvived(t *testing.T) {
	p := fdLimitedServer(t, "--max-open-conns", "0", "--handshake-timeout", "1m")
	base := "http://" + p.addr
	ws := subscribeWS(t, base, "fdtest.cpu")

	idle := idleConns(t, p.addr, 400)
	eventually(t, "accept to fail", func() bool {
		return logCount(p.logs.String(), "accepting connections failed; backing off and retrying while open ones close") >= 1
	})
	p.alive(t)
	pingPong(t, ws, "during")
	for _, c := range idle {
		c.Close()
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(base + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz once the descriptors are back: %v", err)
	}
	resp.Body.Close()
	p.alive(t)
	if v := value(mustScrape(t, base), "opsdash_accept_errors_total"); v < 1 {
		t.Error("no failed accept counted")
	}
	logs := p.logs.String()
	failed := logCount(logs, "accepting connections failed; backing off and retrying while open ones close")
	if again := logCount(logs, "accepting connections again"); again != 1 || failed != 1 {
		t.Errorf("logged %d bursts of failed accepts and %d recoveries: want one of each (a minute)", failed, again)
	}
	pingPong(t, ws, "after")
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t, 15*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}
