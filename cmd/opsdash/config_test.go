package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsdash/opsdash/stream"
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

// docFlagTable returns the rows of the first Markdown table in file whose
// header line is header, by flag: the cells after the flag cell, without
// backticks. A row naming several flags ("`--a`, `--b` | `1`, `2`") gives
// each its own value of every cell that lists as many.
func docFlagTable(t *testing.T, file, header string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "\n"+header+"\n")
	if !ok {
		t.Fatalf("%s: no table with the header %q", file, header)
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		names := strings.Split(strings.ReplaceAll(strings.TrimSpace(cells[0]), "`", ""), ", ")
		if !strings.HasPrefix(names[0], "--") || strings.HasPrefix(names[0], "---") {
			continue // the |---| line
		}
		for i, name := range names {
			var vals []string
			for _, c := range cells[1:] {
				c = strings.ReplaceAll(strings.TrimSpace(c), "`", "")
				if parts := strings.Split(c, ", "); len(names) > 1 && len(parts) == len(names) {
					c = parts[i]
				}
				vals = append(vals, c)
			}
			rows[name] = vals
		}
	}
	return rows
}

// TestDocsMatchServeFlags: the configuration tables of the README and
// docs/deploy.md list every flag of `opsdash serve` and nothing else, each
// with the default --help prints (and, in docs/deploy.md, its variable),
// so that the docs follow the constants the defaults come from.
func TestDocsMatchServeFlags(t *testing.T) {
	root := repoRoot(t)
	deploy := docFlagTable(t, filepath.Join(root, "docs", "deploy.md"), "| flag | variable | default | meaning |")
	readme := docFlagTable(t, filepath.Join(root, "README.md"), "| flag | default | meaning |")
	sameDefault := func(f *flag.Flag, doc string) bool {
		if f.DefValue == "" {
			return true // nothing to print: the docs say in words what happens
		}
		if d, ok := f.Value.(flag.Getter).Get().(time.Duration); ok {
			dd, err := time.ParseDuration(doc)
			return err == nil && dd == d
		}
		return doc == f.DefValue
	}
	fs := newServeFlags(&serveConfig{})
	fs.VisitAll(func(f *flag.Flag) {
		name := "--" + f.Name
		if row, ok := deploy[name]; !ok {
			t.Errorf("docs/deploy.md: no row for %s", name)
		} else if row[0] != envName(f.Name) || !sameDefault(f, row[1]) {
			t.Errorf("docs/deploy.md: %s | %s | %s, want %s with the default %s", name, row[0], row[1], envName(f.Name), f.DefValue)
		}
		if row, ok := readme[name]; !ok {
			t.Errorf("README.md: no row for %s", name)
		} else if !sameDefault(f, row[0]) {
			t.Errorf("README.md: %s has the default %q, want %s", name, row[0], f.DefValue)
		}
	})
	for name, rows := range map[string]map[string][]string{"docs/deploy.md": deploy, "README.md": readme} {
		for flagName := range rows {
			if fs.Lookup(strings.TrimPrefix(flagName, "--")) == nil {
				t.Errorf("%s documents %s, which serve does not have", name, flagName)
			}
		}
	}
}

// TestFlagSpellings: the help's sizes and durations read as people write
// them, and a limit flag's 0 ("off") reaches the config structs as
// stream.NoLimit while other values pass unchanged.
func TestFlagSpellings(t *testing.T) {
	for n, want := range map[int]string{64 << 10: "64 KiB", 1 << 20: "1 MiB", 1000: "1000 bytes", 1536 << 10: "1536 KiB"} {
		if got := byteSize(n); got != want {
			t.Errorf("byteSize(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{time.Minute: "1m", 12 * time.Hour: "12h", 90 * time.Minute: "1h30m", 5 * time.Second: "5s", 61 * time.Second: "1m1s"} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
	if limitFlag(0) != stream.NoLimit || limitFlag(0.0) != stream.NoLimit || limitFlag(7) != 7 || limitFlag(2.5) != 2.5 {
		t.Error("limitFlag does not turn 0 into stream.NoLimit and keep the rest")
	}
}

// TestDocsMatchAgentFlags: docs/fleet.md's table of the fleet's flags
// names every flag of `opsdash agent` in a row of the agent, and no flag
// the agent lacks.
func TestDocsMatchAgentFlags(t *testing.T) {
	rows := docFlagTable(t, filepath.Join(repoRoot(t), "docs", "fleet.md"), "| flag | of | meaning |")
	documented := map[string]bool{}
	for name, cells := range rows {
		if strings.Contains(cells[0], "agent") {
			documented[strings.Fields(name)[0]] = true // "--listen ADDR"
		}
	}
	fs := newAgentFlags(&agentConfig{})
	fs.VisitAll(func(f *flag.Flag) {
		if !documented["--"+f.Name] {
			t.Errorf("docs/fleet.md: no agent row for --%s", f.Name)
		}
	})
	for name := range documented {
		if fs.Lookup(strings.TrimPrefix(name, "--")) == nil {
			t.Errorf("docs/fleet.md documents %s for the agent, which it does not have", name)
		}
	}
}
