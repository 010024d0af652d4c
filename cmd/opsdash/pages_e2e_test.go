package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/cmd/opsdash/internal/pages"
	"github.com/opsdash/opsdash/stream"
)

// The browser test drives Debian's Chromium against the real server on
// loopback. It skips when Chromium is missing, unless
// OPSDASH_REQUIRE_CHROMIUM=1 (CI), where it fails instead. Screenshots go to
// a temporary directory, or to $OPSDASH_SCREENSHOTS when set (the README's
// come from `OPSDASH_SCREENSHOTS=$PWD/docs/screenshots go test -run Browser ./cmd/opsdash`).

// findChromium returns the browser's path or skips (fails under CI).
func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("OPSDASH_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "Chromium not found (apt-get install chromium, or set OPSDASH_CHROMIUM to its path): skipping the browser test"
	if os.Getenv("OPSDASH_REQUIRE_CHROMIUM") == "1" {
		t.Fatal(msg + "; OPSDASH_REQUIRE_CHROMIUM=1 makes it mandatory")
	}
	chromiumMissing.Store(true) // TestMain says so once more, after the tests
	t.Skip(msg)
	return ""
}

// browser is one headless Chromium with the console of every tab recorded.
type browser struct {
	ctx context.Context // the first tab; more come from tab()

	mu       sync.Mutex
	messages []chromedp.ConsoleMessage
	wg       sync.WaitGroup
}

// newBrowser starts Chromium with a fresh profile and the options extra;
// it ends with the test.
func newBrowser(t *testing.T, path string, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true), // small /dev/shm in containers
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	b := &browser{}
	b.ctx, _ = b.watch(actx)                   // the first tab lives as long as the browser
	if err := chromedp.Do(b.ctx); err != nil { // start the browser now
		cancelAlloc()
		t.Fatalf("starting Chromium %s: %v", path, err)
	}
	t.Cleanup(func() {
		cancelAlloc() // ends every tab, their console iterators, then the process
		b.wg.Wait()
	})
	return b
}

// watch opens a tab from parent and records its console; cancel closes the
// tab (the allocator's cancel ends every tab anyway).
func (b *browser) watch(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := chromedp.NewContext(parent)
	msgs := chromedp.Console(ctx)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for m, err := range msgs {
			if err != nil {
				return // the tab or the browser ended
			}
			b.mu.Lock()
			b.messages = append(b.messages, m)
			b.mu.Unlock()
		}
	}()
	return ctx, cancel
}

// tab opens another tab in the same browser, closed when the (sub)test ends.
func (b *browser) tab(t *testing.T) context.Context {
	ctx, cancel := b.watch(b.ctx)
	t.Cleanup(cancel)
	return ctx
}

// problems are the page's script errors: uncaught exceptions, console.error
// calls and browser log errors other than the network's own lines (a refused
// connection while the server is down is expected; a CSP violation is not).
func (b *browser) problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.messages {
		switch {
		case m.IsException():
			out = append(out, fmt.Sprintf("exception: %s at %s:%d", m.Text, m.URL, m.Line))
		case m.Type == chromedp.ConsoleError && m.Source == "network":
			// the browser's own network-error line
		case m.Type == chromedp.ConsoleError:
			out = append(out, fmt.Sprintf("console error (%s): %s at %s:%d", orDefault(m.Source, "console.error"), m.Text, m.URL, m.Line))
		}
	}
	return out
}

// logConsole logs every console message under -v.
func (b *browser) logConsole(t *testing.T) {
	if !testing.Verbose() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.messages {
		t.Logf("console %s/%s: %s", m.Type, orDefault(m.Source, "page"), m.Text)
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// eval evaluates a JavaScript expression in ctx's tab.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// waitJS polls a JavaScript condition until it is true or 20 s pass; it
// returns how long that took.
func waitJS(t *testing.T, ctx context.Context, what, cond string) time.Duration {
	t.Helper()
	return waitJSFor(t, ctx, what, cond, 20*time.Second)
}

// waitJSFor is waitJS with another deadline.
func waitJSFor(t *testing.T, ctx context.Context, what, cond string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		if err == nil && ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s (%s); last error %v", timeout, what, cond, err)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronization
	}
}

func navigate(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate to %s: %v", url, err)
	}
}

