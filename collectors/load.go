package collectors

import (
	"context"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/load"
)

// LoadData is the payload of <host>.load: the kernel's load averages (runnable
// plus uninterruptible tasks, averaged over 1, 5 and 15 minutes), and the
// same divided by the number of logical CPUs, which is comparable across
// hosts (above 1 means more demand than cores).
type LoadData struct {
	Load1         float64 `json:"load1"`
	Load5         float64 `json:"load5"`
	Load15        float64 `json:"load15"`
	Load1PerCore  float64 `json:"load1_per_core"`
	Load5PerCore  float64 `json:"load5_per_core"`
	Load15PerCore float64 `json:"load15_per_core"`
	// Cores is the host's number of logical CPUs.
	Cores int `json:"cores"`
}

// loadCoresTTL is how long the core count is reused before /proc/cpuinfo is
// read again: cores change only by hot-plug, and cpuinfo of a large host is
// tens of kilobytes, too much to parse every second for nothing.
const loadCoresTTL = time.Minute

// loadCollector produces <host>.load from /proc/loadavg (gopsutil, HOST_PROC
// honoured; the load average is host-wide even inside a container).
type loadCollector struct {
	spec
	topic string

	mu      sync.Mutex
	cores   int
	coresAt time.Time
}

// NewLoad returns the collector of <host>.load.
func NewLoad(cfg Config) Collector { return buildAlways("load", cfg) }

func newLoad(cfg Config, s spec) *loadCollector {
	return &loadCollector{spec: s, topic: cfg.HostID + ".load"}
}

func (c *loadCollector) Topics() []TopicInfo {
	return []TopicInfo{c.declare(c.topic, "Load average over 1, 5, 15 min, also per logical core")}
}

// Collect reads the load averages.
func (c *loadCollector) Collect(ctx context.Context) ([]Sample, error) {
	avg, err := load.AvgWithContext(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return []Sample{{Topic: c.topic, Time: now, Data: shapeLoad(avg, c.coreCount(ctx, now))}}, nil
}

// coreCount returns the host's logical CPU count, cached for loadCoresTTL.
// 0 means unknown (then the per-core fields are 0).
func (c *loadCollector) coreCount(ctx context.Context, now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cores > 0 && now.Sub(c.coresAt) < loadCoresTTL {
		return c.cores
	}
	if n, err := cpu.CountsWithContext(ctx, true); err == nil && n > 0 {
		c.cores, c.coresAt = n, now
	}
	return c.cores
}

// shapeLoad builds the payload; cores 0 (unknown) leaves the per-core
// fields at 0 instead of dividing by zero.
func shapeLoad(a *load.AvgStat, cores int) LoadData {
	d := LoadData{Load1: a.Load1, Load5: a.Load5, Load15: a.Load15, Cores: cores}
	if cores > 0 {
		n := float64(cores)
		d.Load1PerCore = round2dp(a.Load1 / n)
		d.Load5PerCore = round2dp(a.Load5 / n)
		d.Load15PerCore = round2dp(a.Load15 / n)
	}
	return d
}
