package collectors

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Default returns the default collector set for this host: every metric
// family of docs/topics.md. Families whose source this machine does not have
// (temperature sensors, a cgroup with limits) are left out, so their topics
// are absent rather than failing.
func Default(cfg Config) []Collector {
	cs := []Collector{
		NewCPU(cfg),
		NewMem(cfg),
		NewLoad(cfg),
		NewHost(cfg),
		NewDiskUsage(cfg),
		NewDiskIO(cfg),
		NewNetIO(cfg),
		NewNetConns(cfg),
		NewProcTop(cfg),
	}
	if c, ok := NewSensors(cfg); ok {
		cs = append(cs, c)
	}
	if c, ok := NewCgroup(cfg); ok {
		cs = append(cs, c)
	}
	for i, c := range cs {
		if d, ok := cfg.Intervals[c.Name()]; ok && d > 0 {
			cs[i] = WithInterval(c, d)
		}
	}
	return cs
}

// Names lists every collector of the default set, including those this
// machine may lack (sensors, cgroup), so that a configuration written for a
// fleet is valid on each of its hosts.
var Names = []string{"cgroup", "cpu", "disk.io", "disk.usage", "host", "load", "mem", "net.conns", "net.io", "proc.top", "sensors"}

// CheckIntervals reports an error naming any collector in intervals that is
// not one of Names, or any interval that is not positive, so configuration
// mistakes fail at startup instead of being ignored.
func CheckIntervals(intervals map[string]time.Duration) error {
	known := map[string]bool{}
	for _, n := range Names {
		known[n] = true
	}
	keys := make([]string, 0, len(intervals))
	for k := range intervals {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the same error every time
	for _, name := range keys {
		d := intervals[name]
		if !known[name] {
			return fmt.Errorf("unknown collector %q (have %s)", name, strings.Join(Names, ", "))
		}
		if d <= 0 {
			return fmt.Errorf("collector %q: interval must be positive, got %v", name, d)
		}
	}
	return nil
}

// WithInterval returns c running every d instead of its default interval;
// its declared topics carry the new interval too.
func WithInterval(c Collector, d time.Duration) Collector {
	return intervalOverride{Collector: c, every: d}
}

type intervalOverride struct {
	Collector
	every time.Duration
}

func (o intervalOverride) Interval() time.Duration { return o.every }

func (o intervalOverride) Topics() []TopicInfo {
	ts := o.Collector.Topics()
	out := make([]TopicInfo, len(ts))
	for i, t := range ts {
		t.Interval = o.every
		out[i] = t
	}
	return out
}
