package stream

import "sync/atomic"

// Early values: what a window keeps instead of conflating.
//
// A session in its window (flush.go) that is offered a new value of a topic
// whose previous value is still unsent keeps that previous value here
// rather than dropping it: the window was the session's choice, not its
// client's slowness, so it must not cost the client a value. Both go out in
// the window's write, in order; that is also what makes a topic published
// faster than the window (100 Hz, a 20 ms window) cost one write for
// several values instead of one each. Only the window does this: a session
// that is queued behind others or parked on a full socket conflates as
// always, so a slow client still gets the newest value and not a backlog;
// so does one whose window ended a whole window ago while its loop is still
// busy with others (the loop is behind: keeping values would only make it
// more so). A window that has just ended still keeps: its loop offers a
// round's values before it writes the round's sessions, so a value published
// right at the end of a session's window would otherwise replace one that
// was waiting for that very write.
//
// Bounded: at most maxEarly values and earlyBytes bytes per session (the
// frames are shared with every other subscriber, not copied); past that the
// window ends at once and the session is written. Sessions with a max_hz
// never keep early values (their rate wants the newest value only).

const (
	maxEarly   = 64
	earlyBytes = 32 << 10
)

// earlyFrame is one kept value of slot sl.
type earlyFrame struct {
	sl   *slot
	seq  uint64
	json []byte
}

// earlyValues is a session's kept values, guarded by Session.mu.
type earlyValues struct {
	early      []earlyFrame
	earlyBytes int
}

// keepEarlyLocked keeps sl's unsent update, about to be replaced, and
// reports whether it did; when it cannot (not in a window, a max_hz, or
// over the bounds) the caller conflates it, and a session in its window is
// marked urgent so it is written now instead of dropping more.
func (s *Session) keepEarlyLocked(sl *slot) bool {
	if s.wstate != wRecent || s.r.flush.now() >= s.windowEnd+s.r.flush.window {
		return false
	}
	if s.rates != nil || len(s.early) >= maxEarly || s.earlyBytes+len(sl.update) > earlyBytes {
		s.urgent = true
		return false
	}
	s.early = append(s.early, earlyFrame{sl, sl.lastSeq, sl.update})
	s.earlyBytes += len(sl.update)
	return true
}

// takeEarlyLocked appends the kept values to frames (before any pending
// slot's frame, so each topic's seq rises) and forgets them.
func (s *Session) takeEarlyLocked(frames []Frame, size int, sent *[numKinds]uint64) ([]Frame, int) {
	for _, e := range s.early {
		frames = append(frames, Frame{Type: "update", Topic: e.sl.t.name, Seq: e.seq, JSON: e.json})
		size += len(e.json)
		sent[kindUpdate]++
	}
	clear(s.early)
	s.early, s.earlyBytes = s.early[:0], 0
	return frames, size
}

// dropEarlyLocked drops the kept values of a slot that stops flowing,
// counting them in drop.
func (s *Session) dropEarlyLocked(sl *slot, drop *atomic.Uint64) {
	kept := s.early[:0]
	for _, e := range s.early {
		if e.sl == sl {
			s.earlyBytes -= len(e.json)
			drop.Add(1)
			continue
		}
		kept = append(kept, e)
	}
	clear(s.early[len(kept):])
	s.early = kept
}
