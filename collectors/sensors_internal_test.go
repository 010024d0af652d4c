package collectors

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/shirou/gopsutil/v3/host"
)

func TestShapeTemps(t *testing.T) {
	tests := []struct {
		name string
		in   []host.TemperatureStat
		want string // JSON
	}{
		{"none", nil, `{"sensors":[]}`},
		{
			"sorted, thresholds only where known",
			[]host.TemperatureStat{
				{SensorKey: "nvme_composite", Temperature: 38.85, High: 84.85, Critical: 84.85},
				{SensorKey: "acpitz", Temperature: 27.8},
				{SensorKey: "coretemp_core_0", Temperature: 45.123, High: 80, Critical: 100},
			},
			`{"sensors":[{"name":"acpitz","temperature_c":27.8},` +
				`{"name":"coretemp_core_0","temperature_c":45.12,"high_c":80,"critical_c":100},` +
				`{"name":"nvme_composite","temperature_c":38.85,"high_c":84.85,"critical_c":84.85}]}`,
		},
		{
			"unreadable values dropped",
			[]host.TemperatureStat{{SensorKey: "bad", Temperature: math.NaN()}, {SensorKey: "inf", Temperature: math.Inf(1)},
				{SensorKey: "ok", Temperature: -5}},
			`{"sensors":[{"name":"ok","temperature_c":-5}]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(shapeTemps(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("got  %s\nwant %s", b, tt.want)
			}
		})
	}
}
