package collectors_test

import (
	"context"
	"math"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
)

// coreCollect runs c.Collect with a generous timeout and indexes the samples
// by topic, failing on error.
func coreCollect(t testing.TB, c collectors.Collector) map[string]collectors.Sample {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	samples, err := c.Collect(ctx)
	if err != nil {
		t.Fatalf("%s: Collect: %v", c.Name(), err)
	}
	out := map[string]collectors.Sample{}
	for _, s := range samples {
		if s.Time.IsZero() {
			t.Errorf("%s: sample of %s has no time", c.Name(), s.Topic)
		}
		out[s.Topic] = s
	}
	declared := map[string]bool{}
	for _, ti := range c.Topics() {
		declared[ti.Name] = true
	}
	for topic := range out {
		if !declared[topic] {
			t.Errorf("%s produced undeclared topic %s", c.Name(), topic)
		}
	}
	return out
}

func corePct(t *testing.T, what string, v float64) {
	t.Helper()
	if v < 0 || v > 100 || math.IsNaN(v) {
		t.Errorf("%s = %v, want within 0..100", what, v)
	}
}

func TestCPUOnThisMachine(t *testing.T) {
	c := collectors.NewCPU(collectors.Config{HostID: "h"})
	if c.Name() != "cpu" || c.Interval() != time.Second {
		t.Errorf("name %q interval %v", c.Name(), c.Interval())
	}
	if got := len(c.Topics()); got != 2 {
		t.Fatalf("%d topics declared, want 2", got)
	}

	// Burn one core meanwhile, so that usage has something to show.
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
		}
	}()
	defer func() { stop.Store(true); <-done }()

	for run := range 3 {
		got := coreCollect(t, c)
		cs, ok := got["h.cpu"]
		if !ok {
			t.Fatalf("run %d: no h.cpu sample", run)
		}
		d := cs.Data.(collectors.CPUData)
		for name, v := range map[string]float64{
			"usage_pct": d.UsagePct, "user_pct": d.UserPct, "nice_pct": d.NicePct, "system_pct": d.SystemPct,
			"iowait_pct": d.IowaitPct, "irq_pct": d.IrqPct, "softirq_pct": d.SoftirqPct, "steal_pct": d.StealPct,
			"idle_pct": d.IdlePct,
		} {
			corePct(t, name, v)
		}
		sum := d.UserPct + d.NicePct + d.SystemPct + d.IowaitPct + d.IrqPct + d.SoftirqPct + d.StealPct + d.IdlePct
		if math.Abs(sum-100) > 0.1 {
			t.Errorf("run %d: shares sum to %v, want 100", run, sum)
		}
		if math.Abs(d.UsagePct-(100-d.IdlePct-d.IowaitPct)) > 0.02 {
			t.Errorf("run %d: usage_pct %v != 100 - idle - iowait", run, d.UsagePct)
		}
		// The dashboard shows busy as these six parts: they must add up.
		if parts := d.UserPct + d.NicePct + d.SystemPct + d.IrqPct + d.SoftirqPct + d.StealPct; math.Abs(d.UsagePct-parts) > 0.04 {
			t.Errorf("run %d: usage_pct %v, but user+nice+system+irq+softirq+steal = %v", run, d.UsagePct, parts)
		}
		if d.Cores < runtime.NumCPU() {
			t.Errorf("run %d: cores = %d, fewer than the %d this process may use", run, d.Cores, runtime.NumCPU())
		}
		// One busy core of d.Cores: at least half of its share shows.
		if min := 100 / float64(d.Cores) / 2; d.UsagePct < min {
			t.Errorf("run %d: usage_pct = %v while a core is busy, want >= %v", run, d.UsagePct, min)
		}

		cores := got["h.cpu.cores"].Data.(collectors.CPUCoresData)
		if len(cores.Cores) != d.Cores {
			t.Errorf("run %d: %d per-core entries, want %d", run, len(cores.Cores), d.Cores)
		}
		for i, cu := range cores.Cores {
			corePct(t, "core usage_pct", cu.UsagePct)
			if i > 0 && cu.Core <= cores.Cores[i-1].Core {
				t.Errorf("cores not in order: %+v", cores.Cores)
			}
		}
		if run == 0 {
			checkKeys(t, "h.cpu", d, "usage_pct", "user_pct", "nice_pct", "system_pct", "iowait_pct",
				"irq_pct", "softirq_pct", "steal_pct", "idle_pct", "cores")
			checkKeys(t, "h.cpu.cores", cores, "cores")
			checkKeys(t, "h.cpu.cores entry", cores.Cores[0], "core", "usage_pct")
		}
		time.Sleep(100 * time.Millisecond) // a measurement window, not synchronisation
	}
}
