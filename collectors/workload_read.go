package collectors

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Reading a workload's cgroup files, v2 or v1. Every file is world-readable:
// none of this needs a capability.

// cgroupReading is one reading of one cgroup's counters and limits. A
// field whose file is missing (the controller is not enabled for this
// cgroup) keeps its zero value and its ok flag false, or stays nil.
type cgroupReading struct {
	at      time.Time
	present bool // the cgroup exists in at least one hierarchy

	cpuNs              uint64 // CPU time used, all its processes, ever
	cpuOK              bool
	periods, throttled uint64 // CFS enforcement periods, and those that ran out of quota
	cpuLimit           *float64

	memBytes                          uint64 // charged memory, page cache included
	memOK                             bool
	memAnon, memFile, memInactiveFile uint64
	memLimit                          *uint64
	oomKills                          uint64

	ioRead, ioWrite uint64 // block I/O bytes
	ioOK            bool

	pids, pidsLimit *uint64
}

// cgReader reads small cgroup and procfs files into one reused buffer.
type cgReader struct {
	buf []byte
}

func newCgReader() *cgReader { return &cgReader{buf: make([]byte, 16<<10)} }

// read returns name's content without surrounding space; the bytes are
// valid until the next read. ok is false when it cannot be read.
func (r *cgReader) read(name string) ([]byte, bool) {
	n, err := readFile(name, r.buf)
	if err != nil {
		return nil, false
	}
	return bytes.TrimSpace(r.buf[:n]), true
}

// uint reads a file holding one number.
func (r *cgReader) uint(name string) (uint64, bool) {
	b, ok := r.read(name)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b), 10, 64)
	return v, err == nil
}

// limit reads a file holding a limit: a number, or "max" (v2) or a huge
// value (v1) for none.
func (r *cgReader) limit(name string) *uint64 {
	b, ok := r.read(name)
	if !ok {
		return nil
	}
	if v, ok := parseMemLimit(string(b)); ok {
		return &v
	}
	return nil
}

// limitsRefresh is how often a workload's limits (CPU quota, memory and
// pids limits) are read again: they change only when someone changes them
// (docker update, a pod resized), and reading them every run would be a
// third of a workload's reads.
const limitsRefresh = 30 * time.Second

// workloadLimits are a cgroup's own limits as last read, and when.
type workloadLimits struct {
	at        time.Time
	cpu       *float64
	mem, pids *uint64
	// blkio is the v1 file that counts its I/O, "" until known.
	blkio string
}

// stale reports whether the limits are to be read again at now.
func (l *workloadLimits) stale(now time.Time) bool {
	return l.at.IsZero() || now.Sub(l.at) >= limitsRefresh || now.Before(l.at)
}

// readCgroup reads the cgroup at rel (the same path under every hierarchy)
// at time now; lim holds its limits between readings (nil: read them).
func (t cgroupTree) readCgroup(r *cgReader, rel string, now time.Time, lim *workloadLimits) cgroupReading {
	c := cgroupReading{at: now}
	if lim == nil {
		lim = &workloadLimits{}
	}
	fresh := lim.stale(now)
	if t.version() == 2 {
		t.readV2(r, filepath.Join(t.v2, rel), &c, lim, fresh)
	} else {
		t.readV1(r, rel, &c, lim, fresh)
	}
	if fresh && c.present {
		lim.at = now
	}
	if c.memLimit == nil || lim.mem != nil && *lim.mem < *c.memLimit {
		c.memLimit = lim.mem
	}
	c.cpuLimit = lim.cpu
	if c.pids != nil {
		c.pidsLimit = lim.pids
	}
	return c
}

