package collectors_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
)

// Names is the list configuration is checked against: it must name every
// collector the default set can contain.
func TestNamesCoverDefaultSet(t *testing.T) {
	for _, c := range collectors.Default(collectors.Config{HostID: "h"}) {
		if !slices.Contains(collectors.Names(), c.Name()) {
			t.Errorf("collector %q missing from collectors.Names", c.Name())
		}
	}
}

func TestCheckIntervals(t *testing.T) {
	tests := []struct {
		in   map[string]time.Duration
		want string // "" = valid
	}{
		{in: nil},
		{in: map[string]time.Duration{"cpu": time.Second, "sensors": 5 * time.Second}}, // sensors may be absent here: still valid
		{in: map[string]time.Duration{"gpu": time.Second}, want: `unknown collector "gpu"`},
		{in: map[string]time.Duration{"cpu": 0}, want: "interval must be positive"},
	}
	for _, tt := range tests {
		err := collectors.CheckIntervals(tt.in)
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("CheckIntervals(%v) = %v, want %q", tt.in, err, tt.want)
		}
	}
}

func TestIntervalOverrideAppliesToTopics(t *testing.T) {
	for _, c := range collectors.Default(collectors.Config{HostID: "h", Intervals: map[string]time.Duration{"mem": 3 * time.Second}}) {
		if c.Name() != "mem" {
			continue
		}
		if c.Interval() != 3*time.Second {
			t.Fatalf("mem interval = %v, want 3s", c.Interval())
		}
		for _, tp := range c.Topics() {
			if tp.Interval != 3*time.Second {
				t.Errorf("topic %s interval = %v, want 3s", tp.Name, tp.Interval)
			}
		}
		return
	}
	t.Fatal("no mem collector in the default set")
}
