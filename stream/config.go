package stream

import (
	"encoding/json"
	"log/slog"
	"time"
)

// Defaults of RegistryConfig's zero fields (see NoLimit for the rule).
const (
	DefaultHistoryLen   = 300
	DefaultHistoryBytes = 1 << 20
	DefaultMaxTopics    = 1000
	DefaultPublishedTTL = 10 * time.Minute
	// DefaultMaxValueBytes and DefaultPublishedHistoryBytes bound what a
	// topic created through the publish API holds: with DefaultMaxTopics,
	// published topics hold at most about 1000 × 3 × 64 KiB (latest value,
	// its update frame, history) instead of gigabytes.
	DefaultMaxValueBytes         = 64 << 10
	DefaultPublishedHistoryBytes = 64 << 10
)

// RegistryConfig configures a Registry. Zero fields take the defaults above
// (the zero rule: see NoLimit); Demand, Logger and WriteObserver are
// optional.
type RegistryConfig struct {
	// Host is the local host id: the first token of the collectors' topics,
	// which the publish API may not use.
	Host string
	// Instance identifies this server process start (hello "instance");
	// generated when "". In a fleet it is the seq epoch (SetInstance).
	Instance string
	// Replica names this process in a fleet (hello "replica"); "" leaves
	// the field out (single mode).
	Replica string
	// HistoryLen is how many values each topic keeps for ?history=N
	// (default 300, including the latest).
	HistoryLen int
	// HistoryBytes bounds the JSON bytes one topic's history holds
	// (default 1 MiB; the oldest values go first; the latest is always kept).
	// It keeps a topic with large payloads (proc.top, a published topic)
	// from holding HistoryLen large values.
	HistoryBytes int
	// MaxValueBytes caps the compacted JSON of one value published through
	// PublishJSON (ErrValueTooLarge). 0 means DefaultMaxValueBytes, NoLimit
	// no cap. Collectors' samples are not capped.
	MaxValueBytes int
	// PublishedHistoryBytes is HistoryBytes for topics created through
	// PublishJSON (default DefaultPublishedHistoryBytes): there can be
	// MaxTopics of them, and their payloads are anyone's choice.
	PublishedHistoryBytes int
	// MaxTopics caps topics created through PublishJSON. 0 means
	// DefaultMaxTopics, NoLimit no cap.
	MaxTopics int
	// PublishedTTL: a topic created through PublishJSON that is not
	// published for this long disappears (default 10 minutes).
	PublishedTTL time.Duration
	// Demand is called when a topic gains its first (true) or loses its last
	// (false) subscriber; the collectors' scheduler uses it for on-demand
	// topics. It is never called with a lock of the registry held, calls are
	// not concurrent, and the last call for a topic reflects its current
	// state. It should return quickly.
	Demand func(topic string, subscribed bool)
	// Logger receives warnings (a sample that cannot be encoded...);
	// slog.Default() when nil.
	Logger *slog.Logger
	// WriteObserver, when set, is told how long each Conn.WriteFrames call
	// took and how many frames it carried, failed calls included (see
	// writer.go). It runs on the writer goroutines and must be quick.
	WriteObserver func(d time.Duration, frames int)
	// FlushWindow is how long a session that has just written waits before
	// its next write, so that values offered meanwhile leave together in
	// one write (default DefaultFlushWindow; NoLimit: no window). A
	// session idle for longer writes its first value at once. See flush.go.
	FlushWindow time.Duration

	// Set in fleet mode through the Registry's setters (fleet.go).
	forward        func(topic string, ts time.Time, data json.RawMessage) error
	reservedSource func(source string) bool
}

// Defaults of SessionConfig's zero fields (see NoLimit for the rule);
// DefaultSessionConfig returns them all.
const (
	DefaultMaxSubscriptions  = 100
	DefaultRequestsPerSecond = 20
	DefaultRequestBurst      = 40
	DefaultRateLimitStrikes  = 10
	DefaultReplyQueue        = 16
	DefaultReplyQueueBytes   = 16 << 10
)

