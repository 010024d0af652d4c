package collectors

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// This machine's view: cgroup v1 controllers, an empty unified (v2) mount
// for systemd, and the process in a memory cgroup below the root.
const (
	hybridProcCgroup = `9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/a51da7bd
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
`
	hybridMountinfo = `22 1 0:20 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
)

func TestParseProcCgroup(t *testing.T) {
	got := parseProcCgroup("12:cpu,cpuacct:/docker/abc\n0::/system.slice/x.service\n\nbogus\n4:memory:/a:b\n")
	want := []cgroupLine{
		{controllers: []string{"cpu", "cpuacct"}, path: "/docker/abc"},
		{controllers: nil, path: "/system.slice/x.service"},
		{controllers: []string{"memory"}, path: "/a:b"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if !slices.Equal(got[i].controllers, want[i].controllers) || got[i].path != want[i].path {
			t.Errorf("line %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestParseCgroupMounts(t *testing.T) {
	mi := hybridMountinfo +
		`50 31 0:40 /docker/abc /sys/fs/cgroup/my\040mem rw,relatime shared:5 master:2 - cgroup cgroup rw,memory` + "\n"
	got := parseCgroupMounts(mi)
	if len(got) != 7 {
		t.Fatalf("%d cgroup mounts, want 7: %+v", len(got), got)
	}
	if m := got[0]; m.point != "/sys/fs/cgroup/cpu" || m.root != "/" || m.v2 || !slices.Contains(m.options, "cpu") {
		t.Errorf("first mount = %+v", m)
	}
	if m := got[5]; m.point != "/sys/fs/cgroup/unified" || !m.v2 {
		t.Errorf("unified mount = %+v", m)
	}
	if m := got[6]; m.point != "/sys/fs/cgroup/my mem" || m.root != "/docker/abc" {
		t.Errorf("escaped mount with optional fields = %+v", m)
	}
}

func TestResolveCgroup(t *testing.T) {
	tests := []struct {
		name             string
		procCgroup, mi   string
		ok               bool
		version          int
		path             string
		cpuDirs, memDirs []string
		usageDir         string
	}{
		{
			name:       "hybrid v1 host (this machine): v1 controllers win over the empty unified mount",
			procCgroup: hybridProcCgroup, mi: hybridMountinfo, ok: true, version: 1, path: "/process_api/a51da7bd",
			cpuDirs:  []string{"/sys/fs/cgroup/cpu"},
			memDirs:  []string{"/sys/fs/cgroup/memory/process_api/a51da7bd", "/sys/fs/cgroup/memory/process_api", "/sys/fs/cgroup/memory"},
			usageDir: "/sys/fs/cgroup/cpuacct",
		},
		{
			name:       "v2 host, Kubernetes pod: ancestors up to the mount",
			procCgroup: "0::/kubepods/pod1/ctr\n",
			mi:         "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
			ok:         true, version: 2, path: "/kubepods/pod1/ctr",
			cpuDirs:  []string{"/sys/fs/cgroup/kubepods/pod1/ctr", "/sys/fs/cgroup/kubepods/pod1", "/sys/fs/cgroup/kubepods", "/sys/fs/cgroup"},
			memDirs:  []string{"/sys/fs/cgroup/kubepods/pod1/ctr", "/sys/fs/cgroup/kubepods/pod1", "/sys/fs/cgroup/kubepods", "/sys/fs/cgroup"},
			usageDir: "/sys/fs/cgroup/kubepods/pod1/ctr",
		},
		{
			name:       "v2 container with its own cgroup namespace",
			procCgroup: "0::/\n",
			mi:         "30 23 0:26 / /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n",
			ok:         true, version: 2, path: "/",
			cpuDirs: []string{"/sys/fs/cgroup"}, memDirs: []string{"/sys/fs/cgroup"}, usageDir: "/sys/fs/cgroup",
		},
		{
			name:       "v1 docker container: the mount's root is the container's cgroup",
			procCgroup: "11:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n",
			mi: "40 31 0:37 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct\n" +
				"41 31 0:38 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n",
			ok: true, version: 1, path: "/docker/abc",
			cpuDirs: []string{"/sys/fs/cgroup/cpu,cpuacct"}, memDirs: []string{"/sys/fs/cgroup/memory"},
			usageDir: "/sys/fs/cgroup/cpu,cpuacct",
		},
		{
			name:       "path outside the mount's root: the mount point",
			procCgroup: "0::/../../elsewhere\n",
			mi:         "30 23 0:26 /mine /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			ok:         true, version: 2, path: "/../../elsewhere",
			cpuDirs: []string{"/sys/fs/cgroup"}, memDirs: []string{"/sys/fs/cgroup"}, usageDir: "/sys/fs/cgroup",
		},
		{
			name:       "no cgroup filesystem mounted",
			procCgroup: "0::/\n", mi: "22 1 0:20 / /proc rw - proc proc rw\n",
			ok: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := resolveCgroup(tt.procCgroup, tt.mi)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if got.version != tt.version || got.path != tt.path || got.usageDir != tt.usageDir {
				t.Errorf("version %d path %q usage %q, want %d %q %q", got.version, got.path, got.usageDir, tt.version, tt.path, tt.usageDir)
			}
			if !slices.Equal(got.cpuDirs, tt.cpuDirs) {
				t.Errorf("cpu dirs = %q, want %q", got.cpuDirs, tt.cpuDirs)
			}
			if !slices.Equal(got.memDirs, tt.memDirs) {
				t.Errorf("memory dirs = %q, want %q", got.memDirs, tt.memDirs)
			}
		})
	}
}

func TestParseCgroupLimits(t *testing.T) {
	cpuMax := []struct {
		in    string
		cores float64
		ok    bool
	}{
		{"max 100000", 0, false},
		{"150000 100000", 1.5, true},
		{"50000 100000\n", 0.5, true},
		{"200000", 2, true}, // period defaults to 100 ms
		{"", 0, false},
		{"garbage", 0, false},
	}
	for _, tt := range cpuMax {
		if cores, ok := parseCPUMax(tt.in); cores != tt.cores || ok != tt.ok {
			t.Errorf("parseCPUMax(%q) = %v, %v; want %v, %v", tt.in, cores, ok, tt.cores, tt.ok)
		}
	}
	quota := []struct {
		quota, period string
		cores         float64
		ok            bool
	}{
		{"-1", "100000", 0, false},
		{"25000", "100000", 0.25, true},
		{"400000\n", "100000\n", 4, true},
		{"25000", "0", 0, false},
		{"", "", 0, false},
	}
	for _, tt := range quota {
		if cores, ok := parseCFSQuota(tt.quota, tt.period); cores != tt.cores || ok != tt.ok {
			t.Errorf("parseCFSQuota(%q, %q) = %v, %v; want %v, %v", tt.quota, tt.period, cores, ok, tt.cores, tt.ok)
		}
	}
	mem := []struct {
		in    string
		bytes uint64
		ok    bool
	}{
		{"max", 0, false},
		{"9223372036854771712", 0, false}, // v1 "unlimited"
		{"536870912\n", 536870912, true},
		{"", 0, false},
		{"-1", 0, false},
	}
	for _, tt := range mem {
		if b, ok := parseMemLimit(tt.in); b != tt.bytes || ok != tt.ok {
			t.Errorf("parseMemLimit(%q) = %v, %v; want %v, %v", tt.in, b, ok, tt.bytes, tt.ok)
		}
	}
	stat := "usage_usec 117171713\nuser_usec 83379612\nnr_periods 7\n"
	if v, ok := flatKeyed(stat, "usage_usec"); v != 117171713 || !ok {
		t.Errorf("usage_usec = %v, %v", v, ok)
	}
	if v, ok := flatKeyed(stat, "nr_periods"); v != 7 || !ok {
		t.Errorf("nr_periods = %v, %v", v, ok)
	}
	if _, ok := flatKeyed(stat, "usage"); ok {
		t.Error("found key usage (a prefix of usage_usec)")
	}
}

func TestShapeCgroup(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	cores := func(v float64) *float64 { return &v }
	bytes := func(v uint64) *uint64 { return &v }
	lay := cgroupLayout{version: 2, path: "/kubepods/pod1/ctr"}
	tests := []struct {
		name      string
		lim       cgroupLimits
		prev, cur cgroupCounters
		want      string
	}{
		{
			name: "limited: usage against quota, throttling, working set against limit",
			lim:  cgroupLimits{cpuCores: cores(2), memBytes: bytes(1000)},
			prev: cgroupCounters{at: t0, cpuUsageNs: 1e9, periods: 100, throttled: 10},
			cur: cgroupCounters{at: t0.Add(2 * time.Second), cpuUsageNs: 2e9, periods: 120, throttled: 15,
				memUsage: 600, memInactiveFile: 100},
			want: `{"cgroup_version":2,"path":"/kubepods/pod1/ctr","cpu_limit_cores":2,"cpu_usage_cores":0.5,` +
				`"cpu_usage_pct":25,"cpu_throttled_pct":25,"memory_limit_bytes":1000,"memory_usage_bytes":600,` +
				`"memory_working_set_bytes":500,"memory_used_pct":50}`,
		},
		{
			name: "memory limit only: CPU fields that need a quota are null",
			lim:  cgroupLimits{memBytes: bytes(4000)},
			prev: cgroupCounters{at: t0, cpuUsageNs: 0},
			cur:  cgroupCounters{at: t0.Add(time.Second), cpuUsageNs: 1234567, memUsage: 1000},
			want: `{"cgroup_version":2,"path":"/kubepods/pod1/ctr","cpu_limit_cores":null,"cpu_usage_cores":0.001,` +
				`"cpu_usage_pct":null,"cpu_throttled_pct":null,"memory_limit_bytes":4000,"memory_usage_bytes":1000,` +
				`"memory_working_set_bytes":1000,"memory_used_pct":25}`,
		},
		{
			name: "v1 hierarchical limit of an invisible ancestor is tighter",
			lim:  cgroupLimits{cpuCores: cores(0.5)},
			prev: cgroupCounters{at: t0, cpuUsageNs: 5e9},
			cur:  cgroupCounters{at: t0.Add(time.Second), cpuUsageNs: 6e9, memUsage: 300, memHierLimit: 600},
			want: `{"cgroup_version":2,"path":"/kubepods/pod1/ctr","cpu_limit_cores":0.5,"cpu_usage_cores":1,` +
				`"cpu_usage_pct":100,"cpu_throttled_pct":null,"memory_limit_bytes":600,"memory_usage_bytes":300,` +
				`"memory_working_set_bytes":300,"memory_used_pct":50}`,
		},
		{
			name: "counter went backwards: no usage rather than a negative one",
			lim:  cgroupLimits{cpuCores: cores(1)},
			prev: cgroupCounters{at: t0, cpuUsageNs: 5e9},
			cur:  cgroupCounters{at: t0.Add(time.Second), cpuUsageNs: 1e9, memUsage: 10, memInactiveFile: 20},
			want: `{"cgroup_version":2,"path":"/kubepods/pod1/ctr","cpu_limit_cores":1,"cpu_usage_cores":0,` +
				`"cpu_usage_pct":0,"cpu_throttled_pct":null,"memory_limit_bytes":null,"memory_usage_bytes":10,` +
				`"memory_working_set_bytes":0,"memory_used_pct":null}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(shapeCgroup(lay, tt.lim, tt.prev, tt.cur))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("got  %s\nwant %s", b, tt.want)
			}
		})
	}
}

