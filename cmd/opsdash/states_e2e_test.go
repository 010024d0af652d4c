package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/cmd/opsdash/internal/pages"
	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
	"github.com/opsdash/opsdash/stream/httpapi"
)

// TestBrowserStates shows every card and sub-card of the dashboard in each
// state a topic can be in besides ok (pending, failing, stale) in the real
// browser, checks what a person sees (the state, its words, borders that do
// not touch text) and takes screenshots of each (state-*.png, where
// TestBrowser puts its own).
//
// The states are produced, not painted on: pending and failing by the real
// scheduler, registry, pages and /ws running collectors that wrap this
// host's own (same topics, same cards) and never finish their first run,
// or fail; stale by a real opsdash process stopped with SIGSTOP.
func TestBrowserStates(t *testing.T) {
	chromium := findChromium(t)
	b := newBrowser(t, chromium)
	dir := screenshotDir(t)

	t.Run("pending", func(t *testing.T) {
		base := startStandIn(t, holdFirstRun)
		checkStates(t, b, base, "pending", func(string) string { return "waiting for first value" })
		shootStates(t, b, base, dir, "pending", everyState("pending"))
	})

	t.Run("failing", func(t *testing.T) {
		base := startStandIn(t, failEveryRun)
		checkStates(t, b, base, "failing", func(string) string { return "failing: " + errFailing.Error() })
		shootStates(t, b, base, dir, "failing", everyState("failing"))
	})

	t.Run("sub-cards failing in live cards", func(t *testing.T) {
		// Each collector's first topic is ok, the others (per core, swap)
		// fail: the scheduler's rule for a run that returns samples and
		// an error.
		base := startStandIn(t, failAllButFirst)
		tab := b.tab(t)
		navigate(t, tab, base+"/")
		waitJS(t, tab, "live cards with failing sub-cards", subsFailing)
		checkBorders(t, tab)
		shootStates(t, b, base, dir, "subs-failing", subsFailing)
	})

	t.Run("stale", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts an opsdash process; skipped with -short")
		}
		// Every collector at 1 s, so that every card (the host line's 60 s
		// included) goes stale within seconds of the stop.
		var iv []string
		for _, name := range collectors.Names() {
			iv = append(iv, name+"=1s")
		}
		cmd := exec.Command(os.Args[0], "serve", "--listen", "127.0.0.1:0", "--host-id", "testhost",
			"--log-format", "json", "--heartbeat", "2s", "--intervals", strings.Join(iv, ","))
		cmd.Env = []string{beOpsdash + "=1"}
		p := startProcess(t, cmd)
		base := "http://" + p.addr
		tabs := make([]context.Context, 0, len(stateShots))
		for _, s := range stateShots {
			tab := b.viewport(t, s)
			navigate(t, tab, base+"/")
			waitJS(t, tab, "every card live", liveState+` && `+everyState("ok"))
			tabs = append(tabs, tab)
		}
		if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.cmd.Process.Signal(syscall.SIGCONT) }) // let the kill and the pipe's reader finish
		for i, s := range stateShots {
			checkStatesIn(t, tabs[i], "stale", func(string) string { return "stale" })
			shoot(t, tabs[i], filepath.Join(dir, "state-stale"+s.suffix+".png"))
		}
	})

	for _, p := range b.problems() {
		t.Error(p)
	}
}

// standInMode makes a stand-in collector out of one of this host's.
type standInMode func(c collectors.Collector) collectors.Collector

// holdFirstRun never finishes a run: the topics stay pending. Its interval
// is a minute (as the host collector's), so that the page does not call
// them stale before three intervals have passed.
func holdFirstRun(c collectors.Collector) collectors.Collector {
	return &standIn{Collector: c, interval: time.Minute, collect: func(ctx context.Context) ([]collectors.Sample, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}
}

// failEveryRun fails every run with errFailing.
func failEveryRun(c collectors.Collector) collectors.Collector {
	return &standIn{Collector: c, collect: func(context.Context) ([]collectors.Sample, error) {
		return nil, errFailing
	}}
}

// failAllButFirst runs the real collector and keeps only its first topic's
// sample; the run's error fails the others.
func failAllButFirst(c collectors.Collector) collectors.Collector {
	first := c.Topics()[0].Name
	return &standIn{Collector: c, collect: func(ctx context.Context) ([]collectors.Sample, error) {
		all, err := c.Collect(ctx)
		var kept []collectors.Sample
		for _, s := range all {
			if s.Topic == first {
				kept = append(kept, s)
			}
		}
		if err == nil {
			err = errFailing
		}
		return kept, err
	}}
}

// errFailing is what a failing stand-in collector says: as long as a real
// error (a path and a reason), to show how a badge fits.
var errFailing = errors.New("open /host/proc/stat: permission denied (e2e test, failing on purpose)")

// standIn is a collector with another Collect (and optionally interval).
type standIn struct {
	collectors.Collector
	interval time.Duration // 0: the real collector's
	collect  func(context.Context) ([]collectors.Sample, error)
}

func (s *standIn) Collect(ctx context.Context) ([]collectors.Sample, error) { return s.collect(ctx) }

func (s *standIn) Interval() time.Duration {
	if s.interval > 0 {
		return s.interval
	}
	return s.Collector.Interval()
}

func (s *standIn) Topics() []collectors.TopicInfo {
	ts := s.Collector.Topics()
	if s.interval > 0 {
		for i := range ts {
			ts[i].Interval = s.interval
		}
	}
	return ts
}

// startStandIn serves the pages and /ws of a registry fed by the real
// scheduler running this host's collectors made over by mode, on loopback;
// it stops with the test. Host id "testhost".
func startStandIn(t *testing.T, mode standInMode) string {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := stream.NewRegistry(stream.RegistryConfig{Host: "testhost", Logger: log})
	var set []collectors.Collector
	for _, c := range collectors.Default(collectors.Config{HostID: "testhost", Logger: log}) {
		set = append(set, mode(c))
	}
	sched := collectors.NewScheduler(collectors.SchedulerConfig{Sink: reg, Logger: log,
		// A held run stays pending instead of timing out.
		Timeout: func(time.Duration) time.Duration { return time.Hour }}, set...)
	reg.OnDemand(sched.SetDemand)
	api := httpapi.New(httpapi.Config{Registry: reg, Logger: log})
	app := fiber.New(api.FiberConfig(fiber.Config{DisableStartupMessage: true}))
	pages.Register(app, reg, log)
	api.Register(app)

	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 3)
	go func() { _ = sched.Run(ctx); done <- struct{}{} }()
	go func() { reg.Run(ctx); done <- struct{}{} }()
	go func() { _ = app.Listener(ln); done <- struct{}{} }()
	t.Cleanup(func() {
		drain, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		_ = api.Drain(drain) // the page's /ws, which fasthttp does not track
		_ = app.ShutdownWithContext(drain)
		cancel()
		for range 3 {
			<-done
		}
	})
	return "http://" + ln.Addr().String()
}

