package collectors

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/host"
)

// HostData is the payload of <host>.host: what the machine is and how long
// it has been up.
type HostData struct {
	// Hostname is the host's name as configured ($HOST_ETC/hostname in a
	// container watching the host), not sanitized like the host id.
	Hostname string `json:"hostname"`
	// OS is the operating system family as Go names it ("linux").
	OS string `json:"os"`
	// Platform and PlatformVersion are the distribution ("ubuntu",
	// "24.04"), from $HOST_ETC/os-release and friends.
	Platform        string `json:"platform"`
	PlatformVersion string `json:"platform_version"`
	KernelVersion   string `json:"kernel_version"`
	// KernelArch is the machine architecture as uname -m reports it.
	KernelArch string `json:"kernel_arch"`
	UptimeS    uint64 `json:"uptime_s"`
	// BootTimeS is when the host booted, in Unix seconds.
	BootTimeS uint64 `json:"boot_time_s"`
	// VirtualizationSystem names what the host runs in, the innermost
	// layer: a container engine ("docker", "podman", "kubernetes", ...) or
	// a hypervisor ("kvm", "vmware", "hyperv", ...); "" when unknown.
	// VirtualizationRole is "guest", "host" (it can run KVM guests, or is
	// a Xen dom0) or "". VirtualizationEvidence says what decided them
	// (see detectVirtualization).
	VirtualizationSystem   string `json:"virtualization_system"`
	VirtualizationRole     string `json:"virtualization_role"`
	VirtualizationEvidence string `json:"virtualization_evidence"`
	CPUModel               string `json:"cpu_model"`
	// CPUCount is the number of logical CPUs.
	CPUCount int `json:"cpu_count"`
}

// platformTTL is how long the distribution name and version are reused.
// gopsutil may run /usr/bin/lsb_release to find them (a Python script on
// Debian: some 40 ms of CPU), and they change only with an upgrade.
const platformTTL = time.Hour

// hostCollector produces <host>.host.
type hostCollector struct {
	spec
	topic    string
	hostRoot string // where the marker files (/.dockerenv) are looked for

	mu                        sync.Mutex
	platform, platformVersion string
	platformAt                time.Time
}

// NewHost returns the collector of <host>.host.
func NewHost(cfg Config) Collector { return buildAlways("host", cfg) }

func newHost(cfg Config, s spec) *hostCollector {
	return &hostCollector{spec: s, topic: cfg.HostID + ".host", hostRoot: cfg.HostRoot}
}

func (c *hostCollector) Topics() []TopicInfo {
	return []TopicInfo{c.declare(c.topic,
		"Host facts: hostname, OS, platform, kernel, arch, uptime, boot time, virtualization and its evidence, CPU model and count")}
}

// Collect gathers the host facts. It calls gopsutil's parts one by one
// rather than host.Info, which also counts every process in /proc and reads
// the DMI product uuid, neither of which this topic shows. Facts that cannot
// be found (no os-release, unknown virtualization) stay empty; only failing
// to read the boot time or uptime is an error.
func (c *hostCollector) Collect(ctx context.Context) ([]Sample, error) {
	d := HostData{Hostname: hostname(), OS: runtime.GOOS}
	var err error
	if d.BootTimeS, err = host.BootTimeWithContext(ctx); err != nil {
		return nil, fmt.Errorf("boot time: %w", err)
	}
	if d.UptimeS, err = host.UptimeWithContext(ctx); err != nil {
		return nil, fmt.Errorf("uptime: %w", err)
	}
	d.Platform, d.PlatformVersion = c.platformInfo(ctx)
	d.KernelVersion, _ = host.KernelVersionWithContext(ctx)
	d.KernelArch, _ = host.KernelArch()
	v := detectVirtualization(hostPathsFromEnv(), c.hostRoot)
	d.VirtualizationSystem, d.VirtualizationRole, d.VirtualizationEvidence = v.system, v.role, v.evidence
	if infos, err := cpu.InfoWithContext(ctx); err == nil {
		d.CPUModel, d.CPUCount = cpuModel(infos)
	}
	if d.CPUCount == 0 {
		d.CPUCount, _ = cpu.CountsWithContext(ctx, true)
	}
	return []Sample{{Topic: c.topic, Time: time.Now(), Data: d}}, nil
}

// platformInfo returns the distribution and its version, cached for
// platformTTL.
func (c *hostCollector) platformInfo(ctx context.Context) (platform, version string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.platformAt.IsZero() || time.Since(c.platformAt) > platformTTL {
		p, _, v, err := host.PlatformInformationWithContext(ctx)
		if err == nil {
			c.platform, c.platformVersion, c.platformAt = p, v, time.Now()
		}
	}
	return c.platform, c.platformVersion
}

// cpuModel returns the first model name in /proc/cpuinfo's entries and the
// number of entries (logical CPUs).
func cpuModel(infos []cpu.InfoStat) (model string, count int) {
	for _, in := range infos {
		if model == "" {
			model = in.ModelName
		}
	}
	return model, len(infos)
}
