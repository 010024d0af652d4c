package collectors_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
)

func TestSensorsAbsentWithoutTemperatures(t *testing.T) {
	t.Setenv("HOST_SYS", t.TempDir()) // a /sys with neither hwmon nor thermal zones, like this VM's
	c, ok := collectors.NewSensors(collectors.Config{HostID: "h"})
	if ok || c != nil {
		t.Errorf("NewSensors = %v, %v on a host without sensors, want nil, false", c, ok)
	}
}

func TestSensorsFromHwmon(t *testing.T) {
	sys := t.TempDir()
	collectors.WriteTree(t, sys, map[string]string{
		"class/hwmon/hwmon0/name":        "coretemp\n",
		"class/hwmon/hwmon0/temp1_input": "45000\n",
		"class/hwmon/hwmon0/temp1_label": "Core 0\n",
		"class/hwmon/hwmon0/temp1_max":   "80000\n",
		"class/hwmon/hwmon0/temp1_crit":  "100000\n",
		"class/hwmon/hwmon0/temp2_input": "47500\n",
	})
	t.Setenv("HOST_SYS", sys)
	c, ok := collectors.NewSensors(collectors.Config{HostID: "h"})
	if !ok {
		t.Fatal("NewSensors found no sensors in the hwmon fixture")
	}
	if c.Name() != "sensors" || c.Interval() != 5*time.Second || len(c.Topics()) != 1 || c.Topics()[0].Name != "h.sensors.temp" {
		t.Errorf("name %q interval %v topics %v", c.Name(), c.Interval(), c.Topics())
	}
	d := coreCollect(t, c)["h.sensors.temp"].Data.(collectors.SensorsData)
	if len(d.Sensors) != 2 {
		t.Fatalf("sensors = %+v, want 2", d.Sensors)
	}
	s0, s1 := d.Sensors[0], d.Sensors[1]
	if s0.Name != "coretemp" || s0.TemperatureC != 47.5 || s0.HighC != nil || s0.CriticalC != nil {
		t.Errorf("sensor 0 = %+v", s0)
	}
	if s1.Name != "coretemp_core_0" || s1.TemperatureC != 45 || s1.HighC == nil || *s1.HighC != 80 ||
		s1.CriticalC == nil || *s1.CriticalC != 100 {
		t.Errorf("sensor 1 = %+v", s1)
	}
	checkKeys(t, "h.sensors.temp", d, "sensors")
	checkKeys(t, "h.sensors.temp entry", s1, "name", "temperature_c", "high_c", "critical_c")

	// Sensors that disappear later make the run fail (the topic exists).
	if err := os.RemoveAll(filepath.Join(sys, "class")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Collect(t.Context()); err == nil {
		t.Error("Collect with no readable sensor returned no error")
	}
}

func TestSensorsOnThisMachine(t *testing.T) {
	c, ok := collectors.NewSensors(collectors.Config{HostID: "h"})
	if !ok {
		t.Log("this machine exposes no temperatures: h.sensors.temp is absent")
		return
	}
	d := coreCollect(t, c)["h.sensors.temp"].Data.(collectors.SensorsData)
	if len(d.Sensors) == 0 {
		t.Error("sensors probed present but none read")
	}
	for _, s := range d.Sensors {
		if s.TemperatureC < -50 || s.TemperatureC > 150 {
			t.Errorf("implausible temperature %+v", s)
		}
	}
}
