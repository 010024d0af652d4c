package collectors_test

import (
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
)

func TestMemOnThisMachine(t *testing.T) {
	c := collectors.NewMem(collectors.Config{HostID: "h"})
	if c.Name() != "mem" || c.Interval() != time.Second || len(c.Topics()) != 2 {
		t.Errorf("name %q interval %v topics %v", c.Name(), c.Interval(), c.Topics())
	}
	got := coreCollect(t, c)
	m, ok := got["h.mem"].Data.(collectors.MemData)
	if !ok {
		t.Fatalf("no h.mem sample: %v", got)
	}
	if m.TotalBytes == 0 {
		t.Error("total_bytes = 0")
	}
	for name, v := range map[string]uint64{"used_bytes": m.UsedBytes, "available_bytes": m.AvailableBytes,
		"free_bytes": m.FreeBytes, "cached_bytes": m.CachedBytes, "buffers_bytes": m.BuffersBytes} {
		if v > m.TotalBytes {
			t.Errorf("%s = %d above total_bytes %d", name, v, m.TotalBytes)
		}
	}
	if m.UsedBytes+m.AvailableBytes != m.TotalBytes {
		t.Errorf("used %d + available %d != total %d", m.UsedBytes, m.AvailableBytes, m.TotalBytes)
	}
	if m.AvailableBytes == 0 || m.UsedBytes == 0 {
		t.Errorf("available_bytes %d, used_bytes %d: a running machine has both", m.AvailableBytes, m.UsedBytes)
	}
	corePct(t, "used_pct", m.UsedPct)
	checkKeys(t, "h.mem", m, "total_bytes", "used_bytes", "available_bytes", "cached_bytes", "buffers_bytes",
		"free_bytes", "used_pct")

	s, ok := got["h.swap"].Data.(collectors.SwapData)
	if !ok {
		t.Fatalf("no h.swap sample: %v", got)
	}
	if s.UsedBytes+s.FreeBytes != s.TotalBytes {
		t.Errorf("swap used %d + free %d != total %d", s.UsedBytes, s.FreeBytes, s.TotalBytes)
	}
	corePct(t, "swap used_pct", s.UsedPct)
	if s.TotalBytes == 0 && s.UsedPct != 0 {
		t.Errorf("no swap but used_pct %v", s.UsedPct)
	}
	checkKeys(t, "h.swap", s, "total_bytes", "used_bytes", "free_bytes", "used_pct")
}
