package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// serverBin is the opsdash binary built once for every test here.
var serverBin string

func TestMain(m *testing.M) {
	// The peers scenario runs its publisher as this executable, which in a
	// test is the test binary (peerpub.go).
	if len(os.Args) > 1 && os.Args[1] == "peers-publisher" {
		os.Exit(mainCode(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	dir, err := os.MkdirTemp("", "opsdash-load-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	serverBin, err = buildServer(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "building the server the scenarios run against:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tiny returns options for a quick run of scenario against the test server.
func tiny(t *testing.T, scenario string, extra ...string) options {
	t.Helper()
	args := append([]string{scenario, "--server-bin", serverBin, "--clients", "20", "--topics", "3",
		"--rate", "5", "--duration", "2s", "--settle", "200ms", "--resume-window", "5s"}, extra...)
	o, _, err := parseArgs(args, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("parseArgs(%v): %v", args, err)
	}
	return o
}

// checkTraffic asserts what any traffic run against a healthy server shows.
func checkTraffic(t *testing.T, r *Report, wantReaders int) {
	t.Helper()
	var b bytes.Buffer
	printTable(&b, r)
	t.Logf("report:\n%s", b.String())
	if len(r.Errors) > 0 {
		t.Errorf("report errors: %q", r.Errors)
	}
	if r.Connected != r.Clients || r.ConnectFailures != 0 {
		t.Errorf("connected %d of %d (%d failures)", r.Connected, r.Clients, r.ConnectFailures)
	}
	if r.Published == 0 || r.PublishErrors != 0 {
		t.Errorf("published %d values with %d errors", r.Published, r.PublishErrors)
	}
	if r.Delivered <= 0 || uint64(r.Delivered) > r.Expected {
		t.Errorf("delivered %d of %d expected", r.Delivered, r.Expected)
	}
	if want := uint64(wantReaders) * r.Published; r.Expected != want {
		t.Errorf("expected messages = %d, want readers × values published = %d", r.Expected, want)
	}
	// Conflation may skip values under load, but every reader must end
	// up with every topic's newest value.
	if r.MissingAtEnd != 0 || r.Regressions != 0 {
		t.Errorf("missing at end %d, seq regressions %d", r.MissingAtEnd, r.Regressions)
	}
	for name, p := range map[string]Percentiles{"latency": r.Latency, "freshness": r.Freshness} {
		if p.Count == 0 {
			t.Errorf("%s: no samples", name)
		}
		if !(0 <= p.P50 && p.P50 <= p.P90 && p.P90 <= p.P99 && p.P99 <= p.P999 && p.P999 <= p.Max) {
			t.Errorf("%s percentiles not ordered: %+v", name, p)
		}
	}
	if r.Latency.P50 <= 0 {
		t.Errorf("latency p50 = %v ms, want > 0", r.Latency.P50)
	}
	if r.ServerRSSBefore <= 0 || r.ServerRSSAfter <= 0 || r.ServerCPUSeconds < 0 {
		t.Errorf("server RSS %d → %d, CPU %vs", r.ServerRSSBefore, r.ServerRSSAfter, r.ServerCPUSeconds)
	}
}

func TestScenarios(t *testing.T) {
	t.Run("fanout", func(t *testing.T) {
		t.Parallel()
		r, err := run(t.Context(), tiny(t, "fanout"))
		if err != nil {
			t.Fatal(err)
		}
		checkTraffic(t, r, 20)
		if r.MessagesPerS <= 0 || r.ServerCPUPerMsgUS <= 0 {
			t.Errorf("messages/s %v, CPU per message %v µs", r.MessagesPerS, r.ServerCPUPerMsgUS)
		}
	})
	t.Run("slow", func(t *testing.T) {
		t.Parallel()
		r, err := run(t.Context(), tiny(t, "slow", "--slow-fraction", "0.1"))
		if err != nil {
			t.Fatal(err)
		}
		if r.SlowClients != 2 {
			t.Errorf("slow clients = %d, want 2 of 20", r.SlowClients)
		}
		checkTraffic(t, r, 18)
		s := r.Slow
		if s == nil || s.Baseline == nil {
			t.Fatalf("slow report or its baseline missing: %+v", s)
		}
		checkTraffic(t, s.Baseline, 20)
		if s.Clients != 2 || s.Fresh != 2 {
			t.Errorf("%d of %d resumed readers reached fresh values (closes %v, errors %q)",
				s.Fresh, s.Clients, s.ResumeCloseCodes, s.ResumeErrors)
		}
		if s.TargetPubSeq == 0 || s.TimeToFresh.Count != uint64(s.Fresh) || s.TimeToFresh.P50 > s.TimeToFresh.Max {
			t.Errorf("resume: target %d, time to fresh %+v", s.TargetPubSeq, s.TimeToFresh)
		}
	})
	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		r, err := run(t.Context(), tiny(t, "idle", "--settle", "300ms"))
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Errors) > 0 {
			t.Errorf("report errors: %q", r.Errors)
		}
		if r.Connected != 20 {
			t.Errorf("connected %d, want 20", r.Connected)
		}
		if r.IdleBytesPerConn == nil || r.ServerRSSBefore <= 0 || r.ServerRSSAfter <= 0 {
			t.Fatalf("idle memory not measured: per conn %v, RSS %d → %d", r.IdleBytesPerConn, r.ServerRSSBefore, r.ServerRSSAfter)
		}
		if want := float64(r.ServerRSSAfter-r.ServerRSSBefore) / 20; *r.IdleBytesPerConn != want {
			t.Errorf("bytes per conn = %v, want (after − before) / 20 = %v", *r.IdleBytesPerConn, want)
		}
	})
	t.Run("cli-json", func(t *testing.T) {
		t.Parallel()
		var out, errb bytes.Buffer
		code := mainCode(t.Context(), []string{"freshness", "--server-bin", serverBin, "--clients", "5", "--topics", "2",
			"--rate", "20", "--duration", "1s", "--settle", "100ms", "--stagger", "--json"}, &out, &errb)
		if code != 0 {
			t.Fatalf("exit %d; stderr:\n%s\nstdout:\n%s", code, errb.String(), out.String())
		}
		var r Report
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("stdout is not the JSON report: %v\n%s", err, out.String())
		}
		if r.Scenario != "freshness" || r.Clients != 5 {
			t.Errorf("report scenario %q clients %d", r.Scenario, r.Clients)
		}
		checkTraffic(t, &r, 5)
	})
}

func TestTableOutput(t *testing.T) {
	per := 12.5 * 1024
	var b bytes.Buffer
	printTable(&b, &Report{Scenario: "idle", Clients: 10, Connected: 10, Topics: 1, IdleBytesPerConn: &per})
	if !strings.Contains(b.String(), "12.5 KiB") {
		t.Errorf("idle table lacks the per-connection figure:\n%s", b.String())
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"fanout"}, ""},
		{[]string{"--clients", "10", "idle"}, ""},
		{[]string{}, "no scenario"},
		{[]string{"flood"}, "unknown scenario"},
		{[]string{"fanout", "--clients", "0"}, "--clients"},
		{[]string{"fanout", "--clients", "1000000"}, "--clients"},
		{[]string{"fanout", "--duration", "1h"}, "--duration"},
		{[]string{"fanout", "--rate", "0"}, "--rate"},
		{[]string{"slow", "--slow-fraction", "1"}, "--slow-fraction"},
	}
	for _, tt := range tests {
		_, _, err := parseArgs(tt.args, &bytes.Buffer{})
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("parseArgs(%q) = %v, want no error", tt.args, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("parseArgs(%q) = %v, want an error mentioning %q", tt.args, err, tt.wantErr)
		}
	}
	// Flags before and after the scenario both count.
	o, _, err := parseArgs([]string{"--clients", "10", "slow", "--topics", "3"}, &bytes.Buffer{})
	if err != nil || o.Scenario != "slow" || o.Clients != 10 || o.Topics != 3 {
		t.Errorf("flags around the scenario: scenario %q clients %d topics %d, err %v", o.Scenario, o.Clients, o.Topics, err)
	}
	if _, _, err := parseArgs([]string{"fanout", "--clients", "10", "extra"}, &bytes.Buffer{}); err == nil {
		t.Error("a stray argument after the flags was accepted")
	}
	o, _, err = parseArgs([]string{"idle", "--clients", "25000"}, &bytes.Buffer{})
	if err != nil || o.SourceAddrs != 3 || o.Settle != 3*time.Second {
		t.Errorf("idle defaults for 25000 clients: source addrs %d, settle %v, err %v", o.SourceAddrs, o.Settle, err)
	}
}

