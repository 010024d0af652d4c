package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/collectors/cgrouptest"
)

// culpritsAnswer is GET /api/v1/culprits's body.
type culpritsAnswer struct {
	TS       int64                   `json:"ts"`
	Culprits collectors.CulpritsData `json:"culprits"`
}

// getCulprits asks the server who was on top at ms ("" for the newest).
func getCulprits(t *testing.T, base, at string) (int, culpritsAnswer) {
	t.Helper()
	u := base + "/api/v1/culprits"
	if at != "" {
		u += "?at=" + at
	}
	code, body := get(t, u)
	var a culpritsAnswer
	if code == 200 {
		if err := json.Unmarshal([]byte(body), &a); err != nil {
			t.Fatalf("%s: %v in %s", u, err, body)
		}
	}
	return code, a
}

// A process the test starts spikes the CPU, in a cgroup named as Docker
// would name a container's where the machine lets the test make one. The
// API names it (and its workload) as a top culprit of each second it ran,
// the dashboard shows the workload, and pointing at the CPU chart in
// Chromium names the process. Other packages' tests run at the same time:
// the test looks for its own process and workload, not the host's top.
func TestBrowserWorkloadsAndCulprits(t *testing.T) {
	chromium := findChromium(t)
	var place func(int) error
	workload := ""
	if cg, err := cgrouptest.Open(t); err != nil {
		t.Logf("no workload of its own, the process only: %v", err)
	} else {
		rel := "docker/" + cgrouptest.RandHex(32)
		cg.Create(rel) // before the server starts: its first walk finds it
		cg.Limit(rel, 0.8, 256<<20)
		place = cg.Place(rel)
		workload, _ = collectors.WorkloadID(cg.Path(rel))
	}
	base, _ := startServer(t, "--heartbeat", "2s")
	eventually(t, "ready", func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })
	spike := cgrouptest.Spin(t, "opsdash-spike", place)

	// Through the API: each of three seconds it ran names it.
	var seconds []int64
	deadline := time.Now().Add(20 * time.Second)
	for len(seconds) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the spiking process was named in %d seconds of 20", len(seconds))
		}
		time.Sleep(300 * time.Millisecond) // polling interval, not synchronisation
		code, a := getCulprits(t, base, "")
		if code != 200 || slices.Contains(seconds, a.TS) || !slices.ContainsFunc(a.Culprits.Procs.CPU, func(p collectors.CulpritProcess) bool { return p.PID == spike.Pid }) {
			continue
		}
		seconds = append(seconds, a.TS)
	}
	for _, ts := range seconds {
		// Asked for a moment within the second, the record answers with it.
		code, a := getCulprits(t, base, strconv.FormatInt(ts+400, 10))
		if code != 200 || a.TS != ts {
			t.Fatalf("at %d: %d, second %d", ts+400, code, a.TS)
		}
		i := slices.IndexFunc(a.Culprits.Procs.CPU, func(p collectors.CulpritProcess) bool { return p.PID == spike.Pid })
		if i < 0 || a.Culprits.Procs.CPU[i].Name != "opsdash-spike" || a.Culprits.Procs.CPU[i].Workload != workload {
			t.Fatalf("at %d: top CPU %+v; want opsdash-spike (%d) in workload %q", ts, a.Culprits.Procs.CPU, spike.Pid, workload)
		}
		if workload != "" && !slices.ContainsFunc(a.Culprits.Workloads.CPU, func(w collectors.CulpritWorkload) bool {
			return w.ID == workload && w.TopPID == spike.Pid && w.Kind == "docker"
		}) {
			t.Errorf("at %d: workload %s with top process %d not among %+v", ts, workload, spike.Pid, a.Culprits.Workloads.CPU)
		}
	}
	if code, _ := getCulprits(t, base, "1000"); code != 404 {
		t.Errorf("culprits of 1970: %d, want 404", code)
	}

	b := newBrowser(t, chromium)
	ctx := b.ctx
	navigate(t, ctx, base+"/")
	waitJS(t, ctx, "the connection to go live", liveState)
	if workload != "" {
		row := `document.querySelector('[data-testid=workload-rows] > tr[data-key="` + workload + `"]')`
		waitJS(t, ctx, "the workload's row", row+` && `+row+`.querySelector('[data-f=cpu_cores]').textContent !== '–'`)
		if href := eval[string](t, ctx, row+`.querySelector('a').getAttribute('href')`); href != "/workloads/"+workload {
			t.Errorf("the row links to %q", href)
		}
		if bars := eval[int](t, ctx, row+`.querySelectorAll('meter:not([hidden])').length`); bars != 2 {
			t.Errorf("%d limit bars shown; the workload has a CPU and a memory limit", bars)
		}
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`[data-testid=workloads-by-mem]`))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the memory order", `document.querySelector('[data-testid=workload-rows]').dataset.sort === 'mem_bytes' && location.search === '?workloads=mem'`)
	}

	// Pointing at the CPU chart at one of those seconds names the process.
	// A first move finds which time the chart's right edge stands for.
	waitJS(t, ctx, "the CPU chart", `document.querySelector('[data-chart=cpu] polyline').getAttribute('points').split(' ').length >= 5`)
	if err := chromedp.Do(ctx, chromedp.ScrollIntoView(chromedp.CSS(`[data-chart=cpu]`))); err != nil {
		t.Fatal(err)
	}
	pointAt := func(frac float64) {
		t.Helper()
		xy := eval[[]float64](t, ctx, fmt.Sprintf(`(() => { const r = document.querySelector('[data-chart=cpu]').getBoundingClientRect();
			return [r.left + r.width * %f, r.top + r.height / 2]; })()`, frac))
		if err := chromedp.Do(ctx, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, xy[0], xy[1])); err != nil {
			t.Fatal(err)
		}
	}
	const windowMS = 300_000 // views.ChartWindowS
	pointAt(0.99)
	at := eval[float64](t, ctx, `+document.querySelector('[data-chart=cpu] line.cursor').dataset.ts`)
	end := at + 0.01*windowMS
	target := seconds[len(seconds)-1]
	pointAt(1 - (end-float64(target))/windowMS)
	item := fmt.Sprintf(`document.querySelector('[data-culprits=cpu] li[data-pid="%d"]')`, spike.Pid)
	waitJS(t, ctx, "the culprits of that second", item)
	if text := eval[string](t, ctx, item+`.textContent`); !strings.HasPrefix(text, fmt.Sprintf("opsdash-spike (pid %d", spike.Pid)) ||
		!regexp.MustCompile(`\) \d+\.\d\d cores$`).MatchString(text) {
		t.Errorf("the chart names %q, want the process and its cores with two decimals", text)
	}
	shots := screenshotDir(t)
	shoot(t, ctx, filepath.Join(shots, "culprits.png"))
	if workload != "" {
		wl := `document.querySelector('[data-culprits=cpu] li[data-workload="` + workload + `"]')`
		waitJS(t, ctx, "its workload", wl)
		if text := eval[string](t, ctx, wl+`.textContent`); !strings.Contains(text, fmt.Sprintf("mostly opsdash-spike (pid %d)", spike.Pid)) {
			t.Errorf("the chart names the workload as %q", text)
		}

		// The workload's own page, live.
		navigate(t, ctx, base+"/workloads/"+workload)
		if state := eval[string](t, ctx, `document.querySelector('[data-testid=workload-state]').textContent`); state != "running" {
			t.Errorf("workload page state %q", state)
		}
		waitJS(t, ctx, "live", liveState)
		waitJS(t, ctx, "its CPU chart", `document.querySelector('[data-chart=cpu] polyline').getAttribute('points') !== ''`)
		shoot(t, ctx, filepath.Join(shots, "workload.png"))
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Reload()); err != nil {
			t.Fatal(err)
		}
		if over := eval[int](t, ctx, `document.documentElement.scrollWidth - window.innerWidth`); over > 0 {
			t.Errorf("the workload page is %d px wider than a phone", over)
		}
	}
	if p := b.problems(); len(p) > 0 {
		b.logConsole(t)
		t.Errorf("browser problems: %q", p)
	}
}
