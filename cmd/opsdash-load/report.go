package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// Report is one scenario's result. Sizes are bytes, times seconds unless the
// name says otherwise; --json prints it as is.
type Report struct {
	Scenario     string  `json:"scenario"`
	Clients      int     `json:"clients"`
	Connected    int     `json:"connected"`
	SlowClients  int     `json:"slow_clients"`
	Topics       int     `json:"topics"`
	RateHz       float64 `json:"rate_hz"`
	DurationS    float64 `json:"duration_s"`
	PayloadBytes int     `json:"payload_bytes"`
	Staggered    bool    `json:"staggered"` // one POST per topic, spread over the period

	ConnectSeconds  float64 `json:"connect_s"`
	ConnectFailures int     `json:"connect_failures"`

	Published      uint64  `json:"published_values"` // values published, all topics
	PublishSeconds float64 `json:"publish_s"`
	PublishErrors  int64   `json:"publish_errors"`
	PostMeanMillis float64 `json:"post_mean_ms"`
	DrainSeconds   float64 `json:"drain_s"` // after the last publish, until readers caught up

	Expected      uint64      `json:"expected_messages"` // readers × topics × ticks
	Delivered     int64       `json:"delivered_messages"`
	MessagesPerS  float64     `json:"messages_per_s"`
	Latency       Percentiles `json:"latency"`
	Freshness     Percentiles `json:"freshness"`
	Gaps          int64       `json:"seq_gaps"`       // values skipped (conflated) on the way
	MissingAtEnd  int64       `json:"missing_at_end"` // newest values not received by the end
	Regressions   int64       `json:"seq_regressions"`
	ErrorFrames   int64       `json:"error_frames"`
	UnknownFrames int64       `json:"unknown_frames"`
	CloseCodes    map[int]int `json:"close_codes,omitempty"` // closes the server initiated

	ServerCPUSeconds  float64 `json:"server_cpu_s"`
	ServerCPUPerMsgUS float64 `json:"server_cpu_per_msg_us"`
	ServerRSSStart    int64   `json:"server_rss_start_bytes"` // right after start
	ServerRSSBefore   int64   `json:"server_rss_before_bytes"`
	ServerRSSAfter    int64   `json:"server_rss_after_bytes"`
	ServerRSSPeak     int64   `json:"server_rss_peak_bytes"`
	ServerThreads     int     `json:"server_threads"`
	// ServerWriteSyscalls counts write-type system calls (/proc/<pid>/io
	// syscw) during the window: with frames batched per drain, well below
	// one per delivered message.
	ServerWriteSyscalls int64   `json:"server_write_syscalls"`
	SelfCPUSeconds      float64 `json:"load_tool_cpu_s"`
	// OtherCPUSeconds is what the rest of the machine used during the
	// window (all CPUs busy − server − load tool): other work skews results.
	OtherCPUSeconds  float64            `json:"other_cpu_s"`
	LoadAvgStart     float64            `json:"loadavg1_start"`
	IdleBytesPerConn *float64           `json:"idle_bytes_per_conn,omitempty"`
	Metrics          map[string]float64 `json:"server_metrics_delta,omitempty"`
	Slow             *SlowReport        `json:"slow,omitempty"`
	Fleet            *FleetReport       `json:"fleet,omitempty"` // fleet.go
	Errors           []string           `json:"errors,omitempty"`
}

// SlowReport is the slow scenario's part of the report.
type SlowReport struct {
	Clients           int   `json:"clients"`
	RSSGrowth         int64 `json:"rss_growth_bytes"`          // during the slow period
	BaselineRSSGrowth int64 `json:"baseline_rss_growth_bytes"` // same window, no slow clients
	// RSSExcess is RSSGrowth − BaselineRSSGrowth: what the slow readers
	// cost, net of the heap growth any run shows over the same window.
	RSSExcess    int64   `json:"rss_excess_bytes"`
	P99ChangePct float64 `json:"readers_p99_change_pct"` // vs the baseline
	Baseline     *Report `json:"baseline,omitempty"`

	TargetPubSeq     uint64      `json:"target_pub_seq"` // newest accepted value at resume
	Fresh            int         `json:"resumed_fresh"`  // slow clients that reached it on every topic
	TimeToFresh      Percentiles `json:"time_to_fresh"`
	StaleMean        float64     `json:"stale_frames_mean"`
	StaleMax         int64       `json:"stale_frames_max"`
	Jumped           int         `json:"resumed_with_jump"` // saw pub_seq skip ahead on some topic
	MaxJump          uint64      `json:"max_jump"`
	ResumeCloseCodes map[int]int `json:"resume_close_codes,omitempty"`
	ResumeErrors     []string    `json:"resume_errors,omitempty"`
}

