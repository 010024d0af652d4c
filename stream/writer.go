package stream

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// The writer: while a session's mailbox holds something, one goroutine
// drains it into Conn.WriteFrames; it is started by the offer or reply that
// finds none running (kickLocked, then startWriter outside s.mu) and exits
// when nothing is pending, so an idle session has no goroutine. It holds
// s.mu only to take the pending frames, never across a write, so offers to
// a slow client never wait for its socket.

// kickLocked reports whether the caller must start a writer: something is
// pending and none runs. It marks the writer as running.
func (s *Session) kickLocked() bool {
	if s.writing || s.closed || len(s.pending) == 0 && len(s.replies) == 0 {
		return false
	}
	s.writing = true
	return true
}

// startWriter starts the writer goroutine that kickLocked asked for.
func (s *Session) startWriter() {
	s.r.counters.writers.Add(1)
	go s.writeFn()
}

// framePool recycles writers' frame slices, so an idle session holds none.
var framePool = sync.Pool{New: func() any { b := make([]Frame, 0, 16); return &b }}

// writeLoop is the session's writer: it takes everything pending (replies
// first, in FIFO order, then one frame per pending topic, status before
// update, in the order the topics became pending), hands it to
// Conn.WriteFrames in one call, and repeats until nothing is pending, then
// exits. Replies go first so "subscribed" precedes its snapshot.
func (s *Session) writeLoop() {
	defer s.r.counters.writers.Add(-1)
	buf := framePool.Get().(*[]Frame)
	defer framePool.Put(buf)
	var sent [numKinds]uint64
	for {
		frames := (*buf)[:0]
		s.mu.Lock()
		if s.flushWait { // awaitRepliesWritten: what the writer took before is written
			s.flushWait = false
			s.signalReplySpace()
		}
		if s.closed {
			s.writing = false
			s.mu.Unlock()
			return
		}
		tookReplies := len(s.replies) > 0
		for _, rp := range s.replies {
			frames = append(frames, Frame{Type: "reply", JSON: rp.json})
			sent[rp.kind]++
		}
		clear(s.replies)
		s.replies = s.replies[:0]
		for _, sl := range s.pending {
			if sl.status != nil {
				frames = append(frames, Frame{Type: "status", Topic: sl.t.name, JSON: sl.status})
				sent[kindStatus]++
			}
			if sl.update != nil {
				frames = append(frames, Frame{Type: "update", Topic: sl.t.name, Seq: sl.lastSeq, JSON: sl.update})
				sent[kindUpdate]++
			}
			sl.status, sl.update, sl.queued = nil, nil, false
		}
		clear(s.pending)
		s.pending = s.pending[:0]
		if len(frames) == 0 {
			s.writing = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		if tookReplies {
			select {
			case s.replySpace <- struct{}{}:
			default:
			}
		}

		start := s.r.writeStart()
		err := s.conn.WriteFrames(frames)
		s.r.observeWrite(start, len(frames))
		clear(frames) // drop references to shared frames before pooling
		*buf = frames[:0]
		if err != nil {
			s.writeFailed(err)
			return
		}
		s.r.counters.writeBatches.Add(1)
		for k, n := range sent {
			if n > 0 {
				s.r.counters.sent[k].Add(n)
				sent[k] = 0
			}
		}
	}
}

// writeFailed closes the session after a failed WriteFrames.
func (s *Session) writeFailed(err error) {
	if s.isClosed() {
		return // closed meanwhile: the failure is the close's doing
	}
	s.r.counters.writeErrors.Add(1)
	reason := "write failed"
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		s.r.counters.writeTimeouts.Add(1)
		reason = "write timeout"
	}
	s.r.log.Debug("stream: write failed, closing session", "session", s.id, "err", err)
	s.Close(CloseWriteTimeout, reason)
}

// Write latency, for RegistryConfig.WriteObserver. The writer loop brackets
// each Conn.WriteFrames call with writeStart and observeWrite. Without an
// observer neither reads the clock; with one, a write costs two clock reads
// and the observer's call, and no allocation.

// writeStart returns when a write begins, or the zero time when nobody
// observes writes.
func (r *Registry) writeStart() time.Time {
	if r.cfg.WriteObserver == nil {
		return time.Time{}
	}
	return time.Now()
}

// observeWrite reports a finished write of frames that began at start.
func (r *Registry) observeWrite(start time.Time, frames int) {
	if obs := r.cfg.WriteObserver; obs != nil {
		obs(time.Since(start), frames)
	}
}
