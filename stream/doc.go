// Package stream is opsdash's hub: a Registry of metric topics (latest
// value, seq, bounded history, status) and of client sessions subscribed to
// them by NATS-style patterns, delivering protocol v1 frames (see
// docs/protocol.md) through a small write-side Conn interface that the
// transport edge (stream/httpapi: WebSocket, SSE) implements. It never
// imports Fiber or fasthttp.
//
// # Data path
//
// A value goes publish → topic → flush loops' inboxes → each session's
// slot in its mailbox → Conn, encoded once and shared as bytes by every
// session; the publisher neither blocks on a subscriber nor waits for the
// writers, and its cost does not grow with the subscribers:
//
//   - publish.go: Publish (collectors) and PublishJSON (the publish API)
//     store the value in its topic, encode its update frame and hand it,
//     with the topic's routes, to every flush loop (flush.go); batch.go
//     hands a batch's values over together, so a subscriber gets all of
//     them in one write.
//   - topic.go: one topic's state: latest value and frame, seq, history
//     ring, status (Declare, SetStatus), and what lists show (Topics, Topic).
//   - routes.go: the routes of each topic, one per session with a matching
//     pattern, each holding that session's slot for the topic; kept current
//     as patterns come and go and topics appear, so a publish needs no
//     lookup. topicindex.go: topics by first token, so that a pattern
//     visits only its source's topics.
//   - mailbox.go: a session's pending output: per flowing topic a slot that
//     holds only the newest unsent value (an older one is dropped as stale:
//     conflation), the list of slots with something pending, and a short
//     reply FIFO, bounded in entries and bytes (replyqueue.go). Memory per
//     session is bounded by its subscribed topics and that FIFO, however
//     slowly its client reads.
//   - flush.go: the flush loops, one per P, each with a ready queue of
//     sessions; the window after a write that merges later values into
//     one write; pacing that lets the network be polled (yield_*.go).
//   - writer.go: a session's turn on its loop: everything pending (up to
//     64 KiB) to Conn.WriteFrames in one call, then its window, or parked
//     while its Conn holds unsent bytes.
//   - early.go: values a window keeps instead of conflating (bounded).
//   - rate.go: max_hz, a rate per subscription.
//   - conn.go: Conn, NonBlockingConn and Frame, the write side the edge
//     implements.
//
// # Around it
//
//   - registry.go: the Registry, its construction, Run and the lock order.
//   - config.go: RegistryConfig and SessionConfig, their defaults and what
//     a zero field means.
//   - session.go: one client connection: Open, Handle (requests, rate
//     limit), subscribe and unsubscribe, Close.
//   - protocol.go: client requests decoded, frames encoded; limits.go:
//     the limits of one request (id length, patterns per request).
//   - pattern.go: topic syntax and subscription patterns (ValidTopic,
//     Pattern).
//   - expire.go: published topics that are no longer published disappear.
//   - runtime.go: topics declared and removed at run time (one per
//     workload), their short history, seqs kept when they come back.
//   - demand.go: the Demand callback, told when a topic gains its first or
//     loses its last subscriber (on-demand collectors).
//   - stats.go: counters and the Stats snapshot for /metrics.
//   - fleet.go: what a fleet replica needs (cmd/internal/fleet): values
//     with their producer's seq (PublishAt), the seq epoch (SetInstance,
//     NewEpoch), history loaded later (Backfill), the publish API handed to
//     NATS (ForwardPublished) and fleet hosts' ids reserved.
//
// # Locks
//
// Session.mu before Registry.mu, never the other way round; publishers take
// Registry.mu only to update the topic and copy its route slice, and offer
// to sessions after releasing it. Registry.demandMu, Registry.sessMu and
// each flush loop's mutex are leaves. Each lock's declaration restates its
// rule (registry.go, session.go, flush.go).
package stream
