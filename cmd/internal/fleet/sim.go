package fleet

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/opsdash/opsdash/collectors"
)

// Simulated hosts for tests and the load tool's fleet scenario: real
// agents (own connection, own credentials, the same Agent code) publishing
// samples shaped like the collectors' (docs/topics.md) at their intervals.

// SimTopics are a simulated host's topics after "<host>.", as a real host
// without sensors or cgroup limits has them, with their intervals. With
// <host>.summary, which the agent adds, a host has 12 topics.
var SimTopics = []struct {
	Suffix   string
	Interval time.Duration
	OnDemand bool
}{
	{"cpu", time.Second, false}, {"cpu.cores", time.Second, false},
	{"mem", time.Second, false}, {"swap", time.Second, false},
	{"load", time.Second, false}, {"host", time.Minute, false},
	{"disk.usage", 10 * time.Second, false}, {"disk.io", time.Second, false},
	{"net.io", time.Second, false}, {"net.conns", 5 * time.Second, false},
	{"proc.top", 2 * time.Second, true},
}

// SimDeclare declares a simulated host's topics on a.
func SimDeclare(a *Agent) {
	for _, t := range SimTopics {
		a.Declare(collectors.TopicInfo{Name: a.Host() + "." + t.Suffix, Interval: t.Interval, Description: "simulated " + t.Suffix, OnDemand: t.OnDemand})
	}
}

// SimSample is suffix's value at tick n of a simulated host numbered
// salt: plausible numbers that move, in the collectors' shapes.
func SimSample(suffix string, n, salt int) any {
	f := float64(n) + float64(salt)*7.3
	cpu := 20 + 15*math.Sin(f/9) + float64(salt%5)*8
	switch suffix {
	case "cpu":
		return map[string]any{"usage_pct": round2(cpu), "user_pct": round2(cpu * .6), "nice_pct": 0, "system_pct": round2(cpu * .3),
			"iowait_pct": 0.4, "irq_pct": 0, "softirq_pct": 0.2, "steal_pct": 0, "idle_pct": round2(100 - cpu), "cores": 4}
	case "cpu.cores":
		cores := make([]map[string]any, 4)
		for i := range cores {
			cores[i] = map[string]any{"core": i, "usage_pct": round2(cpu + float64(i))}
		}
		return map[string]any{"cores": cores}
	case "mem":
		used := 4e9 + 1e9*math.Sin(f/30)
		return map[string]any{"total_bytes": 16e9, "used_bytes": used, "available_bytes": 16e9 - used, "cached_bytes": 3e9,
			"buffers_bytes": 2e8, "free_bytes": 8e9, "used_pct": round2(used / 16e9 * 100)}
	case "swap":
		return map[string]any{"total_bytes": 2e9, "used_bytes": 1e8, "free_bytes": 1.9e9, "used_pct": 5}
	case "load":
		l := round2(cpu / 25)
		return map[string]any{"load1": l, "load5": l, "load15": l, "load1_per_core": round2(l / 4), "load5_per_core": round2(l / 4), "load15_per_core": round2(l / 4), "cores": 4}
	case "host":
		return map[string]any{"hostname": fmt.Sprintf("sim-%d", salt), "os": "linux", "platform": "debian", "platform_version": "12",
			"kernel_version": "6.1.0", "kernel_arch": "x86_64", "uptime_s": 86400 + n, "boot_time": 1700000000, "procs": 180}
	case "disk.usage":
		return map[string]any{"mounts": []map[string]any{{"mount": "/", "device": "/dev/vda1", "fs_type": "ext4", "total_bytes": 1e11,
			"used_bytes": 4e10, "free_bytes": 6e10, "used_pct": 40 + float64(salt%50), "inodes_total": 6e6, "inodes_used": 4e5, "inodes_free": 5.6e6, "inodes_used_pct": 6.7}}}
	case "disk.io":
		return map[string]any{"devices": []map[string]any{{"device": "vda", "read_bytes_per_s": round2(1e5 * (1 + math.Sin(f))),
			"write_bytes_per_s": round2(3e5 * (1 + math.Cos(f))), "reads_per_s": 12, "writes_per_s": 40, "busy_pct": 3.5}}}
	case "net.io":
		return map[string]any{"interfaces": []map[string]any{{"interface": "eth0", "rx_bytes_per_s": round2(5e4 * (1 + math.Sin(f/3))),
			"tx_bytes_per_s": round2(3e4 * (1 + math.Cos(f/3))), "rx_packets_per_s": 40, "tx_packets_per_s": 35, "rx_errors_per_s": 0,
			"tx_errors_per_s": 0, "rx_drops_per_s": 0, "tx_drops_per_s": 0, "rx_errors_total": 0, "tx_errors_total": 0, "rx_drops_total": 0, "tx_drops_total": 0}}}
	case "net.conns":
		return map[string]any{"established": 42, "listen": 8, "time_wait": 5, "close_wait": 0, "syn_sent": 0, "syn_recv": 0, "other": 1}
	case "proc.top":
		procs := make([]map[string]any, 10)
		for i := range procs {
			procs[i] = map[string]any{"pid": 100 + i, "name": fmt.Sprintf("proc-%d", i), "user": "root", "cpu_pct": round2(cpu / float64(i+1)), "rss_bytes": 1e7 * (10 - i)}
		}
		return map[string]any{"total": 180, "by_cpu": procs, "by_mem": procs}
	}
	return map[string]any{}
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// SimRun publishes a simulated host's samples through a until ctx ends:
// each always-on topic at its interval (all of a host's 1 s topics in one
// tick, as one collector round), proc.top while demanded; with everyTick,
// every topic every second (the budgets' "12 topics at 1 Hz"). start
// staggers hosts over the first second. onTick, if set, is told each
// tick's time.
func SimRun(ctx context.Context, a *Agent, salt int, start time.Duration, everyTick bool, onTick func(time.Time)) {
	wanted := make(chan bool, 4)
	a.OnDemand(func(topic string, on bool) {
		select {
		case wanted <- on:
		case <-ctx.Done(): // SimRun has returned, or is about to: nobody reads
		}
	})
	select {
	case <-ctx.Done():
		return
	case <-time.After(start):
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	procTop := false
	for n := 0; ; n++ {
		now := time.Now()
		for _, t := range SimTopics {
			due := everyTick || t.OnDemand && procTop && n%2 == 0 || !t.OnDemand && n%int(t.Interval/time.Second) == 0
			if due {
				a.Publish(collectors.Sample{Topic: a.Host() + "." + t.Suffix, Time: now, Data: SimSample(t.Suffix, n, salt)})
			}
		}
		if onTick != nil {
			onTick(now)
		}
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				return
			case procTop = <-wanted:
			case <-tick.C:
				waiting = false
			}
		}
	}
}
