package collectors

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v3/cpu"
)

// CPUData is the payload of <host>.cpu: how the host's CPU time was spent
// since the previous sample, in percent of all cores' time. The shares
// (all but UsagePct and Cores) add up to 100.
type CPUData struct {
	// UsagePct is the busy share: 100 - idle_pct - iowait_pct, which is
	// user + nice + system + irq + softirq + steal (the parts the
	// dashboard shows).
	UsagePct   float64 `json:"usage_pct"`
	UserPct    float64 `json:"user_pct"`
	NicePct    float64 `json:"nice_pct"`
	SystemPct  float64 `json:"system_pct"`
	IowaitPct  float64 `json:"iowait_pct"`
	IrqPct     float64 `json:"irq_pct"`
	SoftirqPct float64 `json:"softirq_pct"`
	StealPct   float64 `json:"steal_pct"`
	IdlePct    float64 `json:"idle_pct"`
	// Cores is the number of online logical CPUs.
	Cores int `json:"cores"`
}

// CPUCoresData is the payload of <host>.cpu.cores.
type CPUCoresData struct {
	Cores []CoreUsage `json:"cores"`
}

// CoreUsage is one logical CPU's busy share since the previous sample.
type CoreUsage struct {
	// Core is the CPU number as the kernel counts it (cpu0 -> 0).
	Core     int     `json:"core"`
	UsagePct float64 `json:"usage_pct"`
}

// cpuMinSpan is the shortest span a first CPU sample is computed over. The
// kernel counts CPU time in ticks of 10 ms (USER_HZ 100), so a span of a few
// milliseconds right after start would give all-or-nothing numbers; 200 ms
// gives 20 ticks per core, fine for a first value replaced a second later.
const cpuMinSpan = 200 * time.Millisecond

// cpuCollector produces <host>.cpu and <host>.cpu.cores from the per-CPU
// counters of /proc/stat (via gopsutil, which honours HOST_PROC).
//
// Percentages come from the counters' deltas between two runs, computed
// here rather than by cpu.Percent, whose hidden package-level state would be
// shared with anything else in the process that calls it. A baseline is
// read at construction, so the first run can compute at once; if that
// baseline is younger than cpuMinSpan (the scheduler ran the collector right
// after building it), or the counters went backwards (a CPU was
// hot-plugged, or a container's HOST_PROC changed underneath), the run takes
// a fresh baseline, waits out cpuMinSpan and reads again.
type cpuCollector struct {
	spec
	topic, coresTopic string
	read              func(ctx context.Context) ([]cpu.TimesStat, error)

	mu         sync.Mutex
	prev       []cpu.TimesStat // counters of the previous run, or the baseline
	prevAt     time.Time
	isBaseline bool // prev was not used to compute a sample yet
	last       *cpuSample
}

// cpuSample is one computed pair of payloads.
type cpuSample struct {
	total CPUData
	cores CPUCoresData
}

// NewCPU returns the collector of <host>.cpu (overall CPU time shares) and
// <host>.cpu.cores (per-core usage).
func NewCPU(cfg Config) Collector { return buildAlways("cpu", cfg) }

func newCPU(cfg Config, s spec) *cpuCollector {
	c := &cpuCollector{
		spec:       s,
		topic:      cfg.HostID + ".cpu",
		coresTopic: cfg.HostID + ".cpu.cores",
		read: func(ctx context.Context) ([]cpu.TimesStat, error) {
			return cpu.TimesWithContext(ctx, true)
		},
	}
	if ts, err := c.read(context.Background()); err == nil && len(ts) > 0 {
		c.prev, c.prevAt, c.isBaseline = ts, time.Now(), true
	}
	return c
}

func (c *cpuCollector) Topics() []TopicInfo {
	return []TopicInfo{
		c.declare(c.topic, "CPU time shares of all cores: usage (busy) = user + nice + system + irq + softirq + steal; also iowait, idle (pct)"),
		c.declare(c.coresTopic, "CPU usage per logical core (pct)"),
	}
}

// Collect computes the CPU shares since the previous run.
func (c *cpuCollector) Collect(ctx context.Context) ([]Sample, error) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if c.prev != nil && c.isBaseline {
		if err := sleepOrDone(ctx, cpuMinSpan-time.Since(c.prevAt)); err != nil {
			return nil, err
		}
	}
	cur, err := c.read(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if len(cur) == 0 {
		return nil, errors.New("no per-CPU lines in /proc/stat")
	}

	s, st := computeCPU(c.prev, cur, c.last)
	if c.prev == nil || st == cpuReset || (st == cpuNoProgress && c.last == nil) {
		// No usable baseline: take one now and measure over cpuMinSpan.
		c.prev, c.prevAt, c.isBaseline = cur, now, true
		if err := sleepOrDone(ctx, cpuMinSpan); err != nil {
			return nil, err
		}
		if cur, err = c.read(ctx); err != nil {
			return nil, err
		}
		now = time.Now()
		s, st = computeCPU(c.prev, cur, c.last)
	}
	switch st {
	case cpuReset:
		c.prev, c.prevAt, c.isBaseline = cur, now, true
		return nil, errors.New("cpu counters went backwards twice in a row")
	case cpuNoProgress:
		if c.last == nil {
			return nil, errors.New("cpu counters did not advance")
		}
		// Two runs within one kernel tick: nothing new to say, repeat the
		// last value (with its new timestamp).
		s = *c.last
	}
	c.prev, c.prevAt, c.isBaseline = cur, now, false
	c.last = &s
	return []Sample{
		{Topic: c.topic, Time: now, Data: s.total},
		{Topic: c.coresTopic, Time: now, Data: s.cores},
	}, nil
}

