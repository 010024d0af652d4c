package collectors

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// The culprit sampler: who was on top, each second, for the last quarter
// of an hour at least.
//
// proc.top reads the whole process table, but only while someone watches.
// A spike is noticed afterwards, so the question "which process or
// container was it, a minute ago?" needs a record kept all the time. The
// sampler keeps it cheaply:
//
//   - It reads /proc/<pid>/stat of every process once a second through a
//     file descriptor it keeps open per process (pread at offset 0): the
//     open and close that proc.top pays per process and run cost about
//     twice the read itself. The descriptors are capped (maxHeldFDs); past
//     the cap, processes are opened and closed each second like proc.top.
//   - It reads /proc/<pid>/io only for processes that used CPU in the
//     second (a process that did not run did not start I/O), and only
//     where the kernel lets it (CAP_SYS_PTRACE, or its own user's
//     processes); the file of a process it may not read is not tried
//     again.
//   - Per workload it reads three cgroup files a second (CPU time, memory,
//     block I/O), also through kept descriptors; the tree is walked again
//     every culpritRediscover.
//   - It keeps the top culpritTopN of each list, encodes the second once as
//     JSON and keeps those bytes in a ring bounded in bytes, which
//     GET /api/v1/culprits serves as they are, and publishes them as
//     <host>.culprits.
//
// Its budget is 1% of one core with 1,000 processes (BenchmarkCulprits1000
// measures it; docs/benchmarks.md has the numbers).

const (
	// culpritTopN is the length of each list of a second.
	culpritTopN = 5
	// culpritAttributed is how many of the top CPU users get their
	// workload looked up, to name each workload's top process.
	culpritAttributed = 10
	// culpritRediscover is how often the sampler walks the cgroup tree for
	// workloads that came or went: as often as the workloads collector
	// runs. (A new container's processes are named with their workload at
	// once: that comes from /proc/<pid>/cgroup.)
	culpritRediscover = 5 * time.Second
	// CulpritRingBytes bounds the ring of seconds kept: at most
	// maxCulpritEntryBytes per second, it holds at least
	// MinCulpritWindow; seconds usually take a third of that, so about
	// three quarters of an hour fits.
	CulpritRingBytes = 4 << 20
	// MinCulpritWindow is the history the ring always holds.
	MinCulpritWindow = 15 * time.Minute
	// maxCulpritEntries bounds the ring's length whatever the bytes: an
	// hour of seconds.
	maxCulpritEntries = 3600
	// maxCulpritEntryBytes is the largest second kept: lists are cut from
	// their tails until the encoding fits.
	maxCulpritEntryBytes = CulpritRingBytes / int(MinCulpritWindow/time.Second)
	// culpritNameBytes cuts process and workload names in the ring.
	culpritNameBytes = 48
	// CulpritMaxDistance is how far from the asked time a kept second may
	// be to answer for it.
	CulpritMaxDistance = 2 * time.Second
)

// CulpritsData is one second of the culprit record: the payload of
// <host>.culprits and the "culprits" of GET /api/v1/culprits.
type CulpritsData struct {
	// Processes counts the processes read this second.
	Processes int `json:"processes"`
	// ProcessIO counts those whose I/O is known: /proc/<pid>/io is read
	// once a process has run, and only where the kernel allows it (any
	// process with CAP_SYS_PTRACE, otherwise opsdash's own user's).
	ProcessIO int `json:"process_io"`
	// Procs and Workloads list the top culpritTopN by each measure; an
	// entry is listed only with a value above zero.
	Procs     CulpritLists[CulpritProcess]  `json:"top_processes"`
	Workloads CulpritLists[CulpritWorkload] `json:"top_workloads"`
}

// CulpritLists are one second's top entries by each measure.
type CulpritLists[T any] struct {
	CPU       []T `json:"cpu"`
	MemGrowth []T `json:"mem_growth"`
	IO        []T `json:"io"`
}

// CulpritProcess is one process in one second.
type CulpritProcess struct {
	PID  int    `json:"pid"`
	Name string `json:"name"`
	// Workload is the id of the workload it runs in, "" for none.
	Workload string  `json:"workload"`
	CPUCores float64 `json:"cpu_cores"`
	RSSBytes uint64  `json:"rss_bytes"`
	// MemGrowthBytesPerS is the growth of its resident memory (0 when it
	// shrank).
	MemGrowthBytesPerS float64 `json:"mem_growth_bytes_per_s"`
	// IOBytesPerS is read plus written block I/O; null where
	// /proc/<pid>/io is not readable.
	IOBytesPerS *float64 `json:"io_bytes_per_s"`
}

