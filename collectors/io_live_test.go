package collectors_test

// These tests run the I/O collectors for real on this Linux machine and
// check what a dashboard user would notice: plausible ranges, activity the
// test itself causes showing up, and the JSON field names of docs/topics.md.

import (
	"cmp"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/opsdash/opsdash/collectors"
)

const liveDeadline = 10 * time.Second

var liveCfg = collectors.Config{HostID: "live"}

// collectOne runs c once and returns its only sample, checking the topic.
func collectOne(t *testing.T, c collectors.Collector, topic string) collectors.Sample {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), liveDeadline)
	defer cancel()
	samples, err := c.Collect(ctx)
	if err != nil {
		t.Fatalf("%s: Collect: %v", c.Name(), err)
	}
	if len(samples) != 1 {
		t.Fatalf("%s: Collect returned %d samples, want 1", c.Name(), len(samples))
	}
	if samples[0].Topic != topic {
		t.Fatalf("%s: topic %q, want %q", c.Name(), samples[0].Topic, topic)
	}
	if age := time.Since(samples[0].Time); age < 0 || age > liveDeadline {
		t.Fatalf("%s: sample time %v is not now", c.Name(), samples[0].Time)
	}
	return samples[0]
}

// jsonKeys returns the sorted keys of v encoded as a JSON object.
func jsonKeys(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func checkKeys(t *testing.T, what string, v any, want ...string) {
	t.Helper()
	sort.Strings(want)
	if got := jsonKeys(t, v); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s JSON fields = %q, want %q", what, got, want)
	}
}

func checkPct(t *testing.T, what string, v float64) {
	t.Helper()
	if v < 0 || v > 100 {
		t.Fatalf("%s = %v, want within 0..100", what, v)
	}
}

func checkRate(t *testing.T, what string, v float64) {
	t.Helper()
	if v < 0 {
		t.Fatalf("%s = %v, want not negative", what, v)
	}
}

func checkTopics(t *testing.T, c collectors.Collector, name, topic string, interval time.Duration, onDemand bool) {
	t.Helper()
	if c.Name() != name || c.Interval() != interval {
		t.Fatalf("Name/Interval = %q/%v, want %q/%v", c.Name(), c.Interval(), name, interval)
	}
	ts := c.Topics()
	if len(ts) != 1 || ts[0].Name != topic || ts[0].Interval != interval || ts[0].OnDemand != onDemand || ts[0].Description == "" {
		t.Fatalf("Topics = %+v, want %s every %v, on demand %v, described", ts, topic, interval, onDemand)
	}
}

