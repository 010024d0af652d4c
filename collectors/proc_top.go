package collectors

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
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

// procStat is what one /proc/<pid>/stat line says, plus the computed use.
type procStat struct {
	pid      int
	comm     [64]byte // kernel threads' comm can exceed 15 bytes ("kworker/0:1-events")
	commLen  uint8
	state    byte
	ticks    uint64 // utime + stime, clock ticks
	threads  int
	start    uint64 // starttime, clock ticks after boot
	rssPages uint64
	cores    float64 // CPU use, in cores
}

func (p *procStat) name() string { return string(p.comm[:p.commLen]) }

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
	data := ProcTop{
		Total: total,
		ByCPU: make([]ProcInfo, len(byCPU)),
		ByMem: make([]ProcInfo, len(byMem)),
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
	var cur [1]uint64
	var rate [1]float64
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
		c.procs = append(c.procs, p)
	}
	c.rates.endRound()
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

// parseProcStat parses a /proc/<pid>/stat line (see proc(5)). comm sits in
// parentheses and may itself contain spaces and parentheses, so the fields
// after it are counted from the last ')'.
func parseProcStat(b []byte) (procStat, bool) {
	var p procStat
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return p, false
	}
	p.commLen = uint8(copy(p.comm[:], b[open+1:end]))
	// Fields from 3 (state) on; rest[0] is field 3.
	rest := b[end+1:]
	var f [22][]byte // up to field 24 (rss)
	nf := 0
	for nf < len(f) {
		for len(rest) > 0 && rest[0] == ' ' {
			rest = rest[1:]
		}
		if len(rest) == 0 || rest[0] == '\n' {
			break
		}
		e := bytes.IndexAny(rest, " \n")
		if e < 0 {
			e = len(rest)
		}
		f[nf] = rest[:e]
		nf++
		rest = rest[e:]
	}
	if nf < len(f) || len(f[0]) != 1 {
		return p, false
	}
	num := func(field int) (uint64, bool) { // field as numbered in proc(5)
		v, err := strconv.ParseUint(string(f[field-3]), 10, 64)
		return v, err == nil
	}
	p.state = f[0][0]
	utime, ok1 := num(14)
	stime, ok2 := num(15)
	threads, ok3 := num(20)
	start, ok4 := num(22)
	rss, ok5 := num(24)
	if !(ok1 && ok2 && ok3 && ok4) {
		return p, false
	}
	if !ok5 { // rss is signed in the kernel; never negative in practice
		rss = 0
	}
	p.ticks = utime + stime
	p.threads = int(threads)
	p.start = start
	p.rssPages = rss
	return p, true
}

// parseStatusUID returns the effective uid from a /proc/<pid>/status file
// ("Uid:\treal\teffective\tsaved\tfs").
func parseStatusUID(b []byte) (uint32, bool) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		rest, ok := bytes.CutPrefix(line, []byte("Uid:"))
		if !ok {
			continue
		}
		fs := bytes.Fields(rest)
		if len(fs) < 2 {
			return 0, false
		}
		uid, err := strconv.ParseUint(string(fs[1]), 10, 32)
		return uint32(uid), err == nil
	}
	return 0, false
}

// fullProcName returns the program's file name from cmdline (arguments
// separated by NUL) when it extends comm, which the kernel cuts at 15 bytes;
// otherwise comm. Kernel threads have an empty cmdline.
func fullProcName(comm string, cmdline []byte) string {
	arg0, _, _ := bytes.Cut(cmdline, []byte{0})
	// Some programs rewrite their arguments into one space-separated
	// string ("nginx: worker process"): take the first word.
	if i := bytes.IndexByte(arg0, ' '); i >= 0 {
		arg0 = arg0[:i]
	}
	base := filepath.Base(string(arg0))
	if len(arg0) > 0 && strings.HasPrefix(base, comm) {
		return base
	}
	return comm
}

// procStateName spells out the state letter of /proc/<pid>/stat.
func procStateName(s byte) string {
	switch s {
	case 'R':
		return "running"
	case 'S':
		return "sleeping"
	case 'D':
		return "disk_sleep"
	case 'Z':
		return "zombie"
	case 'T':
		return "stopped"
	case 't':
		return "tracing_stop"
	case 'X', 'x':
		return "dead"
	case 'I':
		return "idle"
	case 'P':
		return "parked"
	case 'W':
		return "paging"
	case 'K':
		return "wakekill"
	}
	return "unknown"
}

