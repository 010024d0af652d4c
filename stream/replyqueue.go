package stream

// The reply FIFO's bounds. Replies (pong, subscribed, topics, error...)
// are never conflated, so what bounds them is the client: while the FIFO
// is full, Handle waits (waitReplySpace) and the edge stops reading that
// client's requests. Full means ReplyQueue entries or ReplyQueueBytes of
// JSON, whichever comes first: counted in entries only, a client that
// never reads could park 16 large replies (pongs echoing long ids,
// "subscribed" echoing long pattern lists, "topics" lists) per connection.
// A reply is admitted while the FIFO is under its bounds, so it holds at
// most ReplyQueueBytes plus one reply; the writer may hold one more such
// batch while it writes.

// replyBytesLocked is the JSON held in the reply FIFO. It holds at most
// ReplyQueue entries, so summing is cheaper than keeping a count that
// every producer and the writer would have to update.
func (s *Session) replyBytesLocked() int {
	n := 0
	for _, rp := range s.replies {
		n += len(rp.json)
	}
	return n
}

// replyFullLocked reports whether the reply FIFO is at one of its bounds.
func (s *Session) replyFullLocked() bool {
	return len(s.replies) >= s.cfg.ReplyQueue || s.replyBytesLocked() >= s.cfg.ReplyQueueBytes
}

// signalReplySpace wakes a Handle waiting in waitReplySpace or
// awaitRepliesWritten; a wake-up already pending is enough.
func (s *Session) signalReplySpace() {
	select {
	case s.replySpace <- struct{}{}:
	default:
	}
}

// awaitRepliesWritten waits until every reply queued so far has been
// written, or the session ends. A close that the client caused (rate
// limit) comes after the replies that led to it, so a client sees all of
// its rate_limited errors before the close frame instead of losing the
// last ones to the close. A client that does not read is bounded by the
// write timeout, which ends the session.
//
// Only Handle queues replies once a session runs, and Handle is waiting
// here, so the FIFO only empties meanwhile. Once it is empty, the replies
// are in the batch the session's turn is writing; that batch is written
// when the turn takes the lock after its write and its Conn kept nothing
// back (or, parked, once the Conn has sent the rest): repliesWrittenLocked
// then clears flushWait and signals replySpace.
func (s *Session) awaitRepliesWritten() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.closed && (len(s.replies) > 0 || s.wstate == wReady || s.wstate == wWriting || s.wstate == wParked) {
		if len(s.replies) == 0 {
			s.flushWait = true
		}
		wait := s.flushWait
		s.mu.Unlock()
		select {
		case <-s.replySpace: // the writer took replies, or cleared flushWait
		case <-s.done:
		}
		s.mu.Lock()
		if wait && !s.flushWait {
			return // the batch holding the last replies is written
		}
	}
	s.flushWait = false
}

// WaitReplySpace blocks while the reply FIFO is full and reports whether
// the session is still open. The edge calls it before reading a client's
// next request (Handle waits too, for callers that do not): while a client
// does not read its replies, its next request then waits in the kernel's
// socket buffer, not read into process memory.
func (s *Session) WaitReplySpace() bool { return s.waitReplySpace() }

// repliesWrittenLocked is called where a write the session's turn made is
// wholly sent (writer.go): a Handle waiting in awaitRepliesWritten may go
// on. s.mu is held.
func (s *Session) repliesWrittenLocked() {
	if s.flushWait {
		s.flushWait = false
		s.signalReplySpace()
	}
}
