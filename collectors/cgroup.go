package collectors

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// CgroupData is the payload of <host>.cgroup: the limits and usage of the
// cgroup opsdash itself runs in (its container or pod), not the host's.
// Pointer fields are null when the value does not apply (no such limit).
type CgroupData struct {
	// CgroupVersion is 1 or 2: the hierarchy the controllers were read from.
	CgroupVersion int `json:"cgroup_version"`
	// Path is the cgroup's path as /proc/self/cgroup shows it.
	Path string `json:"path"`
	// CPULimitCores is the CFS quota in cores (quota / period; 1.5 = one
	// and a half cores), the tightest of the cgroup and its visible
	// ancestors; null without a quota.
	CPULimitCores *float64 `json:"cpu_limit_cores"`
	// CPUUsageCores is the CPU time the cgroup used since the previous
	// sample, in cores (1 = one core busy all the time).
	CPUUsageCores float64 `json:"cpu_usage_cores"`
	// CPUUsagePct is cpu_usage_cores / cpu_limit_cores, 0-100; null
	// without a quota.
	CPUUsagePct *float64 `json:"cpu_usage_pct"`
	// CPUThrottledPct is the share of CFS enforcement periods since the
	// previous sample in which the cgroup ran out of quota and was
	// throttled; null without a quota or period data.
	CPUThrottledPct *float64 `json:"cpu_throttled_pct"`
	// MemoryLimitBytes is the memory limit, the tightest of the cgroup and
	// its ancestors; null when unlimited.
	MemoryLimitBytes *uint64 `json:"memory_limit_bytes"`
	// MemoryUsageBytes is the memory charged to the cgroup, page cache
	// included (memory.current, v1 memory.usage_in_bytes).
	MemoryUsageBytes uint64 `json:"memory_usage_bytes"`
	// MemoryWorkingSetBytes is usage minus inactive file cache: what the
	// kernel cannot easily reclaim, the number the OOM killer and the
	// kubelet look at.
	MemoryWorkingSetBytes uint64 `json:"memory_working_set_bytes"`
	// MemoryUsedPct is memory_working_set_bytes / memory_limit_bytes; null
	// when unlimited.
	MemoryUsedPct *float64 `json:"memory_used_pct"`
}

// cgroupUnlimited: cgroup v1 reports "no memory limit" as the largest
// page-aligned int64 (9223372036854771712); anything this large is no limit.
const cgroupUnlimited = uint64(1) << 62

// cgroupCollector produces <host>.cgroup.
type cgroupCollector struct {
	spec
	topic  string
	layout cgroupLayout

	mu         sync.Mutex
	prev       cgroupCounters
	isBaseline bool
}

// NewCgroup returns the collector of <host>.cgroup and true when opsdash
// runs in a cgroup with a CPU quota or a memory limit; otherwise nil and
// false, and the topic does not exist. It reads opsdash's own cgroup from
// /proc/self/cgroup and /proc/self/mountinfo (not HOST_PROC: it is about
// the process's container, not the host), cgroup v2 or v1.
// Limits are re-read every run, so a limit changed at runtime shows; a limit
// set after start on a cgroup that had none at start does not.
func NewCgroup(cfg Config) (Collector, bool) { return build("cgroup", cfg) }

// newOwnCgroup is the catalog's constructor: opsdash's own cgroup.
func newOwnCgroup(cfg Config, s spec) (Collector, bool) {
	return newCgroup(cfg, s, "/proc/self/cgroup", "/proc/self/mountinfo")
}

// newCgroup is NewCgroup reading the given files (fixtures in tests).
func newCgroup(cfg Config, s spec, procCgroupFile, mountinfoFile string) (Collector, bool) {
	pc, err := os.ReadFile(procCgroupFile)
	if err != nil {
		return nil, false
	}
	mi, err := os.ReadFile(mountinfoFile)
	if err != nil {
		return nil, false
	}
	layout, ok := resolveCgroup(string(pc), string(mi))
	if !ok {
		return nil, false
	}
	lim := layout.readLimits()
	if lim.cpuCores == nil && lim.memBytes == nil {
		return nil, false
	}
	c := &cgroupCollector{spec: s, topic: cfg.HostID + ".cgroup", layout: layout}
	if cnt, err := layout.readCounters(); err == nil {
		c.prev, c.isBaseline = cnt, true
	}
	return c, true
}

