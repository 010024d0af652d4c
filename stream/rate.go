package stream

import (
	"encoding/json"
	"math"
	"time"
)

// max_hz: a rate per subscription (docs/protocol.md, "max_hz").
//
// A subscribe may carry "max_hz": N; each topic its patterns match then
// reaches the connection at most N times per second, always the newest
// value. A topic matched by several of the connection's patterns takes the
// highest rate among them, and a pattern without max_hz means no limit.
//
// It is enforced where frames are taken for writing (takeLocked): an update
// due before its slot's last send + 1/N stays in the mailbox, conflating,
// on the session's held list, and a timer puts it back on the pending list
// when it is due. So the newest value leaves at most 1/N s after the
// previous one (plus the time to reach the session's turn), and the last
// value of a burst is never held longer. Snapshots (a new slot has never
// sent), status frames and replies are never held.
//
// All of it lives behind Session.rates, nil until the session first asks
// for a rate: a session without max_hz pays one nil check per frame.

// rateState is a session's max_hz bookkeeping, guarded by Session.mu.
type rateState struct {
	hz   map[string]float64 // pattern → max_hz; patterns without a rate are absent
	gen  uint32             // bumped when hz changes: slots recompute their gap
	held []*slot            // slots with an update held back by their rate
	// timer releases held slots when the earliest is due (timerAt, in the
	// flush clock; 0: not armed).
	timer   *time.Timer
	timerAt int64
}

// decodeMaxHz reads a subscribe request's optional "max_hz": absent is 0
// (no limit); anything but a positive finite number is a bad request.
func decodeMaxHz(fields map[string]json.RawMessage) (float64, bool) {
	raw, ok := fields["max_hz"]
	if !ok {
		return 0, true
	}
	var hz float64
	if len(raw) == 0 || raw[0] == 'n' || json.Unmarshal(raw, &hz) != nil || !(hz > 0) || math.IsInf(hz, 0) {
		return 0, false
	}
	return hz, true
}

// setRatesLocked records the max_hz of a subscribe's patterns (0: none):
// a pattern subscribed again takes the rate of the latest request.
func (s *Session) setRatesLocked(patterns []string, hz float64) {
	if s.rates == nil {
		if hz <= 0 {
			return
		}
		s.rates = &rateState{hz: make(map[string]float64)}
	}
	for _, p := range patterns {
		if hz > 0 {
			s.rates.hz[p] = hz
		} else {
			delete(s.rates.hz, p)
		}
	}
	s.rates.gen++
}

// ratesRemovedLocked forgets the rates of unsubscribed patterns.
func (s *Session) ratesRemovedLocked(removed []Pattern) {
	if s.rates == nil || len(removed) == 0 {
		return
	}
	for _, p := range removed {
		delete(s.rates.hz, p.raw)
	}
	s.rates.gen++
}

// gapLocked returns the least time between two sends of topic name: 1/N
// for the highest max_hz N among the session's patterns that match it, 0
// (no limit) when one of them has none.
func (s *Session) gapLocked(name string) int64 {
	best := 0.0
	for _, p := range s.pats {
		if !p.Match(name) {
			continue
		}
		hz, ok := s.rates.hz[p.raw]
		if !ok {
			return 0
		}
		best = max(best, hz)
	}
	if best == 0 {
		return 0
	}
	return int64(float64(time.Second) / best)
}

// holdLocked reports whether sl's pending update must wait for its rate at
// clock now; if so it moves sl to the held list and arms the timer. The
// caller (takeLocked) is taking sl off the pending list. On a send it
// records now as the slot's last send.
func (s *Session) holdLocked(sl *slot, now int64) bool {
	rs := s.rates
	if sl.rateGen != rs.gen {
		sl.gap, sl.rateGen = s.gapLocked(sl.t.name), rs.gen
	}
	if sl.gap > 0 && sl.sentAt != 0 {
		if due := sl.sentAt + sl.gap; now < due {
			sl.held = true
			rs.held = append(rs.held, sl)
			s.armRateTimerLocked(due, now)
			return true
		}
	}
	sl.sentAt = max(now, 1) // 0 means "never sent"
	return false
}

// armRateTimerLocked makes sure the rate timer fires by due.
func (s *Session) armRateTimerLocked(due, now int64) {
	rs := s.rates
	if rs.timerAt != 0 && rs.timerAt <= due {
		return
	}
	rs.timerAt = due
	d := time.Duration(due - now)
	if rs.timer == nil {
		rs.timer = time.AfterFunc(d, s.releaseHeld)
	} else {
		rs.timer.Reset(d)
	}
}

// releaseHeld runs on the rate timer: held slots that are due go back on
// the pending list, and the session is queued for a turn.
func (s *Session) releaseHeld() {
	s.mu.Lock()
	if s.closed || s.rates == nil {
		s.mu.Unlock()
		return
	}
	rs := s.rates
	rs.timerAt = 0
	now := s.r.flush.now()
	next := int64(0)
	kept := rs.held[:0]
	for _, sl := range rs.held {
		due := sl.sentAt + sl.gap
		if due <= now || sl.rateGen != rs.gen {
			// Due, or its rate changed: takeLocked decides again.
			sl.held = false
			s.pending = append(s.pending, sl)
			continue
		}
		kept = append(kept, sl)
		if next == 0 || due < next {
			next = due
		}
	}
	clear(rs.held[len(kept):])
	rs.held = kept
	if next != 0 {
		s.armRateTimerLocked(next, now)
	}
	start := s.kickLocked()
	s.mu.Unlock()
	if start {
		s.startWriter()
	}
}

// unholdLocked puts a held slot back on the pending list at once (a status
// frame for it is never delayed; takeLocked holds its update again if it
// is still early).
func (s *Session) unholdLocked(sl *slot) {
	if !sl.held {
		return
	}
	s.removeHeldLocked(sl)
	s.pending = append(s.pending, sl)
}

// removeHeldLocked takes sl off the held list.
func (s *Session) removeHeldLocked(sl *slot) {
	sl.held = false
	held := s.rates.held
	for i, h := range held {
		if h == sl {
			s.rates.held = append(held[:i], held[i+1:]...)
			held[len(held)-1] = nil
			return
		}
	}
}

// stopRatesLocked stops the rate timer of a closing session and returns
// how many held updates it drops.
func (s *Session) stopRatesLocked() int {
	if s.rates == nil {
		return 0
	}
	if s.rates.timer != nil {
		s.rates.timer.Stop()
	}
	n := len(s.rates.held)
	s.rates.held = nil
	return n
}
