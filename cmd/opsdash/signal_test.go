package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMExitsCleanly builds the real binary, starts it, waits for it to
// be ready and sends SIGTERM: the process must drain and exit 0.
func TestSIGTERMExitsCleanly(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "opsdash")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--drain-timeout", "5s")
	cmd.Env = []string{"OPSDASH_HOST_ID=sigtest"} // an empty environment otherwise, as in a container
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	// The first log line that has an addr is the serving line.
	lines := bufio.NewScanner(stderr)
	var addr string
	for addr == "" && lines.Scan() {
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(lines.Bytes(), &rec) == nil && rec.Msg == "opsdash serving" {
			addr = rec.Addr
		}
	}
	if addr == "" {
		t.Fatalf("no 'opsdash serving' log line: %v", lines.Err())
	}
	go func() { // keep draining stderr so the child never blocks on a full pipe
		for lines.Scan() {
		}
	}()
	base := "http://" + addr
	eventually(t, "ready", func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("exit code %d after SIGTERM, want 0", exit.ExitCode())
		} else if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("process did not exit within 15s of SIGTERM")
	}
}
