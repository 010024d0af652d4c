package collectors_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opsdash/opsdash/collectors"
)

func TestSanitizeHostID(t *testing.T) {
	tests := []struct{ in, want string }{
		{"web-1", "web-1"},
		{"Web-1", "web-1"},
		{"web-1.example.com", "web-1-example-com"},
		{"  db_2\n", "db_2"},
		{"host name", "host-name"},
		{"ÜBER-box", "-ber-box"},
		{"a:b/c*d>e", "a-b-c-d-e"},
		{"", "localhost"},
		{" \t\n", "localhost"},
		{"...", "---"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := collectors.SanitizeHostID(tt.in); got != tt.want {
				t.Errorf("SanitizeHostID(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestHostID(t *testing.T) {
	osName, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	etc := func(content string) string {
		dir := t.TempDir()
		if content != "" {
			if err := os.WriteFile(filepath.Join(dir, "hostname"), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	tests := []struct {
		name     string
		override string
		hostEtc  string // HOST_ETC; "" leaves it unset
		want     string
	}{
		{"override wins", "Edge.Node-7", etc("ignored\n"), "edge-node-7"},
		{"blank override is no override", "  ", "", collectors.SanitizeHostID(osName)},
		{"host's hostname under HOST_ETC", "", etc("Web-1.Prod.Example.com\n"), "web-1-prod-example-com"},
		{"comments and blank lines skipped", "", etc("# set by cloud-init\n\n  node-3  \n"), "node-3"},
		{"missing hostname file falls back to os.Hostname", "", etc(""), collectors.SanitizeHostID(osName)},
		{"empty hostname file falls back to os.Hostname", "", etc("\n# nothing\n"), collectors.SanitizeHostID(osName)},
		{"no HOST_ETC: os.Hostname", "", "", collectors.SanitizeHostID(osName)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("HOST_ETC", tt.hostEtc)
			got := collectors.HostID(tt.override)
			if got != tt.want {
				t.Errorf("HostID(%q) = %q, want %q", tt.override, got, tt.want)
			}
			if got == "" || strings.ContainsAny(got, ". ") {
				t.Errorf("HostID(%q) = %q is not a topic token", tt.override, got)
			}
		})
	}
}