// pageTimingJS reports when the HTML arrived, the first contentful paint,
// DOMContentLoaded, and the page's uncompressed bytes (HTML + assets).
const pageTimingJS = `(() => { const n = performance.getEntriesByType('navigation')[0];
	const fcp = performance.getEntriesByName('first-contentful-paint')[0];
	return 'ttfb ' + Math.round(n.responseStart) + ' ms, first contentful paint ' + Math.round(fcp.startTime) +
		' ms, DOMContentLoaded ' + Math.round(n.domContentLoadedEventEnd) + ' ms, ' +
		(n.decodedBodySize + performance.getEntriesByType('resource').reduce((b, r) => b + r.decodedBodySize, 0)) + ' bytes'; })()`

// liveState is a condition: the header says live.
const liveState = `document.querySelector('[data-conn]').dataset.state === 'live'`

// snapshotJS is what a person sees change: every value of the dashboard's
// cards and the charts' lines.
const snapshotJS = `[...document.querySelectorAll('[data-f],polyline')].map(e => e.textContent + (e.getAttribute('points') || '')).join('|')`

func TestBrowser(t *testing.T) {
	chromium := findChromium(t)
	args := []string{"--heartbeat", "2s", "--publish-token", "e2e-publish-token-0123"}
	base, stop := startServer(t, args...)
	if _, body := get(t, base+"/"); !strings.Contains(body, `data-testid="dashboard"`) {
		t.Fatal("GET / is not the dashboard: cmd/opsdash/serve.go must call pages.Register(app, reg, log) (see internal/pages)")
	}
	eventually(t, "ready", func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })
	b := newBrowser(t, chromium)
	ctx := b.ctx
	outer := t // the restarted server lives as long as the whole test

	t.Run("first paint has values", func(t *testing.T) {
		navigate(t, ctx, base+"/")
		// Right after load, before any update could have been applied, the
		// server-rendered values are there.
		usage := eval[string](t, ctx, `document.querySelector('[data-testid=cpu-usage]').textContent`)
		if !strings.HasSuffix(usage, "%") || usage == "–" {
			t.Errorf("CPU usage on first paint = %q", usage)
		}
		if got := eval[string](t, ctx, `document.querySelector('[data-testid=mem-used]').textContent`); !strings.HasSuffix(got, "iB") {
			t.Errorf("memory used on first paint = %q", got)
		}
		// Timing for docs (ms after navigation start): the first load in a
		// fresh browser, then a reload with the assets cached.
		for _, load := range []string{"first load", "reload"} {
			if load == "reload" {
				navigate(t, ctx, base+"/")
			}
			// first-paint and first-contentful-paint are separate entries that
			// can arrive apart on a busy machine: wait for the one we read.
			waitJS(t, ctx, "the first contentful paint entry", `performance.getEntriesByName('first-contentful-paint').length > 0`)
			t.Logf("%s: %s", load, eval[string](t, ctx, pageTimingJS))
		}
	})

	t.Run("values change within about two intervals", func(t *testing.T) {
		waitJS(t, ctx, "the connection to go live", liveState)
		before := eval[string](t, ctx, snapshotJS)
		took := waitJS(t, ctx, "a value to change", snapshotJS+` !== `+jsString(before))
		t.Logf("a live update changed the page %v after it went live (interval 1s)", took.Round(time.Millisecond))
		// The chart history arrived: the CPU line spans minutes, not one point.
		waitJS(t, ctx, "the CPU chart to draw", `document.querySelector('[data-chart=cpu] polyline').getAttribute('points').split(' ').length >= 2`)
		// The on-demand process table started because the page subscribed.
		waitJS(t, ctx, "the process table", `document.querySelectorAll('[data-testid=proc-rows] > tr[data-key]').length > 0`)
	})

	t.Run("the CPU card's parts add up to busy", func(t *testing.T) {
		// Every share the cpu topic publishes is on the card, and the six
		// parts of busy sum to the busy figure as shown (each rounded to
		// 0.1: at most 0.35 apart); busy, iowait and idle make 100.
		navigate(t, ctx, base+"/") // its own page: not whatever an earlier subtest left
		_, body := get(t, base+"/api/v1/topics/testhost.cpu")
		var topic struct{ Data map[string]float64 }
		if err := json.Unmarshal([]byte(body), &topic); err != nil {
			t.Fatal(err)
		}
		var fields []string
		for k := range topic.Data {
			if strings.HasSuffix(k, "_pct") {
				fields = append(fields, k)
			}
		}
		if len(fields) < 8 {
			t.Fatalf("testhost.cpu has the shares %v", fields)
		}
		card := `document.querySelector('[data-testid=card-cpu]')`
		shown := eval[[]string](t, ctx, `[...`+card+`.querySelectorAll(':scope > [data-f], :scope > * [data-f]')].filter(e => !e.closest('.sub')).map(e => e.dataset.f)`)
		for _, f := range fields {
			if !slices.Contains(shown, f) {
				t.Errorf("the CPU card does not show %s (it shows %v)", f, shown)
			}
		}
		got := eval[struct{ Busy, Parts, Rest float64 }](t, ctx, `(() => { const c = `+card+`, n = e => parseFloat(e.textContent);
			return {busy: n(c.querySelector('[data-f=usage_pct]')),
				parts: [...c.querySelectorAll('[data-testid=cpu-busy-parts] [data-f]')].reduce((s, e) => s + n(e), 0),
				rest: [...c.querySelectorAll('[data-testid=cpu-not-busy] [data-f]')].reduce((s, e) => s + n(e), 0)}; })()`)
		if math.Abs(got.Parts-got.Busy) > 0.35 || math.Abs(got.Busy+got.Rest-100) > 0.25 {
			t.Errorf("busy %.1f%%, its parts sum to %.1f%%, iowait + idle %.1f%%: they do not add up", got.Busy, got.Parts, got.Rest)
		}
		if n := eval[int](t, ctx, `document.querySelectorAll('[data-testid=cpu-busy-parts] [data-f]').length`); n != 6 {
			t.Errorf("%d parts of busy, want user, system, nice, irq, softirq, steal", n)
		}
		// A line at 100% (or 0) is drawn whole, a few pixels inside the
		// chart, not cut by its top (bottom) edge.
		edges := eval[[][]float64](t, ctx, `[...document.querySelectorAll('svg[data-chart]')].map(svg => {
			const m = svg.getScreenCTM(), r = svg.getBoundingClientRect();
			return [new DOMPoint(0, -100).matrixTransform(m).y - r.top, r.bottom - new DOMPoint(0, 0).matrixTransform(m).y]; })`)
		for _, e := range edges {
			if e[0] < 2 || e[1] < 2 {
				t.Errorf("a chart's 100%% line is %.1f px below its top edge and its 0 line %.1f px above its bottom: want at least 2 px", e[0], e[1])
			}
		}
	})

	t.Run("process table switches order", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`[data-testid=procs-by-mem]`))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the memory order", `document.querySelector('[data-testid=proc-rows]').dataset.list === 'by_mem' && location.search === '?procs=mem'`)
		rss := eval[[]string](t, ctx, `[...document.querySelectorAll('[data-testid=proc-rows] > tr[data-key] [data-f=rss_bytes]')].map(e => e.textContent)`)
		if len(rss) == 0 {
			t.Fatal("no processes by memory")
		}
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`[data-testid=procs-by-cpu]`))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the CPU order", `document.querySelector('[data-testid=proc-rows]').dataset.list === 'by_cpu'`)
	})

	t.Run("formatting agrees with the server", func(t *testing.T) {
		navigate(t, ctx, base+"/") // its own page: not whatever an earlier subtest left
		raw, err := os.ReadFile(filepath.Join("..", "..", "views", "testdata", "format_cases.json"))
		if err != nil {
			t.Fatal(err)
		}
		var cases []struct {
			Field, Fn, Want string
			Value           float64
		}
		if err := json.Unmarshal(raw, &cases); err != nil {
			t.Fatal(err)
		}
		got := eval[[]string](t, ctx, `(`+string(raw)+`).map(c => c.fn === 'interval' ? opsdash.fmtInterval(c.value) : c.fn === 'time' ? opsdash.fmtTime(c.value) : opsdash.fmt(c.field, c.value))`)
		for i, c := range cases {
			if got[i] != c.Want {
				t.Errorf("app.js %s%s(%v) = %q, views (Go) says %q", c.Fn, c.Field, c.Value, got[i], c.Want)
			}
		}
	})

	t.Run("reconnects after a restart", func(t *testing.T) {
		addr := strings.TrimPrefix(base, "http://")
		if code := stop(); code != 0 {
			t.Fatalf("server exit code %d", code)
		}
		waitJS(t, ctx, "the page to notice", `document.querySelector('[data-conn]').dataset.state === 'reconnecting'`)
		waitJS(t, ctx, "the CPU card to go stale after 3 intervals", `document.querySelector('[data-testid=card-cpu]').dataset.state === 'stale' && document.querySelector('[data-testid=card-cpu] [data-badge]').textContent === 'stale'`)
		base2, _ := startServer(outer, append(args, "--listen", addr)...)
		if base2 != base {
			t.Fatalf("restarted on %s, want %s", base2, base)
		}
		took := waitJS(t, ctx, "the page to reconnect by itself", liveState)
		t.Logf("reconnected %v after the server came back", took.Round(time.Millisecond))
		// The new server process numbers from 1 again: its updates must still apply.
		waitJS(t, ctx, "the CPU card to be fresh again", `document.querySelector('[data-testid=card-cpu]').dataset.state === 'ok'`)
		before := eval[string](t, ctx, snapshotJS)
		waitJS(t, ctx, "values to change after the restart", snapshotJS+` !== `+jsString(before))
	})

	t.Run("a silent connection is dead after two heartbeats", func(t *testing.T) {
		// Through a proxy that can swallow every byte of the connections it
		// holds while keeping them open: the page hears nothing, must give
		// the socket up by its own heartbeat and connect again.
		px := newBlackholeProxy(t, strings.TrimPrefix(base, "http://"))
		tab := b.tab(t)
		navigate(t, tab, "http://"+px.addr()+"/")
		waitJS(t, tab, "live through the proxy", liveState)
		px.swallow()
		took := waitJS(t, tab, "the page to give up the silent socket", `document.querySelector('[data-conn]').dataset.state === 'reconnecting'`)
		t.Logf("silent socket given up after %v (heartbeat 2s)", took.Round(time.Millisecond))
		waitJS(t, tab, "a new connection", liveState)
	})

	t.Run("explorer", func(t *testing.T) {
		publish := func(n int) {
			t.Helper()
			req, _ := http.NewRequest("POST", base+"/api/v1/publish", strings.NewReader(fmt.Sprintf(`{"topic":"e2e.orders","data":{"count":%d}}`, n)))
			req.Header.Set("Authorization", "Bearer e2e-publish-token-0123")
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				t.Fatalf("publish: %d %s", resp.StatusCode, body)
			}
		}
		navigate(t, ctx, base+"/topics")
		waitJS(t, ctx, "the explorer to go live", liveState)
		if n := eval[int](t, ctx, `document.querySelectorAll('[data-testid=topic-rows] > tr[data-topic]').length`); n < 10 {
			t.Errorf("%d topic rows", n)
		}
		// A topic that appears after the page loaded gets its row, live.
		publish(1)
		row := `document.querySelector('[data-testid=topic-rows] > tr[data-topic="e2e.orders"]')`
		waitJS(t, ctx, "the new topic's row", row+` && `+row+`.querySelector('[data-json]').textContent === '{"count":1}'`)
		publish(2)
		waitJS(t, ctx, "the row to update", row+`.querySelector('[data-json]').textContent === '{"count":2}'`)
		if got := eval[string](t, ctx, row+`.querySelector('[data-iv]').textContent`); got != "on publish" {
			t.Errorf("published topic interval %q", got)
		}

		// Filtering is a plain GET form.
		if err := chromedp.Do(ctx,
			chromedp.SetValue(chromedp.CSS(`#pattern`), "*.cpu"),
			chromedp.Submit(chromedp.CSS(`#pattern`)),
		); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the filtered list", `location.search === '?pattern=*.cpu' && [...document.querySelectorAll('[data-testid=topic-rows] > tr[data-topic]')].map(r => r.dataset.topic).join() === 'testhost.cpu'`)

		// One topic's page shows the raw frames as they arrive.
		navigate(t, ctx, base+"/topics/e2e.orders")
		waitJS(t, ctx, "the topic page to go live", liveState)
		publish(3)
		waitJS(t, ctx, "the frame", `[...document.querySelectorAll('[data-testid=frames] li')].some(li => JSON.parse(li.textContent).data.count === 3)`)
		waitJS(t, ctx, "the latest value", `document.querySelector('[data-testid=latest]').textContent.includes('"count": 3')`)
	})

	t.Run("readable without JavaScript", func(t *testing.T) {
		tab := b.tab(t)
		if err := chromedp.Do(tab, chromedp.Func(func(ctx context.Context, tt *chromedp.Target) error {
			_, err := cdp.Call(ctx, tt, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
			return err
		})); err != nil {
			t.Fatal(err)
		}
		navigate(t, tab, base+"/")
		if got := eval[string](t, tab, `document.querySelector('[data-testid=cpu-usage]').textContent`); !strings.HasSuffix(got, "%") {
			t.Errorf("CPU usage without JavaScript = %q", got)
		}
		if got := eval[string](t, tab, `document.querySelector('[data-testid=conn]').textContent.trim()`); !strings.HasPrefix(got, "snapshot") {
			t.Errorf("connection state without JavaScript = %q", got)
		}
		if n := eval[int](t, tab, `document.querySelectorAll('[data-testid=cores] > li[data-key]').length`); n == 0 {
			t.Error("no per-core bars without JavaScript")
		}
	})

	t.Run("screenshots", func(t *testing.T) {
		dir := screenshotDir(t)
		if os.Getenv("OPSDASH_SCREENSHOTS") != "" {
			// Pictures for the docs: let the charts fill first.
			t.Log("waiting for 4.5 minutes of chart history")
			navigate(t, ctx, base+"/")
			waitJSFor(t, ctx, "4.5 minutes of CPU history", `+document.querySelector('[data-chart=cpu] polyline').getAttribute('points').split(',')[0] <= 30`, 6*time.Minute)
		}
		shots := []struct {
			file, path string
			view       shotView
		}{
			{"dashboard.png", "/", shotView{width: 1280, height: 900, scheme: "light"}},
			{"dashboard-dark.png", "/", shotView{width: 1280, height: 900, scheme: "dark"}},
			{"dashboard-phone.png", "/", shotView{width: 390, height: 844, mobile: true, scheme: "light"}},
			{"dashboard-phone-dark.png", "/", shotView{width: 390, height: 844, mobile: true, scheme: "dark"}},
			{"topics.png", "/topics", shotView{width: 1280, height: 900, scheme: "light"}},
			{"topics-phone-dark.png", "/topics", shotView{width: 390, height: 844, mobile: true, scheme: "dark"}},
		}
		for _, s := range shots {
			tab := b.viewport(t, s.view)
			navigate(t, tab, base+s.path)
			waitJS(t, tab, "live", liveState)
			if s.path == "/" {
				waitJS(t, tab, "charts and processes", `[...document.querySelectorAll('[data-chart] polyline')].every(p => p.getAttribute('points').split(' ').length >= 2) && document.querySelector('[data-testid=card-procs]').dataset.state === 'ok'`)
			}
			shoot(t, tab, filepath.Join(dir, s.file))
		}
		t.Logf("screenshots in %s", dir)
	})

	b.logConsole(t)
	for _, p := range b.problems() {
		t.Error(p)
	}
}

