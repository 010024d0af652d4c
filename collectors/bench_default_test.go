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
		sink := &countingSink{}
		sched := collectors.NewScheduler(collectors.SchedulerConfig{Sink: sink}, set...)
		ctx, cancel := context.WithTimeout(context.Background(), wall)
		before, start := processCPU(b), time.Now()
		if err := sched.Run(ctx); err != nil {
			b.Fatal(err)
		}
		cpu += processCPU(b) - before
		elapsed += time.Since(start)
		cancel()
		if sink.n.Load() == 0 {
			b.Fatal("no samples collected")
		}
	}
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