// SessionConfig configures one session. Zero fields take the defaults above
// (the zero rule: see NoLimit).
type SessionConfig struct {
	// ID is the connection id (hello "session"); generated when "".
	ID string
	// Heartbeat is advertised as heartbeat_ms in hello.
	Heartbeat time.Duration
	// MaxSubscriptions caps the patterns of one connection (NoLimit: no
	// cap); a subscribe past it gets too_many_subscriptions and subscribes
	// nothing.
	MaxSubscriptions int
	// RequestsPerSecond is the token bucket rate for client requests
	// (NoLimit: no rate limit); a request without a token gets
	// rate_limited.
	RequestsPerSecond float64
	// RequestBurst is the bucket size (default 40).
	RequestBurst int
	// RateLimitStrikes is how many consecutive rate_limited replies a client
	// gets; the next refused request makes Handle return *CloseError{1008}
	// (default 10). An accepted request resets the count.
	RateLimitStrikes int
	// ReplyQueue is the length of the reply FIFO (default 16); Handle blocks
	// while it is full, which stops the edge reading that client.
	ReplyQueue int
	// ReplyQueueBytes bounds the reply FIFO in bytes of JSON (default 32
	// KiB): it counts as full once it holds this much, whatever its
	// length, so a client that does not read its replies holds at most
	// this plus one reply (see replyqueue.go).
	ReplyQueueBytes int
}

// DefaultSessionConfig returns the documented default limits, which a
// zero SessionConfig gets too.
func DefaultSessionConfig() SessionConfig {
	return SessionConfig{
		MaxSubscriptions:  DefaultMaxSubscriptions,
		RequestsPerSecond: DefaultRequestsPerSecond,
		RequestBurst:      DefaultRequestBurst,
		RateLimitStrikes:  DefaultRateLimitStrikes,
		ReplyQueue:        DefaultReplyQueue,
		ReplyQueueBytes:   DefaultReplyQueueBytes,
	}
}

// withDefaults applies RegistryConfig's zero rule (see NoLimit): a field
// with a default takes it when 0 or below, except the limits NoLimit turns
// off (MaxTopics, MaxValueBytes), which take it only at 0.
func (c RegistryConfig) withDefaults() RegistryConfig {
	c.HistoryLen = orDefault(c.HistoryLen, DefaultHistoryLen)
	c.HistoryBytes = orDefault(c.HistoryBytes, DefaultHistoryBytes)
	c.PublishedHistoryBytes = orDefault(c.PublishedHistoryBytes, DefaultPublishedHistoryBytes)
	c.PublishedTTL = orDefault(c.PublishedTTL, DefaultPublishedTTL)
	c.MaxTopics = limitOrDefault(c.MaxTopics, DefaultMaxTopics)
	c.MaxValueBytes = limitOrDefault(c.MaxValueBytes, DefaultMaxValueBytes)
	if c.FlushWindow == 0 {
		c.FlushWindow = DefaultFlushWindow
	}
	return c
}

// withDefaults applies SessionConfig's zero rule (see NoLimit): the limits
// NoLimit turns off take their default only at 0; the others take it when
// 0 or below.
func (c SessionConfig) withDefaults() SessionConfig {
	c.MaxSubscriptions = limitOrDefault(c.MaxSubscriptions, DefaultMaxSubscriptions)
	c.RequestsPerSecond = limitOrDefault(c.RequestsPerSecond, DefaultRequestsPerSecond)
	c.RequestBurst = orDefault(c.RequestBurst, DefaultRequestBurst)
	c.RateLimitStrikes = orDefault(c.RateLimitStrikes, DefaultRateLimitStrikes)
	c.ReplyQueue = orDefault(c.ReplyQueue, DefaultReplyQueue)
	c.ReplyQueueBytes = orDefault(c.ReplyQueueBytes, DefaultReplyQueueBytes)
	return c
}

// orDefault returns v, or def when v is 0 or below: a count, size or
// duration of 0 would make its feature useless, so 0 means "the default".
func orDefault[T ~int | ~int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// limitOrDefault returns def when v is 0 and v otherwise: a negative v
// (NoLimit) stays negative, which the limit's check reads as off.
func limitOrDefault[T ~int | ~float64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}
