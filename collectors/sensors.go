package collectors

import (
	"context"
	"errors"
	"math"
	"sort"
	"time"

	"github.com/shirou/gopsutil/v3/host"
)

// SensorsData is the payload of <host>.sensors.temp.
type SensorsData struct {
	// Sensors is sorted by name.
	Sensors []TempSensor `json:"sensors"`
}

// TempSensor is one temperature reading.
type TempSensor struct {
	// Name is the hwmon chip name plus the sensor's label
	// ("coretemp_core_0"), or a thermal zone's type ("x86_pkg_temp").
	Name         string  `json:"name"`
	TemperatureC float64 `json:"temperature_c"`
	// HighC and CriticalC are the chip's thresholds, left out when the
	// chip does not report them.
	HighC     *float64 `json:"high_c,omitempty"`
	CriticalC *float64 `json:"critical_c,omitempty"`
}

// sensorsCollector produces <host>.sensors.temp from hwmon, or thermal zones
// where there is no hwmon (gopsutil, HOST_SYS honoured).
type sensorsCollector struct {
	spec
	topic string
	read  func(ctx context.Context) ([]host.TemperatureStat, error)
}

// NewSensors returns the collector of <host>.sensors.temp and true, when
// the host exposes at least one temperature; otherwise nil and false, and
// the topic does not exist (virtual machines and most containers without
// /sys of the host have no sensors). The probe is one read of the sensors
// at construction.
func NewSensors(cfg Config) (Collector, bool) { return build("sensors", cfg) }

func newSensors(cfg Config, s spec) (Collector, bool) {
	c := &sensorsCollector{spec: s, topic: cfg.HostID + ".sensors.temp", read: host.SensorsTemperaturesWithContext}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	temps, _ := c.read(ctx) // partial results count: see Collect
	if len(shapeTemps(temps).Sensors) == 0 {
		return nil, false
	}
	return c, true
}

func (c *sensorsCollector) Topics() []TopicInfo {
	return []TopicInfo{c.declare(c.topic, "Temperature sensors (°C) with high and critical thresholds where known")}
}

// Collect reads every sensor. gopsutil reports sensors it could not read
// as warnings beside the ones it could; those are published, and the run
// fails only when no sensor could be read at all.
func (c *sensorsCollector) Collect(ctx context.Context) ([]Sample, error) {
	temps, err := c.read(ctx)
	d := shapeTemps(temps)
	if len(d.Sensors) == 0 {
		if err == nil {
			err = errors.New("no temperature sensor could be read")
		}
		return nil, err
	}
	return []Sample{{Topic: c.topic, Time: time.Now(), Data: d}}, nil
}

// shapeTemps builds the payload: readings that are not numbers are dropped,
// thresholds gopsutil reports as 0 (absent) are left out, and sensors are
// sorted by name so the page does not reorder them between samples.
func shapeTemps(temps []host.TemperatureStat) SensorsData {
	d := SensorsData{Sensors: make([]TempSensor, 0, len(temps))}
	for _, t := range temps {
		if math.IsNaN(t.Temperature) || math.IsInf(t.Temperature, 0) {
			continue
		}
		s := TempSensor{Name: t.SensorKey, TemperatureC: round2dp(t.Temperature)}
		if t.High > 0 {
			v := round2dp(t.High)
			s.HighC = &v
		}
		if t.Critical > 0 {
			v := round2dp(t.Critical)
			s.CriticalC = &v
		}
		d.Sensors = append(d.Sensors, s)
	}
	sort.SliceStable(d.Sensors, func(i, j int) bool { return d.Sensors[i].Name < d.Sensors[j].Name })
	return d
}