// checkStates opens the dashboard at base in a new tab and checks it.
func checkStates(t *testing.T, b *browser, base, state string, badge func(topic string) string) {
	t.Helper()
	tab := b.tab(t)
	navigate(t, tab, base+"/")
	checkStatesIn(t, tab, state, badge)
}

// checkStatesIn waits until every card, sub-card and the host line of the
// dashboard in tab are in state, then checks that each says so in its
// badge (badge(topic)) and that no border touches text.
func checkStatesIn(t *testing.T, tab context.Context, state string, badge func(topic string) string) {
	t.Helper()
	others := `[...document.querySelectorAll('[data-topic][data-state]')].filter(e => e.dataset.state !== ` + jsString(state) + `).map(e => e.dataset.topic + ' ' + e.dataset.state)`
	for deadline := time.Now().Add(20 * time.Second); ; {
		left := eval[[]string](t, tab, others)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20s, not %s: %v", state, left)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronization
	}
	type card struct{ Topic, Kind, Badge string }
	cards := eval[[]card](t, tab, `[...document.querySelectorAll('[data-topic][data-state]')].map(e => ({topic: e.dataset.topic, kind: e.className.split(' ')[0], badge: (e.querySelector(':scope > header [data-badge], :scope > h3 [data-badge]') || {}).textContent || ''}))`)
	kinds := map[string]int{}
	for _, c := range cards {
		kinds[c.Kind]++
		if c.Kind == "hostinfo" {
			continue // the header's host line has no badge; the connection state speaks for it
		}
		if want := badge(c.Topic); c.Badge != want {
			t.Errorf("%s %s says %q, want %q", c.Kind, c.Topic, c.Badge, want)
		}
	}
	if kinds["card"] < 8 || kinds["sub"] < 2 {
		t.Errorf("%v: want every card (at least 8) and both sub-cards", kinds)
	}
	checkBorders(t, tab)
}

// checkBorders: on no card or sub-card does a border run along text (a side
// with a border has room inside it), and no badge sticks out of its card.
func checkBorders(t *testing.T, tab context.Context) {
	t.Helper()
	bad := eval[[]string](t, tab, `[...document.querySelectorAll('.card, .sub')].flatMap(e => {
		const cs = getComputedStyle(e), out = [];
		for (const side of ['top', 'right', 'bottom', 'left']) {
			const w = parseFloat(cs.getPropertyValue('border-' + side + '-width'));
			const style = cs.getPropertyValue('border-' + side + '-style');
			const pad = parseFloat(cs.getPropertyValue('padding-' + side));
			if (w > 0 && style !== 'none' && pad < 4) out.push(e.dataset.testid + ' ' + e.dataset.state + ': ' + style + ' ' + w + 'px border on the ' + side + ' with ' + pad + 'px padding');
		}
		const b = e.querySelector('[data-badge]:not([hidden])');
		if (b) {
			const r = b.getBoundingClientRect(), c = e.getBoundingClientRect();
			if (r.right > c.right + 0.5 || r.left < c.left - 0.5) out.push(e.dataset.testid + ': its badge sticks out');
		}
		return out;
	})`)
	for _, s := range bad {
		t.Error(s)
	}
}

// stateShots are the views each state is pictured in.
var stateShots = []shotView{
	{suffix: "", width: 1280, height: 900, scheme: "light"},
	{suffix: "-phone-dark", width: 390, height: 844, mobile: true, scheme: "dark"},
}

// everyState is a condition: every card, sub-card and the host line of
// the dashboard are in state.
func everyState(state string) string {
	all := `[...document.querySelectorAll('[data-topic][data-state]')]`
	return all + `.length > 0 && ` + all + `.every(e => e.dataset.state === ` + jsString(state) + `)`
}

// subsFailing is a condition: every sub-card fails inside a live card.
const subsFailing = `document.querySelectorAll('.sub[data-topic]').length > 0 && ` +
	`[...document.querySelectorAll('.sub[data-topic]')].every(s => s.dataset.state === 'failing' && s.closest('.card').dataset.state === 'ok')`

// shootStates takes the state-<name>*.png screenshots of the dashboard at
// base, each in a tab of its own once ready (a JavaScript condition) holds.
func shootStates(t *testing.T, b *browser, base, dir, name, ready string) {
	t.Helper()
	for _, s := range stateShots {
		tab := b.viewport(t, s)
		navigate(t, tab, base+"/")
		waitJS(t, tab, name, ready)
		shoot(t, tab, filepath.Join(dir, "state-"+name+s.suffix+".png"))
	}
}