func TestDiskUsageLive(t *testing.T) {
	c := collectors.NewDiskUsage(liveCfg)
	checkTopics(t, c, "disk.usage", "live.disk.usage", 10*time.Second, false)
	d := collectOne(t, c, "live.disk.usage").Data.(collectors.DiskUsage)
	if len(d.Mounts) == 0 {
		t.Fatal("no mounts reported")
	}
	checkKeys(t, "disk.usage", d, "mounts")
	checkKeys(t, "disk.usage mount", d.Mounts[0], "mount", "device", "fs_type", "total_bytes", "used_bytes",
		"free_bytes", "used_pct", "inodes_total", "inodes_used", "inodes_free", "inodes_used_pct")
	seenMount := map[string]bool{}
	seenDevice := map[string]bool{}
	for _, m := range d.Mounts {
		if m.TotalBytes == 0 {
			t.Errorf("%s: total_bytes 0", m.Mount)
		}
		if m.UsedBytes+m.FreeBytes > m.TotalBytes {
			t.Errorf("%s: used %d + free %d > total %d", m.Mount, m.UsedBytes, m.FreeBytes, m.TotalBytes)
		}
		checkPct(t, m.Mount+" used_pct", m.UsedPct)
		checkPct(t, m.Mount+" inodes_used_pct", m.InodesUsedPct)
		if m.InodesUsed+m.InodesFree != m.InodesTotal {
			t.Errorf("%s: inodes used %d + free %d != total %d", m.Mount, m.InodesUsed, m.InodesFree, m.InodesTotal)
		}
		if seenMount[m.Mount] || seenDevice[m.Device] {
			t.Errorf("%s (%s) reported twice", m.Mount, m.Device)
		}
		seenMount[m.Mount], seenDevice[m.Device] = true, true
		for _, pseudo := range []string{"proc", "sysfs", "cgroup", "cgroup2", "devtmpfs", "devpts"} {
			if m.FSType == pseudo {
				t.Errorf("pseudo filesystem reported: %+v", m)
			}
		}
	}
	// The filesystem this test runs from is a real one, so it is listed
	// with the same size statfs gives.
	wd, _ := os.Getwd()
	var st unix.Statfs_t
	if err := unix.Statfs(wd, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.TMPFS_MAGIC && st.Type != unix.OVERLAYFS_SUPER_MAGIC {
		found := false
		for _, m := range d.Mounts {
			if m.TotalBytes == st.Blocks*uint64(st.Frsize) && strings.HasPrefix(wd, m.Mount) {
				found = true
			}
		}
		if !found {
			t.Errorf("the filesystem of %s (%d bytes) is not among %+v", wd, st.Blocks*uint64(st.Frsize), d.Mounts)
		}
	}
}

// wholeDiskOf returns the kernel name of the whole disk holding dir
// ("vda" for a file on /dev/vda or /dev/vda1), or "" if it is not on a
// block device sysfs knows (tmpfs, overlay, device-mapper...).
func wholeDiskOf(t *testing.T, dir string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	link, err := os.Readlink(filepath.Join("/sys/dev/block", strconv.FormatUint(uint64(unix.Major(st.Dev)), 10)+":"+strconv.FormatUint(uint64(unix.Minor(st.Dev)), 10)))
	if err != nil {
		return ""
	}
	// .../block/vda or .../block/sda/sda1
	_, after, ok := strings.Cut(link, "/block/")
	if !ok || strings.Contains(link, "/virtual/") {
		return ""
	}
	name, _, _ := strings.Cut(after, "/")
	return name
}

func TestDiskIOLive(t *testing.T) {
	c := collectors.NewDiskIO(liveCfg)
	checkTopics(t, c, "disk.io", "live.disk.io", time.Second, false)
	// The baseline was taken at construction: the first run has rates.
	d := collectOne(t, c, "live.disk.io").Data.(collectors.DiskIO)
	checkKeys(t, "disk.io", d, "devices")
	check := func(d collectors.DiskIO) {
		for _, dev := range d.Devices {
			checkRate(t, dev.Device+" read_bytes_per_s", dev.ReadBytesPerS)
			checkRate(t, dev.Device+" write_bytes_per_s", dev.WriteBytesPerS)
			checkRate(t, dev.Device+" reads_per_s", dev.ReadsPerS)
			checkRate(t, dev.Device+" writes_per_s", dev.WritesPerS)
			checkPct(t, dev.Device+" busy_pct", dev.BusyPct)
			if strings.HasPrefix(dev.Device, "loop") || strings.HasPrefix(dev.Device, "zram") || strings.HasPrefix(dev.Device, "ram") {
				t.Fatalf("virtual device reported: %+v", dev)
			}
		}
		if !slices.IsSortedFunc(d.Devices, func(a, b collectors.DiskIODevice) int { return strings.Compare(a.Device, b.Device) }) {
			t.Fatalf("devices not sorted: %+v", d.Devices)
		}
	}
	check(d)
	if len(d.Devices) > 0 {
		checkKeys(t, "disk.io device", d.Devices[0], "device", "read_bytes_per_s", "write_bytes_per_s",
			"reads_per_s", "writes_per_s", "busy_pct")
	}

	// Writing and syncing a file shows up as writes on its disk.
	dir := t.TempDir()
	disk := wholeDiskOf(t, dir)
	if disk == "" {
		t.Logf("%s is not on a physical disk; not checking that writes show up", dir)
		return
	}
	data := make([]byte, 1<<20)
	deadline := time.Now().Add(liveDeadline)
	for i := 0; ; i++ {
		f, err := os.Create(filepath.Join(dir, "w"))
		if err != nil {
			t.Fatal(err)
		}
		for range 4 {
			data[0] = byte(i)
			if _, err := f.Write(data); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		d := collectOne(t, c, "live.disk.io").Data.(collectors.DiskIO)
		check(d)
		for _, dev := range d.Devices {
			if dev.Device == disk && dev.WriteBytesPerS > 0 && dev.WritesPerS > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("4 MiB written and synced to %s, but disk.io never showed writes on %s: %+v", dir, disk, d.Devices)
		}
	}
}

func TestNetIOLive(t *testing.T) {
	// Loopback is left out by default; the include pattern brings it back,
	// and traffic the test sends over it shows up as a rate.
	c := collectors.NewNetIO(collectors.Config{HostID: "live", NetInclude: []string{"lo"}})
	checkTopics(t, c, "net.io", "live.net.io", time.Second, false)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.Copy(io.Discard, conn)
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	payload := make([]byte, 256<<10)
	deadline := time.Now().Add(liveDeadline)
	for {
		if _, err := conn.Write(payload); err != nil {
			t.Fatal(err)
		}
		d := collectOne(t, c, "live.net.io").Data.(collectors.NetIO)
		checkKeys(t, "net.io", d, "interfaces")
		var lo *collectors.NetInterface
		for i, ifc := range d.Interfaces {
			for what, v := range map[string]float64{"rx_bytes_per_s": ifc.RxBytesPerS, "tx_bytes_per_s": ifc.TxBytesPerS,
				"rx_packets_per_s": ifc.RxPacketsPerS, "tx_packets_per_s": ifc.TxPacketsPerS,
				"rx_errors_per_s": ifc.RxErrorsPerS, "tx_errors_per_s": ifc.TxErrorsPerS,
				"rx_drops_per_s": ifc.RxDropsPerS, "tx_drops_per_s": ifc.TxDropsPerS} {
				checkRate(t, ifc.Interface+" "+what, v)
			}
			if strings.HasPrefix(ifc.Interface, "veth") || strings.HasPrefix(ifc.Interface, "docker") {
				t.Fatalf("virtual interface reported: %+v", ifc)
			}
			if ifc.Interface == "lo" {
				lo = &d.Interfaces[i]
			}
		}
		if lo != nil && lo.RxBytesPerS >= float64(len(payload))/10 && lo.RxPacketsPerS > 0 {
			checkKeys(t, "net.io interface", *lo, "interface", "rx_bytes_per_s", "tx_bytes_per_s",
				"rx_packets_per_s", "tx_packets_per_s", "rx_errors_per_s", "tx_errors_per_s",
				"rx_drops_per_s", "tx_drops_per_s", "rx_errors_total", "tx_errors_total",
				"rx_drops_total", "tx_drops_total")
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("traffic sent over loopback never showed on lo: %+v", d.Interfaces)
		}
	}
}

func TestNetIOLiveLeavesLoopbackOutByDefault(t *testing.T) {
	c := collectors.NewNetIO(liveCfg)
	d := collectOne(t, c, "live.net.io").Data.(collectors.NetIO)
	for _, ifc := range d.Interfaces {
		if ifc.Interface == "lo" {
			t.Fatalf("lo reported without an include pattern: %+v", d.Interfaces)
		}
	}
}

func TestNetConnsLive(t *testing.T) {
	c := collectors.NewNetConns(liveCfg)
	checkTopics(t, c, "net.conns", "live.net.conns", 5*time.Second, false)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- conn
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer server.Close()

	d := collectOne(t, c, "live.net.conns").Data.(collectors.NetConns)
	checkKeys(t, "net.conns", d, "established", "syn_sent", "syn_recv", "fin_wait1", "fin_wait2",
		"time_wait", "close", "close_wait", "last_ack", "listen", "closing", "total")
	if d.Listen < 1 {
		t.Errorf("listen = %d with a listener open, want >= 1", d.Listen)
	}
	if d.Established < 2 {
		t.Errorf("established = %d with both ends of a connection open, want >= 2", d.Established)
	}
	sum := d.Established + d.SynSent + d.SynRecv + d.FinWait1 + d.FinWait2 + d.TimeWait + d.Close +
		d.CloseWait + d.LastAck + d.Listen + d.Closing
	if d.Total < sum {
		t.Errorf("total %d < sum of states %d", d.Total, sum)
	}
}

// startSpinner starts a shell that burns one core until the test ends (or
// 2 minutes pass, or the test process dies), and returns its pid.
func startSpinner(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, "sh", "-c", "while :; do :; done")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Skipf("cannot start sh: %v", err)
	}
	t.Cleanup(func() {
		cancel() // kills it
		_ = cmd.Wait()
	})
	return cmd.Process.Pid
}

