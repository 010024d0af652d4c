package collectors

import (
	"cmp"
	"context"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// WorkloadsConfig configures the workloads collector. Zero fields take the
// defaults below; a negative Max turns the cap off (the zero rule of
// stream.NoLimit).
type WorkloadsConfig struct {
	// Max caps the workloads tracked, each with its own topic (default
	// DefaultMaxWorkloads). Past it, stopped workloads make room for new
	// ones; running ones beyond it are counted ("untracked"), not shown.
	Max int
	// StoppedRetention is how long a workload that stopped stays listed,
	// marked stopped, before its topic is removed (default
	// DefaultWorkloadRetention).
	StoppedRetention time.Duration
	// DockerSocket is the path of a Docker Engine (or Podman) API socket
	// asked for container names and images; "" (the default) never asks.
	DockerSocket string
}

const (
	// DefaultMaxWorkloads is WorkloadsConfig.Max's default.
	DefaultMaxWorkloads = 200
	// DefaultWorkloadRetention is WorkloadsConfig.StoppedRetention's
	// default: long enough to notice a container that crashed or was
	// OOM-killed, short enough that a host running short jobs keeps a
	// readable table.
	DefaultWorkloadRetention = 10 * time.Minute
	// WorkloadHistory is how many values a workload topic's history keeps:
	// five minutes at the default interval, as much as a chart shows. There can be
	// DefaultMaxWorkloads of them, so theirs is short; the table topic
	// keeps the registry's usual history.
	WorkloadHistory = 60
)

// RuntimeTopics is told about topics that come and go while the server
// runs: one per workload. The stream registry implements it (declared
// topics that Undeclare removes, seqs kept for when they come back).
type RuntimeTopics interface {
	// DeclareRuntime lists a topic from now on, its history capped at
	// history values.
	DeclareRuntime(info TopicInfo, history int)
	// Undeclare removes a topic DeclareRuntime declared.
	Undeclare(topic string)
}

// UseRuntimeTopics hands rt to every collector of cs whose topics come and
// go at run time (workloads). Call it before the scheduler runs; without
// it those topics are created by their first sample and never removed.
func UseRuntimeTopics(cs []Collector, rt RuntimeTopics) {
	for _, c := range cs {
		if u, ok := c.(interface{ useRuntimeTopics(RuntimeTopics) }); ok {
			u.useRuntimeTopics(rt)
		}
	}
}

// WorkloadsData is the payload of <host>.workloads: every workload
// tracked, running ones first, each by CPU use.
type WorkloadsData struct {
	// CgroupVersion is the hierarchy read: 1 or 2.
	CgroupVersion int `json:"cgroup_version"`
	// Running and Stopped count the workloads listed.
	Running int `json:"running"`
	Stopped int `json:"stopped"`
	// Untracked counts running workloads left out because the cap
	// (WorkloadsConfig.Max) was reached.
	Untracked int `json:"untracked"`
	// StoppedRetentionS is how long a stopped workload stays listed.
	StoppedRetentionS float64 `json:"stopped_retention_s"`
	// Workloads are the rows.
	Workloads []WorkloadRow `json:"workloads"`
}

// WorkloadRow is one workload as the table shows it: what the dashboard's
// card needs, kept short because the table holds every workload (the rest
// is in the workload's own topic). Rates are averages since the previous
// sample; pointer fields are null where they do not apply (no limit).
type WorkloadRow struct {
	// ID is the workload's short id: its topic is <host>.workload.<id>.
	ID string `json:"id"`
	// Kind is docker, podman, containerd, cri-o, pod or service.
	Kind string `json:"kind"`
	// Name is the container's, pod's or unit's name, or the short id
	// when no readable source names it (see name_source).
	Name string `json:"name"`
	// Namespace is a pod's Kubernetes namespace.
	Namespace string `json:"namespace"`
	// State is running, stopped (its cgroup is gone or empty), or
	// oom_killed (stopped, with OOM kills in its last reading).
	State string `json:"state"`
	// OOMKills counts processes the kernel's OOM killer killed in it.
	OOMKills uint64 `json:"oom_kills"`

	CPUCores      float64  `json:"cpu_cores"`
	CPULimitCores *float64 `json:"cpu_limit_cores"`
	CPUUsedPct    *float64 `json:"cpu_used_pct"` // of the limit

	MemBytes      uint64   `json:"mem_bytes"`
	MemLimitBytes *uint64  `json:"mem_limit_bytes"`
	MemUsedPct    *float64 `json:"mem_used_pct"` // working set of the limit
}

// WorkloadData is the payload of <host>.workload.<id>: the row and more.
type WorkloadData struct {
	WorkloadRow
	// NameSource says where the name came from: cgroup path, kubelet
	// logs, docker state, docker socket, podman state, containerd state,
	// cri-o state.
	NameSource string `json:"name_source"`
	// Image is the container's image, where the runtime says.
	Image string `json:"image"`
	// StoppedForS is how long ago it stopped; null while running.
	StoppedForS *float64 `json:"stopped_for_s"`
	// CgroupPath is the workload's cgroup, as under /sys/fs/cgroup.
	CgroupPath    string `json:"cgroup_path"`
	CgroupVersion int    `json:"cgroup_version"`
	// ContainerID is a container's full id; PodUID a pod's uid.
	ContainerID string `json:"container_id,omitempty"`
	PodUID      string `json:"pod_uid,omitempty"`

	CPUThrottledPct    *float64 `json:"cpu_throttled_pct"` // of enforcement periods, with a limit
	MemAnonBytes       uint64   `json:"mem_anon_bytes"`
	MemFileBytes       uint64   `json:"mem_file_bytes"`
	MemWorkingSetBytes uint64   `json:"mem_working_set_bytes"`
	Pids               *uint64  `json:"pids"`
	PidsLimit          *uint64  `json:"pids_limit"`

	IOReadBytesPerS  *float64 `json:"io_read_bytes_per_s"`
	IOWriteBytesPerS *float64 `json:"io_write_bytes_per_s"`
	// NetNamespace is "own" when the workload has a network namespace of
	// its own (its traffic is in the net_* fields), "host" when it shares
	// the host's, "" when no member process could be looked at.
	NetNamespace   string   `json:"net_namespace"`
	NetRxBytesPerS *float64 `json:"net_rx_bytes_per_s"`
	NetTxBytesPerS *float64 `json:"net_tx_bytes_per_s"`
	// Containers are a pod's containers (the pause container left out).
	Containers []WorkloadContainer `json:"containers,omitempty"`
}

// WorkloadContainer is one container of a pod.
type WorkloadContainer struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	Image         string   `json:"image"`
	CPUCores      float64  `json:"cpu_cores"`
	CPULimitCores *float64 `json:"cpu_limit_cores"`
	MemBytes      uint64   `json:"mem_bytes"`
	MemLimitBytes *uint64  `json:"mem_limit_bytes"`
}

