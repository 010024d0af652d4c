package collectors

import (
	"context"
	"math"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v3/net"
)

func TestKeepInterface(t *testing.T) {
	tests := []struct {
		name        string
		iface       string
		physical    bool
		anyPhysical bool
		include     []string
		want        bool
	}{
		{"physical NIC", "eth0", true, true, nil, true},
		{"predictable name", "enp3s0", true, true, nil, true},
		{"loopback", "lo", false, true, nil, false},
		{"loopback brought back", "lo", false, true, []string{"lo"}, true},
		{"veth", "veth1a2b3c", false, true, nil, false},
		{"veth brought back by pattern", "veth1a2b3c", false, true, []string{"veth*"}, true},
		{"docker bridge", "docker0", false, true, nil, false},
		{"bond: its slaves carry the traffic", "bond0", false, true, nil, false},
		{"bond brought back", "bond0", false, true, []string{"docker0", "bond*"}, true},
		{"vlan on a NIC", "eth0.100", false, true, nil, false},
		{"unknown virtual name on a node with NICs", "eni3f9a2b", false, true, nil, false},
		{"wireguard", "wg0", false, true, nil, false},
		{"malformed pattern matches nothing", "wg0", false, true, []string{"[wg"}, false},
		// No physical interface known: a container's own namespace or no sysfs.
		{"container eth0 (a veth) without sysfs help", "eth0", false, false, nil, true},
		{"container loopback", "lo", false, false, nil, false},
		{"by name: veth", "veth0", false, false, nil, false},
		{"by name: calico", "cali12345", false, false, nil, false},
		{"by name: cilium", "cilium_host", false, false, nil, false},
		{"by name: flannel", "flannel.1", false, false, nil, false},
		{"by name: kube-ipvs", "kube-ipvs0", false, false, nil, false},
		{"by name: tunnel", "tunl0", false, false, nil, false},
		{"by name: ifb", "ifb0", false, false, nil, false},
		{"by name: ens5 kept", "ens5", false, false, nil, true},
		{"by name: included", "docker0", false, false, []string{"docker?"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keepInterface(tt.iface, tt.physical, tt.anyPhysical, tt.include); got != tt.want {
				t.Fatalf("keepInterface(%q, physical=%v, anyPhysical=%v, %q) = %v, want %v",
					tt.iface, tt.physical, tt.anyPhysical, tt.include, got, tt.want)
			}
		})
	}
}

// fakeNode is a host's interface table that tests change between runs.
type fakeNode struct {
	stats    []net.IOCountersStat
	physical map[string]bool
	lookups  map[string]int // sysfs lookups per interface
}

func (f *fakeNode) install(c *netIOCollector) {
	c.counters = func(context.Context) ([]net.IOCountersStat, error) { return f.stats, nil }
	c.physical = func(name string) (bool, bool) {
		f.lookups[name]++
		return f.physical[name], true
	}
}

