package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/chromedp/chromedp"
)

// pageMetrics are the fleet overview as Chromium loaded it.
type pageMetrics struct {
	bytes                        int     // HTML + every asset, uncompressed
	domContentLoaded, firstPaint float64 // ms after navigation start
}

// pageInChromium opens url in headless Chromium and reads the page's
// navigation timing: how soon the overview of every host is rendered.
func pageInChromium(ctx context.Context, path, url string) (pageMetrics, error) {
	alloc, cancel := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.WindowSize(1280, 900), chromedp.Flag("disable-dev-shm-usage", true))
	defer cancel()
	tab, cancel2 := chromedp.NewContext(alloc)
	defer cancel2()
	tab, cancel3 := context.WithTimeout(tab, 60*time.Second)
	defer cancel3()
	// A first navigation starts the browser; the measured one is the second.
	if err := chromedp.Do(tab, chromedp.Navigate("about:blank")); err != nil {
		return pageMetrics{}, err
	}
	if err := chromedp.Do(tab, chromedp.Navigate(url)); err != nil {
		return pageMetrics{}, err
	}
	const js = `(() => { const n = performance.getEntriesByType('navigation')[0];
		const p = performance.getEntriesByName('first-contentful-paint')[0];
		const bytes = n.decodedBodySize + performance.getEntriesByType('resource').reduce((b, r) => b + r.decodedBodySize, 0);
		return [bytes, n.domContentLoadedEventEnd, p ? p.startTime : 0] })()`
	var v []float64
	for range 50 { // paint entries appear a moment after load
		out, err := chromedp.Run(tab, chromedp.Evaluate[[]float64](js))
		if err != nil {
			return pageMetrics{}, err
		}
		if v = out; len(v) == 3 && v[2] > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(v) != 3 {
		return pageMetrics{}, fmt.Errorf("no navigation timing")
	}
	return pageMetrics{bytes: int(v[0]), domContentLoaded: v[1], firstPaint: v[2]}, nil
}

// printFleet prints the fleet scenario's report.
func printFleet(w io.Writer, r *Report) {
	f := r.Fleet
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "  %s\t%s\n", k, fmt.Sprintf(format, args...)) }
	fmt.Fprintf(tw, "fleet: %d hosts × %d topics, %d replicas, %d clients %s, %.0fs window (load avg %.2f at start)\n",
		f.Hosts, f.TopicsPerHost, f.Replicas, r.Clients, f.ClientsPerProcs, f.WindowS, f.LoadAvg1Start)
	row("agents", "%d values (%.0f/s), %d dropped", f.AgentValues, f.AgentValuesPS, f.AgentDropped)
	row("delivered", "%d updates to clients (%.0f/s), %d seq gaps, %d regressions", f.Delivered, f.MessagesPerS, f.Gaps, f.Regressions)
	row("at replicas", "%d topics not at the agents' last seq after they stopped", f.MissingAtReplicas)
	row("latency", "agent sample → client %s", pct(f.Latency))
	row("freshness", "%s", pct(f.Freshness))
	row("replica ready", "%v s after start", f.ReplicaReadyS)
	row("failover", "%d clients back with a full snapshot: %s; %d values skipped by it; %d told another instance",
		f.FailoverClients, pct(f.Failover), f.FailoverGaps, f.NewInstance)
	row("cpu", "NATS %.1f%%, replicas %v%%, load tool %.1f%%, others %.1f%% (of one core)", f.NATSCPUPct, roundAll(f.ReplicaCPUPct), f.LoadToolCPUPct, f.OtherCPUPct)
	row("memory", "NATS %s, replicas %v MiB", mib(f.NATSRSS), mibAll(f.ReplicaRSS))
	row("overview page", "%d B HTML (%d B with assets), served in %.1f ms, DOMContentLoaded %.0f ms, first paint %.0f ms",
		f.PageHTMLBytes, f.PageTotalBytes, f.PageServerMS, f.PageRenderMS, f.PagePaintMS)
	for _, e := range r.Errors {
		row("error", "%s", e)
	}
	tw.Flush()
}

func roundAll(v []float64) []string {
	out := make([]string, len(v))
	for i, x := range v {
		if x < 0 {
			out[i] = "killed"
		} else {
			out[i] = fmt.Sprintf("%.1f", x)
		}
	}
	return out
}

func mibAll(v []int64) []string {
	out := make([]string, len(v))
	for i, x := range v {
		out[i] = fmt.Sprintf("%.0f", float64(x)/(1<<20))
	}
	return out
}