// readAt reads the file name under the directory dirfd into buf with three
// system calls; os.Open would add a poller registration and an *os.File
// per process.
func readAt(dirfd int, name string, buf []byte) (int, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return readFull(fd, buf)
}

// readFile reads up to len(buf) bytes of the file name into buf.
func readFile(name string, buf []byte) (int, error) {
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return readFull(fd, buf)
}

// readFull reads the file into buf with as few read calls as it takes. The
// files read here (stat, status, cmdline) are produced whole by the kernel
// on the first read; a read shorter than asked is the end of the file, which
// spares a second system call per process that would only return 0.
func readFull(fd int, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		n += m
		if m == 0 || n < len(buf) {
			break
		}
	}
	return n, nil
}

// readUptime returns the host's uptime in seconds from $HOST_PROC/uptime.
func readUptime(p hostPaths) (float64, error) {
	b, err := os.ReadFile(p.procPath("uptime"))
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	return strconv.ParseFloat(first, 64)
}

// onlineCPUs counts the host's online CPUs from the cpuN lines of
// $HOST_PROC/stat. runtime.NumCPU is only the fallback: it counts the CPUs
// this process may run on, fewer than the host's in a container with a
// cpuset.
func onlineCPUs(p hostPaths) int {
	f, err := os.Open(p.procPath("stat"))
	if err != nil {
		return runtime.NumCPU()
	}
	defer f.Close()
	if n := countCPULines(f); n > 0 {
		return n
	}
	return runtime.NumCPU()
}

// countCPULines counts the per-CPU lines ("cpu0 ...", not the "cpu " total)
// of a /proc/stat file.
func countCPULines(r io.Reader) int {
	n := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) > 3 && bytes.HasPrefix(line, []byte("cpu")) && isDecimalDigit(line[3]) {
			n++
		}
	}
	return n
}

// atClkTck is the auxiliary vector entry holding the kernel's USER_HZ.
const atClkTck = 17

// clockTicks returns the unit of CPU times in /proc (USER_HZ) from the
// auxiliary vector the kernel gave this process, as sysconf(_SC_CLK_TCK)
// does; 100, its value on every common architecture, if not found.
func clockTicks() int {
	if auxv, err := unix.Auxv(); err == nil {
		for _, kv := range auxv {
			if kv[0] == atClkTck && kv[1] > 0 {
				return int(kv[1])
			}
		}
	}
	return 100
}

// userNames maps uids to user names from a passwd file (the host's, under
// HOST_ETC), loaded when first needed and again when an unknown uid shows
// up and the file has changed since.
type userNames struct {
	path    string
	names   map[uint32]string
	modTime time.Time
	size    int64
	loaded  bool
}

// lookup returns uid's name, or the uid in decimal if passwd lacks it.
func (u *userNames) lookup(uid uint32) string {
	if name, ok := u.names[uid]; ok {
		return name
	}
	if u.reloadIfChanged() {
		if name, ok := u.names[uid]; ok {
			return name
		}
	}
	return strconv.FormatUint(uint64(uid), 10)
}

// reloadIfChanged reloads the file if it changed (or was never loaded) and
// reports whether it did.
func (u *userNames) reloadIfChanged() bool {
	st, err := os.Stat(u.path)
	if err != nil {
		return false
	}
	if u.loaded && st.ModTime().Equal(u.modTime) && st.Size() == u.size {
		return false
	}
	f, err := os.Open(u.path)
	if err != nil {
		return false
	}
	defer f.Close()
	names, err := parsePasswd(f)
	if err != nil {
		return false
	}
	u.names, u.modTime, u.size, u.loaded = names, st.ModTime(), st.Size(), true
	return true
}

// parsePasswd reads name:password:uid:... lines into a uid → name map. The
// first name of a uid wins, as with getpwuid. Comments, blank and malformed
// lines and NIS "+"/"-" entries are skipped.
func parsePasswd(r io.Reader) (map[uint32]string, error) {
	names := make(map[uint32]string)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue
		}
		parts := strings.SplitN(line, ":", 4)
		if len(parts) < 4 || parts[0] == "" {
			continue
		}
		uid, err := strconv.ParseUint(parts[2], 10, 32)
		if err != nil {
			continue
		}
		if _, dup := names[uint32(uid)]; !dup {
			names[uint32(uid)] = parts[0]
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return names, nil
}
