package collectors

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v3/disk"
)

func TestWholeDiskByName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"sda", true}, {"sdaa", true}, {"vda", true}, {"xvda", true}, {"hda", true},
		{"nvme0n1", true}, {"mmcblk0", true}, {"dm-0", true}, {"md127", true},
		{"sda1", false}, {"sdaa12", false}, {"vda2", false}, {"xvda1", false},
		{"nvme0n1p1", false}, {"nvme10n2p15", false}, {"mmcblk0p2", false},
		{"loop0", false}, {"loop12", false}, {"ram0", false}, {"zram0", false},
		{"fd0", false}, {"sr0", false},
	}
	for _, tt := range tests {
		if got := wholeDiskByName(tt.name); got != tt.want {
			t.Errorf("wholeDiskByName(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestPhysicalDisks(t *testing.T) {
	tests := []struct {
		name string
		in   []blockDevice
		want []string
	}{
		{
			name: "this VM: virtio disk, loops and zram",
			in:   []blockDevice{{"loop0", true}, {"loop1", true}, {"vda", false}, {"zram0", true}},
			want: []string{"vda"},
		},
		{
			name: "server with LVM and md RAID on two disks",
			in:   []blockDevice{{"dm-0", true}, {"dm-1", true}, {"md0", true}, {"nvme0n1", false}, {"sda", false}},
			want: []string{"nvme0n1", "sda"},
		},
		{name: "no physical disk: decide by name", in: []blockDevice{{"loop0", true}, {"dm-0", true}}, want: nil},
		{name: "no sysfs", in: nil, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := physicalDisks(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("physicalDisks = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadBlockDevicesFromSysfs(t *testing.T) {
	// A sysfs tree as the kernel lays it out: /sys/block/<disk> links into
	// /sys/devices, virtual devices under /sys/devices/virtual.
	sys := t.TempDir()
	links := map[string]string{
		"sda":        "../devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda",
		"loop0":      "../devices/virtual/block/loop0",
		"dm-0":       "../devices/virtual/block/dm-0",
		"cciss!c0d0": "../devices/pci0000:00/0000:00:01.0/cciss0/c0d0/block/cciss!c0d0",
	}
	if err := os.MkdirAll(filepath.Join(sys, "block"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(sys, "block", name)); err != nil {
			t.Fatal(err)
		}
	}
	got := readBlockDevices(hostPaths{sys: sys})
	slices.SortFunc(got, func(a, b blockDevice) int { return strings.Compare(a.name, b.name) })
	want := []blockDevice{{"cciss/c0d0", false}, {"dm-0", true}, {"loop0", true}, {"sda", false}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("readBlockDevices = %+v, want %+v", got, want)
	}
	if got := readBlockDevices(hostPaths{sys: filepath.Join(sys, "missing")}); got != nil {
		t.Fatalf("readBlockDevices without sysfs = %+v, want nil", got)
	}
}

func TestDiskIORates(t *testing.T) {
	counters := map[string]disk.IOCountersStat{}
	var asked [][]string
	c := NewDiskIO(Config{HostID: "h"}).(*diskIOCollector)
	c.rates = newCounterRates[string]()
	c.lastRead = time.Time{}
	c.disks, c.disksAt = []string{"sda", "nvme0n1"}, time.Now().Add(time.Hour) // skip the sysfs listing
	c.ioCounters = func(_ context.Context, names ...string) (map[string]disk.IOCountersStat, error) {
		asked = append(asked, names)
		out := map[string]disk.IOCountersStat{}
		for _, n := range names {
			if s, ok := counters[n]; ok {
				out[n] = s
			}
		}
		return out, nil
	}
	t0 := time.Now()
	read := func(at time.Duration) *DiskIO {
		t.Helper()
		d, err := c.read(context.Background(), t0.Add(at))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	counters["sda"] = disk.IOCountersStat{ReadBytes: 1 << 20, WriteBytes: 0, ReadCount: 10, WriteCount: 0, IoTime: 1000}
	if d := read(0); d != nil {
		t.Fatalf("first read = %+v, want only a baseline", d)
	}
	if !reflect.DeepEqual(asked[0], []string{"sda", "nvme0n1"}) {
		t.Fatalf("asked gopsutil for %q, want only the physical disks", asked[0])
	}

	counters["sda"] = disk.IOCountersStat{ReadBytes: 3 << 20, WriteBytes: 1 << 20, ReadCount: 30, WriteCount: 5, IoTime: 1500}
	counters["nvme0n1"] = disk.IOCountersStat{ReadBytes: 4096, ReadCount: 1, IoTime: 1} // new: baseline only
	d := read(2 * time.Second)
	want := []DiskIODevice{{Device: "sda", ReadBytesPerS: 1 << 20, WriteBytesPerS: 512 << 10, ReadsPerS: 10, WritesPerS: 2.5, BusyPct: 25}}
	if !reflect.DeepEqual(d.Devices, want) {
		t.Fatalf("devices = %+v, want %+v", d.Devices, want)
	}

	// io_time can run ahead of wall time by a little: busy is capped at 100.
	// sda's counters are reset (disk re-attached): no rate, new baseline.
	counters["sda"] = disk.IOCountersStat{ReadBytes: 100, ReadCount: 1, IoTime: 5}
	counters["nvme0n1"] = disk.IOCountersStat{ReadBytes: 4096, ReadCount: 1, IoTime: 1100}
	d = read(3 * time.Second)
	want = []DiskIODevice{{Device: "nvme0n1", BusyPct: 100}}
	if !reflect.DeepEqual(d.Devices, want) {
		t.Fatalf("after reset: devices = %+v, want %+v", d.Devices, want)
	}

	counters["sda"] = disk.IOCountersStat{ReadBytes: 1100, ReadCount: 3, IoTime: 105}
	d = read(4 * time.Second)
	if len(d.Devices) != 2 || d.Devices[1].Device != "sda" || d.Devices[1].ReadBytesPerS != 1000 || d.Devices[1].BusyPct != 10 {
		t.Fatalf("after the new baseline: devices = %+v, want sda at 1000 B/s, 10 %% busy", d.Devices)
	}
}

func TestDiskIOWithoutSysfsChoosesByName(t *testing.T) {
	t.Setenv("HOST_SYS", t.TempDir())
	c := NewDiskIO(Config{HostID: "h"}).(*diskIOCollector)
	c.rates = newCounterRates[string]()
	c.lastRead = time.Time{}
	c.disksAt = time.Time{}
	c.ioCounters = func(_ context.Context, names ...string) (map[string]disk.IOCountersStat, error) {
		if len(names) != 0 {
			t.Errorf("asked for %q, want every device when sysfs cannot tell", names)
		}
		s := disk.IOCountersStat{ReadBytes: 1}
		return map[string]disk.IOCountersStat{"sda": s, "sda1": s, "loop0": s, "dm-0": s, "nvme0n1p1": s}, nil
	}
	t0 := time.Now()
	if _, err := c.read(context.Background(), t0); err != nil {
		t.Fatal(err)
	}
	d, err := c.read(context.Background(), t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, dev := range d.Devices {
		names = append(names, dev.Device)
	}
	if want := []string{"dm-0", "sda"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("devices = %q, want %q", names, want)
	}
}

func TestDiskIOFirstCollectWaitsForAMeaningfulWindow(t *testing.T) {
	c := NewDiskIO(Config{HostID: "h"}).(*diskIOCollector)
	base := c.lastRead
	if base.IsZero() {
		t.Skip("no /proc/diskstats on this machine")
	}
	// A cancelled context ends the wait.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Collect(ctx); err == nil {
		t.Fatal("first Collect with a cancelled context succeeded, want the context's error")
	}

	samples, err := c.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 1 {
		t.Fatalf("first Collect gave %d samples, want 1 (baseline taken at construction)", len(samples))
	}
	if got := samples[0].Time.Sub(base); got < minRateWindow {
		t.Fatalf("first rates cover %v, want at least %v", got, minRateWindow)
	}
	// Later runs do not wait: the scheduler spaces them.
	if c.youngBaseline {
		t.Fatal("still waiting for a young baseline after the first sample")
	}
}