// CulpritWorkload is one workload in one second.
type CulpritWorkload struct {
	ID                 string  `json:"id"`
	Name               string  `json:"name"`
	Kind               string  `json:"kind"`
	CPUCores           float64 `json:"cpu_cores"`
	MemBytes           uint64  `json:"mem_bytes"`
	MemGrowthBytesPerS float64 `json:"mem_growth_bytes_per_s"`
	IOBytesPerS        float64 `json:"io_bytes_per_s"`
	// TopPID and TopProcess name its busiest process this second, when
	// that process was among the host's culpritAttributed busiest.
	TopPID     int    `json:"top_pid,omitempty"`
	TopProcess string `json:"top_process,omitempty"`
}

// CulpritSampler is the always-on culprit sampler, <host>.culprits; its
// record answers GET /api/v1/culprits (CulpritsAt).
type CulpritSampler struct {
	spec
	topic    string
	paths    hostPaths
	tree     cgroupTree
	clkTck   float64
	pageSize uint64
	maxFDs   int
	ring     *culpritRing

	mu          sync.Mutex
	fds         *heldFDs
	procDir     *os.File
	procs       map[int]*sampledProc
	workloads   map[workloadKey]*sampledWorkload
	discovered  time.Time
	namer       *workloadNamer
	r           *cgReader
	buf         []byte
	dents       []byte         // getdents buffer
	noSchedstat bool           // schedstat is missing or all zeros on this kernel
	pids        []int          // reused list of the process table
	list        []*sampledProc // this second's processes (reused)
	lastAt      time.Time
	round       uint32
}

// sampledProc is one process between seconds.
type sampledProc struct {
	pid      int
	fd       int    // kept /proc/<pid>/stat or, with sched, schedstat; -1 when none is
	sched    bool   // fd is schedstat: the process has one thread
	runNs    uint64 // its thread's run time at the last schedstat read
	start    uint64
	ticks    uint64
	rssPages uint64
	round    uint32
	name     string

	ioRead, ioWrite uint64
	ioAt            time.Time
	ioDenied        bool

	attributed bool
	workload   string // id, "" for none

	// this second
	cores, growth float64
	ioRate        *float64
}

// sampledWorkload is one workload between seconds.
type sampledWorkload struct {
	ref           workloadRef
	id            string
	cpu, mem, io  int // kept file descriptors, -1 when missing
	at            time.Time
	cpuNs, memB   uint64
	ioBytes       uint64
	hasPrev, gone bool

	cores, growth, ioRate float64
}

// heldFDs is the sampler's open descriptors, closed by close or, should a
// sampler be dropped without it (tests), by a cleanup when it is garbage.
type heldFDs struct {
	mu sync.Mutex
	n  int
	fd map[int]struct{}
}

func (h *heldFDs) add(fd int) {
	h.mu.Lock()
	h.fd[fd] = struct{}{}
	h.n++
	h.mu.Unlock()
}

func (h *heldFDs) close(fd int) {
	if fd < 0 {
		return
	}
	h.mu.Lock()
	if _, ok := h.fd[fd]; ok {
		delete(h.fd, fd)
		h.n--
		unix.Close(fd)
	}
	h.mu.Unlock()
}

func (h *heldFDs) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

func (h *heldFDs) closeAll() {
	h.mu.Lock()
	for fd := range h.fd {
		unix.Close(fd)
	}
	h.fd, h.n = map[int]struct{}{}, 0
	h.mu.Unlock()
}

// NewCulprits returns the culprit sampler, always on at 1 s.
func NewCulprits(cfg Config) Collector { return buildAlways("culprits", cfg) }

func newCulprits(cfg Config, s spec) *CulpritSampler {
	paths := hostPathsFromEnv()
	return newCulpritsOn(cfg, s, paths, findCgroupTree(paths))
}

// newCulpritsOn is the sampler over a given procfs and tree (tests).
func newCulpritsOn(cfg Config, s spec, paths hostPaths, tree cgroupTree) *CulpritSampler {
	c := &CulpritSampler{
		spec:      s,
		topic:     cfg.HostID + ".culprits",
		paths:     paths,
		tree:      tree,
		clkTck:    float64(clockTicks()),
		pageSize:  uint64(os.Getpagesize()),
		maxFDs:    maxHeldFDs(),
		ring:      newCulpritRing(CulpritRingBytes, maxCulpritEntries),
		fds:       &heldFDs{fd: map[int]struct{}{}},
		procs:     map[int]*sampledProc{},
		workloads: map[workloadKey]*sampledWorkload{},
		namer:     newWorkloadNamer(cfg.HostRoot, newDockerAPI(cfg.Workloads.DockerSocket)),
		r:         newCgReader(),
		buf:       make([]byte, 4096),
		dents:     make([]byte, 32<<10),
	}
	runtime.AddCleanup(c, func(h *heldFDs) { h.closeAll() }, c.fds)
	return c
}

// maxHeldFDs is how many descriptors the sampler keeps open under the
// process's current limit (CulpritFDs).
func maxHeldFDs() int {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) != nil {
		return 256
	}
	return CulpritFDs(lim.Cur)
}

