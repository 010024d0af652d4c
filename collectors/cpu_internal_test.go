package collectors

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v3/cpu"
)

func TestCPUDelta(t *testing.T) {
	base := cpu.TimesStat{CPU: "cpu0", User: 10, Nice: 1, System: 5, Idle: 80, Iowait: 5, Irq: 1, Softirq: 1, Steal: 2}
	tests := []struct {
		name  string
		prev  cpu.TimesStat
		cur   cpu.TimesStat
		want  cpuShares
		state cpuDeltaState
	}{
		{
			name:  "shares of the elapsed time",
			prev:  base,
			cur:   cpu.TimesStat{CPU: "cpu0", User: 20, Nice: 1, System: 10, Idle: 100, Iowait: 10, Irq: 1, Softirq: 1, Steal: 2},
			want:  cpuShares{user: 25, system: 12.5, idle: 50, iowait: 12.5},
			state: cpuOK,
		},
		{
			name: "guest time is already in user and not counted twice",
			prev: base,
			cur: cpu.TimesStat{CPU: "cpu0", User: 20, Nice: 1, System: 5, Idle: 90, Iowait: 5, Irq: 1, Softirq: 1, Steal: 2,
				Guest: 10, GuestNice: 3},
			want:  cpuShares{user: 50, idle: 50},
			state: cpuOK,
		},
		{
			name:  "every kind of time",
			prev:  cpu.TimesStat{},
			cur:   cpu.TimesStat{User: 1, Nice: 1, System: 1, Idle: 1, Iowait: 1, Irq: 1, Softirq: 1, Steal: 1},
			want:  cpuShares{12.5, 12.5, 12.5, 12.5, 12.5, 12.5, 12.5, 12.5},
			state: cpuOK,
		},
		{
			name: "iowait going backwards (tickless kernels) is clamped to zero",
			prev: base,
			cur:  cpu.TimesStat{CPU: "cpu0", User: 15, Nice: 1, System: 5, Idle: 95, Iowait: 3, Irq: 1, Softirq: 1, Steal: 2},
			want: cpuShares{user: 25, idle: 75}, state: cpuOK,
		},
		{
			name: "counters reset (CPU hot-plugged): treat as first sample",
			prev: base,
			cur:  cpu.TimesStat{CPU: "cpu0", User: 1, System: 1, Idle: 3},
			want: cpuShares{}, state: cpuReset,
		},
		{
			name: "no time passed",
			prev: base, cur: base,
			want: cpuShares{}, state: cpuNoProgress,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, st := cpuDelta(tt.prev, tt.cur)
			if st != tt.state {
				t.Fatalf("state = %v, want %v", st, tt.state)
			}
			if got != tt.want {
				t.Errorf("shares = %+v, want %+v", got, tt.want)
			}
			if st == cpuOK {
				sum := got.user + got.nice + got.system + got.idle + got.iowait + got.irq + got.softirq + got.steal
				if math.Abs(sum-100) > 1e-9 {
					t.Errorf("shares sum to %v, want 100", sum)
				}
			}
		})
	}
	if u := (cpuShares{idle: 50, iowait: 12.5}).usage(); u != 37.5 {
		t.Errorf("usage = %v, want 37.5 (iowait counts as idle)", u)
	}
}

// core builds a per-CPU reading with the given busy (user) and idle seconds.
func core(name string, user, idle float64) cpu.TimesStat {
	return cpu.TimesStat{CPU: name, User: user, Idle: idle}
}