func newReport(o options) *Report {
	return &Report{
		Scenario: o.Scenario, Clients: o.Clients, Topics: o.Topics, RateHz: o.Rate,
		DurationS: o.Duration.Seconds(), PayloadBytes: o.PayloadBytes, Staggered: o.Stagger,
	}
}

func (r *Report) addError(format string, args ...any) {
	r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
}

// noteServerExit records an unclean server exit on stop.
func (r *Report) noteServerExit(err error) {
	if err != nil {
		r.addError("server exit: %v", err)
	}
}

// collect folds the readers' counters and the histograms into r. finals[t]
// is the last pub_seq published on topic t (nil for no traffic).
func (r *Report) collect(readers []*client, latency, fresh *histogram, finals []uint64) {
	var perReader uint64
	for _, f := range finals {
		perReader += f
	}
	r.Expected = perReader * uint64(len(readers))
	for _, c := range readers {
		r.Delivered += c.updates
		r.Gaps += c.gaps
		r.Regressions += c.regress
		r.ErrorFrames += c.errFrames
		r.UnknownFrames += c.otherTypes
		if c.closeCode != 0 {
			if r.CloseCodes == nil {
				r.CloseCodes = map[int]int{}
			}
			r.CloseCodes[c.closeCode]++
		}
		for i, f := range finals {
			r.MissingAtEnd += int64(f - min(c.last[i].Load(), f))
		}
	}
	r.Latency = latency.Summary()
	r.Freshness = fresh.Summary()
	if r.PublishSeconds > 0 {
		r.MessagesPerS = float64(r.Delivered) / r.PublishSeconds
	}
	if r.Delivered > 0 {
		r.ServerCPUPerMsgUS = r.ServerCPUSeconds / float64(r.Delivered) * 1e6
	}
}

// summarize folds the slow clients' resume results into sr.
func (sr *SlowReport) summarize(results []resumeResult) {
	h := &histogram{}
	var stale int64
	for _, res := range results {
		stale += res.stale
		sr.StaleMax = max(sr.StaleMax, res.stale)
		if res.maxJump > 1 {
			sr.Jumped++
		}
		sr.MaxJump = max(sr.MaxJump, res.maxJump)
		if res.fresh {
			sr.Fresh++
			h.Record(int64(res.after))
		} else {
			if res.closeCode != 0 {
				if sr.ResumeCloseCodes == nil {
					sr.ResumeCloseCodes = map[int]int{}
				}
				sr.ResumeCloseCodes[res.closeCode]++
			}
			if len(sr.ResumeErrors) < 5 && res.err != "" {
				sr.ResumeErrors = append(sr.ResumeErrors, res.err)
			}
		}
	}
	if len(results) > 0 {
		sr.StaleMean = float64(stale) / float64(len(results))
	}
	sr.TimeToFresh = h.Summary()
}

// mib formats bytes as MiB.
func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// pct formats a latency summary as "p50 / p90 / p99 / max".
func pct(p Percentiles) string {
	if p.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("%s / %s / %s / %s  (n=%d)", ms(p.P50), ms(p.P90), ms(p.P99), ms(p.Max), p.Count)
}

func ms(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 1:
		return fmt.Sprintf("%.2fms", v)
	case v < 100:
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.0fms", v)
}

