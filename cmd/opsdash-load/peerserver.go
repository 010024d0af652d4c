package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// centrifugoVersion is the Centrifugo the peers scenario installs.
const centrifugoVersion = "v6.9.1"

// peerKind is one kind of server the peers scenario runs: how to start it
// and how its clients and publisher talk to it.
type peerKind struct {
	name string
	bin  string // opsdash, centrifugo: the binary; node: the directory of server.js
	tmp  string // for config files
}

// preparePeer builds or installs what running the named server needs.
func preparePeer(ctx context.Context, o peersOptions, name, tmp string) (*peerKind, error) {
	k := &peerKind{name: name, tmp: tmp}
	var err error
	switch name {
	case "opsdash":
		k.bin = o.OpsdashBin
		if k.bin == "" {
			o.logf("building ./cmd/opsdash")
			k.bin, err = buildServer(ctx, tmp)
		}
	case "centrifugo":
		k.bin = o.CentrifugoBin
		if k.bin == "" {
			gobin := filepath.Join(tmp, "gobin")
			o.logf("go install github.com/centrifugal/centrifugo/v6@%s (a few minutes the first time)", centrifugoVersion)
			cmd := exec.CommandContext(ctx, "go", "install", "github.com/centrifugal/centrifugo/v6@"+centrifugoVersion)
			cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=-mod=mod")
			cmd.Dir = tmp // outside this module, so its go.mod plays no part
			if out, err := cmd.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("go install centrifugo: %w\n%s", err, out)
			}
			k.bin = filepath.Join(gobin, "centrifugo")
		}
	case "node":
		k.bin = o.NodeDir
		if k.bin == "" {
			k.bin, err = installNodePeer(ctx, o, tmp)
		}
	}
	return k, err
}

// installNodePeer copies server.js and package.json from the module's
// cmd/opsdash-load/node into tmp and runs npm install there.
func installNodePeer(ctx context.Context, o peersOptions, tmp string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	src := filepath.Join(filepath.Dir(string(out[:len(out)-1])), "cmd", "opsdash-load", "node")
	dir := filepath.Join(tmp, "node")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for _, f := range []string{"server.js", "package.json"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", fmt.Errorf("%w (run from the opsdash module, or pass --node-dir)", err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			return "", err
		}
	}
	o.logf("npm install (ws) in %s", dir)
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--silent")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm install: %w\n%s", err, b)
	}
	return dir, nil
}

// peerServer is one running server process.
type peerServer struct {
	kind *peerKind
	cmd  *exec.Cmd
	addr string
	log  *tailBuffer
	done chan struct{}
	err  error
}

// start runs a fresh server of k on a free loopback port, pinned to cpu
// (unless negative), and waits until it answers its health check.
func (k *peerKind) start(ctx context.Context, cpu int) (*peerServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &peerServer{kind: k, addr: "127.0.0.1:" + strconv.Itoa(port), log: newTailBuffer(64 << 10), done: make(chan struct{})}
	var argv []string
	env := os.Environ()
	health := "/healthz"
	switch k.name {
	case "opsdash":
		argv = append([]string{k.bin}, serverArgs(s.addr, peerToken, nil)...)
	case "centrifugo":
		cfg := filepath.Join(k.tmp, "centrifugo-"+strconv.Itoa(port)+".json")
		b, _ := json.Marshal(map[string]any{
			"http_server": map[string]any{"address": "127.0.0.1", "port": port},
			"http_api":    map[string]any{"key": peerToken},
			"health":      map[string]any{"enabled": true},
			"log":         map[string]any{"level": "error"},
			"client": map[string]any{
				"allowed_origins":                       []string{"*"},
				"allow_anonymous_connect_without_token": true,
			},
			"channel": map[string]any{"without_namespace": map[string]any{
				"allow_subscribe_for_anonymous": true,
				"allow_subscribe_for_client":    true,
			}},
		})
		if err := os.WriteFile(cfg, b, 0o644); err != nil {
			return nil, err
		}
		argv = []string{k.bin, "--config", cfg}
		health = "/health"
	case "node":
		argv = []string{"node", filepath.Join(k.bin, "server.js"), strconv.Itoa(port)}
		health = "/health"
	}
	if cpu >= 0 {
		argv = append([]string{"taskset", "-c", strconv.Itoa(cpu)}, argv...)
		env = append(env, "GOMAXPROCS=1")
	}
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Env = env
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", k.name, err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	switch err := waitHealthy(ctx, "http://"+s.addr+health, s.done, 20*time.Second); {
	case err == nil:
		return s, nil
	case errors.Is(err, errExited):
		return nil, fmt.Errorf("%s exited before serving: %v\n%s", k.name, s.err, s.log.String())
	default:
		s.stop()
		return nil, fmt.Errorf("%s: %w\n%s", k.name, err, s.log.String())
	}
}

// peerToken is the publish key of every peer run.
const peerToken = "load-test-token-0123456789"

// pid is the server's process id (taskset execs it, so the same).
func (s *peerServer) pid() int { return s.cmd.Process.Pid }

func (s *peerServer) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// stop ends the server: SIGTERM, then SIGKILL after 10 s.
func (s *peerServer) stop() {
	if !s.alive() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}
