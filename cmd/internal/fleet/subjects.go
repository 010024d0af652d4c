package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Names on the NATS side. Topics map onto subjects by a fixed prefix:
// topic tokens ([a-z0-9_-]) are valid subject tokens, so patterns keep
// their meaning (*.cpu is opsdash.m.*.cpu).
const (
	// StreamName is the JetStream stream holding every value.
	StreamName = "OPSDASH"
	// MetricPrefix + topic: values published by agents.
	MetricPrefix = "opsdash.m."
	// PublishedPrefix + topic: values of the publish API.
	PublishedPrefix = "opsdash.p."
	// DemandPrefix + topic: demand leases (core NATS).
	DemandPrefix = "opsdash.demand."
	// agentPrefix + host + ".ping": the duplicate-host check; + ".culprits": the
	// host's culprit record (culprits.go).
	agentPrefix = "opsdash.agent."
	// HostsBucket holds each host's descriptor under its host id.
	HostsBucket = "opsdash_hosts"
	// SessionsBucket holds browser sessions (sessions.go).
	SessionsBucket = "opsdash_sessions"

	// HeaderSeq carries a value's seq, HeaderTS its sample time (Unix ms).
	HeaderSeq = "Opsdash-Seq"
	HeaderTS  = "Opsdash-Ts"
)

// Limits of stream OPSDASH, chosen for 200 hosts × 12 topics at 1 Hz (see
// docs/fleet.md for the arithmetic).
const (
	// ValuesPerSubject is how many values JetStream keeps per topic: five
	// minutes at 1 Hz, the same as a single server's --history default,
	// so a host page's charts fill from the store.
	ValuesPerSubject = 300
	// StreamMaxBytes bounds the store: 2,400 topics × 300 values × about
	// 400 bytes is about 290 MB, so 1 GiB leaves room for larger values
	// (proc.top, published topics) before the oldest values go.
	StreamMaxBytes = 1 << 30
	// MaxValueBytes is the largest value the stream takes (NATS's default
	// max payload is 1 MiB too).
	MaxValueBytes = 1 << 20
	// MaxHostTopics is how many topics a replica takes from one host: its
	// collectors' dozen or so and up to the default 200 workloads fit many
	// times over, while an agent whose host was compromised cannot make
	// every replica hold topics without end (its values and descriptors
	// beyond the cap are ignored, and logged).
	MaxHostTopics = 1000
)

// streamConfig is stream OPSDASH: file storage (a memory store loses the
// last seqs on restart and costs about 390 B of heap per message), no
// MaxAge (a host back after a week continues its seqs), direct gets for
// an agent's resume and history.
func streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              StreamName,
		Description:       "opsdash fleet: every host's and every published topic's latest values",
		Subjects:          []string{MetricPrefix + ">", PublishedPrefix + ">"},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: ValuesPerSubject,
		MaxBytes:          StreamMaxBytes,
		MaxMsgSize:        MaxValueBytes,
		AllowDirect:       true,
		Duplicates:        time.Second, // no Nats-Msg-Id is used: keep the dedupe table small
	}
}

// hostsConfig is KV opsdash_hosts: the newest descriptor per host.
func hostsConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:       HostsBucket,
		Description:  "opsdash fleet: one descriptor per host",
		History:      1,
		Storage:      jetstream.FileStorage,
		MaxValueSize: 1 << 20,
		MaxBytes:     64 << 20,
	}
}

// sessionsConfig is KV opsdash_sessions: entries live ttl at most.
func sessionsConfig(ttl time.Duration) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:       SessionsBucket,
		Description:  "opsdash: browser sign-ins, valid on every replica",
		History:      1,
		TTL:          ttl,
		Storage:      jetstream.FileStorage,
		MaxValueSize: 256,
		MaxBytes:     16 << 20,
	}
}

// instanceOf is the fleet's seq epoch (hello "instance"): every replica
// derives the same id from the stream's creation time, and only a
// re-created stream (the store was lost) changes it.
func instanceOf(created time.Time) string {
	sum := sha256.Sum256([]byte(StreamName + "@" + created.UTC().Format(time.RFC3339Nano)))
	return "fleet-" + hex.EncodeToString(sum[:6])
}

// topicOf returns the topic a subject carries and whether it is a
// published one; ok is false for any other subject.
func topicOf(subject string) (topic string, published, ok bool) {
	if t, found := strings.CutPrefix(subject, MetricPrefix); found {
		return t, false, true
	}
	if t, found := strings.CutPrefix(subject, PublishedPrefix); found {
		return t, true, true
	}
	return "", false, false
}

// hostOf is a topic's first token: its source.
func hostOf(topic string) string {
	h, _, _ := strings.Cut(topic, ".")
	return h
}
