package collectors_test

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
)

// countingSink counts samples; the benchmarks measure collection, not delivery.
type countingSink struct{ n atomic.Int64 }

func (s *countingSink) Publish(collectors.Sample) { s.n.Add(1) }

// BenchmarkDefaultSetOnce is one collection of every collector in the
// default set (proc.top included), back to back.
func BenchmarkDefaultSetOnce(b *testing.B) {
	set := collectors.Default(collectors.Config{HostID: "bench"})
	ctx := context.Background()
	for _, c := range set { // baselines for the rate-based collectors
		if _, err := c.Collect(ctx); err != nil {
			b.Fatalf("%s: %v", c.Name(), err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, c := range set {
			if _, err := c.Collect(ctx); err != nil {
				b.Fatalf("%s: %v", c.Name(), err)
			}
		}
	}
}

// BenchmarkDefaultSetCPU runs the real scheduler with the default set at
// the default intervals for a few seconds of wall time per op and reports
// the process CPU time it costs per second of wall time (cpu-ms/s). The
// budget is under 10 cpu-ms/s (1% of one core) with nobody subscribed to
// proc.top. The workloads collector reads 100 fake workloads (Docker-named
// cgroups holding a sleeping process each) where the benchmark may create
// them (root). The culprit sampler is left out: it has a budget of its own
// (BenchmarkCulpritsCPU). Run with -benchtime=1x: each op already lasts 10 s.
func BenchmarkDefaultSetCPU(b *testing.B) {
	const wall = 10 * time.Second
	_, _, nw := fakeWorkloads(b, 100)
	var set []collectors.Collector
	for _, c := range collectors.Default(collectors.Config{HostID: "bench"}) {
		if c.Name() != "culprits" {
			set = append(set, c)
		}
	}
	b.Logf("%d collectors, %d fake workloads", len(set), nw)
	var cpu, elapsed time.Duration
	for b.Loop() {
		c, e := runScheduled(b, wall, 1, set...)
		cpu, elapsed = cpu+c, elapsed+e
	}
	reportCPU(b, cpu, elapsed)
}

// runScheduled runs the real scheduler with cs for wall and returns the
// process CPU time it took and the wall time, failing with fewer than
// minSamples samples.
func runScheduled(b *testing.B, wall time.Duration, minSamples int64, cs ...collectors.Collector) (cpu, elapsed time.Duration) {
	sink := &countingSink{}
	sched := collectors.NewScheduler(collectors.SchedulerConfig{Sink: sink}, cs...)
	ctx, cancel := context.WithTimeout(context.Background(), wall)
	defer cancel()
	before, start := processCPU(b), time.Now()
	if err := sched.Run(ctx); err != nil {
		b.Fatal(err)
	}
	cpu, elapsed = processCPU(b)-before, time.Since(start)
	if n := sink.n.Load(); n < minSamples {
		b.Fatalf("%d samples in %v", n, wall)
	}
	return cpu, elapsed
}

// reportCPU reports CPU time per second of wall time.
func reportCPU(b *testing.B, cpu, elapsed time.Duration) {
	b.ReportMetric(float64(cpu.Microseconds())/1000/elapsed.Seconds(), "cpu-ms/s")
	b.ReportMetric(100*cpu.Seconds()/elapsed.Seconds(), "%core")
}

// processCPU is the user+system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
