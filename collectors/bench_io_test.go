package collectors_test

import (
	"context"
	"testing"

	"github.com/opsdash/opsdash/collectors"
)

// benchCollect measures one Collect of c on this machine. The collector is
// warmed up first, so the numbers are those of a steady-state run (for
// proc.top: not the cold start with its 200 ms wait between two scans).
func benchCollect(b *testing.B, c collectors.Collector) {
	b.Helper()
	ctx := context.Background()
	if _, err := c.Collect(ctx); err != nil {
		b.Fatalf("%s: %v", c.Name(), err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Collect(ctx); err != nil {
			b.Fatalf("%s: %v", c.Name(), err)
		}
	}
}

func BenchmarkDiskUsage(b *testing.B) { benchCollect(b, collectors.NewDiskUsage(liveCfg)) }
func BenchmarkDiskIO(b *testing.B)    { benchCollect(b, collectors.NewDiskIO(liveCfg)) }
func BenchmarkNetIO(b *testing.B)     { benchCollect(b, collectors.NewNetIO(liveCfg)) }
func BenchmarkNetConns(b *testing.B)  { benchCollect(b, collectors.NewNetConns(liveCfg)) }
func BenchmarkProcTop(b *testing.B)   { benchCollect(b, collectors.NewProcTop(liveCfg)) }
