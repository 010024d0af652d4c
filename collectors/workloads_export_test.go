package collectors

import "time"

// Hooks for the external tests of the workloads collector and the culprit
// sampler (package collectors_test, which may import stream).

// CgroupMounts is where this machine's cgroup hierarchies are, as the
// collectors find them: the unified one and the v1 one of each controller.
func CgroupMounts() (v2 string, v1 map[string]string) {
	t := findCgroupTree(hostPathsFromEnv())
	return t.v2, t.v1
}

// NewWorkloadsOn returns the workloads collector over the given hierarchies
// (a fixture tree, or this machine's), with procfs at proc, the host's /
// at root, interval every and clock now (nil: time.Now).
func NewWorkloadsOn(cfg Config, every time.Duration, proc, v2 string, v1 map[string]string, now func() time.Time) Collector {
	paths := hostPathsFromEnv()
	if proc != "" {
		paths.proc, paths.procFromEnv = proc, true
	}
	c := newWorkloadsOn(cfg, spec{name: "workloads", interval: every}, paths, cgroupTree{v2: v2, v1: v1})
	if now != nil {
		c.now = now
	}
	return c
}

// NewCulpritsOn returns a culprit sampler over the given hierarchies and
// a function that releases its file descriptors.
func NewCulpritsOn(cfg Config, every time.Duration, v2 string, v1 map[string]string) (*CulpritSampler, func()) {
	c := newCulpritsOn(cfg, spec{name: "culprits", interval: every}, hostPathsFromEnv(), cgroupTree{v2: v2, v1: v1})
	return c, c.close
}

// HeldFDs is how many file descriptors a sampler keeps open.
func (c *CulpritSampler) HeldFDs() int { return c.fds.count() }
