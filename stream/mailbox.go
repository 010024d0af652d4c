package stream

import "sync/atomic"

// mailbox is a session's pending output, guarded by Session.mu:
//   - per flowing topic, a slot with the newest pending update
//     and status (an unsent older value is replaced: conflation), so memory
//     is bounded by the number of subscribed topics whatever the reader
//     does. The slots hang off the topics' routes (routes.go), where a
//     publish finds them; the session itself keeps no index of them;
//   - pending: the slots with something pending, in the order they became
//     pending, which makes each drain fair across topics;
//   - replies: a short FIFO (hello, subscribed, topics, pong, error...),
//     never conflated; Handle blocks while it holds ReplyQueue entries or
//     ReplyQueueBytes of JSON (replyqueue.go).
type mailbox struct {
	pending []*slot
	replies []reply
	// flushWait: a Handle waits for every reply to be written
	// (awaitRepliesWritten); repliesWrittenLocked clears it once written.
	flushWait bool
}

// slot is one topic flowing to one session: the session's mailbox slot
// for it. t is set at creation; the other fields are guarded by Session.mu.
type slot struct {
	t       *topic
	lastSeq uint64 // highest seq queued or sent (update's seq while one is pending): a topic's seq only grows on a connection
	update  []byte // pending update frame (shared), nil if none
	status  []byte // pending status frame, nil if none
	queued  bool   // in pending, or in rates.held
	// max_hz (rate.go): the flush clock of the last send (0: never), the
	// least time between sends (0: no limit), the rates.gen it was
	// computed for, and whether the update is held back on rates.held.
	sentAt  int64
	gap     int64
	rateGen uint32
	held    bool
	// dropped: the topic stopped flowing to the session (no pattern
	// matches it any more, or it expired). A publisher may still hold the
	// route from before; its offer is dropped. Subscribing again creates a
	// new slot.
	dropped bool
}

type reply struct {
	kind frameKind
	json []byte
}

// flowingLocked reports whether sl's topic still flows to the session. A
// topic that expired counts as gone even before the expiry reached the
// session (forget), as a lookup in the registry would have said.
func (sl *slot) flowingLocked() bool {
	return !sl.dropped && !sl.t.removed.Load()
}

// offerFromLoop puts a published value into the mailbox slot sl (its
// flush loop calls it, flush.go), replacing an unsent older value of the
// same topic. skipped values of the topic were replaced before they got
// here (in the loop's inbox); they count as dropped like the value would.
// It reports whether the session became ready: the loop adds it to its
// round.
func (s *Session) offerFromLoop(sl *slot, seq uint64, frame []byte, skipped uint64) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.r.counters.dropClosed.Add(1 + skipped)
		return false
	}
	if skipped > 0 {
		if sl.flowingLocked() {
			s.r.counters.dropStale.Add(skipped)
		} else {
			s.r.counters.dropUnsub.Add(skipped)
		}
	}
	ready := s.offerUpdateLocked(sl, seq, frame) && s.kickLocked()
	s.mu.Unlock()
	return ready
}

// offerUpdateLocked queues the update in sl and reports whether something
// new is pending.
func (s *Session) offerUpdateLocked(sl *slot, seq uint64, frame []byte) bool {
	if !sl.flowingLocked() {
		s.r.counters.dropUnsub.Add(1)
		return false
	}
	if seq <= sl.lastSeq { // an older value overtaken by a newer one (concurrent publishes)
		s.r.counters.dropStale.Add(1)
		return false
	}
	if sl.update != nil && !s.keepEarlyLocked(sl) {
		s.r.counters.dropStale.Add(1) // conflation: the unsent older value is replaced
	}
	sl.update, sl.lastSeq = frame, seq
	s.queueLocked(sl)
	return true
}

// offerStatus puts a status frame into the mailbox slot sl, replacing an
// unsent one.
func (s *Session) offerStatus(sl *slot, frame []byte) {
	s.mu.Lock()
	if s.closed || !sl.flowingLocked() {
		s.mu.Unlock()
		return
	}
	sl.status = frame
	if sl.held {
		s.unholdLocked(sl) // a status frame is never delayed
	}
	s.queueLocked(sl)
	start := s.kickLocked()
	s.mu.Unlock()
	if start {
		s.startWriter()
	}
}

func (s *Session) queueLocked(sl *slot) {
	if !sl.queued {
		sl.queued = true
		s.pending = append(s.pending, sl)
	}
}

// dropSlotLocked stops a topic flowing to the session: its pending update
// is dropped (counted in drop), and later offers to sl are dropped too.
// Dropping a slot twice does nothing the second time.
func (s *Session) dropSlotLocked(sl *slot, drop *atomic.Uint64) {
	if sl.dropped {
		return
	}
	sl.dropped = true
	if sl.update != nil {
		drop.Add(1)
	}
	if sl.held {
		s.removeHeldLocked(sl)
	} else if sl.queued {
		for i, p := range s.pending {
			if p == sl {
				s.pending = append(s.pending[:i], s.pending[i+1:]...)
				break
			}
		}
	}
	sl.update, sl.status, sl.queued = nil, nil, false
	s.dropEarlyLocked(sl, drop)
}

// forget drops the slot of an expired topic.
func (s *Session) forget(sl *slot) {
	s.mu.Lock()
	if !s.closed {
		s.dropSlotLocked(sl, &s.r.counters.dropUnsub)
	}
	s.mu.Unlock()
}

// reply queues a reply frame and makes sure the session gets a turn.
func (s *Session) reply(kind frameKind, b []byte) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.replies = append(s.replies, reply{kind, b})
	start := s.kickLocked()
	s.mu.Unlock()
	if start {
		s.startWriter()
	}
}

// waitReplySpace blocks while the reply FIFO is full (replyqueue.go). It
// returns false when the session is closed. While it blocks, the session
// counts as paused in Stats.ReadingPaused.
func (s *Session) waitReplySpace() bool {
	paused := false
	defer func() {
		if paused {
			s.r.counters.readingPaused.Add(-1)
		}
	}()
	for {
		s.mu.Lock()
		closed, full := s.closed, s.replyFullLocked()
		s.mu.Unlock()
		if closed {
			return false
		}
		if !full {
			return true
		}
		if !paused {
			paused = true
			s.r.counters.readingPaused.Add(1)
		}
		select {
		case <-s.replySpace:
		case <-s.done:
			return false
		}
	}
}