// TestBrowserLogin: when the server refuses the page (401), the script cannot
// read the refused handshake's status, asks /api/v1/topics and shows the
// login. A stand-in server plays the part until opsdash has authentication.
func TestBrowserLogin(t *testing.T) {
	chromium := findChromium(t)
	reg := stream.NewRegistry(stream.RegistryConfig{Host: "testhost"})
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	pages.Register(app, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	unauthorized := func(c *fiber.Ctx) error {
		return c.Status(fiber.StatusUnauthorized).JSON(fiber.Map{"error": fiber.Map{"code": "unauthorized", "message": "sign in"}})
	}
	app.Get("/ws", unauthorized)
	app.Get("/api/v1/topics", unauthorized)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- app.Listener(ln) }()
	t.Cleanup(func() {
		if err := app.Shutdown(); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil && !errors.Is(err, net.ErrClosed) {
			t.Error(err)
		}
	})

	b := newBrowser(t, chromium)
	navigate(t, b.ctx, "http://"+ln.Addr().String()+"/")
	waitJS(t, b.ctx, "the login", `!document.querySelector('[data-testid=login]').hidden && document.querySelector('[data-conn]').dataset.state === 'login required'`)
	if got := eval[string](t, b.ctx, `document.activeElement.id`); got != "login-token" {
		t.Errorf("focus on %q, want the token field", got)
	}
	for _, p := range b.problems() {
		t.Error(p)
	}
}