// printTable writes r as a readable two-column table.
func printTable(w io.Writer, r *Report) {
	if r.Fleet != nil {
		printFleet(w, r) // fleet.go
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "  %s\t%s\n", k, fmt.Sprintf(format, args...)) }
	fmt.Fprintf(tw, "%s: %d clients (%d connected", r.Scenario, r.Clients, r.Connected)
	if r.SlowClients > 0 {
		fmt.Fprintf(tw, ", %d not reading", r.SlowClients)
	}
	fmt.Fprintf(tw, "), %d topics", r.Topics)
	if r.Scenario != "idle" {
		fmt.Fprintf(tw, " at %g Hz for %gs, %d-byte payloads", r.RateHz, r.DurationS, r.PayloadBytes)
		if r.Staggered {
			fmt.Fprint(tw, ", staggered (one POST per topic)")
		} else {
			fmt.Fprint(tw, ", batched (one POST per tick)")
		}
	}
	fmt.Fprintln(tw)
	row("connect", "%.1fs, %d failed", r.ConnectSeconds, r.ConnectFailures)
	if r.Scenario == "idle" {
		row("server RSS", "start %s, before clients %s, with clients %s", mib(r.ServerRSSStart), mib(r.ServerRSSBefore), mib(r.ServerRSSAfter))
		if r.IdleBytesPerConn != nil {
			row("memory per idle conn", "%.1f KiB   (budget < 20 KiB)", *r.IdleBytesPerConn/1024)
		}
		row("server threads", "%d", r.ServerThreads)
	} else {
		row("published", "%d values in %.1fs (%.1f/s per topic achieved), mean POST %.2fms, %d errors",
			r.Published, r.PublishSeconds, float64(r.Published)/float64(r.Topics)/max(r.PublishSeconds, 1e-9), r.PostMeanMillis, r.PublishErrors)
		row("delivered", "%d of %d expected (%.1f%%), %.0f msg/s", r.Delivered, r.Expected,
			100*float64(r.Delivered)/max(float64(r.Expected), 1), r.MessagesPerS)
		row("latency p50/p90/p99/max", "%s", pct(r.Latency))
		row("freshness p50/p90/p99/max", "%s", pct(r.Freshness))
		row("seq gaps (conflated)", "%d skipped on the way, %d newest values missing at end, %d seq regressions", r.Gaps, r.MissingAtEnd, r.Regressions)
		row("server CPU", "%.2fs (%.2f µs per delivered msg)", r.ServerCPUSeconds, r.ServerCPUPerMsgUS)
		row("other CPU", "load tool %.2fs, rest of the machine %.2fs (1-min load average at start %.2f)", r.SelfCPUSeconds, r.OtherCPUSeconds, r.LoadAvgStart)
		if r.ServerWriteSyscalls > 0 {
			row("server write syscalls", "%d (%.2f delivered msgs per write)", r.ServerWriteSyscalls, float64(r.Delivered)/float64(r.ServerWriteSyscalls))
		}
		row("server RSS", "start %s, before %s, after %s, peak %s", mib(r.ServerRSSStart), mib(r.ServerRSSBefore), mib(r.ServerRSSAfter), mib(r.ServerRSSPeak))
		row("drain after last publish", "%.2fs", r.DrainSeconds)
	}
	if r.ErrorFrames+r.UnknownFrames > 0 {
		row("unexpected frames", "%d error, %d unknown", r.ErrorFrames, r.UnknownFrames)
	}
	if len(r.CloseCodes) > 0 {
		row("server closes", "%v", r.CloseCodes)
	}
	if len(r.Metrics) > 0 {
		keys := make([]string, 0, len(r.Metrics))
		for k := range r.Metrics {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			row("  "+k, "%+g", r.Metrics[k])
		}
	}
	if s := r.Slow; s != nil {
		if s.Baseline != nil {
			row("slow: RSS growth", "%s while %d clients did not read, %s without them: excess %s (budget < 10 MiB)",
				mib(s.RSSGrowth), s.Clients, mib(s.BaselineRSSGrowth), mib(s.RSSExcess))
		} else {
			row("slow: RSS growth", "%s while %d clients did not read (budget < 10 MiB; no baseline run)", mib(s.RSSGrowth), s.Clients)
		}
		if s.Baseline != nil {
			row("slow: readers' p99", "%s vs %s without slow clients: %+.1f%% (budget within ±20%%)",
				ms(r.Latency.P99), ms(s.Baseline.Latency.P99), s.P99ChangePct)
		}
		row("slow: resumed fresh", "%d of %d reached pub_seq %d on every topic; time p50/p99/max %s / %s / %s",
			s.Fresh, s.Clients, s.TargetPubSeq, ms(s.TimeToFresh.P50), ms(s.TimeToFresh.P99), ms(s.TimeToFresh.Max))
		row("slow: stale frames before fresh", "mean %.1f, max %d; %d clients skipped values on resuming (largest pub_seq step %d)",
			s.StaleMean, s.StaleMax, s.Jumped, s.MaxJump)
		if len(s.ResumeCloseCodes) > 0 || len(s.ResumeErrors) > 0 {
			row("slow: resume failures", "closes %v; %s", s.ResumeCloseCodes, strings.Join(s.ResumeErrors, "; "))
		}
	}
	for _, e := range r.Errors {
		row("ERROR", "%s", e)
	}
	tw.Flush()
	if s := r.Slow; s != nil && s.Baseline != nil {
		fmt.Fprintln(w, "baseline (same run without slow clients):")
		printTable(w, s.Baseline)
	}
}
