package collectors

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// catalog is every collector opsdash has, in the order Default builds them
// (the order topics are declared in). Default, Names, the New* constructors
// and the interval table of docs/topics.md (TestTopicsDocListsTheCatalog)
// all come from here, so adding a collector is one line here plus its file.
var catalog = []entry{
	{name: "cpu", every: time.Second, build: always(newCPU), topics: []string{"cpu", "cpu.cores"}},
	{name: "mem", every: time.Second, build: always(newMem), topics: []string{"mem", "swap"}},
	{name: "load", every: time.Second, build: always(newLoad), topics: []string{"load"}},
	{name: "host", every: time.Minute, build: always(newHost), topics: []string{"host"}},
	{name: "disk.usage", every: 10 * time.Second, build: always(newDiskUsage), topics: []string{"disk.usage"}},
	{name: "disk.io", every: time.Second, build: always(newDiskIO), topics: []string{"disk.io"}},
	{name: "net.io", every: time.Second, build: always(newNetIO), topics: []string{"net.io"}},
	{name: "net.conns", every: 5 * time.Second, build: always(newNetConns), topics: []string{"net.conns"}},
	{name: "proc.top", every: 2 * time.Second, build: always(newProcTop), topics: []string{"proc.top"}, onDemand: true},
	{name: "sensors", every: 5 * time.Second, build: newSensors, topics: []string{"sensors.temp"}, onlyWith: "sensors"},
	{name: "cgroup", every: 5 * time.Second, build: newOwnCgroup, topics: []string{"cgroup"}, onlyWith: "limits"},
	{name: "workloads", every: 5 * time.Second, build: newWorkloads, topics: []string{"workloads", "workload.<id>"}, onlyWith: "cgroups"},
	{name: "culprits", every: time.Second, build: always(newCulprits), topics: []string{"culprits"}},
}

// entry is one collector of the catalog.
type entry struct {
	// name is the collector's configuration name (--intervals cpu=2s),
	// also used in logs and metrics.
	name string
	// every is the default interval; cfg.Intervals overrides it.
	every time.Duration
	// build constructs the collector, or returns false when this machine
	// lacks its source (then its topics are absent, not failing).
	build func(Config, spec) (Collector, bool)
	// topics lists, for docs/topics.md, the topics it produces after the
	// "<host>." prefix. A collector whose topics come and go at run time
	// (one per workload) documents their pattern: "workload.<id>".
	topics []string
	// onDemand: collected only while someone subscribes (its topics are
	// declared OnDemand), rather than always.
	onDemand bool
	// onlyWith, when set, names what the machine must have for the
	// collector to exist ("sensors"): build may return false.
	onlyWith string
}

// spec is what a collector learns from its catalog entry: its name, the
// interval it runs at (the default or the configured one) and whether it is
// on demand. Collectors embed it, which gives them Name and Interval.
type spec struct {
	name     string
	interval time.Duration
	onDemand bool
}

// Name is the collector's catalog name.
func (s spec) Name() string { return s.name }

// Interval is how often the collector runs.
func (s spec) Interval() time.Duration { return s.interval }

// declare describes one of the collector's topics, with the collector's
// interval and demand.
func (s spec) declare(topic, description string) TopicInfo {
	return TopicInfo{Name: topic, Interval: s.interval, Description: description, OnDemand: s.onDemand}
}

// always adapts the constructor of a collector every machine has.
func always[C Collector](f func(Config, spec) C) func(Config, spec) (Collector, bool) {
	return func(cfg Config, s spec) (Collector, bool) { return f(cfg, s), true }
}

// build constructs the named collector (see entry.construct).
func build(name string, cfg Config) (Collector, bool) {
	return lookup(name).construct(cfg)
}

// lookup returns the catalog entry called name. It panics on a name the
// catalog lacks: its callers (the New* constructors, tests) name an entry
// of their own.
func lookup(name string) entry {
	i := slices.IndexFunc(catalog, func(e entry) bool { return e.name == name })
	if i < 0 {
		panic("collectors: no collector " + name + " in the catalog")
	}
	return catalog[i]
}

// spec is what e's collector is told for cfg: its interval is
// cfg.Intervals[e.name] when that is positive, else e's default.
func (e entry) spec(cfg Config) spec {
	s := spec{name: e.name, interval: e.every, onDemand: e.onDemand}
	if d, ok := cfg.Intervals[e.name]; ok && d > 0 {
		s.interval = d
	}
	return s
}

// construct builds e's collector for cfg.
func (e entry) construct(cfg Config) (Collector, bool) {
	return e.build(cfg, e.spec(cfg))
}

// buildAlways is build for a collector every machine has.
func buildAlways(name string, cfg Config) Collector {
	c, _ := build(name, cfg)
	return c
}

// Default returns the default collector set for this host: every metric
// family of docs/topics.md. Families whose source this machine does not have
// (temperature sensors, a cgroup with limits) are left out, so their topics
// are absent rather than failing.
func Default(cfg Config) []Collector {
	cs := make([]Collector, 0, len(catalog))
	for _, e := range catalog {
		if c, ok := e.construct(cfg); ok {
			cs = append(cs, c)
		}
	}
	return cs
}

// Names lists every collector of the catalog, sorted, including those this
// machine may lack (sensors, cgroup), so that a configuration written for a
// fleet is valid on each of its hosts.
func Names() []string {
	names := make([]string, len(catalog))
	for i, e := range catalog {
		names[i] = e.name
	}
	sort.Strings(names)
	return names
}

// CheckIntervals reports an error naming any collector in intervals that is
// not one of Names, or any interval that is not positive, so configuration
// mistakes fail at startup instead of being ignored.
func CheckIntervals(intervals map[string]time.Duration) error {
	names := Names()
	keys := make([]string, 0, len(intervals))
	for k := range intervals {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the same error every time
	for _, name := range keys {
		d := intervals[name]
		if !slices.Contains(names, name) {
			return fmt.Errorf("unknown collector %q (have %s)", name, strings.Join(names, ", "))
		}
		if d <= 0 {
			return fmt.Errorf("collector %q: interval must be positive, got %v", name, d)
		}
	}
	return nil
}