// cpuDeltaState says whether two counter readings could be compared.
type cpuDeltaState int

const (
	cpuOK         cpuDeltaState = iota
	cpuNoProgress               // no time passed between the readings (same tick)
	cpuReset                    // counters went backwards or the set of CPUs changed
)

// cpuShares is how a span of CPU time was spent, in percent.
type cpuShares struct {
	user, nice, system, idle, iowait, irq, softirq, steal float64
}

// usage is the busy share: everything but idle and iowait (as top and
// psutil count it: a CPU waiting for I/O is idle and could run something).
func (s cpuShares) usage() float64 { return 100 - s.idle - s.iowait }

// cpuDelta computes the CPU time shares between two readings of the same
// counters. Guest time is left out: the kernel already counts it in user and
// nice. A single field going backwards is clamped to zero (per-CPU iowait
// and idle can decrease on tickless kernels); the whole sum going backwards
// means the counters were reset.
func cpuDelta(prev, cur cpu.TimesStat) (cpuShares, cpuDeltaState) {
	d := func(a, b float64) float64 { return max(b-a, 0) }
	dt := cpuShares{
		user:    d(prev.User, cur.User),
		nice:    d(prev.Nice, cur.Nice),
		system:  d(prev.System, cur.System),
		idle:    d(prev.Idle, cur.Idle),
		iowait:  d(prev.Iowait, cur.Iowait),
		irq:     d(prev.Irq, cur.Irq),
		softirq: d(prev.Softirq, cur.Softirq),
		steal:   d(prev.Steal, cur.Steal),
	}
	if cpuBusyIdle(cur) < cpuBusyIdle(prev) {
		return cpuShares{}, cpuReset
	}
	total := dt.user + dt.nice + dt.system + dt.idle + dt.iowait + dt.irq + dt.softirq + dt.steal
	if total <= 0 {
		return cpuShares{}, cpuNoProgress
	}
	k := 100 / total
	return cpuShares{
		user: dt.user * k, nice: dt.nice * k, system: dt.system * k, idle: dt.idle * k,
		iowait: dt.iowait * k, irq: dt.irq * k, softirq: dt.softirq * k, steal: dt.steal * k,
	}, cpuOK
}

// cpuBusyIdle is the sum of a reading's counters, guest excluded.
func cpuBusyIdle(t cpu.TimesStat) float64 {
	return t.User + t.Nice + t.System + t.Idle + t.Iowait + t.Irq + t.Softirq + t.Steal
}

// computeCPU shapes both payloads from two per-CPU readings. The total is
// the sum of the cores. A core without progress keeps its last value (or
// 0); a changed set of CPUs or any core going backwards is a reset.
func computeCPU(prev, cur []cpu.TimesStat, last *cpuSample) (cpuSample, cpuDeltaState) {
	if len(prev) != len(cur) {
		return cpuSample{}, cpuReset
	}
	var sumPrev, sumCur cpu.TimesStat
	cores := make([]CoreUsage, len(cur))
	for i := range cur {
		if prev[i].CPU != cur[i].CPU {
			return cpuSample{}, cpuReset
		}
		sh, st := cpuDelta(prev[i], cur[i])
		switch st {
		case cpuReset:
			return cpuSample{}, cpuReset
		case cpuNoProgress:
			if last != nil && i < len(last.cores.Cores) {
				cores[i].UsagePct = last.cores.Cores[i].UsagePct
			}
		default:
			cores[i].UsagePct = round2dp(sh.usage())
		}
		cores[i].Core = cpuNumber(cur[i].CPU, i)
		addTimes(&sumPrev, prev[i])
		addTimes(&sumCur, cur[i])
	}
	sh, st := cpuDelta(sumPrev, sumCur)
	if st != cpuOK {
		return cpuSample{}, st
	}
	return cpuSample{
		total: CPUData{
			UsagePct:   round2dp(sh.usage()),
			UserPct:    round2dp(sh.user),
			NicePct:    round2dp(sh.nice),
			SystemPct:  round2dp(sh.system),
			IowaitPct:  round2dp(sh.iowait),
			IrqPct:     round2dp(sh.irq),
			SoftirqPct: round2dp(sh.softirq),
			StealPct:   round2dp(sh.steal),
			IdlePct:    round2dp(sh.idle),
			Cores:      len(cur),
		},
		cores: CPUCoresData{Cores: cores},
	}, cpuOK
}

func addTimes(sum *cpu.TimesStat, t cpu.TimesStat) {
	sum.User += t.User
	sum.Nice += t.Nice
	sum.System += t.System
	sum.Idle += t.Idle
	sum.Iowait += t.Iowait
	sum.Irq += t.Irq
	sum.Softirq += t.Softirq
	sum.Steal += t.Steal
}

// cpuNumber turns "cpu3" into 3; fallback is used for a name it cannot read.
func cpuNumber(name string, fallback int) int {
	n, err := strconv.Atoi(strings.TrimPrefix(name, "cpu"))
	if err != nil {
		return fallback
	}
	return n
}

// sleepOrDone waits for d, or until ctx ends (then it returns ctx's error).
func sleepOrDone(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