// CulpritFDs is how many descriptors the culprit sampler keeps open under a
// descriptor limit of limit: 4096, or a quarter of the limit if that is
// less, so that the server's connections keep most of it. A server keeps
// them out of its connection cap.
func CulpritFDs(limit uint64) int {
	return int(min(4096, limit/4))
}

func (c *CulpritSampler) Topics() []TopicInfo {
	return []TopicInfo{c.declare(c.topic,
		"Each second's top processes and workloads by CPU, memory growth and I/O (also GET /api/v1/culprits?at=…)")}
}

// close releases the sampler's descriptors.
func (c *CulpritSampler) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.procDir != nil {
		c.procDir.Close()
		c.procDir = nil
	}
	c.fds.closeAll()
	c.procs = map[int]*sampledProc{}
	c.workloads = map[workloadKey]*sampledWorkload{}
}

// Collect samples one second. The first run only takes the baseline.
func (c *CulpritSampler) Collect(ctx context.Context) ([]Sample, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	dt := now.Sub(c.lastAt).Seconds()
	baseline := c.lastAt.IsZero() || now.Sub(c.lastAt) > 3*c.interval
	c.lastAt = now
	c.round++

	nprocs, nio, err := c.sampleProcs(ctx, now, dt, baseline)
	if err != nil {
		return nil, err
	}
	c.sampleWorkloads(now, dt)
	if baseline {
		return nil, nil
	}
	data := c.shape(ctx, nprocs, nio)
	b, err := encodeCulprits(&data)
	if err != nil {
		return nil, err
	}
	c.ring.push(now.UnixMilli(), b)
	return []Sample{{Topic: c.topic, Time: now, Data: json.RawMessage(b)}}, nil
}

// sampleProcs reads every process's stat (and, for those that ran, io) and
// computes its use since the previous second. It returns how many
// processes it read and how many of them had readable io.
//
// A single-threaded process is first asked /proc/<pid>/schedstat, its
// thread's run time in nanoseconds: a few times cheaper for the kernel to
// produce than stat, which sums every thread and formats fifty fields. When
// that time has not moved the process did not run, so its CPU, memory
// (which grows only by its own page faults) and I/O did not change, and
// stat is not read. Most processes of a host sleep most seconds.
func (c *CulpritSampler) sampleProcs(ctx context.Context, now time.Time, dt float64, baseline bool) (nprocs, nio int, err error) {
	if c.procDir == nil {
		if c.procDir, err = os.Open(c.paths.proc); err != nil {
			return 0, 0, fmt.Errorf("open process table: %w", err)
		}
	}
	dirfd := int(c.procDir.Fd())
	pids, err := listPIDs(dirfd, c.dents, c.pids[:0])
	if err != nil {
		return 0, 0, fmt.Errorf("list processes: %w", err)
	}
	c.pids = pids
	var uptime float64
	for i, pid := range pids {
		if i%256 == 0 && ctx.Err() != nil {
			return 0, 0, ctx.Err()
		}
		p := c.procs[pid]
		if p != nil && p.sched && c.idle(p) {
			nprocs++
			if !p.ioDenied && !p.ioAt.IsZero() {
				nio++
			}
			continue
		}
		st, statFD, ok := c.readStat(dirfd, pid, p)
		if !ok {
			continue
		}
		nprocs++
		if p == nil {
			p = &sampledProc{pid: pid, fd: -1, start: ^uint64(0)}
			c.procs[pid] = p
		}
		name := strconv.Itoa(pid)
		if p.start != st.start { // new, or the pid was reused
			if p.start != ^uint64(0) {
				c.fds.close(p.fd)
				*p = sampledProc{pid: pid, fd: -1}
			}
			p.start, p.ticks, p.rssPages = st.start, st.ticks, st.rssPages
			p.name = st.name()
			if st.commLen == 15 { // comm may be cut: the program's name
				if m, err := readAt(dirfd, name+"/cmdline", c.buf); err == nil {
					p.name = fullProcName(p.name, c.buf[:m])
				}
			}
			p.round, p.cores, p.growth, p.ioRate = c.round, 0, 0, nil
			if !baseline {
				// Its whole life is in this second: its average since it
				// started is its use now.
				if uptime == 0 {
					uptime, _ = readUptime(c.paths)
				}
				if age := uptime - float64(st.start)/c.clkTck; uptime > 0 && age >= minProcAge.Seconds() {
					p.cores = min(float64(st.ticks)/c.clkTck/age, float64(st.threads))
				}
			}
			if p.cores > 0 {
				c.sampleIO(p, dirfd, name, now, dt)
			}
		} else {
			p.round = c.round
			ran := st.ticks > p.ticks
			p.cores, p.growth, p.ioRate = 0, 0, nil
			if dt > 0 && ran {
				p.cores = float64(st.ticks-p.ticks) / c.clkTck / dt
			}
			if dt > 0 && st.rssPages > p.rssPages {
				p.growth = float64((st.rssPages-p.rssPages)*c.pageSize) / dt
			}
			p.ticks, p.rssPages = st.ticks, st.rssPages
			if ran || p.sched { // schedstat moved: it ran, if less than a tick
				c.sampleIO(p, dirfd, name, now, dt)
			} else if !p.ioDenied && !p.ioAt.IsZero() {
				p.ioRate = &zeroRate // did not run: started no I/O
			}
		}
		c.holdFD(dirfd, p, name, st.threads, statFD)
		if !p.ioDenied && !p.ioAt.IsZero() {
			nio++
		}
	}
	c.list = c.list[:0]
	for pid, p := range c.procs {
		if p.round != c.round {
			c.fds.close(p.fd)
			delete(c.procs, pid)
			continue
		}
		c.list = append(c.list, p)
	}
	return nprocs, nio, nil
}

