package collectors

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ProcTop is the payload of <host>.proc.top: the processes using the most
// CPU and the most memory.
type ProcTop struct {
	// Total is the number of processes on the host.
	Total int `json:"total"`
	// ByCPU holds up to 20 processes, highest CPU use first.
	ByCPU []ProcInfo `json:"by_cpu"`
	// ByMem holds up to 20 processes, largest resident memory first.
	ByMem []ProcInfo `json:"by_mem"`
	// ByIO holds up to 20 processes that did block I/O since the previous
	// sample, the most first; only processes whose /proc/<pid>/io is
	// readable (see IOReadable) can be in it.
	ByIO []ProcInfo `json:"by_io"`
	// IOReadable counts the processes whose /proc/<pid>/io could be read:
	// all of them with CAP_SYS_PTRACE (or as root), otherwise only those of
	// opsdash's own user.
	IOReadable int `json:"io_readable"`
}

// ProcInfo is one process. CPU use is the average over the interval since
// the previous sample.
type ProcInfo struct {
	PID int `json:"pid"`
	// Name is the command name (comm), or the program's file name when the
	// kernel cut comm at 15 characters.
	Name string `json:"name"`
	// User is the name of the process's effective user, or its uid when
	// the host's passwd file does not list it (LDAP and other directories
	// are not asked).
	User string `json:"user"`
	// CPUPct is the share of all the host's CPUs, 0–100, comparable with
	// <host>.cpu usage_pct.
	CPUPct float64 `json:"cpu_pct"`
	// CPUCores is the same use in cores: 1 is one core kept fully busy
	// (top's %CPU / 100), which stays readable on machines with many cores.
	CPUCores float64 `json:"cpu_cores"`
	RSSBytes uint64  `json:"rss_bytes"`
	Threads  int     `json:"threads"`
	// State is the scheduler state: running, sleeping, disk_sleep,
	// zombie, stopped, tracing_stop, dead, idle, parked, unknown.
	State string `json:"state"`
	// IOReadBytesPerS and IOWriteBytesPerS are the block I/O the process
	// caused (read_bytes, write_bytes of /proc/<pid>/io), IOBytesPerS
	// their sum; null where that file is not readable, or on the process's
	// first sample.
	IOReadBytesPerS  *float64 `json:"io_read_bytes_per_s"`
	IOWriteBytesPerS *float64 `json:"io_write_bytes_per_s"`
	IOBytesPerS      *float64 `json:"io_bytes_per_s"`
}

const (
	procTopN = 20
	// procColdWindow is how long a cold start waits between its two scans.
	procColdWindow = 200 * time.Millisecond
	// minProcAge is the youngest a new process may be for its CPU use
	// to be estimated from its life so far: 5 clock ticks at 100 Hz.
	minProcAge = 50 * time.Millisecond
)

// procKey identifies a process over time: a pid is reused after the
// process exits, its start time tells the new process from the old.
type procKey struct {
	pid   int
	start uint64 // clock ticks after boot
}

// procTopCollector produces <host>.proc.top.
type procTopCollector struct {
	spec
	topic    string
	paths    hostPaths
	clkTck   float64
	pageSize uint64

	mu       sync.Mutex
	ncpu     int
	rates    *counterRates[procKey]
	ioRates  *counterRates[procKey]
	ioRead   int // processes whose io file was readable in the last scan
	lastScan time.Time
	procs    []procStat // reused between scans
	buf      []byte
	users    *userNames
}

// NewProcTop returns the collector of <host>.proc.top: the top 20 processes
// by CPU and by resident memory, while someone subscribes (on demand).
//
// It reads /proc/<pid>/stat itself (under HOST_PROC) rather than through
// gopsutil's per-process calls, which open several files per process per
// value: one read per process keeps a scan of the host within its budget.
// The status file (for the user) and cmdline (for a name comm cut short)
// are read only for the processes that make the lists.
//
// CPU use is the change in each process's CPU time since the previous scan.
// A cold start (the first run, or the first after nobody subscribed for a
// while) scans twice, 200 ms apart, so that its first sample already shows
// current use rather than nothing or an average since each process began.
func NewProcTop(cfg Config) Collector { return buildAlways("proc.top", cfg) }

