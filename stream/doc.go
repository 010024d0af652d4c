// Package stream is opsdash's hub: a Registry of metric topics (latest
// value, seq, bounded history, status) and of client sessions subscribed to
// them by NATS-style patterns, delivering protocol v1 frames (see
// docs/protocol.md) through a small write-side Conn interface that the
// transport edge (stream/httpapi: WebSocket, SSE) implements. It never
// imports Fiber or fasthttp.
//
// # Data path
//
// A value goes publish → topic → slot → mailbox → writer → Conn, encoded
// once and shared as bytes by every session, never blocking the publisher
// on a subscriber:
//
//   - publish.go: Publish (collectors) and PublishJSON (the publish API)
//     store the value in its topic, encode its update frame and offer it
//     to the topic's routes; batch.go offers a batch's values session by
//     session, so a subscriber gets all of them in one write.
//   - topic.go: one topic's state: latest value and frame, seq, history
//     ring, status (Declare, SetStatus), and what lists show (Topics, Topic).
//   - routes.go: the routes of each topic, one per session with a matching
//     pattern, each holding that session's slot for the topic; kept current
//     as patterns come and go and topics appear, so a publish needs no
//     lookup.
//   - mailbox.go: a session's pending output: per flowing topic a slot that
//     holds only the newest unsent value (an older one is dropped as stale:
//     conflation), the list of slots with something pending, and a short
//     reply FIFO. Memory per session is bounded by its subscribed topics,
//     however slowly its client reads.
//   - writer.go: the goroutine that exists only while the mailbox holds
//     something and hands everything it finds to Conn.WriteFrames in one
//     call.
//   - conn.go: Conn and Frame, the write side the edge implements.
//
// # Around it
//
//   - registry.go: the Registry, its construction, Run and the lock order.
//   - config.go: RegistryConfig and SessionConfig, their defaults and what
//     a zero field means.
//   - session.go: one client connection: Open, Handle (requests, rate
//     limit), subscribe and unsubscribe, Close.
//   - protocol.go: client requests decoded, frames encoded.
//   - pattern.go: topic syntax and subscription patterns (ValidTopic,
//     Pattern).
//   - expire.go: published topics that are no longer published disappear.
//   - runtime.go: topics declared and removed at run time (one per
//     workload), their short history, seqs kept when they come back.
//   - demand.go: the Demand callback, told when a topic gains its first or
//     loses its last subscriber (on-demand collectors).
//   - stats.go: counters and the Stats snapshot for /metrics.
//
// # Locks
//
// Session.mu before Registry.mu, never the other way round; publishers take
// Registry.mu only to update the topic and copy its route slice, and offer
// to sessions after releasing it. Registry.demandMu and Registry.sessMu are
// leaves. Each lock's declaration restates its rule (registry.go,
// session.go).
package stream