// idle reads the kept schedstat of a single-threaded process and reports
// whether it did not run since the previous second; then its figures for
// this second are zero. On false the caller reads its stat.
func (c *CulpritSampler) idle(p *sampledProc) bool {
	n, err := unix.Pread(p.fd, c.buf, 0)
	if err != nil || n == 0 {
		c.fds.close(p.fd) // gone; the pid may be another's now
		p.fd, p.sched = -1, false
		return false
	}
	run, ok := parseDecimal(firstField(c.buf[:n]))
	if !ok || run != p.runNs {
		p.runNs = run
		return false
	}
	p.round = c.round
	p.cores, p.growth, p.ioRate = 0, 0, nil
	if !p.ioDenied && !p.ioAt.IsZero() {
		p.ioRate = &zeroRate
	}
	return true
}

// readStat reads pid's stat, through p's kept descriptor when that is its
// stat; otherwise it opens the file and returns the descriptor (statFD) for
// holdFD to keep or close.
func (c *CulpritSampler) readStat(dirfd, pid int, p *sampledProc) (st procStat, statFD int, ok bool) {
	statFD = -1
	n := -1
	if p != nil && p.fd >= 0 && !p.sched {
		var err error
		if n, err = unix.Pread(p.fd, c.buf, 0); err != nil || n == 0 {
			c.fds.close(p.fd) // gone; the pid may be another's now
			p.fd, n = -1, -1
		}
	}
	if n < 0 {
		fd, err := unix.Openat(dirfd, strconv.Itoa(pid)+"/stat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return st, -1, false
		}
		if n, err = readFull(fd, c.buf); err != nil || n == 0 {
			unix.Close(fd)
			return st, -1, false
		}
		statFD = fd
	}
	st, ok = parseProcStat(c.buf[:n])
	if !ok && statFD >= 0 {
		unix.Close(statFD)
		statFD = -1
	}
	return st, statFD, ok
}

// holdFD decides which file of p to keep open for the next second: its
// schedstat when it has one thread (and schedstat works here), else its
// stat. statFD, when not -1, is a stat descriptor readStat opened: kept or
// closed here. Past maxFDs nothing more is kept.
func (c *CulpritSampler) holdFD(dirfd int, p *sampledProc, name string, threads int, statFD int) {
	wantSched := threads == 1 && !c.noSchedstat
	if wantSched {
		if statFD >= 0 {
			unix.Close(statFD)
		}
		if p.sched && p.fd >= 0 {
			return
		}
		c.fds.close(p.fd) // a stat kept while it had more threads
		p.fd, p.sched = -1, false
		if c.fds.count() >= c.maxFDs {
			return
		}
		fd, err := unix.Openat(dirfd, name+"/schedstat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			c.noSchedstat = c.noSchedstat || err == unix.ENOENT
			return
		}
		n, err := unix.Pread(fd, c.buf, 0)
		run, ok := parseDecimal(firstField(c.buf[:max(n, 0)]))
		if err != nil || !ok || run == 0 {
			// "0 0 0": the kernel keeps no run times (sched_info off).
			c.noSchedstat = c.noSchedstat || err == nil && run == 0
			unix.Close(fd)
			return
		}
		c.fds.add(fd)
		p.fd, p.sched, p.runNs = fd, true, run
		return
	}
	if p.sched {
		c.fds.close(p.fd)
		p.fd, p.sched = -1, false
	}
	if statFD < 0 {
		return // its kept stat was read
	}
	if p.fd < 0 && c.fds.count() < c.maxFDs {
		c.fds.add(statFD)
		p.fd = statFD
		return
	}
	unix.Close(statFD)
}

// zeroRate is the I/O rate of a process that did not run, shared (never
// written) so that a second of a thousand idle processes allocates nothing.
var zeroRate float64

// firstField is b up to its first space or newline.
func firstField(b []byte) []byte {
	for i, c := range b {
		if c == ' ' || c == '\n' {
			return b[:i]
		}
	}
	return b
}