// Workload states.
const (
	stateRunning   = "running"
	stateStopped   = "stopped"
	stateOOMKilled = "oom_killed"
)

// workloadsCollector produces <host>.workloads and <host>.workload.<id>.
type workloadsCollector struct {
	spec
	host, topic string
	paths       hostPaths
	tree        cgroupTree
	max         int
	retention   time.Duration
	log         *slog.Logger
	now         func() time.Time

	mu      sync.Mutex
	rt      RuntimeTopics
	r       *cgReader
	namer   *workloadNamer
	tracked map[workloadKey]*trackedWorkload
}

// trackedWorkload is one workload between runs.
type trackedWorkload struct {
	ref       workloadRef
	id, topic string
	names     workloadNames
	declared  bool
	ready     bool      // has had two readings: its figures are rates
	stoppedAt time.Time // zero while running

	prev    cgroupReading
	hasPrev bool
	limits  workloadLimits
	net     netReading
	// member is a process in it, for its network (memberPID is a walk of
	// cgroup.procs files): looked up again when it is gone or memberAt is
	// older than limitsRefresh.
	member   int
	memberAt time.Time
	ctrPrev  map[string]cgroupReading
	ctrLim   map[string]*workloadLimits
	data     WorkloadData
}

// netReading is a workload's network counters at one time.
type netReading struct {
	at     time.Time
	ns     uint64 // the namespace they were read in
	rx, tx uint64
}

