package collectors

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v3/disk"
)

// DiskIO is the payload of <host>.disk.io: throughput of each disk over the
// last interval, sorted by device name.
type DiskIO struct {
	Devices []DiskIODevice `json:"devices"`
}

// DiskIODevice is one whole disk. Rates are averages over the interval
// since the previous sample.
type DiskIODevice struct {
	// Device is the kernel's name: "sda", "nvme0n1", "vda".
	Device         string  `json:"device"`
	ReadBytesPerS  float64 `json:"read_bytes_per_s"`
	WriteBytesPerS float64 `json:"write_bytes_per_s"`
	ReadsPerS      float64 `json:"reads_per_s"`
	WritesPerS     float64 `json:"writes_per_s"`
	// BusyPct is the share of the interval during which the device had
	// I/O in flight (iostat's %util). For devices that serve requests in
	// parallel (SSDs, NVMe, RAID) 100 % does not mean saturated.
	BusyPct float64 `json:"busy_pct"`
}

// diskListTTL is how long the list of whole disks in /sys/block is trusted;
// a hot-plugged disk shows up within it.
const diskListTTL = 30 * time.Second

// The counters kept per disk, in this order.
const (
	dioReadBytes = iota
	dioWriteBytes
	dioReads
	dioWrites
	dioIOTimeMs
	dioCounters
)

// diskIOCollector produces <host>.disk.io.
type diskIOCollector struct {
	spec
	rateTopic[DiskIO]
	paths hostPaths
	// ioCounters reads /proc/diskstats (gopsutil, honouring HOST_PROC);
	// a field so that tests can feed counters that wrap and reset.
	ioCounters func(ctx context.Context, names ...string) (map[string]disk.IOCountersStat, error)

	// Guarded by rateTopic.mu:
	disks   []string // physical whole disks, nil: decide by name
	disksAt time.Time
}

// NewDiskIO returns the collector of <host>.disk.io: read and write
// throughput, operations and busy time of each physical whole disk.
//
// Only disks backed by hardware are reported: the entries of
// $HOST_SYS/block that are not under /sys/devices/virtual. That leaves out
// partitions (their I/O is already counted on their disk), and stacked or
// memory devices: loop, ram, zram, device-mapper (LVM, LUKS) and md RAID,
// whose I/O also reaches the disks below them. If /sys/block shows no such
// disk (no sysfs), devices are chosen by name instead (wholeDiskByName).
//
// A baseline is read here, so the first Collect already reports rates.
func NewDiskIO(cfg Config) Collector { return buildAlways("disk.io", cfg) }

func newDiskIO(cfg Config, s spec) *diskIOCollector {
	c := &diskIOCollector{
		spec:       s,
		paths:      hostPathsFromEnv(),
		ioCounters: disk.IOCountersWithContext,
	}
	c.startRates(cfg.HostID+".disk.io", c.sample)
	return c
}

func (c *diskIOCollector) Topics() []TopicInfo {
	return []TopicInfo{c.declare(c.topic, "Read/write throughput (bytes/s, ops/s) and busy time (pct) per physical disk")}
}