func (c *cgroupCollector) Topics() []TopicInfo {
	return []TopicInfo{c.declare(c.topic,
		"opsdash's own cgroup (container): CPU quota and usage (cores), throttling, memory limit and usage (bytes)")}
}

// Collect reads the limits and the counters, and computes CPU usage from the
// counters' change since the previous run (or since the baseline taken at
// construction; a baseline younger than cpuMinSpan is waited out, and a
// counter that went backwards, e.g. a recreated cgroup, starts a new one).
func (c *cgroupCollector) Collect(ctx context.Context) ([]Sample, error) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if c.isBaseline {
		if err := sleepOrDone(ctx, cpuMinSpan-time.Since(c.prev.at)); err != nil {
			return nil, err
		}
	}
	cur, err := c.layout.readCounters()
	if err != nil {
		return nil, err
	}
	if c.prev.at.IsZero() || cur.cpuUsageNs < c.prev.cpuUsageNs {
		c.prev, c.isBaseline = cur, true
		if err := sleepOrDone(ctx, cpuMinSpan); err != nil {
			return nil, err
		}
		if cur, err = c.layout.readCounters(); err != nil {
			return nil, err
		}
	}
	lim := c.layout.readLimits()
	d := shapeCgroup(c.layout, lim, c.prev, cur)
	c.prev, c.isBaseline = cur, false
	return []Sample{{Topic: c.topic, Time: cur.at, Data: d}}, nil
}

// cgroupLayout locates opsdash's cgroup directories.
type cgroupLayout struct {
	version int
	path    string
	// cpuDirs and memDirs run from the cgroup's own directory up to the
	// hierarchy's mount point: a limit on an ancestor (a Kubernetes pod
	// above its container) binds too. Empty when the controller is absent.
	cpuDirs, memDirs []string
	cpuV2, memV2     bool
	// usageDir holds the CPU usage counter: v1 cpuacct.usage, v2 cpu.stat.
	usageDir string
}

// cgroupLimits are the effective limits; nil means none.
type cgroupLimits struct {
	cpuCores *float64
	memBytes *uint64
}

// cgroupCounters is one reading of the cgroup's counters.
type cgroupCounters struct {
	at                 time.Time
	cpuUsageNs         uint64
	periods, throttled uint64 // CFS enforcement periods, and those throttled
	memUsage           uint64
	memInactiveFile    uint64
	// memHierLimit is v1's hierarchical_memory_limit: the effective limit
	// including ancestors the container cannot see; 0 when absent.
	memHierLimit uint64
}

// cgroupLine is one line of /proc/self/cgroup.
type cgroupLine struct {
	controllers []string // empty for the v2 line "0::/path"
	path        string
}

// parseProcCgroup parses /proc/self/cgroup: "hierarchy-id:controllers:path"
// per line.
func parseProcCgroup(content string) []cgroupLine {
	var out []cgroupLine
	for line := range strings.Lines(content) {
		line = strings.TrimSpace(line)
		id, rest, ok := strings.Cut(line, ":")
		if !ok || id == "" {
			continue
		}
		ctrls, p, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		l := cgroupLine{path: p}
		if ctrls != "" {
			l.controllers = strings.Split(ctrls, ",")
		}
		out = append(out, l)
	}
	return out
}

// cgroupMount is a cgroup filesystem from /proc/self/mountinfo.
type cgroupMount struct {
	root, point string // the cgroup mounted, and where
	v2          bool
	options     []string // super options: v1 controllers among them
}