// NewWorkloads returns the collector of <host>.workloads and one
// <host>.workload.<id> per container, pod and service in the host's cgroup
// tree (see workload_tree.go), and true; nil and false when this machine
// has no cgroup filesystem. The per-workload topics are declared and
// removed at run time through the RuntimeTopics handed over by
// UseRuntimeTopics.
//
// A workload appears from its second sighting on (the first gives the
// counters its rates start from), is marked stopped when its cgroup is
// gone or empty, and is removed after cfg.Workloads.StoppedRetention.
func NewWorkloads(cfg Config) (Collector, bool) { return build("workloads", cfg) }

func newWorkloads(cfg Config, s spec) (Collector, bool) {
	paths := hostPathsFromEnv()
	tree := findCgroupTree(paths)
	if tree.version() == 0 {
		return nil, false
	}
	return newWorkloadsOn(cfg, s, paths, tree), true
}

// newWorkloadsOn is the collector over a given tree (fixtures in tests).
func newWorkloadsOn(cfg Config, s spec, paths hostPaths, tree cgroupTree) *workloadsCollector {
	wc := cfg.Workloads
	c := &workloadsCollector{
		spec:      s,
		host:      cfg.HostID,
		topic:     cfg.HostID + ".workloads",
		paths:     paths,
		tree:      tree,
		max:       wc.Max,
		retention: wc.StoppedRetention,
		log:       cfg.logger(),
		now:       time.Now,
		r:         newCgReader(),
		namer:     newWorkloadNamer(cfg.HostRoot, newDockerAPI(wc.DockerSocket)),
		tracked:   map[workloadKey]*trackedWorkload{},
	}
	if c.max == 0 {
		c.max = DefaultMaxWorkloads
	}
	if c.retention <= 0 {
		c.retention = DefaultWorkloadRetention
	}
	return c
}

func (c *workloadsCollector) Topics() []TopicInfo {
	return []TopicInfo{c.declare(c.topic,
		"Containers, pods and services from the cgroup tree: state, CPU (cores, limit, throttling), memory (bytes, limit), OOM kills, I/O, pids, network")}
}

func (c *workloadsCollector) useRuntimeTopics(rt RuntimeTopics) {
	c.mu.Lock()
	c.rt = rt
	c.mu.Unlock()
}

