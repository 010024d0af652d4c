package collectors_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/collectors/cgrouptest"
)

// A process the test starts spikes the CPU: for every second it runs, the
// sampler names it among the host's busiest processes and, where the test
// may create cgroups, names its workload with it as the workload's top
// process. Other packages' tests run beside this one, so it checks its own
// process and workload, not that they top the whole host.
func TestCulpritsNameTheSpike(t *testing.T) {
	v2, v1 := collectors.CgroupMounts()
	var place func(int) error
	workload := ""
	if cg, err := cgrouptest.Open(t); err != nil {
		t.Logf("process culprits only: %v", err)
	} else {
		rel := "docker/" + cgrouptest.RandHex(32)
		cg.Create(rel) // before the sampler's first walk of the tree
		place, workload = cg.Place(rel), workloadID(cg.Path(rel))
		v2, v1 = cg.Tree()
	}
	s, closeSampler := collectors.NewCulpritsOn(collectors.Config{HostID: "live"}, time.Second, v2, v1)
	defer closeSampler()
	ctx := context.Background()
	if samples, err := s.Collect(ctx); err != nil || len(samples) != 0 {
		t.Fatalf("first run is the baseline: %v, %v", samples, err)
	}
	spike := startBurner(t, "opsdash-spike", 1, nil, place)
	// A single-threaded one too: its schedstat, not its stat, is read
	// while it sleeps, and must show it running.
	spin := cgrouptest.Spin(t, "opsdash-spin1", nil)

	// What each process really ran, read from its own stat after every
	// sample: the figure the sampler gives must agree with it. A fixed
	// floor would fail whenever other packages' tests (Chromium) starve
	// the spike on this 2-core machine.
	var prevAt time.Time
	var prevTicks map[int]uint64
	for second := range 3 {
		time.Sleep(time.Second) // the second being measured, not synchronisation
		samples, err := s.Collect(ctx)
		at, ticks := time.Now(), map[int]uint64{spike.pid: procTicks(t, spike.pid), spin.Pid: procTicks(t, spin.Pid)}
		// ran says how many cores pid used since the last sample, when the
		// window is one the test saw whole (not the first: the processes
		// started inside it).
		ran := func(pid int) (float64, bool) {
			if prevTicks == nil {
				return 0, false
			}
			return float64(ticks[pid]-prevTicks[pid]) / 100 / at.Sub(prevAt).Seconds(), true
		}
		prevAt, prevTicks = at, ticks
		if err != nil || len(samples) != 1 || samples[0].Topic != "live.culprits" {
			t.Fatalf("second %d: %v, %v", second, samples, err)
		}
		raw := samples[0].Data.(json.RawMessage)
		var d collectors.CulpritsData
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(d.Procs.CPU, func(p collectors.CulpritProcess) bool { return p.PID == spike.pid })
		if i < 0 {
			t.Fatalf("second %d: the spiking process %d is not among the top CPU users %s", second, spike.pid, describeProcs(d.Procs.CPU))
		}
		p := d.Procs.CPU[i]
		if p.Name != "opsdash-spike" || p.CPUCores <= 0 || p.Workload != workload {
			t.Errorf("second %d: %+v; want opsdash-spike running, in workload %q", second, p, workload)
		}
		if truth, ok := ran(spike.pid); ok && math.Abs(p.CPUCores-truth) > 0.1 {
			t.Errorf("second %d: opsdash-spike at %.3f cores; its own stat says %.3f", second, p.CPUCores, truth)
		}
		// The spinner makes the list unless other processes legitimately
		// outrank it: then the list is full and its last entry ran at
		// least as much as the spinner did.
		j := slices.IndexFunc(d.Procs.CPU, func(p collectors.CulpritProcess) bool { return p.PID == spin.Pid && p.CPUCores > 0 })
		outranked := func() bool {
			truth, ok := ran(spin.Pid)
			last := d.Procs.CPU[len(d.Procs.CPU)-1]
			return ok && len(d.Procs.CPU) == 5 && last.CPUCores >= truth-0.1
		}
		if j < 0 && !outranked() {
			t.Errorf("second %d: the single-threaded spinner %d is not among %s", second, spin.Pid, describeProcs(d.Procs.CPU))
		} else if truth, ok := ran(spin.Pid); j >= 0 && ok && math.Abs(d.Procs.CPU[j].CPUCores-truth) > 0.1 {
			t.Errorf("second %d: the spinner at %.3f cores; its own stat says %.3f", second, d.Procs.CPU[j].CPUCores, truth)
		}
		if workload != "" {
			j := slices.IndexFunc(d.Workloads.CPU, func(w collectors.CulpritWorkload) bool { return w.ID == workload })
			if j < 0 || d.Workloads.CPU[j].TopPID != spike.pid || d.Workloads.CPU[j].TopProcess != "opsdash-spike" || d.Workloads.CPU[j].Kind != "docker" {
				t.Errorf("second %d: workload %s not named with its top process %d among %+v", second, workload, spike.pid, d.Workloads.CPU)
			}
		}
		// The record answers for that second, for a while.
		ts, got, ok := s.CulpritsAt(samples[0].Time.Add(300 * time.Millisecond))
		if !ok || !ts.Equal(samples[0].Time.Truncate(time.Millisecond)) || !bytes.Equal(got, raw) {
			t.Errorf("second %d: CulpritsAt gives %v %v, want the sample of %v", second, ts, ok, samples[0].Time)
		}
		t.Logf("second %d: %s", second, describeProcs(d.Procs.CPU))
	}
	if d := d2s(s); d > 5*time.Second {
		t.Errorf("the record spans %v after 3 s", d)
	}
	if _, _, ok := s.CulpritsAt(time.Now().Add(-time.Hour)); ok {
		t.Error("an hour ago, before the sampler started, has culprits")
	}
}

