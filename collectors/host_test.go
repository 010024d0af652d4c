package collectors_test

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
)

func TestHostOnThisMachine(t *testing.T) {
	c := collectors.NewHost(collectors.Config{HostID: "h"})
	if c.Name() != "host" || c.Interval() != time.Minute || len(c.Topics()) != 1 {
		t.Errorf("name %q interval %v topics %v", c.Name(), c.Interval(), c.Topics())
	}
	t.Setenv("HOST_ETC", "") // the machine's own hostname
	got := coreCollect(t, c)
	d, ok := got["h.host"].Data.(collectors.HostData)
	if !ok {
		t.Fatalf("no h.host sample: %v", got)
	}
	if want, _ := os.Hostname(); d.Hostname != want {
		t.Errorf("hostname = %q, want %q", d.Hostname, want)
	}
	if d.OS != runtime.GOOS {
		t.Errorf("os = %q, want %q", d.OS, runtime.GOOS)
	}
	if d.KernelVersion == "" || d.KernelArch == "" {
		t.Errorf("kernel_version %q kernel_arch %q", d.KernelVersion, d.KernelArch)
	}
	if d.UptimeS == 0 {
		t.Error("uptime_s = 0")
	}
	// Boot time and uptime agree (within a few seconds of rounding).
	now := uint64(time.Now().Unix())
	if diff := int64(now-d.UptimeS) - int64(d.BootTimeS); diff < -5 || diff > 5 {
		t.Errorf("boot_time_s %d + uptime_s %d is %d s off now", d.BootTimeS, d.UptimeS, diff)
	}
	if d.CPUCount < runtime.NumCPU() {
		t.Errorf("cpu_count = %d, fewer than the %d this process may use", d.CPUCount, runtime.NumCPU())
	}
	checkKeys(t, "h.host", d, "hostname", "os", "platform", "platform_version", "kernel_version", "kernel_arch",
		"uptime_s", "boot_time_s", "virtualization_system", "virtualization_role", "virtualization_evidence", "cpu_model", "cpu_count")
	// Whatever this machine is, the topic says how it decided.
	if d.VirtualizationEvidence == "" {
		t.Errorf("virtualization %q %q without evidence", d.VirtualizationSystem, d.VirtualizationRole)
	}
	t.Logf("virtualization: %q %q: %s", d.VirtualizationSystem, d.VirtualizationRole, d.VirtualizationEvidence)

	// In a container watching the host, the hostname is the host's.
	etc := t.TempDir()
	if err := os.WriteFile(filepath.Join(etc, "hostname"), []byte("Node-7.example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOST_ETC", etc)
	d = coreCollect(t, c)["h.host"].Data.(collectors.HostData)
	if d.Hostname != "Node-7.example.com" {
		t.Errorf("hostname with HOST_ETC = %q, want the host's, as written", d.Hostname)
	}
}
