package collectors_test

import (
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
)

func TestLoadOnThisMachine(t *testing.T) {
	c := collectors.NewLoad(collectors.Config{HostID: "h"})
	if c.Name() != "load" || c.Interval() != time.Second || len(c.Topics()) != 1 {
		t.Errorf("name %q interval %v topics %v", c.Name(), c.Interval(), c.Topics())
	}
	for range 2 { // the second run uses the cached core count
		got := coreCollect(t, c)
		d, ok := got["h.load"].Data.(collectors.LoadData)
		if !ok {
			t.Fatalf("no h.load sample: %v", got)
		}
		if d.Cores < runtime.NumCPU() {
			t.Errorf("cores = %d, fewer than the %d this process may use", d.Cores, runtime.NumCPU())
		}
		for name, pair := range map[string][2]float64{
			"load1": {d.Load1, d.Load1PerCore}, "load5": {d.Load5, d.Load5PerCore}, "load15": {d.Load15, d.Load15PerCore},
		} {
			avg, per := pair[0], pair[1]
			if avg < 0 || math.IsNaN(avg) {
				t.Errorf("%s = %v", name, avg)
			}
			if math.Abs(per-avg/float64(d.Cores)) > 0.0051 { // rounded to hundredths
				t.Errorf("%s_per_core = %v, want %v / %d", name, per, avg, d.Cores)
			}
		}
		checkKeys(t, "h.load", d, "load1", "load5", "load15", "load1_per_core", "load5_per_core",
			"load15_per_core", "cores")
	}
}