// procTicks is a process's user and system CPU time in clock ticks (100
// a second on Linux), from /proc/<pid>/stat.
func procTicks(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which may hold spaces: state is the
	// first, utime and stime the 12th and 13th.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	k, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	return u + k
}

func d2s(s *collectors.CulpritSampler) time.Duration {
	o, n := s.CulpritsSpan()
	return n.Sub(o)
}

func describeProcs(ps []collectors.CulpritProcess) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%s(%d) %.2f", p.Name, p.PID, p.CPUCores))
	}
	return strings.Join(parts, ", ")
}

// fillProcesses starts sleeping processes until the host has n, for the
// sampler's benchmark at 1,000 processes; they end with the benchmark.
func fillProcesses(b *testing.B, n int) int {
	b.Helper()
	entries, _ := os.ReadDir("/proc")
	have := 0
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			have++
		}
	}
	var cmds []*exec.Cmd
	b.Cleanup(func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	})
	for ; have < n; have++ {
		c := exec.Command("sleep", "3600")
		if err := c.Start(); err != nil {
			b.Fatalf("starting process %d of %d: %v", have, n, err)
		}
		cmds = append(cmds, c)
	}
	return have
}

// fakeWorkloads creates n Docker-named cgroups holding a sleeping process
// each (an empty cgroup is no workload), or logs why it cannot.
func fakeWorkloads(b *testing.B, n int) (v2 string, v1 map[string]string, made int) {
	b.Helper()
	v2, v1 = collectors.CgroupMounts()
	cg, err := cgrouptest.Open(b)
	if err != nil {
		b.Logf("no fake workloads: %v", err)
		return v2, v1, 0
	}
	var cmds []*exec.Cmd
	b.Cleanup(func() { // before the cgroups' own cleanup, registered earlier
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	})
	for range n {
		rel := "docker/" + cgrouptest.RandHex(32)
		cg.Create(rel)
		c := exec.Command("sleep", "3600")
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		cmds = append(cmds, c)
		if err := cg.Place(rel)(c.Process.Pid); err != nil {
			b.Fatal(err)
		}
	}
	v2, v1 = cg.Tree()
	return v2, v1, n
}