// listPIDs lists the process table (the numeric entries of the procfs
// directory dirfd) into pids, reading the directory with getdents into
// buf rather than through os.File.Readdirnames, which makes a string of
// every name every second.
func listPIDs(dirfd int, buf []byte, pids []int) ([]int, error) {
	if _, err := unix.Seek(dirfd, 0, 0); err != nil {
		return nil, err
	}
	for {
		n, err := unix.Getdents(dirfd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return pids, nil
		}
		// struct linux_dirent64: ino (8), off (8), reclen (2), type (1), name.
		for b := buf[:n]; len(b) >= 19; {
			reclen := int(b[16]) | int(b[17])<<8
			if reclen < 19 || reclen > len(b) {
				break
			}
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if pid, ok := parseDecimal(name); ok && pid > 0 {
				pids = append(pids, int(pid))
			}
			b = b[reclen:]
		}
	}
}

// sampleIO reads a process's io file and sets its I/O rate since the last
// time it was read.
func (c *CulpritSampler) sampleIO(p *sampledProc, dirfd int, name string, now time.Time, dt float64) {
	if p.ioDenied {
		return
	}
	n, err := readAt(dirfd, name+"/io", c.buf)
	if err != nil {
		if err == unix.EACCES || err == unix.EPERM {
			p.ioDenied = true
		}
		return
	}
	rd, wr, ok := parseProcIO(c.buf[:n])
	if !ok {
		return
	}
	if !p.ioAt.IsZero() {
		if el := now.Sub(p.ioAt).Seconds(); el > 0 && rd+wr >= p.ioRead+p.ioWrite {
			rate := float64(rd+wr-p.ioRead-p.ioWrite) / el
			p.ioRate = &rate
		}
	}
	p.ioRead, p.ioWrite, p.ioAt = rd, wr, now
}

// sampleWorkloads reads each workload's CPU, memory and I/O counters.
func (c *CulpritSampler) sampleWorkloads(now time.Time, dt float64) {
	if c.tree.version() == 0 {
		return
	}
	if c.discovered.IsZero() || now.Sub(c.discovered) >= culpritRediscover {
		c.discovered = now
		c.rediscover()
	}
	for key, w := range c.workloads {
		cpuNs, ok := c.preadCounter(w.cpu, c.cpuParser())
		if !ok {
			c.dropWorkload(key, w) // its cgroup is gone
			continue
		}
		w.cores, w.growth, w.ioRate = 0, 0, 0
		// A workload none of whose processes ran neither grew nor started
		// I/O: its memory and I/O files are read only when its CPU time
		// moved, which spares two reads a second per idle workload.
		if w.hasPrev && cpuNs == w.cpuNs {
			w.at = now
			continue
		}
		memB, _ := c.preadCounter(w.mem, parseSingleUint)
		ioB, _ := c.preadCounter(w.io, c.ioParser())
		if w.hasPrev && dt > 0 {
			w.cores = counterRate(w.cpuNs, cpuNs, true, dt) / 1e9
			if memB > w.memB {
				w.growth = float64(memB-w.memB) / dt
			}
			w.ioRate = counterRate(w.ioBytes, ioB, w.io >= 0, dt)
		}
		w.cpuNs, w.memB, w.ioBytes, w.at, w.hasPrev = cpuNs, memB, ioB, now, true
	}
}

// rediscover walks the tree and opens the files of new workloads.
func (c *CulpritSampler) rediscover() {
	found := map[workloadKey]bool{}
	for _, ref := range discoverWorkloads(c.cpuTree()) {
		found[ref.key] = true
		if _, ok := c.workloads[ref.key]; ok {
			continue
		}
		if c.fds.count()+3 > c.maxFDs {
			continue
		}
		cpu, mem, io := c.workloadFiles(ref.rel)
		w := &sampledWorkload{ref: ref, id: workloadID(ref.key), cpu: c.openHeld(cpu), mem: c.openHeld(mem), io: c.openHeld(io)}
		if w.cpu < 0 {
			c.dropWorkload(ref.key, w) // nothing to rank it by
			continue
		}
		c.workloads[ref.key] = w
	}
	for key, w := range c.workloads {
		if !found[key] {
			c.dropWorkload(key, w)
		}
	}
	c.namer.forget(func(k workloadKey) bool { return c.workloads[k] != nil })
}

// cpuTree is the hierarchy of the CPU time counter: the only one the
// sampler walks (every culpritRediscover), a fifth of the cost of walking
// every v1 hierarchy.
func (c *CulpritSampler) cpuTree() cgroupTree {
	if c.tree.version() == 2 {
		return cgroupTree{v2: c.tree.v2}
	}
	return cgroupTree{v1: map[string]string{"cpuacct": c.tree.v1["cpuacct"]}}
}

