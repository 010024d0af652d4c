// Package collectors gathers host metrics with gopsutil and hands them, one
// Sample at a time, to a Sink (the stream registry in the running server).
//
// Each metric family is one Collector with its own interval. A Scheduler runs
// every collector in its own goroutine under a context, staggers their ticks,
// bounds each run with a timeout and keeps a failing collector from affecting
// the others: its topics are marked failing and the rest keep going.
package collectors

import (
	"context"
	"log/slog"
	"time"
)

// Sample is one value of one topic at one instant.
type Sample struct {
	// Topic is the full topic name, e.g. "web-1.cpu".
	Topic string
	// Time is when the value was sampled.
	Time time.Time
	// Data is the JSON-encodable payload. Every field name carries its unit
	// (used_bytes, usage_pct, rx_bytes_per_s); see docs/topics.md.
	Data any
}

// Sink receives the samples the scheduler produces. The stream registry
// implements it. Publish must not block on slow consumers.
type Sink interface {
	Publish(Sample)
}

// BatchSink is a Sink that takes one collector run's samples at once (cpu
// and cpu.cores, mem and swap), so that a client subscribed to several gets
// them in one write. The scheduler uses it when its Sink implements it.
type BatchSink interface {
	PublishBatch([]Sample)
}

// TopicInfo declares a topic a collector can produce, before its first sample.
type TopicInfo struct {
	// Name is the full topic name, e.g. "web-1.proc.top".
	Name string
	// Interval is how often the topic is collected.
	Interval time.Duration
	// Description is one line for people, shown in topic lists.
	Description string
	// OnDemand marks a topic that is collected only while someone
	// subscribes to it (proc.top); it is listed as idle otherwise.
	OnDemand bool
}

// Tracker is told which topics exist and whether they are healthy. The stream
// registry implements it; the scheduler uses it when its Sink implements it
// too, so a Sink that only stores samples (a test's) needs nothing more.
type Tracker interface {
	// Declare announces a topic so that lists show it before its first
	// sample (status pending, or idle for an on-demand topic).
	Declare(TopicInfo)
	// SetStatus records a topic's health: err nil means ok, otherwise the
	// topic is failing with err's message. Called on changes only.
	SetStatus(topic string, err error)
}

// Collector gathers one metric family.
type Collector interface {
	// Name is the collector's short, stable name ("cpu", "disk.io"), used
	// in configuration, logs and metrics.
	Name() string
	// Interval is the collector's default period.
	Interval() time.Duration
	// Topics lists every topic Collect can produce.
	Topics() []TopicInfo
	// Collect takes one measurement. It returns one Sample per topic it
	// produced this run. A collector whose source does not exist on this
	// machine returns no error (and, where it can know at construction
	// time, is not created at all). ctx carries the run's timeout.
	Collect(ctx context.Context) ([]Sample, error)
}

// Config holds what the default collectors need to know about the host.
type Config struct {
	// HostID is the first token of every topic: see HostID.
	HostID string
	// HostRoot is where the host's root filesystem is mounted when opsdash
	// runs in a container (HOST_ROOT, e.g. /host/root); "" means "/". Mount
	// points read from the host's mount table are resolved under it.
	HostRoot string
	// NetInclude lists interface name patterns (path.Match syntax, e.g.
	// "veth*", "docker0") to report although they are loopback or virtual
	// and left out by default.
	NetInclude []string
	// Intervals overrides a collector's default interval by name.
	Intervals map[string]time.Duration
	// Workloads configures the workloads collector (workloads.go).
	Workloads WorkloadsConfig
	// Logger receives the collectors' own log lines (a mount that stops
	// answering, a container setting that looks wrong); nil means
	// slog.Default().
	Logger *slog.Logger
}

// logger is cfg.Logger, or the default logger.
func (cfg Config) logger() *slog.Logger {
	if cfg.Logger != nil {
		return cfg.Logger
	}
	return slog.Default()
}