func (t cgroupTree) readV2(r *cgReader, dir string, c *cgroupReading, lim *workloadLimits, fresh bool) {
	if !fileExists(dir) {
		return
	}
	c.present = true
	if fresh {
		lim.cpu, lim.mem, lim.pids = nil, nil, nil
		if b, ok := r.read(filepath.Join(dir, "cpu.max")); ok {
			if cores, ok := parseCPUMax(string(b)); ok {
				lim.cpu = &cores
			}
		}
		lim.mem = r.limit(filepath.Join(dir, "memory.max"))
		lim.pids = r.limit(filepath.Join(dir, "pids.max"))
	}
	if b, ok := r.read(filepath.Join(dir, "cpu.stat")); ok {
		var usec uint64
		usec, c.cpuOK = keyedUint(b, "usage_usec")
		c.cpuNs = usec * 1000
		c.periods, _ = keyedUint(b, "nr_periods")
		c.throttled, _ = keyedUint(b, "nr_throttled")
	}
	c.memBytes, c.memOK = r.uint(filepath.Join(dir, "memory.current"))
	if b, ok := r.read(filepath.Join(dir, "memory.stat")); ok {
		c.memAnon, _ = keyedUint(b, "anon")
		c.memFile, _ = keyedUint(b, "file")
		c.memInactiveFile, _ = keyedUint(b, "inactive_file")
	}
	if b, ok := r.read(filepath.Join(dir, "memory.events")); ok {
		c.oomKills, _ = keyedUint(b, "oom_kill")
	}
	if b, ok := r.read(filepath.Join(dir, "io.stat")); ok {
		c.ioRead, c.ioWrite = parseIOStat(b)
		c.ioOK = true
	}
	if v, ok := r.uint(filepath.Join(dir, "pids.current")); ok {
		c.pids = &v
	}
}

func (t cgroupTree) readV1(r *cgReader, rel string, c *cgroupReading, lim *workloadLimits, fresh bool) {
	dir := func(ctrl string) string {
		if root := t.v1[ctrl]; root != "" {
			return filepath.Join(root, rel)
		}
		return ""
	}
	if d := dir("cpuacct"); d != "" {
		if v, ok := r.uint(filepath.Join(d, "cpuacct.usage")); ok {
			c.cpuNs, c.cpuOK, c.present = v, true, true
		}
	}
	if d := dir("cpu"); d != "" {
		if b, ok := r.read(filepath.Join(d, "cpu.stat")); ok {
			c.present = true
			c.periods, _ = keyedUint(b, "nr_periods")
			c.throttled, _ = keyedUint(b, "nr_throttled")
			if fresh {
				lim.cpu = nil
				q, _ := r.read(filepath.Join(d, "cpu.cfs_quota_us"))
				quota := string(q) // read's bytes are reused by the next read
				p, _ := r.read(filepath.Join(d, "cpu.cfs_period_us"))
				if cores, ok := parseCFSQuota(quota, string(p)); ok {
					lim.cpu = &cores
				}
			}
		}
	}
	if d := dir("memory"); d != "" {
		if v, ok := r.uint(filepath.Join(d, "memory.usage_in_bytes")); ok {
			c.memBytes, c.memOK, c.present = v, true, true
			if fresh {
				lim.mem = r.limit(filepath.Join(d, "memory.limit_in_bytes"))
			}
			if b, ok := r.read(filepath.Join(d, "memory.stat")); ok {
				c.memAnon, _ = keyedUint(b, "total_rss")
				c.memFile, _ = keyedUint(b, "total_cache")
				c.memInactiveFile, _ = keyedUint(b, "total_inactive_file")
				if h, ok := keyedUint(b, "hierarchical_memory_limit"); ok && h < cgroupUnlimited {
					c.memLimit = &h // the lower of it and the cgroup's own: readCgroup
				}
			}
			if b, ok := r.read(filepath.Join(d, "memory.oom_control")); ok {
				c.oomKills, _ = keyedUint(b, "oom_kill")
			}
		}
	}
	if d := dir("blkio"); d != "" {
		// The throttle file counts every bio on kernels since 4.x; the
		// other is CFQ/BFQ's, for older ones. The first that exists is
		// remembered.
		files := []string{"blkio.throttle.io_service_bytes_recursive", "blkio.io_service_bytes_recursive"}
		if lim.blkio != "" {
			files = []string{lim.blkio}
		}
		for _, f := range files {
			b, ok := r.read(filepath.Join(d, f))
			if !ok {
				continue
			}
			c.present, c.ioOK, lim.blkio = true, true, f
			c.ioRead, c.ioWrite, _ = parseBlkioBytes(b)
			break
		}
	}
	if d := dir("pids"); d != "" {
		if v, ok := r.uint(filepath.Join(d, "pids.current")); ok {
			c.present = true
			c.pids = &v
			if fresh {
				lim.pids = r.limit(filepath.Join(d, "pids.max"))
			}
		}
	}
}

// cutLine returns the first line of b and the rest after it.
func cutLine(b []byte) (line, rest []byte) {
	line, rest, _ = bytes.Cut(b, []byte{'\n'})
	return line, rest
}