func TestComputeCPU(t *testing.T) {
	last := &cpuSample{cores: CPUCoresData{Cores: []CoreUsage{{0, 11}, {1, 22}}}}
	tests := []struct {
		name      string
		prev, cur []cpu.TimesStat
		last      *cpuSample
		state     cpuDeltaState
		usage     float64   // total usage_pct
		cores     []float64 // per-core usage_pct
	}{
		{
			name:  "two cores: total is their sum",
			prev:  []cpu.TimesStat{core("cpu0", 0, 0), core("cpu1", 0, 0)},
			cur:   []cpu.TimesStat{core("cpu0", 1, 0), core("cpu1", 0, 1)},
			state: cpuOK, usage: 50, cores: []float64{100, 0},
		},
		{
			name:  "a core without progress keeps its last value",
			prev:  []cpu.TimesStat{core("cpu0", 5, 5), core("cpu1", 5, 5)},
			cur:   []cpu.TimesStat{core("cpu0", 5, 5), core("cpu1", 6, 9)},
			last:  last,
			state: cpuOK, usage: 20, cores: []float64{11, 20},
		},
		{
			name:  "rounded to hundredths",
			prev:  []cpu.TimesStat{core("cpu0", 0, 0)},
			cur:   []cpu.TimesStat{core("cpu0", 1, 2)},
			state: cpuOK, usage: 33.33, cores: []float64{33.33},
		},
		{
			name:  "a core reset is a reset",
			prev:  []cpu.TimesStat{core("cpu0", 5, 5), core("cpu1", 5, 5)},
			cur:   []cpu.TimesStat{core("cpu0", 6, 6), core("cpu1", 0, 1)},
			state: cpuReset,
		},
		{
			name:  "a core went offline",
			prev:  []cpu.TimesStat{core("cpu0", 5, 5), core("cpu1", 5, 5)},
			cur:   []cpu.TimesStat{core("cpu0", 6, 6)},
			state: cpuReset,
		},
		{
			name:  "other cores",
			prev:  []cpu.TimesStat{core("cpu0", 5, 5), core("cpu1", 5, 5)},
			cur:   []cpu.TimesStat{core("cpu0", 6, 6), core("cpu2", 6, 6)},
			state: cpuReset,
		},
		{
			name:  "first sample",
			prev:  nil,
			cur:   []cpu.TimesStat{core("cpu0", 6, 6)},
			state: cpuReset,
		},
		{
			name:  "no progress at all",
			prev:  []cpu.TimesStat{core("cpu0", 5, 5)},
			cur:   []cpu.TimesStat{core("cpu0", 5, 5)},
			state: cpuNoProgress,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, st := computeCPU(tt.prev, tt.cur, tt.last)
			if st != tt.state {
				t.Fatalf("state = %v, want %v", st, tt.state)
			}
			if st != cpuOK {
				return
			}
			if got.total.UsagePct != tt.usage {
				t.Errorf("usage_pct = %v, want %v", got.total.UsagePct, tt.usage)
			}
			if got.total.Cores != len(tt.cur) {
				t.Errorf("cores = %d, want %d", got.total.Cores, len(tt.cur))
			}
			if len(got.cores.Cores) != len(tt.cores) {
				t.Fatalf("per-core = %+v, want %v", got.cores.Cores, tt.cores)
			}
			for i, c := range got.cores.Cores {
				if c.Core != i || c.UsagePct != tt.cores[i] {
					t.Errorf("core[%d] = %+v, want core %d usage %v", i, c, i, tt.cores[i])
				}
			}
		})
	}
}

// scriptedTimes returns the readings one by one, repeating the last.
func scriptedTimes(readings ...[]cpu.TimesStat) func(context.Context) ([]cpu.TimesStat, error) {
	i := 0
	return func(context.Context) ([]cpu.TimesStat, error) {
		r := readings[min(i, len(readings)-1)]
		i++
		return r, nil
	}
}

func TestCPUCollectorBaselineAndReset(t *testing.T) {
	ctx := context.Background()
	c := &cpuCollector{topic: "h.cpu", coresTopic: "h.cpu.cores"}
	c.read = scriptedTimes(
		[]cpu.TimesStat{core("cpu0", 10, 10)}, // first run: with no baseline, it becomes one
		[]cpu.TimesStat{core("cpu0", 11, 13)}, // ... measured over cpuMinSpan: 25 %
		[]cpu.TimesStat{core("cpu0", 11, 13)}, // same tick: repeat the last value
		[]cpu.TimesStat{core("cpu0", 1, 1)},   // counters reset: new baseline
		[]cpu.TimesStat{core("cpu0", 2, 2)},   // ... measured over cpuMinSpan: 50 %
		[]cpu.TimesStat{core("cpu0", 5, 3)},   // 75 %
	)
	want := []float64{25, 25, 50, 75}
	for i, w := range want {
		start := time.Now()
		samples, err := c.Collect(ctx)
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if len(samples) != 2 || samples[0].Topic != "h.cpu" || samples[1].Topic != "h.cpu.cores" {
			t.Fatalf("run %d: samples %+v", i, samples)
		}
		if got := samples[0].Data.(CPUData).UsagePct; got != w {
			t.Errorf("run %d: usage_pct = %v, want %v", i, got, w)
		}
		// Runs that had to take a baseline measured over cpuMinSpan (the
		// others read once: the values above show which readings they got).
		if took := time.Since(start); (i == 0 || i == 2) && took < cpuMinSpan {
			t.Errorf("run %d measured over %v, want at least %v", i, took, cpuMinSpan)
		}
	}
}

func TestCPUCollectorCancelledWhileWaiting(t *testing.T) {
	c := &cpuCollector{topic: "h.cpu", coresTopic: "h.cpu.cores", read: scriptedTimes([]cpu.TimesStat{core("cpu0", 1, 1)})}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Collect(ctx); err == nil {
		t.Error("Collect with a cancelled context waiting for a baseline returned no error")
	}
}
