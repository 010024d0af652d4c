package stream

import "sync/atomic"

// frameKind classifies frames for the sent counters.
type frameKind uint8

const (
	kindHello frameKind = iota
	kindSubscribed
	kindUnsubscribed
	kindTopics
	kindPong
	kindError
	kindStatus
	kindUpdate
	numKinds
)

// counters are the registry's atomic counters; Stats snapshots them.
type counters struct {
	opened, closed  atomic.Uint64
	subscriptions   atomic.Int64
	published       atomic.Uint64
	encodeErrors    atomic.Uint64
	expired         atomic.Uint64
	offered         atomic.Uint64
	sent            [numKinds]atomic.Uint64
	dropStale       atomic.Uint64
	dropUnsub       atomic.Uint64
	dropClosed      atomic.Uint64
	writers         atomic.Int64
	writeBatches    atomic.Uint64
	writeErrors     atomic.Uint64
	writeTimeouts   atomic.Uint64
	rateLimited     atomic.Uint64
	rateLimitCloses atomic.Uint64
	readingPaused   atomic.Int64
}

// FrameCounts counts frames by type.
type FrameCounts struct {
	Hello, Subscribed, Unsubscribed, Topics, Pong, Error, Status, Update uint64
}

// DropCounts counts update values that were never sent, by reason.
type DropCounts struct {
	// Stale: replaced in a mailbox by a newer value of the same topic
	// before it was sent (conflation), or older than what the session
	// already had.
	Stale uint64
	// Unsubscribed: pending when its topic stopped matching the session's
	// patterns, or offered after that.
	Unsubscribed uint64
	// Closed: pending when the session closed, or offered after that.
	Closed uint64
}

// Stats is a snapshot of the registry's counters and gauges, for /metrics.
// Counters only grow; gauges are the state at the time of the call.
type Stats struct {
	Sessions        int    // gauge: open sessions
	SessionsOpened  uint64 // counter
	SessionsClosed  uint64 // counter
	Subscriptions   int64  // gauge: patterns subscribed across open sessions
	Topics          int    // gauge: topics known
	PublishedTopics int    // gauge: topics created through PublishJSON
	Published       uint64 // counter: values published (all topics)
	EncodeErrors    uint64 // counter: samples dropped because their topic or data was invalid
	TopicsExpired   uint64 // counter: published topics expired by the TTL

	// UpdatesOffered counts update values offered to session mailboxes:
	// each published value once per subscribed session, and each value of
	// a subscription's snapshot (a topic's latest value, sent when a
	// pattern starts matching it). Every offered value is then sent
	// (Sent.Update), dropped (Dropped) or still pending, so that
	// UpdatesOffered = Sent.Update + Dropped.Stale + Dropped.Unsubscribed +
	// Dropped.Closed + the updates waiting in mailboxes.
	UpdatesOffered uint64      // counter
	Sent           FrameCounts // counter: frames handed to Conn.WriteFrames successfully
	Dropped        DropCounts  // counter: update values never sent, by reason

	MailboxDepth    int   // gauge: topics with a pending update or status, all sessions
	ReplyQueueDepth int   // gauge: replies waiting, all sessions
	ReplyQueueBytes int   // gauge: JSON bytes of the replies waiting, all sessions
	ReadingPaused   int64 // gauge: sessions whose requests are not read while their reply FIFO is full
	Writers         int64 // gauge: sessions with a write queued, under way, in its window or parked (flush.go)

	WriteBatches    uint64 // counter: successful WriteFrames calls
	WriteErrors     uint64 // counter: failed WriteFrames calls (the session was closed)
	WriteTimeouts   uint64 // counter: the subset of WriteErrors that were deadline timeouts
	RateLimited     uint64 // counter: requests refused with rate_limited
	RateLimitCloses uint64 // counter: sessions told to close (1008) for going on past rate_limited
}

// Stats returns a snapshot of the counters. It visits every session for the
// queue gauges, so call it per scrape, not per message.
func (r *Registry) Stats() Stats {
	c := &r.counters
	out := Stats{
		SessionsOpened:  c.opened.Load(),
		SessionsClosed:  c.closed.Load(),
		Subscriptions:   c.subscriptions.Load(),
		Published:       c.published.Load(),
		EncodeErrors:    c.encodeErrors.Load(),
		TopicsExpired:   c.expired.Load(),
		UpdatesOffered:  c.offered.Load(),
		Writers:         c.writers.Load(),
		WriteBatches:    c.writeBatches.Load(),
		WriteErrors:     c.writeErrors.Load(),
		WriteTimeouts:   c.writeTimeouts.Load(),
		RateLimited:     c.rateLimited.Load(),
		RateLimitCloses: c.rateLimitCloses.Load(),
		ReadingPaused:   c.readingPaused.Load(),
		Sent: FrameCounts{
			Hello:        c.sent[kindHello].Load(),
			Subscribed:   c.sent[kindSubscribed].Load(),
			Unsubscribed: c.sent[kindUnsubscribed].Load(),
			Topics:       c.sent[kindTopics].Load(),
			Pong:         c.sent[kindPong].Load(),
			Error:        c.sent[kindError].Load(),
			Status:       c.sent[kindStatus].Load(),
			Update:       c.sent[kindUpdate].Load(),
		},
		Dropped: DropCounts{
			Stale:        c.dropStale.Load(),
			Unsubscribed: c.dropUnsub.Load(),
			Closed:       c.dropClosed.Load(),
		},
	}
	r.mu.RLock()
	out.Topics = len(r.topics)
	out.PublishedTopics = r.published
	r.mu.RUnlock()

	r.sessMu.Lock()
	all := make([]*Session, 0, len(r.sessions))
	for s := range r.sessions {
		all = append(all, s)
	}
	r.sessMu.Unlock()
	out.Sessions = len(all)
	for _, s := range all {
		s.mu.Lock()
		out.MailboxDepth += len(s.pending)
		out.ReplyQueueDepth += len(s.replies)
		out.ReplyQueueBytes += s.replyBytesLocked()
		s.mu.Unlock()
	}
	return out
}
