package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream/httpapi"
)

// workloadsConfig holds the flags of the workloads collector: how many
// workloads get a topic, how long a stopped one stays, and the optional
// Docker socket that names containers (docs/deploy.md says what it costs
// in privilege).
type workloadsConfig struct {
	DockerSocket string
	Max          int
	Retention    time.Duration
}

func (w *workloadsConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&w.DockerSocket, "docker-socket", "", "Docker or Podman API socket (e.g. /var/run/docker.sock) asked for container names and images, "+
		"nothing else (GET /containers/json); off when empty: containers are then named where the runtime's files are readable, else by short id")
	fs.IntVar(&w.Max, "max-workloads", collectors.DefaultMaxWorkloads, "containers, pods and services tracked, each with its own topic (0 = no limit)")
	fs.DurationVar(&w.Retention, "workload-retention", collectors.DefaultWorkloadRetention, "how long a stopped workload stays listed before its topic is removed")
}

func (w *workloadsConfig) validate() []error {
	var errs []error
	if w.Max < 0 {
		errs = append(errs, fmt.Errorf("--max-workloads must not be negative (got %d)", w.Max))
	}
	if w.Retention <= 0 {
		errs = append(errs, fmt.Errorf("--workload-retention must be positive (got %v)", w.Retention))
	}
	return errs
}

// collectors translates the flags ("0 = no limit") into the collectors'
// config (0 = the default, negative = none).
func (w *workloadsConfig) collectors() collectors.WorkloadsConfig {
	return collectors.WorkloadsConfig{Max: limitFlag(w.Max), StoppedRetention: w.Retention, DockerSocket: w.DockerSocket}
}

// culpritSource is the set's culprit sampler for GET /api/v1/culprits, nil
// (the API answers 404) when the set has none.
func culpritSource(set []collectors.Collector) httpapi.CulpritSource {
	if s := collectors.FindCulprits(set); s != nil {
		return s
	}
	return nil
}