// cgroupFixture writes a /proc/self/cgroup, a mountinfo whose mount points
// lie under a temporary directory, and the cgroup files (paths relative to
// that directory); it returns the two /proc file names and the directory.
func cgroupFixture(t *testing.T, procCgroup string, mounts []string, files map[string]string) (pc, mi, root string) {
	t.Helper()
	root = t.TempDir()
	var b strings.Builder
	for i, m := range mounts { // "root point fstype superopts", point relative to root
		f := strings.Fields(m)
		b.WriteString(strings.Join([]string{
			"1" + string(rune('0'+i)), "1", "0:1", f[0], filepath.Join(root, f[1]), "rw", "-", f[2], f[2], f[3],
		}, " ") + "\n")
	}
	files["proc/cgroup"] = procCgroup
	files["proc/mountinfo"] = b.String()
	writeTree(t, root, files)
	return filepath.Join(root, "proc/cgroup"), filepath.Join(root, "proc/mountinfo"), root
}

func TestCgroupCollectorV2(t *testing.T) {
	pc, mi, root := cgroupFixture(t, "0::/kubepods/pod1/ctr\n", []string{"/ cg cgroup2 rw"}, map[string]string{
		"cg/cgroup.controllers":               "cpu memory",
		"cg/kubepods/cpu.max":                 "max 100000\n",
		"cg/kubepods/memory.max":              "max\n",
		"cg/kubepods/pod1/cpu.max":            "150000 100000\n",
		"cg/kubepods/pod1/memory.max":         "268435456\n",
		"cg/kubepods/pod1/ctr/cpu.max":        "max 100000\n",
		"cg/kubepods/pod1/ctr/memory.max":     "max\n",
		"cg/kubepods/pod1/ctr/cpu.stat":       "usage_usec 1000000\nuser_usec 600000\nsystem_usec 400000\nnr_periods 10\nnr_throttled 2\nthrottled_usec 5000\n",
		"cg/kubepods/pod1/ctr/memory.current": "104857600\n",
		"cg/kubepods/pod1/ctr/memory.stat":    "anon 50000000\nfile 54857600\ninactive_file 4857600\nactive_file 50000000\n",
	})
	c, ok := ownCgroupFrom(pc, mi)
	if !ok {
		t.Fatal("a pod with a CPU quota and a memory limit was not detected")
	}
	if c.Name() != "cgroup" || c.Interval() != 5*time.Second || c.Topics()[0].Name != "h.cgroup" {
		t.Errorf("name %q interval %v topics %v", c.Name(), c.Interval(), c.Topics())
	}
	if _, err := c.Collect(t.Context()); err != nil { // the first run measures from the baseline
		t.Fatal(err)
	}
	// The cgroup runs and gets throttled: 5 of 10 new periods.
	stat := "usage_usec 1500000\nnr_periods 20\nnr_throttled 7\n"
	if err := os.WriteFile(filepath.Join(root, "cg/kubepods/pod1/ctr/cpu.stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	samples, err := c.Collect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	d := samples[0].Data.(CgroupData)
	if d.CgroupVersion != 2 || d.Path != "/kubepods/pod1/ctr" {
		t.Errorf("version %d path %q", d.CgroupVersion, d.Path)
	}
	if d.CPULimitCores == nil || *d.CPULimitCores != 1.5 {
		t.Errorf("cpu_limit_cores = %v, want 1.5 (the pod's)", d.CPULimitCores)
	}
	if d.CPUUsageCores <= 0 || d.CPUUsagePct == nil || *d.CPUUsagePct <= 0 || *d.CPUUsagePct > 100 {
		t.Errorf("cpu usage %v cores, %v pct, want positive", d.CPUUsageCores, d.CPUUsagePct)
	}
	if d.CPUThrottledPct == nil || *d.CPUThrottledPct != 50 {
		t.Errorf("cpu_throttled_pct = %v, want 50", d.CPUThrottledPct)
	}
	if d.MemoryLimitBytes == nil || *d.MemoryLimitBytes != 268435456 {
		t.Errorf("memory_limit_bytes = %v, want the pod's 268435456", d.MemoryLimitBytes)
	}
	if d.MemoryUsageBytes != 104857600 || d.MemoryWorkingSetBytes != 100000000 {
		t.Errorf("memory usage %d working set %d", d.MemoryUsageBytes, d.MemoryWorkingSetBytes)
	}
	if d.MemoryUsedPct == nil || *d.MemoryUsedPct != 37.25 {
		t.Errorf("memory_used_pct = %v, want 37.25", d.MemoryUsedPct)
	}

	// A limit changed at runtime shows at the next run.
	if err := os.WriteFile(filepath.Join(root, "cg/kubepods/pod1/cpu.max"), []byte("max 100000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	samples, err = c.Collect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if d := samples[0].Data.(CgroupData); d.CPULimitCores != nil || d.CPUUsagePct != nil {
		t.Errorf("quota removed but cpu_limit_cores %v cpu_usage_pct %v", d.CPULimitCores, d.CPUUsagePct)
	}
}

func TestCgroupCollectorV1(t *testing.T) {
	mounts := []string{"/ cpu cgroup rw,cpu", "/ cpuacct cgroup rw,cpuacct", "/ memory cgroup rw,memory", "/ unified cgroup2 rw"}
	pc, mi, _ := cgroupFixture(t, "4:memory:/svc/app\n2:cpuacct:/svc/app\n1:cpu:/svc/app\n0::/\n", mounts, map[string]string{
		"cpu/svc/app/cpu.cfs_quota_us":         "50000\n",
		"cpu/svc/app/cpu.cfs_period_us":        "100000\n",
		"cpu/svc/app/cpu.stat":                 "nr_periods 4\nnr_throttled 1\nthrottled_time 1000\n",
		"cpu/svc/cpu.cfs_quota_us":             "-1\n",
		"cpu/svc/cpu.cfs_period_us":            "100000\n",
		"cpuacct/svc/app/cpuacct.usage":        "123456789\n",
		"memory/svc/app/memory.limit_in_bytes": "9223372036854771712\n",
		"memory/svc/app/memory.usage_in_bytes": "26025984\n",
		"memory/svc/app/memory.stat":           "cache 20340736\nrss 1863680\nhierarchical_memory_limit 536870912\ntotal_inactive_file 8507392\n",
		"memory/svc/memory.limit_in_bytes":     "9223372036854771712\n",
		"unified/cgroup.controllers":           "",
	})
	c, ok := ownCgroupFrom(pc, mi)
	if !ok {
		t.Fatal("a v1 cgroup with a CPU quota was not detected")
	}
	samples, err := c.Collect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	d := samples[0].Data.(CgroupData)
	if d.CgroupVersion != 1 || d.Path != "/svc/app" {
		t.Errorf("version %d path %q", d.CgroupVersion, d.Path)
	}
	if d.CPULimitCores == nil || *d.CPULimitCores != 0.5 {
		t.Errorf("cpu_limit_cores = %v, want 0.5", d.CPULimitCores)
	}
	if d.CPUUsageCores != 0 {
		t.Errorf("cpu_usage_cores = %v with a counter that did not move", d.CPUUsageCores)
	}
	if d.MemoryLimitBytes == nil || *d.MemoryLimitBytes != 536870912 {
		t.Errorf("memory_limit_bytes = %v, want the hierarchical limit 536870912", d.MemoryLimitBytes)
	}
	if d.MemoryUsageBytes != 26025984 || d.MemoryWorkingSetBytes != 26025984-8507392 {
		t.Errorf("memory usage %d working set %d", d.MemoryUsageBytes, d.MemoryWorkingSetBytes)
	}
}

func TestCgroupAbsentWithoutLimits(t *testing.T) {
	t.Run("v1 hybrid, unlimited (this machine)", func(t *testing.T) {
		mounts := []string{"/ cpu cgroup rw,cpu", "/ cpuacct cgroup rw,cpuacct", "/ memory cgroup rw,memory", "/ unified cgroup2 rw"}
		pc, mi, _ := cgroupFixture(t, hybridProcCgroup, mounts, map[string]string{
			"cpu/cpu.cfs_quota_us":                              "-1\n",
			"cpu/cpu.cfs_period_us":                             "100000\n",
			"cpuacct/cpuacct.usage":                             "58816725492\n",
			"memory/process_api/a51da7bd/memory.limit_in_bytes": "9223372036854771712\n",
			"memory/process_api/a51da7bd/memory.usage_in_bytes": "26025984\n",
			"memory/process_api/memory.limit_in_bytes":          "9223372036854771712\n",
			"memory/memory.limit_in_bytes":                      "9223372036854771712\n",
			"unified/cpu.stat":                                  "usage_usec 117171713\n",
		})
		if c, ok := ownCgroupFrom(pc, mi); ok {
			t.Errorf("unlimited cgroup detected as limited: %+v", c)
		}
	})
	t.Run("v2 root cgroup", func(t *testing.T) {
		pc, mi, _ := cgroupFixture(t, "0::/\n", []string{"/ cg cgroup2 rw"}, map[string]string{
			"cg/cpu.stat": "usage_usec 1\n",
		})
		if c, ok := ownCgroupFrom(pc, mi); ok {
			t.Errorf("root cgroup detected as limited: %+v", c)
		}
	})
	t.Run("no /proc/self/cgroup", func(t *testing.T) {
		if c, ok := ownCgroupFrom(filepath.Join(t.TempDir(), "nope"), "/proc/self/mountinfo"); ok {
			t.Errorf("detected without /proc/self/cgroup: %+v", c)
		}
	})
}

// TestCgroupResolveOnThisMachine checks that opsdash finds its own cgroup
// directories on the machine the tests run on.
func TestCgroupResolveOnThisMachine(t *testing.T) {
	pc, err1 := os.ReadFile("/proc/self/cgroup")
	mi, err2 := os.ReadFile("/proc/self/mountinfo")
	if err1 != nil || err2 != nil {
		t.Skipf("no cgroup information: %v %v", err1, err2)
	}
	lay, ok := resolveCgroup(string(pc), string(mi))
	if !ok {
		t.Skip("no cgroup filesystem mounted")
	}
	for _, dirs := range [][]string{lay.cpuDirs, lay.memDirs} {
		if len(dirs) > 0 {
			if st, err := os.Stat(dirs[0]); err != nil || !st.IsDir() {
				t.Errorf("cgroup directory %s: %v", dirs[0], err)
			}
		}
	}
	if _, err := lay.readCounters(); err != nil {
		t.Errorf("reading this process's cgroup counters: %v", err)
	}
}

// ownCgroupFrom is the catalog's cgroup collector of host "h", reading the
// given /proc/self/cgroup and mountinfo files.
func ownCgroupFrom(procCgroupFile, mountinfoFile string) (Collector, bool) {
	cfg := Config{HostID: "h"}
	return newCgroup(cfg, lookup("cgroup").spec(cfg), procCgroupFile, mountinfoFile)
}