func newProcTop(cfg Config, s spec) *procTopCollector {
	paths := hostPathsFromEnv()
	return &procTopCollector{
		spec:     s,
		topic:    cfg.HostID + ".proc.top",
		paths:    paths,
		clkTck:   float64(clockTicks()),
		pageSize: uint64(os.Getpagesize()),
		rates:    newCounterRates[procKey](),
		ioRates:  newCounterRates[procKey](),
		buf:      make([]byte, 4096),
		users:    &userNames{path: paths.etcPath("passwd")},
	}
}

func (c *procTopCollector) Topics() []TopicInfo {
	return []TopicInfo{c.declare(c.topic, "Top 20 processes by CPU (pct, cores) and by resident memory (bytes); collected while subscribed")}
}

// staleAfter is how old the previous scan may be before CPU deltas against
// it would average over a stretch nobody asked about (the topic was idle).
func (c *procTopCollector) staleAfter() time.Duration { return 3 * c.interval }

// Collect scans the process table and picks the top processes.
func (c *procTopCollector) Collect(ctx context.Context) ([]Sample, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastScan.IsZero() || time.Since(c.lastScan) > c.staleAfter() {
		c.ncpu = onlineCPUs(c.paths)
		if _, err := c.scan(ctx); err != nil {
			return nil, err
		}
		if err := sleepOrDone(ctx, procColdWindow); err != nil {
			return nil, err
		}
	}
	total, err := c.scan(ctx)
	if err != nil {
		return nil, err
	}
	byCPU, byMem := rankProcs(c.procs, procTopN)
	byIO := rankProcsByIO(c.procs, procTopN)
	data := ProcTop{
		Total:      total,
		ByCPU:      make([]ProcInfo, len(byCPU)),
		ByMem:      make([]ProcInfo, len(byMem)),
		ByIO:       make([]ProcInfo, len(byIO)),
		IOReadable: c.ioRead,
	}
	// A process is often in both lists: describe it once.
	described := make(map[int]ProcInfo, len(byCPU)+len(byMem))
	describe := func(i int) ProcInfo {
		p := &c.procs[i]
		if info, ok := described[p.pid]; ok {
			return info
		}
		info := c.describe(p)
		described[p.pid] = info
		return info
	}
	for j, i := range byCPU {
		data.ByCPU[j] = describe(i)
	}
	for j, i := range byMem {
		data.ByMem[j] = describe(i)
	}
	for j, i := range byIO {
		data.ByIO[j] = describe(i)
	}
	return []Sample{{Topic: c.topic, Time: c.lastScan, Data: data}}, nil
}

// scan reads every /proc/<pid>/stat into c.procs, computes each process's
// CPU use since the previous scan and returns the number of processes.
func (c *procTopCollector) scan(ctx context.Context) (int, error) {
	dir, err := os.Open(c.paths.proc)
	if err != nil {
		return 0, fmt.Errorf("open process table: %w", err)
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return 0, fmt.Errorf("list processes: %w", err)
	}
	dirfd := int(dir.Fd())
	uptime, _ := readUptime(c.paths) // only for processes seen for the first time

	c.procs = c.procs[:0]
	c.ioRead = 0
	var cur [1]uint64
	var rate [1]float64
	var ioCur [2]uint64
	var ioRate [2]float64
	for i, name := range names {
		if i%256 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		pid, err := strconv.Atoi(name)
		if err != nil || pid <= 0 {
			continue // not a process directory
		}
		n, err := readAt(dirfd, name+"/stat", c.buf)
		if err != nil {
			continue // exited since the listing, or hidden from us
		}
		p, ok := parseProcStat(c.buf[:n])
		if !ok {
			continue
		}
		p.pid = pid
		at := time.Now()
		cur[0] = p.ticks
		if c.rates.observe(procKey{pid, p.start}, at, cur[:], rate[:]) {
			p.cores = rate[0] / c.clkTck
		} else if age := uptime - float64(p.start)/c.clkTck; uptime > 0 && age >= minProcAge.Seconds() {
			// New since the previous scan: its whole life is in the
			// window, so its average since start is its recent use.
			p.cores = min(float64(p.ticks)/c.clkTck/age, float64(p.threads))
		}
		// Per-process I/O, where the kernel lets us read it (ptrace
		// access: CAP_SYS_PTRACE, or the process is our own user's).
		if n, err := readAt(dirfd, name+"/io", c.buf); err == nil {
			if rd, wr, ok := parseProcIO(c.buf[:n]); ok {
				c.ioRead++
				ioCur[0], ioCur[1] = rd, wr
				if c.ioRates.observe(procKey{pid, p.start}, at, ioCur[:], ioRate[:]) {
					p.ioRead, p.ioWrite, p.ioOK = ioRate[0], ioRate[1], true
				}
			}
		}
		c.procs = append(c.procs, p)
	}
	c.rates.endRound()
	c.ioRates.endRound()
	c.lastScan = time.Now()
	return len(c.procs), nil
}

