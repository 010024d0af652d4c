package collectors

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v3/net"
)

// NetIO is the payload of <host>.net.io: traffic of each network interface
// over the last interval, sorted by interface name.
type NetIO struct {
	Interfaces []NetInterface `json:"interfaces"`
}

// NetInterface is one network interface. The per-second fields are averages
// over the interval since the previous sample; the _total fields count
// since the interface's counters started (boot or interface creation), so
// that a rare error is not lost in a rate that rounds to 0.
type NetInterface struct {
	Interface     string  `json:"interface"`
	RxBytesPerS   float64 `json:"rx_bytes_per_s"`
	TxBytesPerS   float64 `json:"tx_bytes_per_s"`
	RxPacketsPerS float64 `json:"rx_packets_per_s"`
	TxPacketsPerS float64 `json:"tx_packets_per_s"`
	RxErrorsPerS  float64 `json:"rx_errors_per_s"`
	TxErrorsPerS  float64 `json:"tx_errors_per_s"`
	RxDropsPerS   float64 `json:"rx_drops_per_s"`
	TxDropsPerS   float64 `json:"tx_drops_per_s"`
	RxErrorsTotal uint64  `json:"rx_errors_total"`
	TxErrorsTotal uint64  `json:"tx_errors_total"`
	RxDropsTotal  uint64  `json:"rx_drops_total"`
	TxDropsTotal  uint64  `json:"tx_drops_total"`
}

// The counters kept per interface, in this order.
const (
	nioRxBytes = iota
	nioTxBytes
	nioRxPackets
	nioTxPackets
	nioRxErrors
	nioTxErrors
	nioRxDrops
	nioTxDrops
	nioCounters
)

// netIOCollector produces <host>.net.io.
type netIOCollector struct {
	spec
	rateTopic[NetIO]
	include []string
	// counters reads the interfaces' counters; physical tells whether an
	// interface has hardware behind it (nil: unknown). Fields so that tests
	// can stand in for a Kubernetes node.
	counters func(ctx context.Context) ([]net.IOCountersStat, error)
	physical func(name string) (physical, known bool)

	// ifaces caches, per interface name, what sysfs said about it; names
	// that vanish are dropped each run. Guarded by rateTopic.mu.
	ifaces map[string]ifaceKind
}

// ifaceKind is what sysfs says about an interface.
type ifaceKind struct{ physical, known bool }

// NewNetIO returns the collector of <host>.net.io: bytes, packets, errors
// and drops per network interface.
//
// By default only interfaces with hardware behind them are reported (those
// with a $HOST_SYS/class/net/<if>/device link): traffic is counted where it
// reaches the wire, once. Loopback, container and Kubernetes plumbing
// (veth, bridges, VXLAN, tunnels: hundreds on a busy node), bonds and VLANs
// (whose traffic their member NICs already count) are left out; see
// keepInterface. cfg.NetInclude brings interfaces back by name pattern.
//
// Counters are read from $HOST_PROC/1/net/dev when HOST_PROC is set (the
// host's network namespace, see hostPaths.procNetDir), else /proc/net/dev.
// A baseline is read here, so the first Collect already reports rates.
func NewNetIO(cfg Config) Collector { return buildAlways("net.io", cfg) }

func newNetIO(cfg Config, s spec) *netIOCollector {
	for _, p := range cfg.NetInclude {
		if _, err := path.Match(p, ""); err != nil {
			cfg.logger().Warn("net.io: ignoring malformed interface pattern", "pattern", p, "err", err)
		}
	}
	paths := hostPathsFromEnv()
	devFile := filepath.Join(paths.procNetDir(), "dev")
	c := &netIOCollector{
		spec:    s,
		include: slices.Clone(cfg.NetInclude),
		counters: func(ctx context.Context) ([]net.IOCountersStat, error) {
			return net.IOCountersByFileWithContext(ctx, true, devFile)
		},
		physical: func(name string) (bool, bool) {
			_, err := os.Lstat(paths.sysPath("class", "net", name, "device"))
			if err == nil {
				return true, true
			}
			// Without the interface's own sysfs node we know nothing
			// (sysfs of another network namespace, or none at all).
			if _, err := os.Lstat(paths.sysPath("class", "net", name)); err != nil {
				return false, false
			}
			return false, true
		},
		ifaces: make(map[string]ifaceKind),
	}
	c.startRates(cfg.HostID+".net.io", c.sample)
	return c
}

func (c *netIOCollector) Topics() []TopicInfo {
	return []TopicInfo{c.declare(c.topic, "Traffic per physical network interface: bytes/s, packets/s, errors and drops")}
}

