package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestLogDurationsReadable: a duration in a log line reads as Go prints it
// ("1.5s"), in JSON as in text, not as nanoseconds.
func TestLogDurationsReadable(t *testing.T) {
	for _, tc := range []struct{ format, want string }{
		{"json", `"after":"1.5s"`},
		{"text", `after=1.5s`},
	} {
		var buf bytes.Buffer
		newLogger(&buf, tc.format, "info").Info("accepting connections again", "after", 1500*time.Millisecond)
		if !strings.Contains(buf.String(), tc.want) {
			t.Errorf("%s log line %q, want it to contain %s", tc.format, buf.String(), tc.want)
		}
	}
}

// TestDrainLogSaysTimeout: the line a stopping server logs gives the drain
// timeout as a duration (the issue saw "timeout":10000000000).
func TestDrainLogSaysTimeout(t *testing.T) {
	_, stop, logs := startServerLogs(t, "--log-format", "json", "--drain-timeout", "3s")
	if code := stop(); code != 0 {
		t.Fatalf("exit %d: %s", code, logs.String())
	}
	lines := bufio.NewScanner(strings.NewReader(logs.String()))
	for lines.Scan() {
		var line map[string]any
		if err := json.Unmarshal(lines.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, lines.Bytes())
		}
		if line["msg"] == "draining" {
			if line["timeout"] != "3s" {
				t.Fatalf("draining log line %s: timeout %v, want \"3s\"", lines.Bytes(), line["timeout"])
			}
			return
		}
	}
	t.Fatalf("no draining log line in:\n%s", logs.String())
}
