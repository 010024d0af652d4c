package collectors

import (
	"testing"

	"github.com/shirou/gopsutil/v3/load"
)

func TestShapeLoad(t *testing.T) {
	tests := []struct {
		name  string
		avg   load.AvgStat
		cores int
		want  LoadData
	}{
		{"per core", load.AvgStat{Load1: 3, Load5: 1.5, Load15: 0.5}, 2,
			LoadData{Load1: 3, Load5: 1.5, Load15: 0.5, Load1PerCore: 1.5, Load5PerCore: 0.75, Load15PerCore: 0.25, Cores: 2}},
		{"rounded to hundredths", load.AvgStat{Load1: 1, Load5: 2, Load15: 0.07}, 3,
			LoadData{Load1: 1, Load5: 2, Load15: 0.07, Load1PerCore: 0.33, Load5PerCore: 0.67, Load15PerCore: 0.02, Cores: 3}},
		{"unknown core count: no division by zero", load.AvgStat{Load1: 1, Load5: 1, Load15: 1}, 0,
			LoadData{Load1: 1, Load5: 1, Load15: 1}},
		{"idle host", load.AvgStat{}, 64, LoadData{Cores: 64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := shapeLoad(&tt.avg, tt.cores); got != tt.want {
				t.Errorf("shapeLoad = %+v, want %+v", got, tt.want)
			}
		})
	}
}
