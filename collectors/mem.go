package collectors

import (
	"context"
	"time"

	"github.com/shirou/gopsutil/v3/mem"
)

// MemData is the payload of <host>.mem.
type MemData struct {
	TotalBytes uint64 `json:"total_bytes"`
	// UsedBytes is total_bytes - available_bytes: memory that cannot be
	// handed to a new workload without swapping (what free(1) shows as
	// used since procps-ng 4).
	UsedBytes uint64 `json:"used_bytes"`
	// AvailableBytes is the kernel's estimate (MemAvailable) of memory
	// available without swapping: free plus reclaimable cache.
	AvailableBytes uint64 `json:"available_bytes"`
	// CachedBytes is the page cache plus reclaimable slab (Cached +
	// SReclaimable).
	CachedBytes  uint64 `json:"cached_bytes"`
	BuffersBytes uint64 `json:"buffers_bytes"`
	// FreeBytes is memory not used for anything (MemFree).
	FreeBytes uint64 `json:"free_bytes"`
	// UsedPct is used_bytes / total_bytes.
	UsedPct float64 `json:"used_pct"`
}

// SwapData is the payload of <host>.swap. A host without swap reports zeros.
type SwapData struct {
	TotalBytes uint64  `json:"total_bytes"`
	UsedBytes  uint64  `json:"used_bytes"`
	FreeBytes  uint64  `json:"free_bytes"`
	UsedPct    float64 `json:"used_pct"`
}

// memCollector produces <host>.mem and <host>.swap from one read of
// /proc/meminfo (gopsutil, HOST_PROC honoured).
type memCollector struct {
	spec
	topic, swapTopic string
}

// NewMem returns the collector of <host>.mem and <host>.swap.
func NewMem(cfg Config) Collector { return buildAlways("mem", cfg) }

func newMem(cfg Config, s spec) *memCollector {
	return &memCollector{spec: s, topic: cfg.HostID + ".mem", swapTopic: cfg.HostID + ".swap"}
}

func (c *memCollector) Topics() []TopicInfo {
	return []TopicInfo{
		c.declare(c.topic, "Memory: total, used, available, cached, buffers, free (bytes), used (pct)"),
		c.declare(c.swapTopic, "Swap: total, used, free (bytes), used (pct); zeros without swap"),
	}
}

// Collect reads /proc/meminfo once for both topics.
func (c *memCollector) Collect(ctx context.Context) ([]Sample, error) {
	v, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	m, s := shapeMem(v)
	return []Sample{
		{Topic: c.topic, Time: now, Data: m},
		{Topic: c.swapTopic, Time: now, Data: s},
	}, nil
}

// shapeMem turns gopsutil's reading into the two payloads. Used memory is
// computed from MemAvailable rather than taken from gopsutil's Used (total -
// free - buffers - cached), which can underflow where Cached counts memory
// that is not reclaimable (shmem, ZFS ARC accounting).
func shapeMem(v *mem.VirtualMemoryStat) (MemData, SwapData) {
	m := MemData{
		TotalBytes:     v.Total,
		AvailableBytes: v.Available,
		CachedBytes:    v.Cached,
		BuffersBytes:   v.Buffers,
		FreeBytes:      v.Free,
	}
	if v.Available < v.Total {
		m.UsedBytes = v.Total - v.Available
	}
	m.UsedPct = sharePct(m.UsedBytes, m.TotalBytes)

	s := SwapData{TotalBytes: v.SwapTotal, FreeBytes: v.SwapFree}
	if v.SwapFree < v.SwapTotal {
		s.UsedBytes = v.SwapTotal - v.SwapFree
	}
	s.UsedPct = sharePct(s.UsedBytes, s.TotalBytes)
	return m, s
}

// sharePct is part/whole in percent, rounded to two decimals; 0 when whole is 0.
func sharePct(part, whole uint64) float64 {
	if whole == 0 {
		return 0
	}
	return round2dp(float64(part) / float64(whole) * 100)
}
