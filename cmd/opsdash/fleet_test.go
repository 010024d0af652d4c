package main

import (
	"bytes"
	"context"
	"io"
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
