package views_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/a-h/templ"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
)

// The fixture host publishes payloads built from the collectors' own types,
// so a renamed JSON field there breaks these tests instead of silently
// blanking a card.

// now is the fixture's clock: the latest sample of every topic.
var now = time.UnixMilli(1763740000000)

// hostOpts shapes a fixture host.
type hostOpts struct {
	cores, mounts, ifaces, disks, procs int
	history                             int  // values per charted topic
	temps, cgroup                       bool // optional families
	workloads                           int  // containers, pods and services (workloads_test.go)
	cpuStatus                           error
	staleCPU                            bool // the cpu topic's latest value is a minute old
}

func f64(v float64) *float64 { return &v }
func u64(v uint64) *uint64   { return &v }

// newHost returns a registry holding a host "web-1" with the dashboard's topics.
func newHost(t testing.TB, o hostOpts) *stream.Registry {
	t.Helper()
	reg := stream.NewRegistry(stream.RegistryConfig{Host: "web-1", HistoryLen: 300, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	declare := func(suffix string, every time.Duration, onDemand bool) string {
		name := "web-1." + suffix
		reg.Declare(collectors.TopicInfo{Name: name, Interval: every, Description: "the " + suffix + " topic", OnDemand: onDemand})
		return name
	}
	pub := func(name string, at time.Time, data any) {
		reg.Publish(collectors.Sample{Topic: name, Time: at, Data: data})
	}

	cpu := declare("cpu", time.Second, false)
	hist := max(o.history, 1)
	for i := hist - 1; i >= 0; i-- {
		at := now.Add(-time.Duration(i) * time.Second)
		if o.staleCPU {
			at = at.Add(-time.Minute)
		}
		pub(cpu, at, collectors.CPUData{UsagePct: 12.345 + float64(i%7), UserPct: 8.04, SystemPct: 3.2, IowaitPct: 0.25, IdlePct: 87.6, Cores: o.cores})
	}
	if o.cpuStatus != nil {
		reg.SetStatus(cpu, o.cpuStatus)
	}
	cores := collectors.CPUCoresData{}
	for i := 0; i < o.cores; i++ {
		cores.Cores = append(cores.Cores, collectors.CoreUsage{Core: i, UsagePct: float64(i*37%100) + 0.5})
	}
	pub(declare("cpu.cores", time.Second, false), now, cores)

	mem := declare("mem", time.Second, false)
	for i := hist - 1; i >= 0; i-- {
		pub(mem, now.Add(-time.Duration(i)*time.Second), collectors.MemData{
			TotalBytes: 16 << 30, UsedBytes: 3 << 29, AvailableBytes: 13 << 29, CachedBytes: 5 << 30,
			BuffersBytes: 300 << 20, FreeBytes: 2 << 30, UsedPct: 9.375,
		})
	}
	pub(declare("swap", time.Second, false), now, collectors.SwapData{TotalBytes: 2 << 30, UsedBytes: 512 << 20, FreeBytes: 3 << 29, UsedPct: 25})
	pub(declare("load", time.Second, false), now, collectors.LoadData{Load1: 0.5, Load5: 1.234, Load15: 2, Load1PerCore: 0.125, Load5PerCore: 0.3085, Load15PerCore: 0.5, Cores: o.cores})
	pub(declare("host", time.Minute, false), now, collectors.HostData{
		Hostname: "web-1.example.com", OS: "linux", Platform: "debian", PlatformVersion: "12.8",
		KernelVersion: "6.1.0-28-amd64", KernelArch: "x86_64", UptimeS: 273600 + 59, CPUCount: o.cores,
	})

	du := collectors.DiskUsage{}
	for i := 0; i < o.mounts; i++ {
		mount := "/"
		if i > 0 {
			mount = fmt.Sprintf("/srv/data%02d", i)
		}
		du.Mounts = append(du.Mounts, collectors.MountUsage{
			Mount: mount, Device: fmt.Sprintf("/dev/nvme0n1p%d", i+1), FSType: "ext4",
			TotalBytes: 500 << 30, UsedBytes: 152 << 30, FreeBytes: 348 << 30, UsedPct: 30.4,
		})
	}
	pub(declare("disk.usage", 10*time.Second, false), now, du)

	diskIO := declare("disk.io", time.Second, false)
	netIO := declare("net.io", time.Second, false)
	for i := hist - 1; i >= 0; i-- {
		at := now.Add(-time.Duration(i) * time.Second)
		dio := collectors.DiskIO{}
		for d := 0; d < o.disks; d++ {
			dio.Devices = append(dio.Devices, collectors.DiskIODevice{
				Device: fmt.Sprintf("nvme%dn1", d), ReadBytesPerS: float64(2621440 * (i%5 + 1)), WriteBytesPerS: 1024 * 1024, ReadsPerS: 1234, BusyPct: 4.25,
			})
		}
		pub(diskIO, at, dio)
		nio := collectors.NetIO{}
		for n := 0; n < o.ifaces; n++ {
			nio.Interfaces = append(nio.Interfaces, collectors.NetInterface{
				Interface: fmt.Sprintf("eth%d", n), RxBytesPerS: 812.4 + float64(i), TxBytesPerS: 1536,
			})
		}
		pub(netIO, at, nio)
	}
	pub(declare("net.conns", 5*time.Second, false), now, collectors.NetConns{Established: 42, Listen: 7, TimeWait: 3, Total: 52})

	pt := collectors.ProcTop{Total: 321}
	for i := 0; i < o.procs; i++ {
		p := collectors.ProcInfo{PID: 1000 + i, Name: fmt.Sprintf("worker-%d", i), User: "www-data", CPUPct: 50 - float64(i), CPUCores: 0.5, RSSBytes: uint64(100+i) << 20, Threads: 4, State: "running"}
		pt.ByCPU = append(pt.ByCPU, p)
	}
	for i := o.procs - 1; i >= 0; i-- {
		p := pt.ByCPU[i]
		p.RSSBytes = uint64(2000-i) << 20
		pt.ByMem = append(pt.ByMem, p)
	}
	topName := declare("proc.top", 2*time.Second, true)
	if o.procs > 0 {
		pub(topName, now, pt)
	}

	if o.temps {
		pub(declare("sensors.temp", 5*time.Second, false), now, collectors.SensorsData{Sensors: []collectors.TempSensor{
			{Name: "coretemp_package_id_0", TemperatureC: 45, HighC: f64(80), CriticalC: f64(104.96)},
			{Name: "nvme_composite", TemperatureC: 38.5},
		}})
	}
	if o.cgroup {
		pub(declare("cgroup", 5*time.Second, false), now, collectors.CgroupData{
			CgroupVersion: 2, Path: "/system.slice/opsdash.service", CPULimitCores: f64(1.5), CPUUsageCores: 0.125,
			CPUUsagePct: f64(8.33), MemoryLimitBytes: nil, MemoryUsageBytes: 300 << 20, MemoryWorkingSetBytes: 200 << 20,
		})
	}
	publishWorkloads(reg, o.workloads, hist)
	return reg
}

// typical is a small real machine: 4 cores, 2 disks, 2 interfaces, a full
// chart history.
var typical = hostOpts{cores: 4, mounts: 2, ifaces: 2, disks: 2, procs: 20, history: 300}

// render renders c and parses it.
func render(t testing.TB, c templ.Component) (*goquery.Document, []byte) {
	t.Helper()
	var b bytes.Buffer
	if err := c.Render(context.Background(), &b); err != nil {
		t.Fatalf("render: %v", err)
	}
	doc, err := goquery.NewDocumentFromReader(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return doc, b.Bytes()
}

// text is the trimmed text of the element with data-testid id, failing the
// test when there is not exactly one.
func text(t *testing.T, doc *goquery.Document, id string) string {
	t.Helper()
	s := doc.Find(`[data-testid="` + id + `"]`)
	if s.Length() != 1 {
		t.Fatalf("want one [data-testid=%q], have %d", id, s.Length())
	}
	return strings.Join(strings.Fields(s.Text()), " ")
}