// sample reads the disks' counters at now and returns the rates of those
// with an earlier reading (see rateTopic).
func (c *diskIOCollector) sample(ctx context.Context, now time.Time, rates *counterRates[string]) (DiskIO, error) {
	if c.disksAt.IsZero() || now.Sub(c.disksAt) > diskListTTL {
		c.disks = physicalDisks(readBlockDevices(c.paths))
		c.disksAt = now
	}
	// Asking for the chosen disks only spares gopsutil its serial number
	// and label lookups for every partition and loop device. gopsutil
	// matches names by their last path element, which loses a name with a
	// "/" in it (cciss/c0d0): then ask for everything and filter here.
	var ask []string
	if !slices.ContainsFunc(c.disks, func(n string) bool { return strings.Contains(n, "/") }) {
		ask = slices.Clone(c.disks)
	}
	counters, err := c.ioCounters(ctx, ask...)
	if err != nil {
		return DiskIO{}, fmt.Errorf("read disk counters: %w", err)
	}
	data := DiskIO{Devices: make([]DiskIODevice, 0, len(counters))}
	var cur [dioCounters]uint64
	var r [dioCounters]float64
	for name, s := range counters {
		if (c.disks == nil && !wholeDiskByName(name)) || (c.disks != nil && !slices.Contains(c.disks, name)) {
			continue
		}
		cur = [dioCounters]uint64{
			dioReadBytes:  s.ReadBytes,
			dioWriteBytes: s.WriteBytes,
			dioReads:      s.ReadCount,
			dioWrites:     s.WriteCount,
			dioIOTimeMs:   s.IoTime,
		}
		if !rates.observe(name, now, cur[:], r[:]) {
			continue
		}
		data.Devices = append(data.Devices, DiskIODevice{
			Device:         name,
			ReadBytesPerS:  round2dp(r[dioReadBytes]),
			WriteBytesPerS: round2dp(r[dioWriteBytes]),
			ReadsPerS:      round2dp(r[dioReads]),
			WritesPerS:     round2dp(r[dioWrites]),
			// io_time is in milliseconds: ms per second / 10 = pct.
			BusyPct: round2dp(clampPct(r[dioIOTimeMs] / 10)),
		})
	}
	slices.SortFunc(data.Devices, func(a, b DiskIODevice) int { return strings.Compare(a.Device, b.Device) })
	return data, nil
}

// blockDevice is an entry of /sys/block, i.e. a whole disk (partitions live
// below their disk there).
type blockDevice struct {
	name string
	// virtual is true for devices without hardware behind them, whose
	// sysfs node is under /sys/devices/virtual: loop, ram, zram, dm-*,
	// md*, nbd*.
	virtual bool
}

// readBlockDevices lists $HOST_SYS/block; nil if it cannot be read.
func readBlockDevices(p hostPaths) []blockDevice {
	dir := p.sysPath("block")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	devs := make([]blockDevice, 0, len(entries))
	for _, e := range entries {
		target, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		devs = append(devs, blockDevice{
			// sysfs spells a "/" in a device name as "!" (cciss!c0d0);
			// /proc/diskstats has the real name.
			name:    strings.ReplaceAll(e.Name(), "!", "/"),
			virtual: strings.Contains(target, "/devices/virtual/"),
		})
	}
	return devs
}

// physicalDisks returns the names of the disks that are not virtual, or nil
// when there is none (no sysfs, or a machine whose disks are all virtual),
// in which case the caller falls back to wholeDiskByName.
func physicalDisks(devs []blockDevice) []string {
	var names []string
	for _, d := range devs {
		if !d.virtual {
			names = append(names, d.name)
		}
	}
	return names
}

// wholeDiskByName reports whether a /proc/diskstats device name looks like a
// whole disk worth reporting, for when /sys/block cannot tell: partitions
// (sda1, nvme0n1p1, mmcblk0p1, vda2, xvda1) and loop, ram, zram, floppy
// and optical devices are not.
func wholeDiskByName(name string) bool {
	for _, p := range []string{"loop", "ram", "zram", "fd", "sr"} {
		if rest, ok := strings.CutPrefix(name, p); ok && isDecimalNumber(rest) {
			return false
		}
	}
	// nvme0n1p1, mmcblk0p1, nbd0p1: a "p" and digits after a digit.
	if i := strings.LastIndexByte(name, 'p'); i > 0 && isDecimalNumber(name[i+1:]) && isDecimalDigit(name[i-1]) {
		return false
	}
	// sda1, vdb2, xvda1, hda3: letters-only disk names followed by digits.
	for _, p := range []string{"sd", "vd", "xvd", "hd"} {
		if rest, ok := strings.CutPrefix(name, p); ok {
			letters := strings.TrimRight(rest, "0123456789")
			return len(letters) == len(rest)
		}
	}
	return true
}

func isDecimalDigit(b byte) bool { return '0' <= b && b <= '9' }

// isDecimalNumber reports whether s is one or more decimal digits.
func isDecimalNumber(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDecimalDigit(s[i]) {
			return false
		}
	}
	return true
}
