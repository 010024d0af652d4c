package collectors_test

import (
	"context"
	"testing"

	"github.com/opsdash/opsdash/collectors"
)

// benchCoreCollect measures one Collect of c per iteration. The first
// (baseline-taking) run happens before the timer starts.
func benchCoreCollect(b *testing.B, c collectors.Collector) {
	ctx := context.Background()
	if _, err := c.Collect(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Collect(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCPU(b *testing.B) {
	benchCoreCollect(b, collectors.NewCPU(collectors.Config{HostID: "h"}))
}
func BenchmarkMem(b *testing.B) {
	benchCoreCollect(b, collectors.NewMem(collectors.Config{HostID: "h"}))
}
func BenchmarkLoad(b *testing.B) {
	benchCoreCollect(b, collectors.NewLoad(collectors.Config{HostID: "h"}))
}
func BenchmarkHost(b *testing.B) {
	benchCoreCollect(b, collectors.NewHost(collectors.Config{HostID: "h"}))
}
