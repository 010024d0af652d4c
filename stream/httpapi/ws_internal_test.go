package httpapi

import (
	"testing"
	"time"
)

// nextWriteDeadline moves the deadline only when less than half the write
// timeout is left, and every write it answers for ends up with between
// timeout/2 and timeout to complete: never more than the write timeout.
func TestNextWriteDeadline(t *testing.T) {
	const timeout = 10 * time.Second
	now := time.Now()
	for _, tt := range []struct {
		name      string
		cur       time.Time
		wantMoved bool
	}{
		{"no deadline yet", time.Time{}, true},
		{"passed", now.Add(-time.Second), true},
		{"just passed", now, true},
		{"under half left", now.Add(timeout/2 - time.Nanosecond), true},
		{"half left", now.Add(timeout / 2), false},
		{"most left", now.Add(timeout - time.Millisecond), false},
		{"all left (set by the previous write, just now)", now.Add(timeout), false},
	} {
		got, moved := nextWriteDeadline(tt.cur, now, timeout)
		if moved != tt.wantMoved {
			t.Errorf("%s: moved = %v, want %v", tt.name, moved, tt.wantMoved)
		}
		if moved && !got.Equal(now.Add(timeout)) {
			t.Errorf("%s: moved to %v, want now + timeout", tt.name, got.Sub(now))
		}
		if !moved && !got.Equal(tt.cur) {
			t.Errorf("%s: changed to %v without moving", tt.name, got.Sub(now))
		}
		if left := got.Sub(now); left < timeout/2 || left > timeout {
			t.Errorf("%s: a write starting now may block %v, want within [%v, %v]", tt.name, left, timeout/2, timeout)
		}
	}
}

// A connection writing steadily moves its deadline about once per half
// write timeout, and each of its writes keeps the bound.
func TestNextWriteDeadlineSteadyWriter(t *testing.T) {
	const timeout = 10 * time.Second
	start := time.Now()
	var cur time.Time
	moves := 0
	for i := 0; i < 600; i++ { // 60 s of writes every 100 ms
		now := start.Add(time.Duration(i) * 100 * time.Millisecond)
		var moved bool
		cur, moved = nextWriteDeadline(cur, now, timeout)
		if moved {
			moves++
		}
		if left := cur.Sub(now); left < timeout/2 || left > timeout {
			t.Fatalf("write %d may block %v, want within [%v, %v]", i, left, timeout/2, timeout)
		}
	}
	if moves < 11 || moves > 13 { // 60 s / 5 s, plus the first
		t.Fatalf("deadline moved %d times in 600 writes over 60 s, want about 12", moves)
	}
}

// A ping sent while a batch write is under way never gets a later deadline
// than that write: the socket has one write deadline, and a later one would
// let a stuck write outlive the write timeout.
func TestPingDeadline(t *testing.T) {
	now := time.Unix(1000, 0)
	const timeout = 10 * time.Second
	for _, tt := range []struct {
		name     string
		inflight time.Time
		want     time.Time
	}{
		{"no write under way", time.Time{}, now.Add(timeout)},
		{"a write due sooner", now.Add(3 * time.Second), now.Add(3 * time.Second)},
		{"a write already past its deadline", now.Add(-time.Second), now.Add(-time.Second)},
		{"a write due later (deadline moved just now)", now.Add(timeout + time.Second), now.Add(timeout)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var inflight int64
			if !tt.inflight.IsZero() {
				inflight = tt.inflight.UnixNano()
			}
			if got := pingDeadline(now, timeout, inflight); !got.Equal(tt.want) {
				t.Errorf("pingDeadline = %v, want %v", got, tt.want)
			}
		})
	}
}
