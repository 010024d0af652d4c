package collectors

import (
	"math"
	"testing"
	"time"
)

func TestCounterDelta(t *testing.T) {
	tests := []struct {
		name      string
		prev, cur uint64
		want      uint64
		wantOK    bool
	}{
		{"unchanged", 100, 100, 0, true},
		{"grows", 100, 250, 150, true},
		{"from zero", 0, 42, 42, true},
		{"grows past 32 bits", math.MaxUint32 - 10, math.MaxUint32 + 10, 20, true},
		{"32-bit wrap", math.MaxUint32 - 9, 5, 15, true},
		{"32-bit wrap to zero", math.MaxUint32, 0, 1, true},
		{"32-bit wrap just under the limit", math.MaxUint32 - (wrapLimit32 - 2), 0, wrapLimit32 - 1, true},
		{"32-bit decrease too far for a wrap is a reset", math.MaxUint32 - wrapLimit32, 0, 0, false},
		{"small counter reset (reboot)", 123456, 10, 0, false},
		{"reset to zero", 5000, 0, 0, false},
		{"64-bit wrap", math.MaxUint64 - 4, 10, 15, true},
		{"64-bit counter reset", 1 << 40, 1000, 0, false},
		{"64-bit counter reset to a value above 32 bits", 1 << 40, 1 << 33, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := counterDelta(tt.prev, tt.cur)
			if ok != tt.wantOK {
				t.Fatalf("counterDelta(%d, %d) ok = %v, want %v", tt.prev, tt.cur, ok, tt.wantOK)
			}
			if ok && got != tt.want {
				t.Fatalf("counterDelta(%d, %d) = %d, want %d", tt.prev, tt.cur, got, tt.want)
			}
		})
	}
}

func TestRatesPerSecond(t *testing.T) {
	tests := []struct {
		name      string
		prev, cur []uint64
		elapsed   time.Duration
		want      []float64
		wantOK    bool
	}{
		{"one second", []uint64{0, 100}, []uint64{1000, 150}, time.Second, []float64{1000, 50}, true},
		{"half a second doubles", []uint64{0}, []uint64{1000}, 500 * time.Millisecond, []float64{2000}, true},
		{"idle", []uint64{7, 7}, []uint64{7, 7}, 2 * time.Second, []float64{0, 0}, true},
		{"wrap in one counter", []uint64{math.MaxUint32 - 99, 10}, []uint64{100, 20}, time.Second, []float64{200, 10}, true},
		{"reset of one counter drops the whole reading", []uint64{5000, 10}, []uint64{10, 20}, time.Second, nil, false},
		{"zero elapsed", []uint64{0}, []uint64{10}, 0, nil, false},
		{"negative elapsed", []uint64{0}, []uint64{10}, -time.Second, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := make([]float64, len(tt.cur))
			ok := ratesPerSecond(tt.prev, tt.cur, tt.elapsed, out)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if !ok {
				return
			}
			for i := range tt.want {
				if math.Abs(out[i]-tt.want[i]) > 1e-9 {
					t.Fatalf("rates = %v, want %v", out, tt.want)
				}
			}
		})
	}
}

func TestCounterRates(t *testing.T) {
	t0 := time.Now()
	type step struct {
		key    string
		after  time.Duration // since t0
		cur    []uint64
		want   []float64 // nil: no rate expected
		endRnd bool      // call endRound after this step
	}
	tests := []struct {
		name     string
		steps    []step
		wantKeys int // keys remembered at the end
	}{
		{
			name: "first reading has no rate, second has",
			steps: []step{
				{key: "eth0", after: 0, cur: []uint64{100, 1}},
				{key: "eth0", after: time.Second, cur: []uint64{1100, 3}, want: []float64{1000, 2}},
			},
			wantKeys: 1,
		},
		{
			name: "reset becomes the new baseline",
			steps: []step{
				{key: "sda", after: 0, cur: []uint64{900000}},
				{key: "sda", after: time.Second, cur: []uint64{100}},
				{key: "sda", after: 2 * time.Second, cur: []uint64{600}, want: []float64{500}},
			},
			wantKeys: 1,
		},
		{
			name: "same instant gives no rate, later reading does",
			steps: []step{
				{key: "a", after: time.Second, cur: []uint64{10}},
				{key: "a", after: time.Second, cur: []uint64{10}},
				{key: "a", after: 3 * time.Second, cur: []uint64{50}, want: []float64{20}},
			},
			wantKeys: 1,
		},
		{
			name: "clock going backwards gives no rate",
			steps: []step{
				{key: "a", after: 2 * time.Second, cur: []uint64{10}},
				{key: "a", after: time.Second, cur: []uint64{20}},
			},
			wantKeys: 1,
		},
		{
			name: "different number of counters is a new baseline",
			steps: []step{
				{key: "a", after: 0, cur: []uint64{10}},
				{key: "a", after: time.Second, cur: []uint64{20, 30}},
			},
			wantKeys: 1,
		},
		{
			name: "keys are independent",
			steps: []step{
				{key: "a", after: 0, cur: []uint64{0}},
				{key: "b", after: 0, cur: []uint64{0}},
				{key: "a", after: time.Second, cur: []uint64{10}, want: []float64{10}},
				{key: "b", after: 2 * time.Second, cur: []uint64{10}, want: []float64{5}},
			},
			wantKeys: 2,
		},
		{
			name: "a key missing from a round is forgotten and starts over",
			steps: []step{
				{key: "veth1", after: 0, cur: []uint64{0}},
				{key: "eth0", after: 0, cur: []uint64{0}, endRnd: true},
				{key: "eth0", after: time.Second, cur: []uint64{5}, want: []float64{5}, endRnd: true},
				{key: "veth1", after: 2 * time.Second, cur: []uint64{500}},
			},
			wantKeys: 2,
		},
		{
			name: "interface churn does not grow memory",
			steps: func() []step {
				var s []step
				for i := range 100 {
					s = append(s, step{key: string(rune('a'+i%26)) + string(rune('0'+i/26)), after: time.Duration(i) * time.Second, cur: []uint64{1}, endRnd: true})
				}
				return s
			}(),
			wantKeys: 1, // only the key of the last round
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newCounterRates[string]()
			for i, s := range tt.steps {
				out := make([]float64, len(s.cur))
				ok := r.observe(s.key, t0.Add(s.after), s.cur, out)
				if ok != (s.want != nil) {
					t.Fatalf("step %d (%s): ok = %v, want %v", i, s.key, ok, s.want != nil)
				}
				for j := range s.want {
					if math.Abs(out[j]-s.want[j]) > 1e-9 {
						t.Fatalf("step %d (%s): rates = %v, want %v", i, s.key, out, s.want)
					}
				}
				if s.endRnd {
					r.endRound()
				}
			}
			if got := r.len(); got != tt.wantKeys {
				t.Fatalf("remembered keys = %d, want %d", got, tt.wantKeys)
			}
		})
	}
}

func TestClampPct(t *testing.T) {
	tests := []struct{ in, want float64 }{
		{-1, 0}, {0, 0}, {42.5, 42.5}, {100, 100}, {100.4, 100}, {math.NaN(), 0}, {math.Inf(1), 100},
	}
	for _, tt := range tests {
		if got := clampPct(tt.in); got != tt.want {
			t.Errorf("clampPct(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
