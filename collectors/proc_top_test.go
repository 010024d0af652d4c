package collectors

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestRankProcs(t *testing.T) {
	procs := []procStat{
		{pid: 1, cores: 0, rssPages: 300},
		{pid: 2, cores: 1.5, rssPages: 10},
		{pid: 3, cores: 0.5, rssPages: 1000},
		{pid: 4, cores: 0.5, rssPages: 20},
		{pid: 5, cores: 0, rssPages: 300},
	}
	pids := func(idx []int) []int {
		var out []int
		for _, i := range idx {
			out = append(out, procs[i].pid)
		}
		return out
	}
	byCPU, byMem := rankProcs(procs, 3)
	if got, want := pids(byCPU), []int{2, 3, 4}; !reflect.DeepEqual(got, want) {
		t.Errorf("by CPU = %v, want %v", got, want)
	}
	if got, want := pids(byMem), []int{3, 1, 5}; !reflect.DeepEqual(got, want) {
		t.Errorf("by memory = %v, want %v (ties by pid)", got, want)
	}
	byCPU, byMem = rankProcs(procs, 20)
	if len(byCPU) != 5 || len(byMem) != 5 {
		t.Errorf("with fewer processes than n: %d and %d entries, want 5", len(byCPU), len(byMem))
	}
	if got, want := pids(byCPU), []int{2, 3, 4, 1, 5}; !reflect.DeepEqual(got, want) {
		t.Errorf("by CPU = %v, want %v (idle ones by memory, then pid)", got, want)
	}
	byCPU, byMem = rankProcs(nil, 20)
	if len(byCPU) != 0 || len(byMem) != 0 {
		t.Errorf("no processes: %v %v", byCPU, byMem)
	}
}

// fakeProcTree writes a /proc and /etc under a temporary directory and
// points HOST_PROC and HOST_ETC at them.
func fakeProcTree(t *testing.T) (procDir string) {
	t.Helper()
	root := t.TempDir()
	procDir = filepath.Join(root, "proc")
	etc := filepath.Join(root, "etc")
	files := map[string]string{
		"proc/uptime": "1000.00 1900.00\n",
		"proc/stat":   "cpu  1 1 1 1\ncpu0 1 1 1 1\ncpu1 1 1 1 1\ncpu2 1 1 1 1\ncpu3 1 1 1 1\nintr 1\n",
		// Started at 900 s after boot, 50 s of CPU since: half a core.
		"proc/100/stat":    statLine(100, "postgres", 'S', 4000, 1000, 8, 90000, 25600),
		"proc/100/status":  "Name:\tpostgres\nUid:\t999\t999\t999\t999\n",
		"proc/100/cmdline": "postgres\x00-D\x00/var/lib/postgresql\x00",
		// comm cut at 15 bytes, full name in cmdline.
		"proc/200/stat":    statLine(200, "containerd-shim", 'R', 10, 10, 12, 99000, 4096),
		"proc/200/status":  "Name:\tcontainerd-shim\nUid:\t0\t0\t0\t0\n",
		"proc/200/cmdline": "/usr/bin/containerd-shim-runc-v2\x00",
		"proc/300/stat":    statLine(300, "defunct", 'Z', 0, 0, 1, 99500, 0),
		"proc/300/status":  "Name:\tdefunct\nUid:\t1234\t1234\t1234\t1234\n",
		"proc/self/stat":   "not a process directory\n",
		"proc/net/dev":     "",
		"etc/passwd":       "root:x:0:0::/root:/bin/sh\npostgres:x:999:999::/var/lib/postgresql:/bin/sh\n",
	}
	writeTree(t, root, files)
	t.Setenv("HOST_PROC", procDir)
	t.Setenv("HOST_ETC", etc)
	return procDir
}

func TestProcTopFromHostProc(t *testing.T) {
	fakeProcTree(t)
	c := NewProcTop(Config{HostID: "h"}).(*procTopCollector)
	if info := c.Topics(); len(info) != 1 || info[0].Name != "h.proc.top" || !info[0].OnDemand {
		t.Fatalf("Topics = %+v, want h.proc.top on demand", info)
	}

	// One scan: every process is new, its use is its average since start.
	c.ncpu = onlineCPUs(c.paths)
	if c.ncpu != 4 {
		t.Fatalf("online CPUs from $HOST_PROC/stat = %d, want 4", c.ncpu)
	}
	if n, err := c.scan(context.Background()); err != nil || n != 3 {
		t.Fatalf("scan = %d, %v; want 3 processes", n, err)
	}
	for _, p := range c.procs {
		if p.pid == 100 && math.Abs(p.cores-0.5) > 1e-9 {
			t.Fatalf("new process's use = %v cores, want 0.5 (50 s of CPU over 100 s of life)", p.cores)
		}
	}

	// A Collect: the fixture's counters do not move, so use is 0 now.
	samples, err := c.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 1 || samples[0].Topic != "h.proc.top" {
		t.Fatalf("Collect = %+v", samples)
	}
	d := samples[0].Data.(ProcTop)
	page := uint64(os.Getpagesize())
	want := ProcTop{
		Total: 3,
		ByCPU: []ProcInfo{
			{PID: 100, Name: "postgres", User: "postgres", RSSBytes: 25600 * page, Threads: 8, State: "sleeping"},
			{PID: 200, Name: "containerd-shim-runc-v2", User: "root", RSSBytes: 4096 * page, Threads: 12, State: "running"},
			{PID: 300, Name: "defunct", User: "1234", Threads: 1, State: "zombie"},
		},
	}
	want.ByMem = want.ByCPU
	want.ByIO = []ProcInfo{}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("proc.top =\n %+v\nwant\n %+v", d, want)
	}
}

func TestProcTopColdStartAfterIdle(t *testing.T) {
	fakeProcTree(t)
	c := NewProcTop(Config{HostID: "h", Intervals: map[string]time.Duration{"proc.top": 5 * time.Second}}).(*procTopCollector)
	if c.Interval() != 5*time.Second {
		t.Fatalf("Interval = %v, want the configured 5s", c.Interval())
	}
	// Each scan ends one round of the rate state: count scans by it.
	scansOf := func() uint32 {
		t.Helper()
		before := c.rates.round
		if _, err := c.Collect(context.Background()); err != nil {
			t.Fatal(err)
		}
		return c.rates.round - before
	}
	if n := scansOf(); n != 2 {
		t.Fatalf("first Collect scanned %d times, want 2 (cold start)", n)
	}
	if n := scansOf(); n != 1 {
		t.Fatalf("Collect right after scanned %d times, want 1", n)
	}
	// Nobody subscribed for longer than 3 intervals: cold start again,
	// rather than CPU averaged over the idle stretch.
	c.lastScan = c.lastScan.Add(-4 * c.Interval())
	if n := scansOf(); n != 2 {
		t.Fatalf("Collect after idling scanned %d times, want 2 (cold start)", n)
	}
}
