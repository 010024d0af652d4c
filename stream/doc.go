// Package stream is opsdash's hub: a Registry of metric topics (latest
// value, seq, bounded history, status) and of client sessions subscribed to
// them by NATS-style patterns, delivering protocol v1 frames (see
// docs/protocol.md) through a small write-side Conn interface that the
// transport edge (stream/httpapi: WebSocket, SSE) implements. It never
// imports Fiber or fasthttp.
//
// Delivery: a publish encodes its update frame once and offers those shared
// bytes to every matching session without blocking. Each session has a
// conflating mailbox (the newest pending value per topic; an older unsent
// one is dropped as stale) plus a short reply FIFO, and a writer goroutine
// that exists only while something is pending and hands everything it finds
// to Conn.WriteFrames in one call. Memory per session is bounded by its
// subscribed topics, however slowly its client reads.
//
// Lock order: Session.mu before Registry.mu; publishers take Registry.mu
// only to update the topic and copy its subscriber slice, and offer to
// sessions after releasing it.
package stream
