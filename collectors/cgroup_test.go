package collectors_test

import (
	"testing"

	"github.com/opsdash/opsdash/collectors"
)

func TestCgroupOnThisMachine(t *testing.T) {
	c, ok := collectors.NewCgroup(collectors.Config{HostID: "h"})
	if !ok {
		t.Log("opsdash's cgroup has no CPU quota or memory limit here: h.cgroup is absent")
		return
	}
	d := coreCollect(t, c)["h.cgroup"].Data.(collectors.CgroupData)
	if d.CPULimitCores == nil && d.MemoryLimitBytes == nil {
		t.Errorf("cgroup detected as limited, but no limit in %+v", d)
	}
	if d.CPUUsageCores < 0 {
		t.Errorf("cpu_usage_cores = %v", d.CPUUsageCores)
	}
	if d.CPUUsagePct != nil {
		corePct(t, "cpu_usage_pct", *d.CPUUsagePct)
	}
	if d.MemoryUsedPct != nil {
		corePct(t, "memory_used_pct", *d.MemoryUsedPct)
	}
	if d.MemoryUsageBytes == 0 {
		t.Error("memory_usage_bytes = 0 for a cgroup this test runs in")
	}
	checkKeys(t, "h.cgroup", d, "cgroup_version", "path", "cpu_limit_cores", "cpu_usage_cores", "cpu_usage_pct",
		"cpu_throttled_pct", "memory_limit_bytes", "memory_usage_bytes", "memory_working_set_bytes", "memory_used_pct")
}