// workloadFiles are the files of a workload's CPU time, memory and block
// I/O counters.
func (c *CulpritSampler) workloadFiles(rel string) (cpu, mem, io string) {
	t := c.tree
	if t.version() == 2 {
		d := filepath.Join(t.v2, rel)
		return filepath.Join(d, "cpu.stat"), filepath.Join(d, "memory.current"), filepath.Join(d, "io.stat")
	}
	in := func(ctrl, file string) string {
		if root := t.v1[ctrl]; root != "" {
			return filepath.Join(root, rel, file)
		}
		return ""
	}
	return in("cpuacct", "cpuacct.usage"), in("memory", "memory.usage_in_bytes"), in("blkio", "blkio.throttle.io_service_bytes_recursive")
}

func (c *CulpritSampler) openHeld(name string) int {
	if name == "" {
		return -1
	}
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	c.fds.add(fd)
	return fd
}

func (c *CulpritSampler) dropWorkload(key workloadKey, w *sampledWorkload) {
	c.fds.close(w.cpu)
	c.fds.close(w.mem)
	c.fds.close(w.io)
	delete(c.workloads, key)
}

// preadCounter reads a kept cgroup file again and parses it.
func (c *CulpritSampler) preadCounter(fd int, parse func([]byte) (uint64, bool)) (uint64, bool) {
	if fd < 0 {
		return 0, false
	}
	n, err := unix.Pread(fd, c.r.buf, 0)
	if err != nil || n <= 0 {
		return 0, false
	}
	return parse(bytes.TrimSpace(c.r.buf[:n]))
}

func (c *CulpritSampler) cpuParser() func([]byte) (uint64, bool) {
	if c.tree.version() == 2 {
		return func(b []byte) (uint64, bool) {
			usec, ok := keyedUint(b, "usage_usec")
			return usec * 1000, ok
		}
	}
	return parseSingleUint
}

func (c *CulpritSampler) ioParser() func([]byte) (uint64, bool) {
	if c.tree.version() == 2 {
		return func(b []byte) (uint64, bool) {
			r, w := parseIOStat(b)
			return r + w, true
		}
	}
	return func(b []byte) (uint64, bool) {
		r, w, _ := parseBlkioBytes(b)
		return r + w, true
	}
}

func parseSingleUint(b []byte) (uint64, bool) {
	v, err := strconv.ParseUint(string(b), 10, 64)
	return v, err == nil
}

// shape picks the second's top lists.
func (c *CulpritSampler) shape(ctx context.Context, nprocs, nio int) CulpritsData {
	procs := c.list
	pidOf := func(p *sampledProc) int { return p.pid }
	ioOf := func(p *sampledProc) float64 {
		if p.ioRate == nil {
			return 0
		}
		return *p.ioRate
	}
	byCPU := topBy(procs, culpritAttributed, func(p *sampledProc) float64 { return p.cores }, pidOf)
	byGrowth := topBy(procs, culpritTopN, func(p *sampledProc) float64 { return p.growth }, pidOf)
	byIO := topBy(procs, culpritTopN, ioOf, pidOf)

	entry := func(p *sampledProc) CulpritProcess {
		pid := p.pid
		c.attribute(pid, p)
		return CulpritProcess{
			PID: pid, Name: clipTo(p.name, culpritNameBytes), Workload: p.workload,
			CPUCores: cgroupRoundCores(p.cores), RSSBytes: p.rssPages * c.pageSize,
			MemGrowthBytesPerS: round2dp(p.growth), IOBytesPerS: roundPtr(p.ioRate),
		}
	}
	d := CulpritsData{Processes: nprocs, ProcessIO: nio, // lists are [] in JSON, never null
		Procs:     CulpritLists[CulpritProcess]{CPU: []CulpritProcess{}, MemGrowth: []CulpritProcess{}, IO: []CulpritProcess{}},
		Workloads: CulpritLists[CulpritWorkload]{CPU: []CulpritWorkload{}, MemGrowth: []CulpritWorkload{}, IO: []CulpritWorkload{}},
	}
	topProc := map[string]CulpritProcess{} // workload id → its busiest process among byCPU
	for i, p := range byCPU {
		e := entry(p)
		if i < culpritTopN {
			d.Procs.CPU = append(d.Procs.CPU, e)
		}
		if _, ok := topProc[e.Workload]; !ok && e.Workload != "" {
			topProc[e.Workload] = e
		}
	}
	for _, p := range byGrowth {
		d.Procs.MemGrowth = append(d.Procs.MemGrowth, entry(p))
	}
	for _, p := range byIO {
		d.Procs.IO = append(d.Procs.IO, entry(p))
	}

	ws := make([]*sampledWorkload, 0, len(c.workloads))
	for _, w := range c.workloads {
		if w.hasPrev {
			ws = append(ws, w)
		}
	}
	wid := func(w *sampledWorkload) string { return w.id }
	went := func(w *sampledWorkload) CulpritWorkload {
		names := c.namer.names(ctx, w.ref)
		e := CulpritWorkload{
			ID: w.id, Name: clipTo(names.name, culpritNameBytes), Kind: w.ref.key.kind,
			CPUCores: cgroupRoundCores(w.cores), MemBytes: w.memB,
			MemGrowthBytesPerS: round2dp(w.growth), IOBytesPerS: round2dp(w.ioRate),
		}
		if p, ok := topProc[w.id]; ok {
			e.TopPID, e.TopProcess = p.PID, p.Name
		}
		return e
	}
	for _, w := range topBy(ws, culpritTopN, func(w *sampledWorkload) float64 { return w.cores }, wid) {
		d.Workloads.CPU = append(d.Workloads.CPU, went(w))
	}
	for _, w := range topBy(ws, culpritTopN, func(w *sampledWorkload) float64 { return w.growth }, wid) {
		d.Workloads.MemGrowth = append(d.Workloads.MemGrowth, went(w))
	}
	for _, w := range topBy(ws, culpritTopN, func(w *sampledWorkload) float64 { return w.ioRate }, wid) {
		d.Workloads.IO = append(d.Workloads.IO, went(w))
	}
	return d
}

