package envflag

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func newFlags() (*flag.FlagSet, *string, *time.Duration, *List, *DurationMap) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var l List
	var m DurationMap
	fs.Var(&l, "origins", "")
	fs.Var(&m, "intervals", "")
	return fs, fs.String("listen", ":8080", ""), fs.Duration("heartbeat", 15*time.Second, ""), &l, &m
}

// TestParsePrecedence: a flag beats its variable, which beats the default;
// an empty variable is unset; a list from the command line replaces the
// variable's.
func TestParsePrecedence(t *testing.T) {
	env := map[string]string{"X_LISTEN": "127.0.0.1:9000", "X_HEARTBEAT": "", "X_ORIGINS": "https://a.example, https://c.example"}
	fs, listen, hb, origins, _ := newFlags()
	if err := Parse(fs, "X_", []string{"--origins", "https://b.example"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if *listen != "127.0.0.1:9000" || *hb != 15*time.Second || strings.Join(*origins, "|") != "https://b.example" {
		t.Errorf("listen %q, heartbeat %v, origins %q", *listen, *hb, *origins)
	}
	fs, listen, _, _, _ = newFlags()
	if err := Parse(fs, "X_", []string{"--listen", ":1"}, func(k string) string { return env[k] }); err != nil || *listen != ":1" {
		t.Errorf("flag over variable: %q, %v", *listen, err)
	}
}

// TestParseNamesTheVariable: a bad value from the environment is reported
// with the variable's name, every one of them, and nothing is parsed.
func TestParseNamesTheVariable(t *testing.T) {
	fs, _, _, _, _ := newFlags()
	env := map[string]string{"X_HEARTBEAT": "often", "X_INTERVALS": "cpu"}
	err := Parse(fs, "X_", []string{"--listen", ":1"}, func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), `X_HEARTBEAT="often"`) || !strings.Contains(err.Error(), `X_INTERVALS="cpu"`) {
		t.Fatalf("err = %v, want both variables named", err)
	}
	if fs.Parsed() {
		t.Error("the command line was parsed after a bad variable")
	}
	if got := Name("OPSDASH_", "max-conns-per-ip"); got != "OPSDASH_MAX_CONNS_PER_IP" {
		t.Errorf("Name = %q", got)
	}
}

// TestDurationMap: pairs parse with blanks around them, print sorted, and
// a pair without "=" or with a bad duration is refused.
func TestDurationMap(t *testing.T) {
	var m DurationMap
	if err := m.Set("disk.usage=30s, cpu = 2s,"); err != nil {
		t.Fatal(err)
	}
	if len(m) != 2 || m["cpu"] != 2*time.Second || m.String() != "cpu=2s,disk.usage=30s" {
		t.Errorf("map %v prints %q", m, m.String())
	}
	for _, bad := range []string{"cpu", "cpu=often"} {
		if err := m.Set(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("Set(%q) = %v", bad, err)
		}
	}
}
