package stream

import (
	"errors"
	"net"
	"os"
	"time"
)

// The writer side of a session: kickLocked puts a session with something
// pending on its flush loop (flush.go), whose turn takes what is pending
// and hands it to Conn.WriteFrames in one call. s.mu is held only to take
// the frames and to update the state, never across a write, so offers to a
// slow client never wait for its socket.

// kickLocked reports whether the caller must put the session on its flush
// loop's ready queue (startWriter, outside s.mu): something is pending and
// the session is idle, or it waits out a window and something pending must
// not wait: a reply (replies never wait for a window), or a value that
// would otherwise replace an unsent one (see keepEarlyLocked). It marks the
// session ready.
func (s *Session) kickLocked() bool {
	if s.closed || len(s.pending) == 0 && len(s.replies) == 0 {
		return false
	}
	switch s.wstate {
	case wIdle:
		s.r.counters.writers.Add(1)
	case wRecent:
		if len(s.replies) == 0 && !s.urgent {
			return false // the window's end takes it
		}
	default:
		return false // ready, writing or parked: the turn in progress or to come takes it
	}
	s.wstate = wReady
	return true
}

// startWriter queues the session that kickLocked marked ready.
func (s *Session) startWriter() { s.f.push(s) }

// idleLocked makes the session idle.
func (s *Session) idleLocked() {
	s.wstate = wIdle
	s.r.counters.writers.Add(-1)
}

// turn is one turn of a session on its flush loop: e is its ready-queue
// entry (seq 0) or the end of its window. It writes what is pending (see
// takeLocked) in one WriteFrames call, then starts the session's window,
// or parks it when its Conn kept bytes back. frames is the loop's buffer,
// returned for reuse.
func (s *Session) turn(e recentEntry, frames []Frame) []Frame {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return frames
	case e.seq != 0: // a window's end
		if s.wstate != wRecent || s.windowSeq != e.seq {
			s.mu.Unlock() // stale: a reply made it write since
			return frames
		}
		if len(s.pending) == 0 && len(s.replies) == 0 {
			s.idleLocked()
			s.mu.Unlock()
			return frames
		}
	case s.wstate != wReady:
		s.mu.Unlock()
		return frames
	}
	s.wstate = wWriting
	var sent [numKinds]uint64
	frames, more, tookReplies := s.takeLocked(frames[:0], &sent)
	s.mu.Unlock()
	if tookReplies {
		s.signalReplySpace()
	}

	var err error
	if len(frames) > 0 {
		start := s.r.writeStart()
		err = s.conn.WriteFrames(frames)
		s.r.observeWrite(start, len(frames))
		clear(frames) // drop references to shared frames
	}
	if err != nil {
		// Closing writes a close frame and may wait for it a moment: not
		// on the loop. The session stays "writing" until then, so no loop
		// takes it again.
		go s.writeFailed(err)
		return frames[:0]
	}
	if len(frames) > 0 {
		s.r.counters.writeBatches.Add(1)
		for k, n := range sent {
			if n > 0 {
				s.r.counters.sent[k].Add(n)
			}
		}
	}

	nb, _ := s.conn.(NonBlockingConn)
	parked := nb != nil && nb.Backlogged()
	s.mu.Lock()
	if !parked {
		s.repliesWrittenLocked()
	}
	switch {
	case s.closed:
	case parked:
		s.wstate = wParked
		go s.waitWritable(nb)
	case more:
		s.wstate = wReady // the rest of a large turn, behind the others
		s.mu.Unlock()
		s.f.push(s)
		return frames[:0]
	case s.r.flush.window > 0 && len(frames) > 0:
		s.wstate = wRecent
		s.windowSeq++
		if s.windowSeq == 0 {
			s.windowSeq = 1 // 0 marks ready-queue entries
		}
		e := recentEntry{s: s, due: s.r.flush.now() + s.r.flush.window, seq: s.windowSeq}
		s.windowEnd = e.due
		s.mu.Unlock()
		s.f.pushRecent(e)
		return frames[:0]
	case len(s.pending) > 0 || len(s.replies) > 0:
		s.wstate = wReady
		s.mu.Unlock()
		s.f.push(s)
		return frames[:0]
	default:
		s.idleLocked()
	}
	s.mu.Unlock()
	return frames[:0]
}

// takeLocked appends what the session has pending to frames: every reply,
// in FIFO order, then one frame per pending topic, status before update, in
// the order the topics became pending, until turnBytes is reached (at
// least one frame). Replies go first so "subscribed" precedes its
// snapshot. An update that its subscription's max_hz holds back stays
// (rate.go). more reports that pending topics are left for another turn.
func (s *Session) takeLocked(frames []Frame, sent *[numKinds]uint64) (_ []Frame, more, tookReplies bool) {
	size := 0
	tookReplies = len(s.replies) > 0
	for _, rp := range s.replies {
		frames = append(frames, Frame{Type: "reply", JSON: rp.json})
		size += len(rp.json)
		sent[rp.kind]++
	}
	clear(s.replies)
	s.replies = s.replies[:0]
	s.urgent = false
	frames, size = s.takeEarlyLocked(frames, size, sent)
	var now int64
	if s.rates != nil {
		now = s.r.flush.now()
	}
	i := 0
	for ; i < len(s.pending) && (size < turnBytes || len(frames) == 0); i++ {
		sl := s.pending[i]
		if sl.status != nil {
			frames = append(frames, Frame{Type: "status", Topic: sl.t.name, JSON: sl.status})
			size += len(sl.status)
			sent[kindStatus]++
			sl.status = nil
		}
		if sl.update != nil {
			if s.rates != nil && s.holdLocked(sl, now) {
				continue // stays pending in s.held
			}
			frames = append(frames, Frame{Type: "update", Topic: sl.t.name, Seq: sl.lastSeq, JSON: sl.update})
			size += len(sl.update)
			sent[kindUpdate]++
			sl.update = nil
		}
		sl.queued = false
	}
	n := copy(s.pending, s.pending[i:])
	clear(s.pending[n:])
	s.pending = s.pending[:n]
	return frames, n > 0, tookReplies
}

// waitWritable runs while the session is parked: it waits until the Conn
// has sent what it kept back, then queues the session again (a write
// timeout or failure closes it instead).
func (s *Session) waitWritable(nb NonBlockingConn) {
	if err := nb.WaitWritable(); err != nil {
		s.writeFailed(err)
		return
	}
	s.mu.Lock()
	if s.closed || s.wstate != wParked {
		s.mu.Unlock()
		return
	}
	s.repliesWrittenLocked()
	if len(s.pending) == 0 && len(s.replies) == 0 {
		s.idleLocked()
		s.mu.Unlock()
		return
	}
	s.wstate = wReady
	s.mu.Unlock()
	s.f.push(s)
}

// writeFailed closes the session after a failed write.
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

// Write latency, for RegistryConfig.WriteObserver. A turn brackets its
// Conn.WriteFrames call with writeStart and observeWrite. Without an
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