// describe turns a procStat into a ProcInfo, reading the process's status
// (for its user) and, if comm was cut short, its cmdline.
func (c *procTopCollector) describe(p *procStat) ProcInfo {
	ncpu := max(c.ncpu, 1)
	info := ProcInfo{
		PID:      p.pid,
		Name:     p.name(),
		CPUPct:   round2dp(clampPct(p.cores / float64(ncpu) * 100)),
		CPUCores: round2dp(min(max(p.cores, 0), float64(ncpu))),
		RSSBytes: p.rssPages * c.pageSize,
		Threads:  p.threads,
		State:    procStateName(p.state),
	}
	if p.ioOK {
		info.IOReadBytesPerS = ptr(round2dp(p.ioRead))
		info.IOWriteBytesPerS = ptr(round2dp(p.ioWrite))
		info.IOBytesPerS = ptr(round2dp(p.ioRead + p.ioWrite))
	}
	pidDir := c.paths.procPath(strconv.Itoa(p.pid))
	if n, err := readFile(filepath.Join(pidDir, "status"), c.buf); err == nil {
		if uid, ok := parseStatusUID(c.buf[:n]); ok {
			info.User = c.users.lookup(uid)
		}
	}
	if info.User == "" {
		// status unreadable: the owner of /proc/<pid> is the process's
		// effective uid for all but non-dumpable processes.
		var st unix.Stat_t
		if unix.Stat(pidDir, &st) == nil {
			info.User = c.users.lookup(st.Uid)
		}
	}
	if p.commLen == 15 { // TASK_COMM_LEN - 1: comm may have been cut
		if n, err := readFile(filepath.Join(pidDir, "cmdline"), c.buf); err == nil {
			info.Name = fullProcName(info.Name, c.buf[:n])
		}
	}
	return info
}

// rankProcs returns the indexes into procs of up to n processes using the
// most CPU and of up to n with the largest resident memory. Ties are broken
// by the other measure, then by pid, so that lists do not shuffle between
// samples of an idle host.
func rankProcs(procs []procStat, n int) (byCPU, byMem []int) {
	idx := make([]int, len(procs))
	for i := range idx {
		idx[i] = i
	}
	byCPUOrder := func(a, b int) int {
		pa, pb := &procs[a], &procs[b]
		return cmp.Or(cmp.Compare(pb.cores, pa.cores), cmp.Compare(pb.rssPages, pa.rssPages), cmp.Compare(pa.pid, pb.pid))
	}
	byMemOrder := func(a, b int) int {
		pa, pb := &procs[a], &procs[b]
		return cmp.Or(cmp.Compare(pb.rssPages, pa.rssPages), cmp.Compare(pb.cores, pa.cores), cmp.Compare(pa.pid, pb.pid))
	}
	k := min(n, len(idx))
	slices.SortFunc(idx, byCPUOrder)
	byCPU = slices.Clone(idx[:k])
	slices.SortFunc(idx, byMemOrder)
	byMem = slices.Clone(idx[:k])
	return byCPU, byMem
}

// rankProcsByIO returns the indexes into procs of up to n processes that
// did block I/O, the most first, ties by pid.
func rankProcsByIO(procs []procStat, n int) []int {
	var idx []int
	for i := range procs {
		if procs[i].ioOK && procs[i].ioRead+procs[i].ioWrite > 0 {
			idx = append(idx, i)
		}
	}
	slices.SortFunc(idx, func(a, b int) int {
		pa, pb := &procs[a], &procs[b]
		return cmp.Or(cmp.Compare(pb.ioRead+pb.ioWrite, pa.ioRead+pa.ioWrite), cmp.Compare(pa.pid, pb.pid))
	})
	return idx[:min(n, len(idx))]
}
