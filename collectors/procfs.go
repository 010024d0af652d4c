package collectors

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Reading and parsing procfs for proc.top: a process's stat, status and
// cmdline files, the host's uptime, CPU count and clock tick. The
// per-process files are read with plain system calls into a reused buffer,
// because a scan reads one of them per process every run.

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

	ioRead, ioWrite float64 // block I/O, bytes per second (proc.top)
	ioOK            bool    // the I/O rates are known
}

func (p *procStat) name() string { return string(p.comm[:p.commLen]) }

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
	// One pass over the bytes: this runs for every process every second
	// in the culprit sampler.
	for i := 0; nf < len(f) && i < len(rest); {
		for i < len(rest) && rest[i] == ' ' {
			i++
		}
		if i == len(rest) || rest[i] == '\n' {
			break
		}
		j := i
		for j < len(rest) && rest[j] != ' ' && rest[j] != '\n' {
			j++
		}
		f[nf] = rest[i:j]
		nf++
		i = j
	}
	if nf < len(f) || len(f[0]) != 1 {
		return p, false
	}
	num := func(field int) (uint64, bool) { return parseDecimal(f[field-3]) } // field as numbered in proc(5)
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

// parseDecimal parses an unsigned decimal number without the string
// conversion strconv needs.
func parseDecimal(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
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

// parseProcIO returns read_bytes and write_bytes of a /proc/<pid>/io file:
// the bytes the process made the block layer read and write (page cache
// hits and writes later truncated away count too, as the kernel counts
// them). The file is readable only for processes one may ptrace: one's own
// user's without CAP_SYS_PTRACE, any with it.
func parseProcIO(b []byte) (read, write uint64, ok bool) {
	var gotR, gotW bool
	for len(b) > 0 {
		var line []byte
		line, b = cutLine(b)
		k, v, found := bytes.Cut(line, []byte(": "))
		if !found {
			continue
		}
		switch string(k) {
		case "read_bytes":
			read, gotR = parseUintField(v)
		case "write_bytes":
			write, gotW = parseUintField(v)
		}
	}
	return read, write, gotR && gotW
}

func parseUintField(b []byte) (uint64, bool) {
	v, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
	return v, err == nil
}
