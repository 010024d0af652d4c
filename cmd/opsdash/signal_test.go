package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// process is an opsdash binary running as a child process.
type process struct {
	cmd    *exec.Cmd
	addr   string      // from its "opsdash serving" log line
	logs   *syncBuffer // its stderr (JSON log lines)
	waited chan error  // receives cmd.Wait's result once
}

// startProcess starts cmd (an opsdash serve logging JSON to stderr) and
// waits for the log line that says where it serves.
func startProcess(t *testing.T, cmd *exec.Cmd) *process {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, logs: &syncBuffer{}, waited: make(chan error, 1)}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("server log:\n%s", p.logs.String())
		}
	})
	addrc := make(chan string, 1)
	go func() {
		// Keep reading to EOF, so the child never blocks on a full pipe;
		// the scanner ends when the process exits.
		lines := bufio.NewScanner(stderr)
		for lines.Scan() {
			p.logs.Write(append(lines.Bytes(), '\n'))
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(lines.Bytes(), &rec) == nil && rec.Msg == "opsdash serving" {
				addrc <- rec.Addr
			}
		}
		close(addrc)
		// Wait only after the pipe is drained (os/exec's rule).
		p.waited <- cmd.Wait()
	}()
	select {
	case addr, ok := <-addrc:
		if !ok {
			t.Fatalf("the process exited without an 'opsdash serving' log line:\n%s", p.logs.String())
		}
		p.addr = addr
	case <-time.After(15 * time.Second):
		t.Fatalf("no 'opsdash serving' log line within 15s:\n%s", p.logs.String())
	}
	return p
}

// exitCode waits for the process to exit and returns its exit code.
func (p *process) exitCode(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case err := <-p.waited:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(within):
		t.Fatalf("process did not exit within %v", within)
		return -1
	}
}

// subscribeWS opens a WebSocket to base's /ws, subscribes to topic and
// returns once the first update of it has arrived.
func subscribeWS(t *testing.T, base, topic string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	if err := ws.WriteJSON(map[string]any{"type": "subscribe", "id": "1", "topics": []string{topic}}); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		var f struct{ Type, Topic string }
		if err := ws.ReadJSON(&f); err != nil {
			t.Fatalf("waiting for an update of %s: %v", topic, err)
		}
		if f.Type == "update" && f.Topic == topic {
			_ = ws.SetReadDeadline(time.Time{})
			return ws
		}
	}
}

// ended is when and how a client connection ended.
type ended struct {
	at  time.Time
	err error
}

// TestSIGTERMExitsCleanly builds the real binary, starts it, connects
// WebSocket clients and an SSE stream and sends SIGTERM: every WebSocket
// gets close 1001 and the SSE stream ends within the drain timeout,
// /readyz no longer says ready and new connections are refused once the
// first client has been closed, and the process exits 0.
func TestSIGTERMExitsCleanly(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	const drainTimeout = 5 * time.Second
	bin := buildBinary(t)
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--drain-timeout", drainTimeout.String())
	cmd.Env = []string{"OPSDASH_HOST_ID=sigtest"} // an empty environment otherwise, as in a container
	p := startProcess(t, cmd)
	base := "http://" + p.addr
	eventually(t, "ready", func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })

	// Clients, each with a live subscription before the signal.
	const nWS = 3
	wsEnded := make(chan ended, nWS)
	for range nWS {
		ws := subscribeWS(t, base, "sigtest.cpu")
		go func() {
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					wsEnded <- ended{time.Now(), err}
					return
				}
			}
		}()
	}
	resp, err := http.Get(base + "/sse?topics=sigtest.cpu")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/sse = %s", resp.Status)
	}
	sse := bufio.NewReader(resp.Body)
	for {
		line, err := sse.ReadString('\n')
		if err != nil {
			t.Fatalf("SSE stream ended before its first update: %v", err)
		}
		if strings.TrimSpace(line) == "event: update" {
			break
		}
	}
	sseEnded := make(chan ended, 1)
	go func() {
		_, err := io.Copy(io.Discard, sse)
		sseEnded <- ended{time.Now(), err}
	}()

	signalled := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	for i := range nWS {
		select {
		case e := <-wsEnded:
			if !websocket.IsCloseError(e.err, websocket.CloseGoingAway) {
				t.Errorf("WebSocket %d ended with %v, want close 1001", i+1, e.err)
			}
			if d := e.at.Sub(signalled); d > drainTimeout {
				t.Errorf("WebSocket %d closed %v after SIGTERM, past the drain timeout %v", i+1, d, drainTimeout)
			}
			if i == 0 {
				// Readiness goes false before any client is closed, and
				// from then on new clients are refused (503 before the
				// upgrade, or no listener any more).
				client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
				if resp, err := client.Get(base + "/readyz"); err != nil {
					t.Logf("/readyz after the first close: %v (the server no longer listens)", err)
				} else {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					t.Logf("/readyz after the first close: %s %s", resp.Status, body)
					if resp.StatusCode != http.StatusServiceUnavailable || string(body) != "draining" {
						t.Errorf("/readyz while draining = %s %q, want 503 draining", resp.Status, body)
					}
				}
				if ws, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/ws", nil); err == nil {
					ws.Close()
					t.Error("a new WebSocket was accepted while draining")
				} else if resp != nil && resp.StatusCode != http.StatusServiceUnavailable {
					t.Errorf("a new WebSocket while draining got %s, want 503", resp.Status)
				}
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("WebSocket %d not closed within 15s of SIGTERM", i+1)
		}
	}
	select {
	case e := <-sseEnded:
		if e.err != nil {
			t.Errorf("SSE stream ended with %v, want a clean end of stream", e.err)
		}
		if d := e.at.Sub(signalled); d > drainTimeout {
			t.Errorf("SSE stream ended %v after SIGTERM, past the drain timeout %v", d, drainTimeout)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("SSE stream not ended within 15s of SIGTERM")
	}

	if code := p.exitCode(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
}