func TestScanFrame(t *testing.T) {
	prefix := []byte("bench.t")
	tests := []struct {
		frame string
		want  update
	}{
		{`{"type":"update","topic":"bench.t3","seq":42,"ts":1,"data":{"sent_unix_ns":1763740000123456789,"pub_seq":41,"pad":"x"}}`,
			update{isUpdate: true, topic: 3, seq: 42, pubSeq: 41, sentNS: 1763740000123456789, hasPub: true}},
		{`{"type":"update","topic":"bench.t12","seq":7,"ts":1,"data":{"pub_seq":0,"sent_unix_ns":5}}`,
			update{isUpdate: true, topic: 12, seq: 7, pubSeq: 0, sentNS: 5, hasPub: true}},
		// Another key order still parses.
		{`{"seq":7,"data":{"pub_seq":3,"pad":"x","sent_unix_ns":9},"topic":"bench.t2","type":"update"}`,
			update{isUpdate: true, topic: 2, seq: 7, pubSeq: 3, sentNS: 9, hasPub: true}},
		{`{"type":"update","topic":"loadhost.cpu","seq":3,"ts":1,"data":{"usage_pct":1}}`,
			update{isUpdate: true, topic: -1, seq: 3}},
		{`{"type":"update","topic":"bench.t1x","seq":3,"ts":1,"data":{}}`,
			update{isUpdate: true, topic: -1, seq: 3}},
		{`{"type":"subscribed","id":"1","topics":["bench.>"]}`, update{topic: -1}},
		{`{"type":"hello","protocol":1}`, update{topic: -1}},
	}
	for _, tt := range tests {
		if got := scanFrame([]byte(tt.frame), prefix); got != tt.want {
			t.Errorf("scanFrame(%s)\n got %+v\nwant %+v", tt.frame, got, tt.want)
		}
	}
	if got := frameType([]byte(`{"type":"subscribed","id":"1"}`)); got != "subscribed" {
		t.Errorf("frameType = %q, want subscribed", got)
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	if s := h.Summary(); s != (Percentiles{}) {
		t.Errorf("empty histogram summary = %+v, want zeros", s)
	}
	// 1 ms … 1000 ms, once each.
	for i := 1; i <= 1000; i++ {
		h.Record(int64(i) * int64(time.Millisecond))
	}
	h.Record(-5) // a clock step counts as 0
	s := h.Summary()
	if s.Count != 1001 || s.Max != 1000 {
		t.Errorf("count %d max %v, want 1001 and 1000ms", s.Count, s.Max)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p50", s.P50, 500}, {"p90", s.P90, 900}, {"p99", s.P99, 990}} {
		// Buckets are 1/32 of a power of two wide: within ~3.2% above.
		if c.got < c.want*0.99 || c.got > c.want*1.035 {
			t.Errorf("%s = %.2fms, want %.0fms within the bucket width", c.name, c.got, c.want)
		}
	}
	if h.reset(); h.Summary() != (Percentiles{}) {
		t.Errorf("summary after reset = %+v, want zeros", h.Summary())
	}
	// Every value maps to a bucket whose upper bound holds it.
	for _, v := range []int64{0, 1, 31, 32, 33, 63, 64, 65, 1000, 123456789, 1 << 40, 1<<62 + 12345} {
		b := bucketOf(v)
		if bucketUpper(b) < v || (b > 0 && bucketUpper(b-1) >= v) {
			t.Errorf("value %d in bucket %d with bounds (%d, %d]", v, b, bucketUpper(b-1), bucketUpper(b))
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and a parenthesis, utime 250 and stime 50 ticks.
	stat := "1234 (opsdash (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 1000000 500"
	got, err := parseStatCPU(stat)
	if err != nil || got != 3*time.Second {
		t.Errorf("parseStatCPU = %v, %v; want 3s", got, err)
	}
	if _, err := parseStatCPU("garbage"); err == nil {
		t.Error("parseStatCPU(garbage) returned no error")
	}
}