// parseCgroupMounts returns the cgroup and cgroup2 mounts listed in
// /proc/self/mountinfo ("id parent maj:min root point opts [optional...] -
// fstype source superopts").
func parseCgroupMounts(content string) []cgroupMount {
	var out []cgroupMount
	for line := range strings.Lines(content) {
		left, right, ok := strings.Cut(strings.TrimSpace(line), " - ")
		if !ok {
			continue
		}
		lf, rf := strings.Fields(left), strings.Fields(right)
		if len(lf) < 5 || len(rf) < 1 {
			continue
		}
		if rf[0] != "cgroup" && rf[0] != "cgroup2" {
			continue
		}
		m := cgroupMount{root: unescapeMountinfo(lf[3]), point: unescapeMountinfo(lf[4]), v2: rf[0] == "cgroup2"}
		if len(rf) >= 3 {
			m.options = strings.Split(rf[2], ",")
		}
		out = append(out, m)
	}
	return out
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// resolveCgroup finds opsdash's cgroup directories for the cpu, cpuacct
// and memory controllers. A controller comes from a v1 hierarchy when
// /proc/self/cgroup lists it on a v1 line with a matching mount, else from
// the unified (v2) hierarchy: a hybrid host (v1 controllers plus an empty
// unified mount for systemd, like this project's build machine) uses v1.
// ok is false when neither controller could be located.
func resolveCgroup(procCgroup, mountinfo string) (cgroupLayout, bool) {
	lines := parseProcCgroup(procCgroup)
	mounts := parseCgroupMounts(mountinfo)

	v1 := func(ctrl string) (dirs []string, cgPath string, ok bool) {
		for _, l := range lines {
			if !slices.Contains(l.controllers, ctrl) {
				continue
			}
			for _, m := range mounts {
				if !m.v2 && slices.Contains(m.options, ctrl) {
					return cgroupDirs(m, l.path), l.path, true
				}
			}
		}
		return nil, "", false
	}
	var v2dirs []string
	var v2path string
	for _, l := range lines {
		if len(l.controllers) == 0 {
			for _, m := range mounts {
				if m.v2 {
					v2dirs, v2path = cgroupDirs(m, l.path), l.path
					break
				}
			}
		}
	}

	var lay cgroupLayout
	var cpuPath, memPath string
	if dirs, p, ok := v1("cpu"); ok {
		lay.cpuDirs, cpuPath = dirs, p
		lay.usageDir = dirs[0] // cpu,cpuacct co-mounted: cpuacct.usage is here
		if d, _, ok := v1("cpuacct"); ok {
			lay.usageDir = d[0]
		}
	} else if v2dirs != nil {
		lay.cpuDirs, lay.cpuV2, cpuPath = v2dirs, true, v2path
		lay.usageDir = v2dirs[0]
	}
	if dirs, p, ok := v1("memory"); ok {
		lay.memDirs, memPath = dirs, p
	} else if v2dirs != nil {
		lay.memDirs, lay.memV2, memPath = v2dirs, true, v2path
	}
	if lay.cpuDirs == nil && lay.memDirs == nil {
		return cgroupLayout{}, false
	}
	lay.version = 1
	if (lay.cpuDirs == nil || lay.cpuV2) && (lay.memDirs == nil || lay.memV2) {
		lay.version = 2
	}
	// Show the most specific path: on hybrid hosts only some controllers
	// (memory here) place the process below the root.
	lay.path = cpuPath
	if len(memPath) > len(lay.path) {
		lay.path = memPath
	}
	return lay, true
}

// cgroupDirs maps a cgroup path to directories under mount m: the cgroup's
// own first, then its ancestors up to the mount point. When the path is not
// below the mount's root (a cgroup namespace shows "/" while the mount root
// is the container's cgroup), the mount point itself is the cgroup.
func cgroupDirs(m cgroupMount, cgPath string) []string {
	cgPath = path.Clean("/" + cgPath)
	root := path.Clean("/" + m.root)
	var rel string
	switch {
	case root == "/":
		rel = cgPath
	case cgPath == root:
		rel = "/"
	case strings.HasPrefix(cgPath, root+"/"):
		rel = strings.TrimPrefix(cgPath, root)
	default:
		rel = "/"
	}
	dirs := []string{filepath.Join(m.point, rel)}
	for rel != "/" {
		rel = path.Dir(rel)
		dirs = append(dirs, filepath.Join(m.point, rel))
	}
	return dirs
}

// readLimits reads the effective CPU quota and memory limit: the tightest
// over the cgroup and its ancestors.
func (l cgroupLayout) readLimits() cgroupLimits {
	var lim cgroupLimits
	for _, dir := range l.cpuDirs {
		var cores float64
		var ok bool
		if l.cpuV2 {
			cores, ok = parseCPUMax(readCgroupFile(filepath.Join(dir, "cpu.max")))
		} else {
			cores, ok = parseCFSQuota(readCgroupFile(filepath.Join(dir, "cpu.cfs_quota_us")),
				readCgroupFile(filepath.Join(dir, "cpu.cfs_period_us")))
		}
		if ok && (lim.cpuCores == nil || cores < *lim.cpuCores) {
			lim.cpuCores = &cores
		}
	}
	file := "memory.limit_in_bytes"
	if l.memV2 {
		file = "memory.max"
	}
	for _, dir := range l.memDirs {
		if b, ok := parseMemLimit(readCgroupFile(filepath.Join(dir, file))); ok && (lim.memBytes == nil || b < *lim.memBytes) {
			lim.memBytes = &b
		}
	}
	return lim
}

// readCounters reads the usage counters of the cgroup itself.
func (l cgroupLayout) readCounters() (cgroupCounters, error) {
	c := cgroupCounters{at: time.Now()}
	var errs []error
	if l.cpuDirs != nil {
		if l.cpuV2 {
			stat := readCgroupFile(filepath.Join(l.usageDir, "cpu.stat"))
			usec, ok := flatKeyed(stat, "usage_usec")
			if !ok {
				errs = append(errs, fmt.Errorf("no usage_usec in %s", filepath.Join(l.usageDir, "cpu.stat")))
			}
			c.cpuUsageNs = usec * 1000
			c.periods, _ = flatKeyed(stat, "nr_periods")
			c.throttled, _ = flatKeyed(stat, "nr_throttled")
		} else {
			ns, err := strconv.ParseUint(readCgroupFile(filepath.Join(l.usageDir, "cpuacct.usage")), 10, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("cpuacct.usage: %w", err))
			}
			c.cpuUsageNs = ns
			stat := readCgroupFile(filepath.Join(l.cpuDirs[0], "cpu.stat"))
			c.periods, _ = flatKeyed(stat, "nr_periods")
			c.throttled, _ = flatKeyed(stat, "nr_throttled")
		}
	}
	if l.memDirs != nil {
		dir := l.memDirs[0]
		usageFile, inactiveKey := "memory.usage_in_bytes", "total_inactive_file"
		if l.memV2 {
			usageFile, inactiveKey = "memory.current", "inactive_file"
		}
		u, err := strconv.ParseUint(readCgroupFile(filepath.Join(dir, usageFile)), 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", usageFile, err))
		}
		c.memUsage = u
		stat := readCgroupFile(filepath.Join(dir, "memory.stat"))
		c.memInactiveFile, _ = flatKeyed(stat, inactiveKey)
		if !l.memV2 {
			c.memHierLimit, _ = flatKeyed(stat, "hierarchical_memory_limit")
		}
	}
	return c, errors.Join(errs...)
}

