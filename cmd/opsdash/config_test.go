package main

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigPrecedence(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		listen string
		origin []string
		hb     time.Duration
	}{
		{name: "defaults", listen: ":8080", hb: 15 * time.Second},
		{name: "env over default", env: map[string]string{"OPSDASH_LISTEN": "127.0.0.1:9000", "OPSDASH_HEARTBEAT": "5s"},
			listen: "127.0.0.1:9000", hb: 5 * time.Second},
		{name: "flag over env", args: []string{"--listen", "127.0.0.1:9001"}, env: map[string]string{"OPSDASH_LISTEN": "127.0.0.1:9000"},
			listen: "127.0.0.1:9001", hb: 15 * time.Second},
		{name: "list flag replaces env list", args: []string{"--allowed-origins", "https://b.example"},
			env:    map[string]string{"OPSDASH_ALLOWED_ORIGINS": "https://a.example, https://c.example"},
			listen: ":8080", origin: []string{"https://b.example"}, hb: 15 * time.Second},
		{name: "list from env", env: map[string]string{"OPSDASH_ALLOWED_ORIGINS": "https://a.example, https://c.example"},
			listen: ":8080", origin: []string{"https://a.example", "https://c.example"}, hb: 15 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg serveConfig
			fs := newServeFlags(&cfg)
			if err := parseWithEnv(fs, tt.args, env(tt.env)); err != nil {
				t.Fatal(err)
			}
			if cfg.Listen != tt.listen {
				t.Errorf("listen = %q, want %q", cfg.Listen, tt.listen)
			}
			if cfg.Heartbeat != tt.hb {
				t.Errorf("heartbeat = %v, want %v", cfg.Heartbeat, tt.hb)
			}
			if strings.Join(cfg.AllowedOrigins, "|") != strings.Join(tt.origin, "|") {
				t.Errorf("allowed origins = %q, want %q", cfg.AllowedOrigins, tt.origin)
			}
			if err := cfg.validate(); err != nil {
				t.Errorf("valid config refused: %v", err)
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"--listen", "nonsense"}, want: `--listen "nonsense"`},
		{args: []string{"--heartbeat", "0s"}, want: "--heartbeat must be positive"},
		{args: []string{"--max-conns", "-1"}, want: "--max-conns must not be negative"},
		{env: map[string]string{"OPSDASH_MAX_VALUE_BYTES": "-5"}, want: "--max-value-bytes must not be negative"},
		{args: []string{"--max-frame-bytes", "10"}, want: "--max-frame-bytes must be at least 1024"},
		{args: []string{"--log-format", "xml"}, want: `--log-format "xml"`},
		{args: []string{"--history", "0"}, want: "--history must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var cfg serveConfig
			fs := newServeFlags(&cfg)
			if err := parseWithEnv(fs, tt.args, env(tt.env)); err != nil {
				t.Fatal(err)
			}
			err := cfg.validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestBadEnvValueNamesTheVariable(t *testing.T) {
	var cfg serveConfig
	fs := newServeFlags(&cfg)
	err := parseWithEnv(fs, nil, env(map[string]string{"OPSDASH_HEARTBEAT": "often"}))
	if err == nil || !strings.Contains(err.Error(), "OPSDASH_HEARTBEAT") {
		t.Fatalf("err = %v, want it to name OPSDASH_HEARTBEAT", err)
	}
}

func TestLoopbackOnly(t *testing.T) {
	for addr, want := range map[string]bool{
		":8080": false, "0.0.0.0:8080": false, "127.0.0.1:8080": true, "[::1]:8080": true,
		"localhost:8080": true, "10.0.0.5:8080": false, "bad": false,
	} {
		if got := loopbackOnly(addr); got != want {
			t.Errorf("loopbackOnly(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestIntervalsFlag(t *testing.T) {
	var cfg serveConfig
	fs := newServeFlags(&cfg)
	if err := parseWithEnv(fs, []string{"--intervals", "cpu=2s, disk.usage=30s"}, env(nil)); err != nil {
		t.Fatal(err)
	}
	if cfg.Intervals["cpu"] != 2*time.Second || cfg.Intervals["disk.usage"] != 30*time.Second || len(cfg.Intervals) != 2 {
		t.Fatalf("intervals = %v", cfg.Intervals)
	}
	for _, bad := range []string{"cpu", "cpu=often"} {
		if err := parseWithEnv(newServeFlags(&serveConfig{}), []string{"--intervals", bad}, env(nil)); err == nil {
			t.Errorf("--intervals %q accepted", bad)
		}
	}
}

func TestUnknownCollectorInterval(t *testing.T) {
	var cfg serveConfig
	if err := parseWithEnv(newServeFlags(&cfg), []string{"--intervals", "gpu=1s"}, env(nil)); err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), `unknown collector "gpu"`) {
		t.Fatalf("validate() = %v, want unknown collector", err)
	}
}

func TestBadNetIncludePattern(t *testing.T) {
	var cfg serveConfig
	if err := parseWithEnv(newServeFlags(&cfg), []string{"--net-include", "veth*,[eth"}, env(nil)); err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), `--net-include "[eth"`) {
		t.Fatalf("validate() = %v, want the malformed pattern named", err)
	}
}
