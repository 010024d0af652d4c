package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsdash/opsdash/cmd/internal/fleet"
	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
)

// The fleet's flags are checked before anything starts, each mistake
// named with what to do.
func TestFleetConfigValidation(t *testing.T) {
	dir := t.TempDir()
	credFile := filepath.Join(dir, "creds")
	if err := os.WriteFile(credFile, []byte("replica-r1:abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string // "" = valid
	}{
		{"single host", nil, ""},
		{"hub", []string{"--nats-listen", ":4222", "--nats-data", dir}, ""},
		{"replica", []string{"--nats", "nats://a:4222,nats://b:4222", "--nats-credentials-file", credFile}, ""},
		{"both", []string{"--nats", "nats://a:4222", "--nats-listen", ":4222", "--nats-data", dir}, "--nats and --nats-listen are both set"},
		{"hub without store", []string{"--nats-listen", ":4222"}, "--nats-listen needs --nats-data"},
		{"store without hub", []string{"--nats-data", dir}, "belong to a hub"},
		{"credentials without replica", []string{"--nats-credentials", "a:b"}, "belong to a replica"},
		{"bad credentials", []string{"--nats", "nats://a:4222", "--nats-credentials", "nocolon"}, "USER:PASSWORD"},
		{"two credentials", []string{"--nats", "nats://a:4222", "--nats-credentials", "a:b", "--nats-credentials-file", credFile}, "set only one"},
		{"bad replica name", []string{"--nats", "nats://a:4222", "--replica-name", "R.1"}, "--replica-name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg serveConfig
			fs := newServeFlags(&cfg)
			if err := parseWithEnv(fs, tt.args, env(nil)); err != nil {
				t.Fatal(err)
			}
			err := cfg.validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("validate() = %v, want valid", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("validate() = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

// `opsdash credentials` prints the credentials the hub's server accepts,
// from its secret alone, the same every time.
func TestCredentialsCommand(t *testing.T) {
	dir := t.TempDir()
	secret, err := fleet.LoadOrCreateSecret(filepath.Join(dir, fleet.SecretFile))
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"credentials", "--nats-data", dir, "--host-id", "web-3,web-4", "--replica", "r1"}, &out, &errOut, env(nil)); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	want := secret.Agent("web-3").String() + "\n" + secret.Agent("web-4").String() + "\n" + secret.Replica("r1").String() + "\n"
	if out.String() != want {
		t.Errorf("printed %q, want %q", out.String(), want)
	}
	if !strings.HasPrefix(out.String(), "agent-web-3:") {
		t.Errorf("the user is not named for the host: %q", out.String())
	}
	outDir := t.TempDir()
	if code := run(context.Background(), []string{"credentials", "--nats-data", dir, "--host-id", "web-3", "--out-dir", outDir}, &out, &errOut, env(nil)); code != 0 {
		t.Fatalf("--out-dir: exit %d: %s", code, errOut.String())
	}
	st, err := os.Stat(filepath.Join(outDir, "agent-web-3"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("credentials file: %v, mode %v; want 0600", err, st)
	}
	for _, args := range [][]string{
		{"credentials", "--host-id", "web-3"},                                 // no secret
		{"credentials", "--nats-data", dir},                                   // nobody
		{"credentials", "--nats-data", dir, "--host-id", "Web.3"},             // not a token
		{"credentials", "--nats-data", t.TempDir(), "--host-id", "web-3"},     // a hub never started there
		{"agent", "--host-id", "web-3"},                                       // no --nats
		{"agent", "--nats", "nats://a:4222", "--nats-credentials", "nocolon"}, // bad credentials
	} {
		errOut.Reset()
		if code := run(context.Background(), args, &out, &errOut, env(nil)); code == 0 || errOut.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q; want a failure that says why", args, code, errOut.String())
		}
	}
}

// An agent collects workloads as serve does, so it takes the same
// workloads flags and variables: deploy/compose.yaml's
// OPSDASH_DOCKER_SOCKET names an agent's containers too.
func TestAgentWorkloadFlags(t *testing.T) {
	var cfg agentConfig
	fs := newAgentFlags(&cfg)
	fs.SetOutput(io.Discard)
	err := parseWithEnv(fs, []string{"--nats", "nats://hub:4222", "--max-workloads", "0", "--workload-retention", "1m"},
		env(map[string]string{"OPSDASH_DOCKER_SOCKET": "/var/run/docker.sock"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	want := collectors.WorkloadsConfig{Max: stream.NoLimit, StoppedRetention: time.Minute, DockerSocket: "/var/run/docker.sock"}
	if got := cfg.Workloads.collectors(); got != want {
		t.Errorf("workloads config %+v, want %+v", got, want)
	}
	cfg.Workloads.Retention = 0
	if cfg.validate() == nil {
		t.Error("--workload-retention 0 passes an agent's validation")
	}
}

// `opsdash forget` against a running hub: refused while the host's agent
// runs, done once it stopped (the replica-side effects are tested in
// cmd/internal/fleet), and usage errors exit 2.
func TestForgetCommand(t *testing.T) {
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := fleet.StartServer(fleet.ServerConfig{Listen: "127.0.0.1:0", DataDir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	a, err := fleet.DialAgent(fleet.ConnConfig{URLs: []string{s.ClientURL()}, Credentials: s.Secret().Agent("web-3"), Logger: quiet},
		fleet.AgentConfig{Host: "web-3", Version: "test", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		a.Publish(collectors.Sample{Topic: "web-3.cpu", Time: time.Now(), Data: map[string]int{"usage_pct": i}})
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	forget := []string{"forget", "--nats", s.ClientURL(), "--nats-data", dir, "web-3"}
	var out, errOut bytes.Buffer
	if code := run(ctx, forget, &out, &errOut, env(nil)); code != 1 || !strings.Contains(errOut.String(), "stop it first") {
		t.Errorf("while the agent runs: exit %d, %q; want 1 and a refusal", code, errOut.String())
	}
	a.Close()
	out.Reset()
	errOut.Reset()
	if code := run(ctx, forget, &out, &errOut, env(nil)); code != 0 || !strings.HasPrefix(out.String(), "forgot web-3 (2 stored values removed;") {
		t.Errorf("after the agent stopped: exit %d, %q %q", code, out.String(), errOut.String())
	}
	// On a NATS of one's own, a user with the rights instead of a secret
	// (here the hub's own user, as such an operator would configure one).
	out.Reset()
	admin := s.Secret().Admin().String()
	if code := run(ctx, []string{"forget", "--nats", s.ClientURL(), "--nats-credentials", admin, "web-3"}, &out, &errOut, env(nil)); code != 0 || !strings.HasPrefix(out.String(), "forgot web-3 (0 stored values removed;") {
		t.Errorf("with --nats-credentials: exit %d, %q %q", code, out.String(), errOut.String())
	}
	for _, args := range [][]string{
		{"forget", "--nats", s.ClientURL(), "--nats-data", dir, "--nats-credentials", admin, "web-3"}, // both
		{"forget", "--nats", s.ClientURL(), "--nats-data", dir},                                       // nobody
		{"forget", "--nats-data", dir, "web-3"},                                                       // no --nats
		{"forget", "--nats", s.ClientURL(), "web-3"},                                                  // no secret
		{"forget", "--nats", s.ClientURL(), "--nats-data", dir, "Web.3"},                              // not a host id
	} {
		if code := run(ctx, args, &out, &errOut, env(nil)); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
