package collectors

import (
	"testing"

	"github.com/shirou/gopsutil/v3/mem"
)

func TestShapeMem(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		name     string
		in       mem.VirtualMemoryStat
		wantMem  MemData
		wantSwap SwapData
	}{
		{
			name: "used is total minus available",
			in: mem.VirtualMemoryStat{Total: 8 * gib, Available: 6 * gib, Free: 2 * gib, Cached: 3 * gib, Buffers: gib / 2,
				SwapTotal: 2 * gib, SwapFree: gib + gib/2},
			wantMem: MemData{TotalBytes: 8 * gib, UsedBytes: 2 * gib, AvailableBytes: 6 * gib, CachedBytes: 3 * gib,
				BuffersBytes: gib / 2, FreeBytes: 2 * gib, UsedPct: 25},
			wantSwap: SwapData{TotalBytes: 2 * gib, UsedBytes: gib / 2, FreeBytes: gib + gib/2, UsedPct: 25},
		},
		{
			name:     "no swap is zeros, not an error or NaN",
			in:       mem.VirtualMemoryStat{Total: 3 * gib, Available: 2 * gib, Free: gib},
			wantMem:  MemData{TotalBytes: 3 * gib, UsedBytes: gib, AvailableBytes: 2 * gib, FreeBytes: gib, UsedPct: 33.33},
			wantSwap: SwapData{},
		},
		{
			name:    "available above total (odd kernels) is no negative use",
			in:      mem.VirtualMemoryStat{Total: gib, Available: 2 * gib},
			wantMem: MemData{TotalBytes: gib, AvailableBytes: 2 * gib},
		},
		{
			name: "empty reading",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, s := shapeMem(&tt.in)
			if m != tt.wantMem {
				t.Errorf("mem = %+v, want %+v", m, tt.wantMem)
			}
			if s != tt.wantSwap {
				t.Errorf("swap = %+v, want %+v", s, tt.wantSwap)
			}
		})
	}
}