// shapeCgroup builds the payload from the limits and two counter readings.
func shapeCgroup(l cgroupLayout, lim cgroupLimits, prev, cur cgroupCounters) CgroupData {
	d := CgroupData{
		CgroupVersion:    l.version,
		Path:             l.path,
		CPULimitCores:    lim.cpuCores,
		MemoryLimitBytes: lim.memBytes,
		MemoryUsageBytes: cur.memUsage,
	}
	if elapsed := cur.at.Sub(prev.at); elapsed > 0 && cur.cpuUsageNs >= prev.cpuUsageNs {
		d.CPUUsageCores = cgroupRoundCores(float64(cur.cpuUsageNs-prev.cpuUsageNs) / float64(elapsed.Nanoseconds()))
	}
	if lim.cpuCores != nil && *lim.cpuCores > 0 {
		p := round2dp(clampPct(d.CPUUsageCores / *lim.cpuCores * 100))
		d.CPUUsagePct = &p
		if cur.periods > prev.periods && cur.throttled >= prev.throttled {
			t := round2dp(clampPct(float64(cur.throttled-prev.throttled) / float64(cur.periods-prev.periods) * 100))
			d.CPUThrottledPct = &t
		}
	}
	if cur.memHierLimit > 0 && cur.memHierLimit < cgroupUnlimited && (d.MemoryLimitBytes == nil || cur.memHierLimit < *d.MemoryLimitBytes) {
		v := cur.memHierLimit
		d.MemoryLimitBytes = &v
	}
	d.MemoryWorkingSetBytes = cur.memUsage
	if cur.memInactiveFile < cur.memUsage {
		d.MemoryWorkingSetBytes = cur.memUsage - cur.memInactiveFile
	} else if cur.memInactiveFile > 0 {
		d.MemoryWorkingSetBytes = 0
	}
	if d.MemoryLimitBytes != nil && *d.MemoryLimitBytes > 0 {
		p := round2dp(clampPct(float64(d.MemoryWorkingSetBytes) / float64(*d.MemoryLimitBytes) * 100))
		d.MemoryUsedPct = &p
	}
	return d
}