// attribute looks up, once per process, the workload it runs in from
// /proc/<pid>/cgroup.
func (c *CulpritSampler) attribute(pid int, p *sampledProc) {
	if p.attributed {
		return
	}
	p.attributed = true
	n, err := readFile(c.paths.procPath(strconv.Itoa(pid), "cgroup"), c.buf)
	if err != nil {
		return
	}
	if key, ok := workloadOfProcCgroup(c.buf[:n], c.tree.version()); ok {
		p.workload = workloadID(key)
	}
}

// workloadOfProcCgroup classifies a /proc/<pid>/cgroup file: the unified
// line on a v2 host, else the memory (or CPU accounting) line, whose path
// is the one the collector walks.
func workloadOfProcCgroup(b []byte, version int) (workloadKey, bool) {
	var best string
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		_, rest, _ := strings.Cut(line, ":")
		ctrls, p, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		switch {
		case version == 2 && ctrls == "":
			best = p
		case version == 1 && slices.Contains(strings.Split(ctrls, ","), "memory"):
			best = p
		case version == 1 && best == "" && slices.Contains(strings.Split(ctrls, ","), "cpuacct"):
			best = p
		}
	}
	if best == "" {
		return workloadKey{}, false
	}
	return classifyCgroupPath(best)
}

// topBy returns up to n items with the largest positive value, largest
// first, ties by tie (pid, id): a partial selection, cheaper than sorting a
// thousand processes for five.
func topBy[T any, K cmp.Ordered](items []T, n int, value func(T) float64, tie func(T) K) []T {
	out := make([]T, 0, n)
	for _, it := range items {
		v := value(it)
		if v <= 0 {
			continue
		}
		i := len(out)
		for i > 0 {
			pv := value(out[i-1])
			if pv > v || pv == v && tie(out[i-1]) < tie(it) {
				break
			}
			i--
		}
		if i >= n {
			continue
		}
		if len(out) < n {
			out = append(out, it)
		}
		copy(out[i+1:], out[i:len(out)-1])
		out[i] = it
	}
	return out
}

// encodeCulprits encodes a second, cutting the longest list's tail until
// it fits maxCulpritEntryBytes (it does unless names are long and every
// list is full), so that the ring always holds MinCulpritWindow.
func encodeCulprits(d *CulpritsData) ([]byte, error) {
	for {
		b, err := json.Marshal(d)
		if err != nil || len(b) <= maxCulpritEntryBytes {
			return b, err
		}
		p := longest([]*[]CulpritProcess{&d.Procs.CPU, &d.Procs.MemGrowth, &d.Procs.IO})
		w := longest([]*[]CulpritWorkload{&d.Workloads.CPU, &d.Workloads.MemGrowth, &d.Workloads.IO})
		if len(*p) >= len(*w) {
			*p = (*p)[:len(*p)-1]
		} else {
			*w = (*w)[:len(*w)-1]
		}
	}
}

// longest returns the longest of lists (the first of equals).
func longest[T any](lists []*[]T) *[]T {
	l := lists[0]
	for _, x := range lists[1:] {
		if len(*x) > len(*l) {
			l = x
		}
	}
	return l
}

// CulpritsAt returns the second kept nearest to at, its time and its JSON
// (a CulpritsData), when one lies within CulpritMaxDistance. The bytes are
// shared: read-only.
func (c *CulpritSampler) CulpritsAt(at time.Time) (time.Time, json.RawMessage, bool) {
	ts, b, ok := c.ring.nearest(at.UnixMilli(), CulpritMaxDistance.Milliseconds())
	return time.UnixMilli(ts), b, ok
}

// CulpritsSpan returns the oldest and newest seconds kept; zero times when
// none is.
func (c *CulpritSampler) CulpritsSpan() (oldest, newest time.Time) {
	o, n, count, _ := c.ring.span()
	if count == 0 {
		return time.Time{}, time.Time{}
	}
	return time.UnixMilli(o), time.UnixMilli(n)
}