// Collect walks the tree, reads every workload and returns the table and
// one sample per workload.
func (c *workloadsCollector) Collect(ctx context.Context) ([]Sample, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	refs := discoverWorkloads(c.tree)
	hostNS, hostNSok := netNamespace(c.paths, "1")
	seen := make(map[workloadKey]bool, len(refs))
	untracked := 0
	for _, ref := range refs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		w := c.tracked[ref.key]
		if w == nil {
			if c.max > 0 && len(c.tracked) >= c.max && !c.evictStopped() {
				untracked++
				continue
			}
			id := workloadID(ref.key)
			w = &trackedWorkload{id: id, topic: c.host + ".workload." + id, ctrPrev: map[string]cgroupReading{}, ctrLim: map[string]*workloadLimits{}}
			c.tracked[ref.key] = w
		}
		w.ref = ref
		cur := c.tree.readCgroup(c.r, ref.rel, now, &w.limits)
		if !cur.present {
			continue // gone since the walk: stopped below
		}
		member := c.member(w, cur, now)
		if member == 0 && (cur.pids == nil || *cur.pids == 0) {
			continue // empty: nothing runs in it any more
		}
		seen[ref.key] = true
		w.names = c.namer.names(ctx, ref)
		c.update(w, cur, member, hostNS, hostNSok)
	}

	table := WorkloadsData{CgroupVersion: c.tree.version(), Untracked: untracked, StoppedRetentionS: c.retention.Seconds()}
	var samples []Sample
	for key, w := range c.tracked {
		if !seen[key] {
			if !w.ready || now.Sub(w.stoppedAt) >= c.retention && !w.stoppedAt.IsZero() {
				c.remove(key, w) // never shown, or kept long enough
				continue
			}
			c.stop(w, now)
		}
		c.declareTopic(w)
		if !w.ready {
			continue
		}
		if w.stoppedAt.IsZero() {
			table.Running++
		} else {
			table.Stopped++
		}
		samples = append(samples, Sample{Topic: w.topic, Time: now, Data: w.data})
		table.Workloads = append(table.Workloads, w.data.WorkloadRow)
	}
	c.namer.forget(func(k workloadKey) bool { return c.tracked[k] != nil })
	sortWorkloadRows(table.Workloads)
	if table.Workloads == nil {
		table.Workloads = []WorkloadRow{}
	}
	return append([]Sample{{Topic: c.topic, Time: now, Data: table}}, samples...), nil
}

// member returns a process of w: the one found before while it is alive
// (and younger than limitsRefresh), else a new look. Without a pids count
// it is what says whether anything runs in w, so it is looked up each run.
func (c *workloadsCollector) member(w *trackedWorkload, cur cgroupReading, now time.Time) int {
	if cur.pids != nil && *cur.pids == 0 {
		w.member = 0
		return 0
	}
	if w.member > 0 && cur.pids != nil && now.Sub(w.memberAt) < limitsRefresh && now.After(w.memberAt) && fileExists(c.paths.procPath(strconv.Itoa(w.member))) {
		return w.member
	}
	w.member, w.memberAt = c.tree.memberPID(c.r, w.ref.rel), now
	return w.member
}