// parseCPUMax parses cgroup v2 cpu.max ("max 100000" or "150000 100000")
// into cores; ok is false for "max" (no quota) or unreadable content.
func parseCPUMax(s string) (cores float64, ok bool) {
	f := strings.Fields(s)
	if len(f) == 0 || f[0] == "max" {
		return 0, false
	}
	period := "100000" // the kernel default when the file has one field
	if len(f) > 1 {
		period = f[1]
	}
	return parseCFSQuota(f[0], period)
}

// parseCFSQuota turns a CFS quota and period (microseconds, as in v1
// cpu.cfs_quota_us and cpu.cfs_period_us) into cores; ok is false for -1
// (no quota) or unreadable values.
func parseCFSQuota(quota, period string) (cores float64, ok bool) {
	q, err := strconv.ParseInt(strings.TrimSpace(quota), 10, 64)
	if err != nil || q <= 0 {
		return 0, false
	}
	p, err := strconv.ParseInt(strings.TrimSpace(period), 10, 64)
	if err != nil || p <= 0 {
		return 0, false
	}
	return float64(q) / float64(p), true
}

// parseMemLimit parses memory.max (v2) or memory.limit_in_bytes (v1); ok is
// false for "max", v1's huge "unlimited" value, or unreadable content.
func parseMemLimit(s string) (bytes uint64, ok bool) {
	s = strings.TrimSpace(s)
	if s == "" || s == "max" {
		return 0, false
	}
	b, err := strconv.ParseUint(s, 10, 64)
	if err != nil || b >= cgroupUnlimited {
		return 0, false
	}
	return b, true
}

// flatKeyed finds key in a flat-keyed cgroup file ("key value" per line,
// as cpu.stat and memory.stat).
func flatKeyed(content, key string) (uint64, bool) {
	for line := range strings.Lines(content) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// readCgroupFile returns a small file's content trimmed, "" when unreadable:
// a missing file (no such controller on this level) is simply no value.
func readCgroupFile(name string) string {
	b, err := os.ReadFile(name)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// cgroupRoundCores rounds to three decimals: a thousandth of a core is the
// finest difference worth showing.
func cgroupRoundCores(x float64) float64 { return math.Round(x*1000) / 1000 }
