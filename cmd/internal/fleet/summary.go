package fleet

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"
)

// SummarySuffix names the per-host summary topic, <host>.summary: the few
// numbers the fleet overview shows, in one small value a second, so that a
// page of 200 hosts subscribes to 200 topics of about 200 bytes instead of
// 1,000 full ones.
const SummarySuffix = "summary"

const summaryDescription = "the fleet overview's numbers: CPU, memory, fullest disk, network, load, failing topics"

// summaryInputs are the topics (after "<host>.") the summary reads.
var summaryInputs = map[string]struct{}{"cpu": {}, "mem": {}, "load": {}, "disk.usage": {}, "net.io": {}}

// Summary is the payload of <host>.summary. Fields are absent when the
// host lacks their source.
type Summary struct {
	CPUPct      *float64 `json:"cpu_pct,omitempty"`
	Cores       int      `json:"cores,omitempty"`
	MemPct      *float64 `json:"mem_pct,omitempty"`
	MemBytes    *float64 `json:"mem_total_bytes,omitempty"`
	DiskPct     *float64 `json:"disk_pct,omitempty"`
	DiskMount   string   `json:"disk_mount,omitempty"`
	RxBytesPerS *float64 `json:"rx_bytes_per_s,omitempty"`
	TxBytesPerS *float64 `json:"tx_bytes_per_s,omitempty"`
	Load1       *float64 `json:"load1,omitempty"`
	Load1PerCPU *float64 `json:"load1_per_core,omitempty"`
	// Failing lists the host's topics (after "<host>.") whose collector
	// fails, sorted.
	Failing []string `json:"failing"`
}

// topicSuffix is topic without "<host>.".
func topicSuffix(topic, host string) string {
	return strings.TrimPrefix(topic, host+".")
}

// summarize builds a host's summary from the newest value of each input
// topic (keyed by suffix) and its failing topics.
func summarize(latest map[string]json.RawMessage, failing []string) Summary {
	var s Summary
	var cpu struct {
		UsagePct *float64 `json:"usage_pct"`
		Cores    int      `json:"cores"`
	}
	if json.Unmarshal(latest["cpu"], &cpu) == nil {
		s.CPUPct, s.Cores = cpu.UsagePct, cpu.Cores
	}
	var mem struct {
		UsedPct    *float64 `json:"used_pct"`
		TotalBytes *float64 `json:"total_bytes"`
	}
	if json.Unmarshal(latest["mem"], &mem) == nil {
		s.MemPct, s.MemBytes = mem.UsedPct, mem.TotalBytes
	}
	var load struct {
		Load1        *float64 `json:"load1"`
		Load1PerCore *float64 `json:"load1_per_core"`
	}
	if json.Unmarshal(latest["load"], &load) == nil {
		s.Load1, s.Load1PerCPU = load.Load1, load.Load1PerCore
	}
	var disk struct {
		Mounts []struct {
			Mount   string  `json:"mount"`
			UsedPct float64 `json:"used_pct"`
		} `json:"mounts"`
	}
	if json.Unmarshal(latest["disk.usage"], &disk) == nil {
		for _, m := range disk.Mounts { // the fullest disk is the one to worry about
			if s.DiskPct == nil || m.UsedPct > *s.DiskPct {
				s.DiskPct, s.DiskMount = &m.UsedPct, m.Mount
			}
		}
	}
	var net struct {
		Interfaces []struct {
			Rx float64 `json:"rx_bytes_per_s"`
			Tx float64 `json:"tx_bytes_per_s"`
		} `json:"interfaces"`
	}
	if json.Unmarshal(latest["net.io"], &net) == nil && net.Interfaces != nil {
		var rx, tx float64
		for _, i := range net.Interfaces {
			rx, tx = rx+i.Rx, tx+i.Tx
		}
		s.RxBytesPerS, s.TxBytesPerS = &rx, &tx
	}
	s.Failing = failing
	if s.Failing == nil {
		s.Failing = []string{}
	}
	return s
}

// publishSummary publishes <host>.summary from the newest input values,
// once there is a CPU value to show.
func (a *Agent) publishSummary(now time.Time) {
	a.mu.Lock()
	latest := make(map[string]json.RawMessage, len(a.latest))
	for topic, v := range a.latest {
		latest[topicSuffix(topic, a.host)] = v
	}
	failing := make([]string, 0, len(a.errs))
	for _, topic := range slices.Sorted(maps.Keys(a.errs)) {
		failing = append(failing, topicSuffix(topic, a.host))
	}
	a.mu.Unlock()
	if latest["cpu"] == nil {
		return
	}
	b, _ := json.Marshal(summarize(latest, failing))
	a.publish(a.host+"."+SummarySuffix, now, b)
}