func TestNetIOOnAKubernetesNode(t *testing.T) {
	f := &fakeNode{physical: map[string]bool{"eth0": true, "eth1": true}, lookups: map[string]int{}}
	set := func(ethRx uint64, veths int) {
		f.stats = []net.IOCountersStat{
			{Name: "lo", BytesRecv: ethRx, BytesSent: ethRx},
			{Name: "eth0", BytesRecv: ethRx, BytesSent: ethRx / 2, PacketsRecv: ethRx / 1000, Errin: 3, Dropout: 1},
			{Name: "eth1", BytesRecv: 5, BytesSent: 5},
			{Name: "cni0", BytesRecv: ethRx},
			{Name: "flannel.1", BytesRecv: ethRx},
		}
		for i := range veths {
			f.stats = append(f.stats, net.IOCountersStat{Name: "veth" + string(rune('a'+i%26)) + string(rune('a'+i/26)), BytesRecv: ethRx})
		}
	}
	c := NewNetIO(Config{HostID: "h", NetInclude: []string{"cni0"}}).(*netIOCollector)
	c.rates = newCounterRates[string]()
	c.lastRead = time.Time{}
	f.install(c)

	t0 := time.Now()
	set(1_000_000, 300)
	if d, err := c.read(context.Background(), t0); err != nil || d != nil {
		t.Fatalf("first read = %+v, %v; want only a baseline", d, err)
	}
	set(3_000_000, 300)
	d, err := c.read(context.Background(), t0.Add(2*time.Second))
	if err != nil || d == nil {
		t.Fatalf("second read = %+v, %v", d, err)
	}
	var names []string
	for _, i := range d.Interfaces {
		names = append(names, i.Interface)
	}
	if want := []string{"cni0", "eth0", "eth1"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("interfaces = %q, want %q (physical NICs and the included cni0)", names, want)
	}
	eth0 := d.Interfaces[1]
	want := NetInterface{Interface: "eth0", RxBytesPerS: 1_000_000, TxBytesPerS: 500_000, RxPacketsPerS: 1000,
		RxErrorsTotal: 3, TxDropsTotal: 1}
	if eth0 != want {
		t.Fatalf("eth0 = %+v, want %+v", eth0, want)
	}

	// Interface churn: the veths are replaced by others. Each new name is
	// looked up in sysfs once, and nothing of the old ones is remembered.
	set(4_000_000, 0)
	for i := range 300 {
		f.stats = append(f.stats, net.IOCountersStat{Name: "vethnew" + string(rune('a'+i%26)) + string(rune('a'+i/26))})
	}
	if _, err := c.read(context.Background(), t0.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.read(context.Background(), t0.Add(4*time.Second)); err != nil {
		t.Fatal(err)
	}
	for name, n := range f.lookups {
		if n != 1 {
			t.Fatalf("sysfs looked up %q %d times, want once", name, n)
		}
	}
	if got, want := len(c.ifaces), len(f.stats); got != want {
		t.Fatalf("interface cache holds %d names, want the %d present", got, want)
	}
	if got := c.rates.len(); got != 3 {
		t.Fatalf("rate state for %d interfaces, want 3 (reported ones only)", got)
	}
}

func TestNetIOCounterResetAndWrap(t *testing.T) {
	f := &fakeNode{physical: map[string]bool{"eth0": true}, lookups: map[string]int{}}
	c := NewNetIO(Config{HostID: "h"}).(*netIOCollector)
	c.rates = newCounterRates[string]()
	c.lastRead = time.Time{}
	f.install(c)
	t0 := time.Now()
	steps := []struct {
		rx     uint64
		wantRx float64 // NaN: eth0 absent from the sample
	}{
		{rx: math.MaxUint32 - 499},   // baseline
		{rx: 500, wantRx: 1000},      // a 32-bit driver counter wrapped
		{rx: 1500, wantRx: 1000},     // normal
		{rx: 10, wantRx: math.NaN()}, // interface re-created: new baseline
		{rx: 2010, wantRx: 2000},     // rates again
	}
	for i, s := range steps {
		f.stats = []net.IOCountersStat{{Name: "eth0", BytesRecv: s.rx}}
		d, err := c.read(context.Background(), t0.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			continue
		}
		if math.IsNaN(s.wantRx) {
			if len(d.Interfaces) != 0 {
				t.Fatalf("step %d: after a reset got %+v, want no rate", i, d.Interfaces)
			}
			continue
		}
		if len(d.Interfaces) != 1 || d.Interfaces[0].RxBytesPerS != s.wantRx {
			t.Fatalf("step %d: got %+v, want rx_bytes_per_s %v", i, d.Interfaces, s.wantRx)
		}
	}
}

func TestNetIOReadsHostNetworkNamespace(t *testing.T) {
	// With HOST_PROC set, counters come from $HOST_PROC/1/net/dev.
	t.Setenv("HOST_PROC", filepath.Join("testdata", "io", "hostproc"))
	t.Setenv("HOST_SYS", t.TempDir()) // no sysfs: choose by name
	c := NewNetIO(Config{HostID: "h"}).(*netIOCollector)
	samples, err := c.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 1 {
		t.Fatalf("got %d samples, want 1 (baseline taken at construction)", len(samples))
	}
	d := samples[0].Data.(NetIO)
	if len(d.Interfaces) != 1 || d.Interfaces[0].Interface != "eth0" || d.Interfaces[0].RxBytesPerS != 0 {
		t.Fatalf("interfaces = %+v, want eth0 alone, idle (fixture counters do not move)", d.Interfaces)
	}
}