// keyedUint finds key in a flat-keyed file ("key value" per line).
func keyedUint(b []byte, key string) (uint64, bool) {
	for len(b) > 0 {
		var line []byte
		line, b = cutLine(b)
		k, v, ok := bytes.Cut(line, []byte{' '})
		if ok && string(k) == key {
			n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// parseIOStat sums rbytes and wbytes over the devices of a v2 io.stat
// ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0" per line).
func parseIOStat(b []byte) (read, write uint64) {
	for _, f := range bytes.Fields(b) {
		k, v, ok := bytes.Cut(f, []byte{'='})
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			continue
		}
		switch string(k) {
		case "rbytes":
			read += n
		case "wbytes":
			write += n
		}
	}
	return read, write
}

// parseBlkioBytes sums the Read and Write lines of a v1
// blkio.*io_service_bytes* file ("8:0 Read 4096" per device and operation,
// then "Total N"). any is false when it lists no device.
func parseBlkioBytes(b []byte) (read, write uint64, any bool) {
	for len(b) > 0 {
		var line []byte
		line, b = cutLine(b)
		f := bytes.Fields(line)
		if len(f) != 3 {
			continue
		}
		n, err := strconv.ParseUint(string(f[2]), 10, 64)
		if err != nil {
			continue
		}
		switch string(f[1]) {
		case "Read":
			read += n
			any = true
		case "Write":
			write += n
			any = true
		}
	}
	return read, write, any
}

// memberPID returns a process in the cgroup at rel (or, for a pod or a
// Podman scope whose processes sit one or two levels down, in a cgroup
// below it), 0 when it has none.
func (t cgroupTree) memberPID(r *cgReader, rel string) int {
	var dirs []string
	if t.version() == 2 {
		dirs = []string{filepath.Join(t.v2, rel)}
	} else {
		for _, c := range []string{"pids", "memory", "cpuacct", "cpu"} {
			if root := t.v1[c]; root != "" {
				dirs = append(dirs, filepath.Join(root, rel))
			}
		}
	}
	for _, d := range dirs {
		if pid := firstPID(r, d, 2); pid > 0 {
			return pid
		}
	}
	return 0
}

// firstPID reads cgroup.procs of dir and, when it is empty, of its
// children, down to depth more levels.
func firstPID(r *cgReader, dir string, depth int) int {
	if b, ok := r.read(filepath.Join(dir, "cgroup.procs")); ok && len(b) > 0 {
		line, _, _ := bytes.Cut(b, []byte{'\n'})
		if pid, err := strconv.Atoi(string(line)); err == nil && pid > 0 {
			return pid
		}
	}
	if depth == 0 {
		return 0
	}
	names, err := readDirNames(dir)
	if err != nil {
		return 0
	}
	for _, name := range names {
		child := filepath.Join(dir, name)
		if fileExists(filepath.Join(child, "cgroup.procs")) {
			if pid := firstPID(r, child, depth-1); pid > 0 {
				return pid
			}
		}
	}
	return 0
}

// readDirNames lists dir, sorted.
func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	slices.Sort(names)
	return names, err
}

// netNamespace identifies the network namespace whose /proc/<pid>/net/dev
// is read: every namespace has its own procfs entries, so the inode of
// net/dev tells namespaces apart without readlink on /proc/<pid>/ns/net,
// which needs ptrace access (CAP_SYS_PTRACE for other users' processes).
func netNamespace(p hostPaths, pid string) (uint64, bool) {
	var st unix.Stat_t
	if err := unix.Stat(p.procPath(pid, "net", "dev"), &st); err != nil {
		return 0, false
	}
	return st.Ino, true
}

// readNetDev sums the received and sent bytes of every interface but lo
// in a /proc/<pid>/net/dev file.
func readNetDev(r *cgReader, name string) (rx, tx uint64, ok bool) {
	b, ok := r.read(name)
	if !ok {
		return 0, 0, false
	}
	for len(b) > 0 {
		var line []byte
		line, b = cutLine(b)
		iface, rest, found := bytes.Cut(line, []byte{':'})
		if !found || string(bytes.TrimSpace(iface)) == "lo" {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) < 9 {
			continue
		}
		r, err1 := strconv.ParseUint(string(f[0]), 10, 64)
		t, err2 := strconv.ParseUint(string(f[8]), 10, 64)
		if err1 == nil && err2 == nil {
			rx += r
			tx += t
		}
	}
	return rx, tx, true
}
