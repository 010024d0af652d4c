package collectors

import (
	"testing"
	"time"
)

func TestStaggerOffsets(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name      string
		intervals []time.Duration
		want      []time.Duration
	}{
		{"none", nil, []time.Duration{}},
		{"one starts at once", []time.Duration{time.Second}, []time.Duration{0}},
		{"same interval spread evenly", []time.Duration{time.Second, time.Second, time.Second, time.Second},
			[]time.Duration{0, 250 * ms, 500 * ms, 750 * ms}},
		{"long intervals still start within the first second",
			[]time.Duration{time.Minute, 10 * time.Second, time.Minute},
			[]time.Duration{0, 333333333, 666666666}},
		{"short intervals spread within the interval", []time.Duration{40 * ms, 40 * ms}, []time.Duration{0, 20 * ms}},
		{"mixed", []time.Duration{time.Second, 2 * time.Second, 100 * ms, time.Minute},
			[]time.Duration{0, 250 * ms, 50 * ms, 750 * ms}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := staggerOffsets(tt.intervals)
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("offset[%d] = %v, want %v", i, got[i], tt.want[i])
				}
				if got[i] >= max(min(tt.intervals[i], maxFirstDelay), 1) && i > 0 {
					t.Errorf("offset[%d] = %v is not within min(interval, 1s)", i, got[i])
				}
			}
		})
	}
}

func TestNextTick(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := time.Second
	tests := []struct {
		name string
		now  time.Duration // after t0
		want time.Duration // after t0
	}{
		{"run finished early", 100 * time.Millisecond, s},
		{"run finished exactly at next tick", s, 2 * s},
		{"run overran one tick", 1500 * time.Millisecond, 2 * s},
		{"run overran many ticks: skip them, keep phase", 7300 * time.Millisecond, 8 * s},
		{"clock before prev", -5 * s, s},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextTick(t0, s, t0.Add(tt.now)); !got.Equal(t0.Add(tt.want)) {
				t.Errorf("nextTick = t0+%v, want t0+%v", got.Sub(t0), tt.want)
			}
		})
	}
}

func TestDefaultTimeout(t *testing.T) {
	tests := []struct{ interval, want time.Duration }{
		{20 * time.Millisecond, time.Second},
		{time.Second, time.Second},
		{2 * time.Second, 2 * time.Second},
		{5 * time.Second, 5 * time.Second},
		{time.Minute, 5 * time.Second},
	}
	for _, tt := range tests {
		if got := DefaultTimeout(tt.interval); got != tt.want {
			t.Errorf("DefaultTimeout(%v) = %v, want %v", tt.interval, got, tt.want)
		}
	}
}