// sortWorkloadRows orders the table: running before stopped, then by CPU,
// memory and id, so that rows do not shuffle on an idle host.
func sortWorkloadRows(rows []WorkloadRow) {
	slices.SortFunc(rows, func(a, b WorkloadRow) int {
		ra, rb := a.State == stateRunning, b.State == stateRunning
		if ra != rb {
			if ra {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(b.CPUCores, a.CPUCores), cmp.Compare(b.MemBytes, a.MemBytes), cmp.Compare(a.ID, b.ID))
	})
}

// update turns a reading of a running workload into its payload. The
// first reading of a workload (or the first after it stopped) is only the
// baseline its rates start from.
func (c *workloadsCollector) update(w *trackedWorkload, cur cgroupReading, member int, hostNS uint64, hostNSok bool) {
	prev, hasPrev := w.prev, w.hasPrev
	w.prev, w.hasPrev = cur, true
	netNS, rx, tx := c.readNet(w, member, hostNS, hostNSok, cur.at)
	var containers []WorkloadContainer
	if w.ref.key.kind == kindPod {
		containers = c.podContainers(w, cur.at)
	}
	if !hasPrev {
		return
	}
	w.ready = true
	w.stoppedAt = time.Time{}
	dt := cur.at.Sub(prev.at).Seconds()
	d := WorkloadData{
		WorkloadRow: WorkloadRow{
			ID: w.id, Kind: w.ref.key.kind, Name: w.names.name, Namespace: w.names.namespace,
			State:    stateRunning,
			OOMKills: cur.oomKills,
			CPUCores: cgroupRoundCores(counterRate(prev.cpuNs, cur.cpuNs, prev.cpuOK && cur.cpuOK, dt) / 1e9),
			MemBytes: cur.memBytes, MemLimitBytes: cur.memLimit,
			CPULimitCores: cur.cpuLimit,
		},
		NameSource: w.names.source, Image: w.names.image,
		CgroupPath:    w.ref.rel,
		CgroupVersion: c.tree.version(),
		MemAnonBytes:  cur.memAnon, MemFileBytes: cur.memFile,
		MemWorkingSetBytes: workingSet(cur),
		Pids:               cur.pids,
		PidsLimit:          cur.pidsLimit,
		NetNamespace:       netNS,
		NetRxBytesPerS:     rx, NetTxBytesPerS: tx,
		Containers: containers,
	}
	if w.ref.key.kind == kindPod {
		d.PodUID = w.ref.key.ident
	} else if w.ref.key.kind != kindService {
		d.ContainerID = w.ref.key.ident
	}
	if lim := cur.cpuLimit; lim != nil && *lim > 0 {
		d.CPUUsedPct = pct(d.CPUCores / *lim)
		if cur.periods > prev.periods && cur.throttled >= prev.throttled {
			d.CPUThrottledPct = pct(float64(cur.throttled-prev.throttled) / float64(cur.periods-prev.periods))
		} else {
			d.CPUThrottledPct = pct(0)
		}
	}
	if lim := cur.memLimit; lim != nil && *lim > 0 {
		d.MemUsedPct = pct(float64(d.MemWorkingSetBytes) / float64(*lim))
	}
	if cur.ioOK && prev.ioOK && dt > 0 {
		d.IOReadBytesPerS = ptr(round2dp(counterRate(prev.ioRead, cur.ioRead, true, dt)))
		d.IOWriteBytesPerS = ptr(round2dp(counterRate(prev.ioWrite, cur.ioWrite, true, dt)))
	}
	w.data = d
}

// readNet reads the network counters of a workload with a namespace of
// its own through a member process's /proc/<pid>/net/dev and returns the
// namespace ("own", "host", "" when unknown) and the rates since the
// previous reading (nil without one).
func (c *workloadsCollector) readNet(w *trackedWorkload, member int, hostNS uint64, hostNSok bool, now time.Time) (ns string, rx, tx *float64) {
	if member == 0 || !hostNSok {
		return "", nil, nil
	}
	pid := strconv.Itoa(member)
	ino, ok := netNamespace(c.paths, pid)
	if !ok {
		return "", nil, nil
	}
	if ino == hostNS {
		return "host", nil, nil
	}
	r, t, ok := readNetDev(c.r, c.paths.procPath(pid, "net", "dev"))
	if !ok {
		return "own", nil, nil
	}
	prev := w.net
	w.net = netReading{at: now, ns: ino, rx: r, tx: t}
	if prev.ns != ino || prev.at.IsZero() {
		return "own", nil, nil // a new namespace (the container restarted): a new baseline
	}
	if dt := now.Sub(prev.at).Seconds(); dt > 0 {
		rx = ptr(round2dp(counterRate(prev.rx, r, true, dt)))
		tx = ptr(round2dp(counterRate(prev.tx, t, true, dt)))
	}
	return "own", rx, tx
}

// podContainers reads each container of a pod.
func (c *workloadsCollector) podContainers(w *trackedWorkload, now time.Time) []WorkloadContainer {
	var out []WorkloadContainer
	keep := map[string]cgroupReading{}
	for _, ref := range w.ref.containers {
		cn := w.names.containers[ref.id]
		if cn.sandbox {
			continue
		}
		lim := w.ctrLim[ref.id]
		if lim == nil {
			lim = &workloadLimits{}
			w.ctrLim[ref.id] = lim
		}
		cur := c.tree.readCgroup(c.r, ref.rel, now, lim)
		if !cur.present {
			continue
		}
		prev, ok := w.ctrPrev[ref.id]
		keep[ref.id] = cur
		name := cn.name
		if name == "" {
			name = ref.id[:12]
		}
		wc := WorkloadContainer{ID: ref.id, Name: name, Image: cn.image, MemBytes: cur.memBytes, MemLimitBytes: cur.memLimit, CPULimitCores: cur.cpuLimit}
		if ok {
			wc.CPUCores = cgroupRoundCores(counterRate(prev.cpuNs, cur.cpuNs, prev.cpuOK && cur.cpuOK, now.Sub(prev.at).Seconds()) / 1e9)
		}
		out = append(out, wc)
	}
	w.ctrPrev = keep
	for id := range w.ctrLim {
		if _, ok := keep[id]; !ok {
			delete(w.ctrLim, id)
		}
	}
	slices.SortFunc(out, func(a, b WorkloadContainer) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// stop marks w stopped at now (first time) and updates its payload: its
// rates are zero, the rest is as last seen.
func (c *workloadsCollector) stop(w *trackedWorkload, now time.Time) {
	if w.stoppedAt.IsZero() {
		w.stoppedAt = now
		w.hasPrev = false // a restart (same cgroup path) starts from a new baseline
		w.net = netReading{}
		d := &w.data
		d.State = stateStopped
		if d.OOMKills > 0 {
			d.State = stateOOMKilled
		}
		d.CPUCores = 0
		if d.CPUUsedPct != nil {
			d.CPUUsedPct = pct(0)
		}
		d.CPUThrottledPct = nil
		zero := uint64(0)
		d.Pids = &zero
		for _, p := range []**float64{&d.IOReadBytesPerS, &d.IOWriteBytesPerS, &d.NetRxBytesPerS, &d.NetTxBytesPerS} {
			if *p != nil {
				*p = ptr(0.0)
			}
		}
		for i := range d.Containers {
			d.Containers[i].CPUCores = 0
		}
	}
	w.data.StoppedForS = ptr(math.Round(now.Sub(w.stoppedAt).Seconds()))
}

// declareTopic declares w's topic once it has a value to show.
func (c *workloadsCollector) declareTopic(w *trackedWorkload) {
	if w.declared || !w.ready || c.rt == nil {
		return
	}
	w.declared = true
	c.rt.DeclareRuntime(TopicInfo{
		Name:     w.topic,
		Interval: c.interval,
		Description: "Workload " + w.data.Name + " (" + w.ref.key.kind + "): CPU, memory, OOM kills, I/O, pids, network; " +
			"removed " + shortDuration(c.retention) + " after it stops",
	}, WorkloadHistory)
}

// shortDuration is d as people write it: "10m" and "2h", where
// Duration.String says "10m0s" and "2h0m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// remove forgets w and removes its topic.
func (c *workloadsCollector) remove(key workloadKey, w *trackedWorkload) {
	delete(c.tracked, key)
	if w.declared && c.rt != nil {
		c.rt.Undeclare(w.topic)
	}
}

// evictStopped removes the workload that stopped longest ago to make room
// for a new one; false when none is stopped.
func (c *workloadsCollector) evictStopped() bool {
	var oldest *trackedWorkload
	var oldestKey workloadKey
	for k, w := range c.tracked {
		if !w.stoppedAt.IsZero() && (oldest == nil || w.stoppedAt.Before(oldest.stoppedAt)) {
			oldest, oldestKey = w, k
		}
	}
	if oldest == nil {
		return false
	}
	c.remove(oldestKey, oldest)
	return true
}

// counterRate is (cur-prev)/dt for a counter that only grows; 0 when it
// went backwards (the cgroup was recreated) or ok is false.
func counterRate(prev, cur uint64, ok bool, dt float64) float64 {
	if !ok || cur < prev || dt <= 0 {
		return 0
	}
	return float64(cur-prev) / dt
}

// workingSet is memory minus inactive file cache, the figure the OOM killer
// and the kubelet go by.
func workingSet(r cgroupReading) uint64 {
	if r.memInactiveFile >= r.memBytes {
		return 0
	}
	return r.memBytes - r.memInactiveFile
}

// pct turns a ratio into a percentage, 0–100, two decimals.
func pct(ratio float64) *float64 { return ptr(round2dp(clampPct(ratio * 100))) }

func ptr[T any](v T) *T { return &v }
