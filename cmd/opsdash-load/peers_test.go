package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestPeersAgainstOpsdash runs the peers scenario on opsdash alone (the
// peers need downloads), unpinned and tiny: a traffic run whose values all
// reach the clients, from a publisher process of its own, and an idle run.
func TestPeersAgainstOpsdash(t *testing.T) {
	var out, errOut bytes.Buffer
	code := mainCode(context.Background(), []string{"peers", "--servers", "opsdash", "--server-bin", serverBin,
		"--clients", "20", "--rate", "20", "--duration", "1s", "--settle", "100ms", "--idle-clients", "30",
		"--server-cpu", "-1", "--tool-cpu", "-1", "--json"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	var rep PeersReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 2 || rep.Runs[0].Kind != "traffic" || rep.Runs[1].Kind != "idle" {
		t.Fatalf("runs %+v", rep.Runs)
	}
	tr := rep.Runs[0]
	// Values may conflate on a busy machine; the newest must arrive.
	if tr.Connected != 20 || tr.Published == 0 || !tr.CaughtUp || tr.Latency.Count == 0 || tr.MinPerClient == 0 {
		t.Fatalf("traffic run %+v", tr)
	}
	if idle := rep.Runs[1]; idle.Connected != 30 || idle.RSSAfter == 0 {
		t.Fatalf("idle run %+v", idle)
	}
}

// TestPeersArgs: bad flags are refused before anything starts.
func TestPeersArgs(t *testing.T) {
	for _, args := range [][]string{
		{"--servers", "nginx"},
		{"--clients", "0"},
		{"--rate", "0"},
		{"--server-cpu", "1", "--tool-cpu", "1"},
		{"--server-cpu", "-1"},
	} {
		var errOut bytes.Buffer
		if code := mainCode(context.Background(), append([]string{"peers"}, args...), &bytes.Buffer{}, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		if !strings.Contains(errOut.String(), "--") {
			t.Errorf("%v: %q names no flag", args, errOut.String())
		}
	}
}