func TestProcTopLive(t *testing.T) {
	c := collectors.NewProcTop(liveCfg)
	checkTopics(t, c, "proc.top", "live.proc.top", 2*time.Second, true)
	spinner := startSpinner(t)

	deadline := time.Now().Add(liveDeadline)
	for {
		d := collectOne(t, c, "live.proc.top").Data.(collectors.ProcTop)
		checkKeys(t, "proc.top", d, "total", "by_cpu", "by_mem", "by_io", "io_readable")
		if d.Total < 2 {
			t.Fatalf("total = %d processes, want at least this test and its spinner", d.Total)
		}
		if len(d.ByCPU) == 0 || len(d.ByCPU) > 20 || len(d.ByMem) == 0 || len(d.ByMem) > 20 {
			t.Fatalf("list sizes %d and %d, want 1..20", len(d.ByCPU), len(d.ByMem))
		}
		checkKeys(t, "proc.top process", d.ByCPU[0], "pid", "name", "user", "cpu_pct", "cpu_cores",
			"rss_bytes", "threads", "state", "io_read_bytes_per_s", "io_write_bytes_per_s", "io_bytes_per_s")
		for _, list := range [][]collectors.ProcInfo{d.ByCPU, d.ByMem} {
			for _, p := range list {
				checkPct(t, p.Name+" cpu_pct", p.CPUPct)
				checkRate(t, p.Name+" cpu_cores", p.CPUCores)
				if p.PID <= 0 || p.Name == "" || p.User == "" || (p.Threads < 1 && p.State != "zombie") || p.State == "" || p.State == "unknown" {
					t.Fatalf("implausible process entry %+v", p)
				}
			}
		}
		if !slices.IsSortedFunc(d.ByCPU, func(a, b collectors.ProcInfo) int { return cmp.Compare(b.CPUCores, a.CPUCores) }) {
			t.Fatalf("by_cpu not sorted by CPU: %+v", d.ByCPU)
		}
		if !slices.IsSortedFunc(d.ByMem, func(a, b collectors.ProcInfo) int { return cmp.Compare(b.RSSBytes, a.RSSBytes) }) {
			t.Fatalf("by_mem not sorted by memory: %+v", d.ByMem)
		}
		// This test process holds memory: it has an RSS and a user.
		for _, p := range d.ByMem {
			if p.PID == os.Getpid() && p.RSSBytes == 0 {
				t.Fatalf("this test process listed with no resident memory: %+v", p)
			}
		}
		for _, p := range d.ByCPU {
			if p.PID == spinner && p.Name == "sh" && p.CPUCores >= 0.2 && p.CPUPct > 0 && p.State == "running" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("spinning sh (pid %d) never showed up busy in by_cpu: %+v", spinner, d.ByCPU)
		}
	}
}