// blackholeProxy forwards TCP connections to a target; swallow makes every
// connection open at that moment drop all bytes in both directions while
// staying open (a dead network path); later connections work normally.
type blackholeProxy struct {
	ln net.Listener
	mu sync.Mutex
	// conns are the open connections with their "swallowing" flag.
	conns map[net.Conn]*atomic.Bool
	wg    sync.WaitGroup
}

func newBlackholeProxy(t *testing.T, target string) *blackholeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackholeProxy{ln: ln, conns: map[net.Conn]*atomic.Bool{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			dead := new(atomic.Bool)
			p.mu.Lock()
			p.conns[c], p.conns[s] = dead, dead
			p.mu.Unlock()
			p.wg.Add(2)
			go p.pipe(c, s, dead)
			go p.pipe(s, c, dead)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close() // ends both pipes of every pair
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *blackholeProxy) addr() string { return p.ln.Addr().String() }

// pipe copies from src to dst until either ends, dropping the bytes while dead.
func (p *blackholeProxy) pipe(src, dst net.Conn, dead *atomic.Bool) {
	defer p.wg.Done()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !dead.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// swallow silences every connection open now.
func (p *blackholeProxy) swallow() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, dead := range p.conns {
		dead.Store(true)
	}
}

// screenshotDir is where screenshots go: $OPSDASH_SCREENSHOTS, or a
// temporary directory.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("OPSDASH_SCREENSHOTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// shotView is the window a screenshot is taken in.
type shotView struct {
	suffix        string // of the file name, for the views of TestBrowserStates
	width, height int64
	mobile        bool
	scheme        string // prefers-color-scheme: light or dark
}

// viewport opens a tab with the view's size, device and colour scheme,
// closed when the (sub)test ends.
func (b *browser) viewport(t *testing.T, v shotView) context.Context {
	t.Helper()
	tab := b.tab(t)
	opts := []chromedp.EmulateViewportOption{}
	if v.mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulatePortrait)
	}
	if err := chromedp.Do(tab,
		chromedp.EmulateViewport(v.width, v.height, opts...),
		chromedp.Func(func(ctx context.Context, tt *chromedp.Target) error {
			_, err := cdp.Call(ctx, tt, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: v.scheme}},
			})
			return err
		}),
	); err != nil {
		t.Fatal(err)
	}
	return tab
}

// shoot writes a full-page screenshot of tab to file, after checking that
// the page is no wider than its window.
func shoot(t *testing.T, tab context.Context, file string) {
	t.Helper()
	if over := eval[int](t, tab, `document.documentElement.scrollWidth - window.innerWidth`); over > 0 {
		t.Errorf("%s: the page is %d px wider than the window", filepath.Base(file), over)
	}
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