// sample reads the interfaces' counters at now and returns the rates of
// those with an earlier reading (see rateTopic).
func (c *netIOCollector) sample(ctx context.Context, now time.Time, rates *counterRates[string]) (NetIO, error) {
	stats, err := c.counters(ctx)
	if err != nil {
		return NetIO{}, fmt.Errorf("read interface counters: %w", err)
	}

	// Learn about new interfaces, forget vanished ones. sysfs is only
	// asked about a name the first time it is seen, so a node with
	// hundreds of veths costs one lookup per new veth, not per second.
	present := make(map[string]bool, len(stats))
	anyPhysical := false
	for _, s := range stats {
		present[s.Name] = true
		k, ok := c.ifaces[s.Name]
		if !ok {
			k.physical, k.known = c.physical(s.Name)
			c.ifaces[s.Name] = k
		}
		anyPhysical = anyPhysical || k.physical
	}
	for name := range c.ifaces {
		if !present[name] {
			delete(c.ifaces, name)
		}
	}

	data := NetIO{Interfaces: []NetInterface{}}
	var cur [nioCounters]uint64
	var r [nioCounters]float64
	for _, s := range stats {
		k := c.ifaces[s.Name]
		if !keepInterface(s.Name, k.physical, anyPhysical, c.include) {
			continue
		}
		cur = [nioCounters]uint64{
			nioRxBytes:   s.BytesRecv,
			nioTxBytes:   s.BytesSent,
			nioRxPackets: s.PacketsRecv,
			nioTxPackets: s.PacketsSent,
			nioRxErrors:  s.Errin,
			nioTxErrors:  s.Errout,
			nioRxDrops:   s.Dropin,
			nioTxDrops:   s.Dropout,
		}
		if !rates.observe(s.Name, now, cur[:], r[:]) {
			continue
		}
		data.Interfaces = append(data.Interfaces, NetInterface{
			Interface:     s.Name,
			RxBytesPerS:   round2dp(r[nioRxBytes]),
			TxBytesPerS:   round2dp(r[nioTxBytes]),
			RxPacketsPerS: round2dp(r[nioRxPackets]),
			TxPacketsPerS: round2dp(r[nioTxPackets]),
			RxErrorsPerS:  round2dp(r[nioRxErrors]),
			TxErrorsPerS:  round2dp(r[nioTxErrors]),
			RxDropsPerS:   round2dp(r[nioRxDrops]),
			TxDropsPerS:   round2dp(r[nioTxDrops]),
			RxErrorsTotal: s.Errin,
			TxErrorsTotal: s.Errout,
			RxDropsTotal:  s.Dropin,
			TxDropsTotal:  s.Dropout,
		})
	}
	slices.SortFunc(data.Interfaces, func(a, b NetInterface) int { return strings.Compare(a.Interface, b.Interface) })
	return data, nil
}

// virtualIfacePatterns name interfaces that carry no traffic of their own
// onto a wire: loopback, container and VM plumbing, overlay networks and
// tunnels. Used only when sysfs cannot tell physical from virtual.
var virtualIfacePatterns = []string{
	"lo", "veth*", "docker*", "br-*", "virbr*", "vnet*", "cni*", "flannel*",
	"cali*", "vxlan*", "tun*", "tap*", "tunl*", "kube-ipvs*", "kube-bridge",
	"cilium_*", "lxc*", "weave*", "vethwe*", "datapath", "nodelocaldns",
	"genev_sys_*", "ovs-system", "ifb*", "dummy*", "sit*", "ip6tnl*",
	"gre*", "gretap*", "erspan*", "ip_vti*", "ip6_vti*", "ip6gre*", "nlmon*",
	"eni*", "gke*", "azv*",
}

// keepInterface decides whether net.io reports an interface:
//
//  1. A name matching one of include (path.Match patterns) is kept.
//  2. Loopback ("lo") is left out.
//  3. When sysfs showed at least one physical interface (anyPhysical), only
//     physical ones are kept.
//  4. Otherwise (no sysfs, or a container's own network namespace where
//     eth0 is itself a veth) names matching virtualIfacePatterns are left
//     out and the rest kept, so that the topic is not empty.
func keepInterface(name string, physical, anyPhysical bool, include []string) bool {
	if matchIfacePattern(include, name) {
		return true
	}
	if name == "lo" {
		return false
	}
	if anyPhysical {
		return physical
	}
	return !matchIfacePattern(virtualIfacePatterns, name)
}

// matchIfacePattern reports whether name matches one of the path.Match patterns; a
// malformed pattern matches nothing.
func matchIfacePattern(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}