// BenchmarkCulpritsCPU runs the culprit sampler alone at 1 Hz for 10 s of
// wall time per op, with 1,000 processes on the host and 100 workloads,
// and reports its CPU time per second of wall time in the steady state
// (the budget: 1% of one core, 10 cpu-ms/s) and, apart, the CPU time of
// its first two runs, which open a file per process. Run with
// -benchtime=1x.
func BenchmarkCulpritsCPU(b *testing.B) {
	procs := fillProcesses(b, 1000)
	v2, v1, nw := fakeWorkloads(b, 100)
	const wall = 10 * time.Second
	var cpu, elapsed time.Duration
	var fds int
	for b.Loop() {
		s, closeSampler := collectors.NewCulpritsOn(collectors.Config{HostID: "bench"}, time.Second, v2, v1)
		// The first second opens a file per process and workload and
		// names every process: measured apart, once.
		before := processCPU(b)
		for range 2 {
			if _, err := s.Collect(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((processCPU(b)-before).Microseconds())/1000, "first-cpu-ms")
		c, e := runScheduled(b, wall, 5, s)
		cpu, elapsed = cpu+c, elapsed+e
		fds = s.HeldFDs()
		closeSampler()
	}
	b.Logf("%d processes, %d workloads, %d file descriptors held", procs, nw, fds)
	reportCPU(b, cpu, elapsed)
}

// BenchmarkCulpritsOnce is one second's sample, back to back, with 1,000
// processes and 100 workloads.
func BenchmarkCulpritsOnce(b *testing.B) {
	fillProcesses(b, 1000)
	v2, v1, _ := fakeWorkloads(b, 100)
	s, closeSampler := collectors.NewCulpritsOn(collectors.Config{HostID: "bench"}, time.Second, v2, v1)
	defer closeSampler()
	ctx := context.Background()
	if _, err := s.Collect(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Collect(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// A process the test starts writes to disk (direct I/O, so the bytes are
// counted when written, not when the page cache is flushed): proc.top
// lists it by I/O, and the culprit sampler names it among the second's top
// I/O. Its /proc/<pid>/io is readable because it runs as the test's user.
func TestProcessIO(t *testing.T) {
	out := t.TempDir() + "/written"
	dd := cgrouptest.Named(t, "opsdash-dd", "/bin/dd", "if=/dev/zero", "of="+out, "bs=4k", "count=25000", "oflag=direct")
	if err := dd.Start(); err != nil {
		t.Skipf("cannot start dd: %v", err)
	}
	t.Cleanup(func() { _ = dd.Process.Kill(); _ = dd.Wait() })
	pid := dd.Process.Pid

	top := collectors.NewProcTop(liveCfg)
	s, closeSampler := collectors.NewCulpritsOn(liveCfg, time.Second, "", nil)
	defer closeSampler()
	ctx := context.Background()
	if _, err := s.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	var inTop, inCulprits bool
	deadline := time.Now().Add(liveDeadline)
	for !(inTop && inCulprits) {
		if time.Now().After(deadline) {
			t.Fatalf("dd (%d) writing: in proc.top by_io %v, in the culprits' I/O %v", pid, inTop, inCulprits)
		}
		time.Sleep(500 * time.Millisecond) // a measurement window, not synchronisation
		d := collectOne(t, top, "live.proc.top").Data.(collectors.ProcTop)
		if d.IOReadable < 1 {
			t.Fatalf("io_readable %d: not even the test's own processes", d.IOReadable)
		}
		for _, p := range d.ByIO {
			if p.PID == pid && p.IOWriteBytesPerS != nil && *p.IOWriteBytesPerS > 0 && *p.IOBytesPerS >= *p.IOWriteBytesPerS {
				inTop = true
			}
		}
		samples, err := s.Collect(ctx)
		if err != nil || len(samples) != 1 {
			t.Fatalf("culprits: %v, %v", samples, err)
		}
		var c collectors.CulpritsData
		if err := json.Unmarshal(samples[0].Data.(json.RawMessage), &c); err != nil {
			t.Fatal(err)
		}
		inCulprits = inCulprits || slices.ContainsFunc(c.Procs.IO, func(p collectors.CulpritProcess) bool {
			return p.PID == pid && p.Name == "opsdash-dd" && p.IOBytesPerS != nil && *p.IOBytesPerS > 0
		})
	}
}

// BenchmarkWorkloads is one collection of the workloads collector with 100
// fake workloads (see BenchmarkDefaultSetCPU).
func BenchmarkWorkloads(b *testing.B) {
	v2, v1, nw := fakeWorkloads(b, 100)
	c := collectors.NewWorkloadsOn(collectors.Config{HostID: "bench"}, 2*time.Second, "", v2, v1, nil)
	ctx := context.Background()
	samples, err := c.Collect(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if samples, err = c.Collect(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("%d fake workloads, %d samples a run", nw, len(samples))
}
