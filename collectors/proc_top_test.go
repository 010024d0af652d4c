package collectors

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// statLine builds a /proc/<pid>/stat line with the fields proc.top reads.
func statLine(pid int, comm string, state byte, utime, stime, threads, start, rss uint64) string {
	// Fields 3..24 of proc(5); the ones not read are plausible constants.
	return fmt.Sprintf("%d (%s) %c 1 %d %d 0 -1 4194560 1500 0 3 0 %d %d 0 0 20 0 %d 0 %d 123456789 %d 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
		pid, comm, state, pid, pid, utime, stime, threads, start, rss)
}

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name   string
		line   string
		want   procStat
		wantOK bool
	}{
		{
			name:   "ordinary process",
			line:   statLine(1234, "nginx", 'S', 150, 50, 4, 98765, 2560),
			want:   procStat{state: 'S', ticks: 200, threads: 4, start: 98765, rssPages: 2560},
			wantOK: true,
		},
		{
			name:   "comm with spaces and parentheses",
			line:   statLine(7, "a) (b c)", 'R', 1, 2, 1, 5, 10),
			want:   procStat{state: 'R', ticks: 3, threads: 1, start: 5, rssPages: 10},
			wantOK: true,
		},
		{
			name:   "kernel worker with a long comm",
			line:   statLine(9, "kworker/u4:1-events_unbound", 'I', 0, 0, 1, 3, 0),
			want:   procStat{state: 'I', threads: 1, start: 3},
			wantOK: true,
		},
		{name: "no comm", line: "1234 S 1 2 3\n"},
		{name: "truncated", line: "1234 (x) S 1 2 3 4 5\n"},
		{name: "non-numeric utime", line: strings.Replace(statLine(1, "x", 'S', 1, 2, 1, 5, 10), " 1 2 0 0 20", " x 2 0 0 20", 1)},
		{name: "empty", line: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseProcStat([]byte(tt.line))
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if !ok {
				return
			}
			comm := tt.line[strings.IndexByte(tt.line, '(')+1 : strings.LastIndexByte(tt.line, ')')]
			if got.name() != comm {
				t.Fatalf("comm = %q, want %q", got.name(), comm)
			}
			got.comm, got.commLen = [64]byte{}, 0
			if got != tt.want {
				t.Fatalf("parseProcStat = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseStatusUID(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   uint32
		wantOK bool
	}{
		{"effective uid is the second", "Name:\tsudo\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t0\t0\t0\nGid:\t1000\t0\t0\t0\n", 0, true},
		{"plain", "Name:\tbash\nUid:\t1000\t1000\t1000\t1000\n", 1000, true},
		{"no Uid line", "Name:\tbash\n", 0, false},
		{"malformed", "Uid:\t1000\n", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseStatusUID([]byte(tt.in))
			if ok != tt.wantOK || got != tt.want {
				t.Fatalf("parseStatusUID = %d, %v; want %d, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestFullProcName(t *testing.T) {
	tests := []struct {
		comm, cmdline, want string
	}{
		{"containerd-shim", "/usr/bin/containerd-shim-runc-v2\x00-namespace\x00k8s.io\x00", "containerd-shim-runc-v2"},
		{"kube-controller", "kube-controller-manager\x00--v=2\x00", "kube-controller-manager"},
		{"systemd-journal", "/lib/systemd/systemd-journald\x00", "systemd-journald"},
		{"nginx: worker p", "nginx: worker process\x00", "nginx: worker p"},
		{"kworker/0:1-eve", "", "kworker/0:1-eve"},
		{"python3.12-conf", "/usr/bin/python3\x00/usr/bin/x\x00", "python3.12-conf"},
	}
	for _, tt := range tests {
		if got := fullProcName(tt.comm, []byte(tt.cmdline)); got != tt.want {
			t.Errorf("fullProcName(%q, %q) = %q, want %q", tt.comm, tt.cmdline, got, tt.want)
		}
	}
}

func TestParsePasswd(t *testing.T) {
	in := `# comment
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin

toor:x:0:0:second root:/root:/bin/sh
alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash
+@netgroup::::::
broken line
bad:x:notanumber:1::/:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
`
	got, err := parsePasswd(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint32]string{0: "root", 1: "daemon", 1000: "alice", 65534: "nobody"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parsePasswd = %v, want %v", got, want)
	}
}

func TestUserNamesReloadsOnUnknownUID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	write := func(s string, mod time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now().Add(-time.Hour)
	write("root:x:0:0::/root:/bin/sh\n", t0)
	u := &userNames{path: path}
	if got := u.lookup(0); got != "root" {
		t.Fatalf("lookup(0) = %q, want root", got)
	}
	if got := u.lookup(1001); got != "1001" {
		t.Fatalf("lookup(1001) = %q, want the number", got)
	}
	write("root:x:0:0::/root:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n", t0.Add(time.Minute))
	if got := u.lookup(1001); got != "bob" {
		t.Fatalf("lookup(1001) after useradd = %q, want bob", got)
	}
	u2 := &userNames{path: filepath.Join(t.TempDir(), "missing")}
	if got := u2.lookup(0); got != "0" {
		t.Fatalf("lookup without a passwd file = %q, want 0", got)
	}
}

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

func TestCountCPULines(t *testing.T) {
	in := "cpu  1 2 3 4\ncpu0 1 2 3 4\ncpu1 1 2 3 4\ncpu12 1 2 3\nintr 5\nctxt 6\ncpufreq x\n"
	if got := countCPULines(strings.NewReader(in)); got != 3 {
		t.Fatalf("countCPULines = %d, want 3", got)
	}
}

func TestProcStateName(t *testing.T) {
	for s, want := range map[byte]string{'R': "running", 'S': "sleeping", 'D': "disk_sleep", 'Z': "zombie",
		'T': "stopped", 't': "tracing_stop", 'I': "idle", 'X': "dead", '?': "unknown"} {
		if got := procStateName(s); got != want {
			t.Errorf("procStateName(%q) = %q, want %q", s, got, want)
		}
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
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
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
