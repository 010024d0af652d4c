package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports (the kernel fixes the
// user-visible value independently of CONFIG_HZ).
const clockTicks = 100

// buildServer compiles ./cmd/opsdash of the module that holds the working
// directory into dir and returns the binary's path.
func buildServer(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the opsdash module: run from its tree or pass --server-bin")
	}
	bin := filepath.Join(dir, "opsdash")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/opsdash")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/opsdash: %w\n%s", err, out)
	}
	return bin, nil
}

// raiseNofile lifts this process's RLIMIT_NOFILE (soft and hard) to at least
// want, within /proc/sys/fs/nr_open. Raising the hard limit needs root (or
// CAP_SYS_RESOURCE); without it the soft limit goes as high as the hard one.
// Children inherit the new limit: once a Go program calls Setrlimit itself,
// os/exec no longer restores the limit it found at startup.
func raiseNofile(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && want > n {
			want = n
		}
	}
	if lim.Cur >= want {
		// Still call Setrlimit so children inherit the soft limit we run with.
		return lim.Cur, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	next := syscall.Rlimit{Cur: want, Max: max(lim.Max, want)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
		// Not privileged: go as far as the hard limit allows.
		lim.Cur = lim.Max
		if err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err2 != nil {
			return 0, err2
		}
		return lim.Cur, fmt.Errorf("raise RLIMIT_NOFILE to %d: %w (using %d)", want, err, lim.Cur)
	}
	return want, nil
}

// server is an opsdash child process listening on 127.0.0.1.
type server struct {
	cmd   *exec.Cmd
	addr  string // 127.0.0.1:port
	token string
	log   *tailBuffer
	done  chan struct{} // closed when the process has exited
	err   error         // Wait's result, set before done closes
}

// serverArgs are the flags every run passes: loopback only, a publish token,
// and every per-connection and per-IP limit off, because a load test opens
// thousands of connections from one address.
func serverArgs(addr, token string, extra []string) []string {
	args := []string{"serve",
		"--listen", addr,
		"--publish-token", token,
		"--host-id", "loadhost",
		"--max-conns", "0",
		"--max-conns-per-ip", "0",
		"--max-subscriptions", "0",
		"--request-rate", "0",
		"--log-format", "json",
		"--log-level", "warn",
	}
	return append(args, extra...)
}

// startServer runs bin on a free 127.0.0.1 port and waits until /healthz
// answers. The child is killed if this process dies (Pdeathsig).
func startServer(ctx context.Context, bin, token string, extra []string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &server{addr: "127.0.0.1:" + strconv.Itoa(port), token: token, log: newTailBuffer(64 << 10), done: make(chan struct{})}
	s.cmd = exec.Command(bin, serverArgs(s.addr, token, extra)...)
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	switch err := waitHealthy(ctx, "http://"+s.addr+"/healthz", s.done, 15*time.Second); {
	case err == nil:
		return s, nil
	case errors.Is(err, errExited):
		return nil, fmt.Errorf("opsdash exited before serving: %v\n%s", s.err, s.log.String())
	default:
		s.stop()
		return nil, fmt.Errorf("opsdash on %s: %w\n%s", s.addr, err, s.log.String())
	}
}

// errExited: the process exited before it answered its health check.
var errExited = errors.New("exited")

// waitHealthy polls url until it answers 200, the process whose exit
// closes done exits (errExited), ctx ends, or within passes.
func waitHealthy(ctx context.Context, url string, done <-chan struct{}, within time.Duration) error {
	deadline := time.Now().Add(within)
	hc := &http.Client{Timeout: time.Second}
	for {
		resp, err := hc.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			return errExited
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer from %s within %v", url, within)
		}
	}
}

// pid is the child's process id.
func (s *server) pid() int { return s.cmd.Process.Pid }

// alive reports whether the child is still running.
func (s *server) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// stop asks the server to drain (SIGTERM) and kills it if it has not exited
// within 20 s. It returns the server's exit error, nil on a clean exit.
func (s *server) stop() error {
	if !s.alive() {
		return s.err
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		return errors.New("opsdash did not exit within 20s of SIGTERM; killed")
	}
	return s.err
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before the server binds it; on this single-purpose run that is
// unlikely and shows as a clear start error.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// procStat is a point-in-time reading of a process from /proc.
type procStat struct {
	RSS     int64         // VmRSS, bytes
	HWM     int64         // VmHWM (peak RSS), bytes
	CPU     time.Duration // utime + stime
	Threads int
	// WriteSyscalls is syscw of /proc/<pid>/io: write-type system calls
	// (write, writev, sendto...). 0 when unreadable (needs the same user).
	WriteSyscalls int64
}

// readProc reads /proc/<pid>/status and /proc/<pid>/stat.
func readProc(pid int) (procStat, error) {
	var st procStat
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(val)
		if len(fields) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		switch key {
		case "VmRSS":
			st.RSS = n << 10 // reported in kB
		case "VmHWM":
			st.HWM = n << 10
		case "Threads":
			st.Threads = int(n)
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	st.CPU, err = parseStatCPU(string(stat))
	if io, ioErr := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); ioErr == nil {
		for _, line := range strings.Split(string(io), "\n") {
			if v, ok := strings.CutPrefix(line, "syscw: "); ok {
				st.WriteSyscalls, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
		}
	}
	return st, err
}

// parseStatCPU returns utime+stime from the text of /proc/<pid>/stat. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/<pid>/stat")
	}
	f := strings.Fields(stat[i+1:])
	// After the name: state is field 3, utime field 14, stime field 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc/<pid>/stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	stt, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/<pid>/stat: %w", err)
	}
	return time.Duration(ut+stt) * time.Second / clockTicks, nil
}

// machineBusy is the CPU time all processors spent not idle (user, nice,
// system, irq, softirq, steal) since boot, from the first line of /proc/stat.
// Compared with the server's and the tool's own CPU over a window it shows
// how much other processes took: the load tool shares the machine.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		switch i {
		case 3, 4: // idle, iowait
		case 8, 9: // guest, guest_nice: already counted in user and nice
		default:
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / clockTicks
}

// loadAvg returns the 1-minute load average, 0 if unknown.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// selfCPU is this process's user+system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// tailBuffer keeps the last size bytes written to it: the server's log, shown
// when it fails, without holding an unbounded log in memory.
type tailBuffer struct {
	mu   sync.Mutex
	size int
	buf  []byte
}

func newTailBuffer(size int) *tailBuffer { return &tailBuffer{size: size} }

// Write implements io.Writer.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.size; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// String returns what is kept.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