// ErrNoCulprits is returned (wrapped, with a message that says which
// seconds are kept) when no second near the time asked for is recorded.
var ErrNoCulprits = errors.New("no culprits recorded")

// CulpritSecond is one second of the culprit record, with the span of the
// record kept at the time it was read.
type CulpritSecond struct {
	// TS is the second's time; Oldest and Newest bound the record.
	TS, Oldest, Newest time.Time
	// Data is the second's JSON (a CulpritsData), shared: read-only.
	Data json.RawMessage
}

// Lookup returns the second kept nearest to at, the newest when at is
// zero, or an error wrapping ErrNoCulprits that says which seconds are
// kept.
func (c *CulpritSampler) Lookup(at time.Time) (CulpritSecond, error) {
	oldest, newest := c.CulpritsSpan()
	if newest.IsZero() {
		return CulpritSecond{}, fmt.Errorf("%w yet", ErrNoCulprits)
	}
	if at.IsZero() {
		at = newest
	}
	ts, data, ok := c.CulpritsAt(at)
	if !ok {
		return CulpritSecond{}, fmt.Errorf("%w near %s; kept from %s to %s", ErrNoCulprits,
			at.UTC().Format(time.RFC3339), oldest.UTC().Format(time.RFC3339), newest.UTC().Format(time.RFC3339))
	}
	return CulpritSecond{TS: ts, Oldest: oldest, Newest: newest, Data: data}, nil
}

// Culprits is Lookup for the sampler's own host (the source of its topic);
// any other host's record is not here (ErrNoCulprits). It is what
// GET /api/v1/culprits asks (httpapi.CulpritSource).
func (c *CulpritSampler) Culprits(_ context.Context, host string, at time.Time) (CulpritSecond, error) {
	if own := strings.TrimSuffix(c.topic, ".culprits"); host != own {
		return CulpritSecond{}, fmt.Errorf("%w for host %s: this server records host %s only", ErrNoCulprits, host, own)
	}
	return c.Lookup(at)
}

// FindCulprits returns the culprit sampler of cs, nil when it has none.
func FindCulprits(cs []Collector) *CulpritSampler {
	for _, c := range cs {
		if s, ok := c.(*CulpritSampler); ok {
			return s
		}
	}
	return nil
}

// culpritRing keeps encoded seconds, oldest first, bounded in bytes and in
// count. Safe for concurrent use: the sampler pushes, the API reads.
type culpritRing struct {
	mu       sync.RWMutex
	ts       []int64
	data     [][]byte
	head, n  int
	bytes    int
	maxBytes int
}

func newCulpritRing(maxBytes, maxEntries int) *culpritRing {
	return &culpritRing{ts: make([]int64, maxEntries), data: make([][]byte, maxEntries), maxBytes: maxBytes}
}

// push appends a second, dropping the oldest ones until it fits.
func (r *culpritRing) push(ts int64, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.n > 0 && (r.n == len(r.ts) || r.bytes+len(b) > r.maxBytes) {
		r.bytes -= len(r.data[r.head])
		r.data[r.head] = nil
		r.head = (r.head + 1) % len(r.ts)
		r.n--
	}
	i := (r.head + r.n) % len(r.ts)
	r.ts[i], r.data[i] = ts, b
	r.n++
	r.bytes += len(b)
}

// at is the i-th oldest entry's index. r.mu must be held.
func (r *culpritRing) at(i int) int { return (r.head + i) % len(r.ts) }

// nearest returns the entry closest to ts, if within max milliseconds.
func (r *culpritRing) nearest(ts, max int64) (int64, []byte, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.n == 0 {
		return 0, nil, false
	}
	// The first entry at or after ts; the one before it may be closer.
	lo, hi := 0, r.n
	for lo < hi {
		mid := (lo + hi) / 2
		if r.ts[r.at(mid)] < ts {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	i := lo
	best := -1
	for _, j := range []int{i - 1, i} {
		if j < 0 || j >= r.n {
			continue
		}
		if best < 0 || abs64(r.ts[r.at(j)]-ts) < abs64(r.ts[r.at(best)]-ts) {
			best = j
		}
	}
	k := r.at(best)
	if abs64(r.ts[k]-ts) > max {
		return 0, nil, false
	}
	return r.ts[k], r.data[k], true
}

// span returns the oldest and newest times, the count and the bytes held.
func (r *culpritRing) span() (oldest, newest int64, n, bytes int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.n == 0 {
		return 0, 0, 0, 0
	}
	return r.ts[r.head], r.ts[r.at(r.n-1)], r.n, r.bytes
}

func abs64(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

func roundPtr(p *float64) *float64 {
	if p == nil {
		return nil
	}
	return ptr(round2dp(*p))
}

// clipTo cuts s to n bytes without splitting a UTF-8 sequence.
func clipTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}
