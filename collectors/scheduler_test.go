package collectors_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
)

// The helpers below carry a "core" prefix: other test files of this package
// are written at the same time and must not collide with them.

// coreWait is how long "eventually" checks wait: generous, for a loaded
// 2-core machine under -race.
const coreWait = 10 * time.Second

// coreWaitFor polls cond until it holds, failing the test after coreWait.
func coreWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(coreWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling a condition, not synchronising
	}
}

// coreSink is a Sink and a Tracker that records what it is told.
type coreSink struct {
	mu       sync.Mutex
	declared []collectors.TopicInfo
	samples  map[string][]collectors.Sample
	statuses map[string][]string // per topic, in order: "ok" or the error
}

func newCoreSink() *coreSink {
	return &coreSink{samples: map[string][]collectors.Sample{}, statuses: map[string][]string{}}
}

func (s *coreSink) Publish(smp collectors.Sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples[smp.Topic] = append(s.samples[smp.Topic], smp)
}

func (s *coreSink) Declare(t collectors.TopicInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.declared = append(s.declared, t)
}

func (s *coreSink) SetStatus(topic string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := "ok"
	if err != nil {
		st = err.Error()
	}
	s.statuses[topic] = append(s.statuses[topic], st)
}

func (s *coreSink) count(topic string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.samples[topic])
}

func (s *coreSink) statusLog(topic string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.statuses[topic])
}

func (s *coreSink) lastStatus(topic string) string {
	l := s.statusLog(topic)
	if len(l) == 0 {
		return ""
	}
	return l[len(l)-1]
}

func (s *coreSink) declaredNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, t := range s.declared {
		out = append(out, t.Name)
	}
	return out
}

// coreStub is a fake collector of one or more topics "h.<name>..." whose
// Collect calls fn (or returns one sample per topic when fn is nil).
type coreStub struct {
	name     string
	interval time.Duration
	topics   []collectors.TopicInfo
	fn       func(ctx context.Context) ([]collectors.Sample, error)

	calls     atomic.Int64
	active    atomic.Int64
	maxActive atomic.Int64

	mu    sync.Mutex
	times []time.Time // when each Collect started
}

func newCoreStub(name string, interval time.Duration, fn func(ctx context.Context) ([]collectors.Sample, error)) *coreStub {
	return &coreStub{
		name: name, interval: interval, fn: fn,
		topics: []collectors.TopicInfo{{Name: "h." + name, Interval: interval, Description: name}},
	}
}

// onDemand makes every topic of c on-demand, named "h.<name>.<suffix>"
// for each suffix (or "h.<name>" without suffixes).
func (c *coreStub) onDemand(suffixes ...string) *coreStub {
	if len(suffixes) > 0 {
		c.topics = nil
		for _, s := range suffixes {
			c.topics = append(c.topics, collectors.TopicInfo{Name: "h." + c.name + "." + s, Interval: c.interval})
		}
	}
	for i := range c.topics {
		c.topics[i].OnDemand = true
	}
	return c
}

func (c *coreStub) topic() string                  { return c.topics[0].Name }
func (c *coreStub) Name() string                   { return c.name }
func (c *coreStub) Interval() time.Duration        { return c.interval }
func (c *coreStub) Topics() []collectors.TopicInfo { return c.topics }
func (c *coreStub) callCount() int64               { return c.calls.Load() }
func (c *coreStub) Collect(ctx context.Context) ([]collectors.Sample, error) {
	c.mu.Lock()
	c.times = append(c.times, time.Now())
	c.mu.Unlock()
	c.calls.Add(1)
	n := c.active.Add(1)
	defer c.active.Add(-1)
	for {
		m := c.maxActive.Load()
		if n <= m || c.maxActive.CompareAndSwap(m, n) {
			break
		}
	}
	if c.fn != nil {
		return c.fn(ctx)
	}
	var out []collectors.Sample
	for _, t := range c.topics {
		out = append(out, collectors.Sample{Topic: t.Name, Time: time.Now(), Data: map[string]int{"n": 1}})
	}
	return out, nil
}

func (c *coreStub) firstCall() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.times) == 0 {
		return time.Time{}, false
	}
	return c.times[0], true
}

// coreObserver counts runs and errors per collector.
type coreObserver struct {
	mu       sync.Mutex
	runs     map[string]int
	errs     map[string][]string
	lastTook map[string]time.Duration
}

func newCoreObserver() *coreObserver {
	return &coreObserver{runs: map[string]int{}, errs: map[string][]string{}, lastTook: map[string]time.Duration{}}
}

func (o *coreObserver) CollectorRun(name string, took time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.runs[name]++
	o.lastTook[name] = took
	if err != nil {
		o.errs[name] = append(o.errs[name], err.Error())
	}
}

func (o *coreObserver) errCount(name string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.errs[name])
}

// coreLogBuffer is a goroutine-safe log destination.
type coreLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *coreLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the log lines that contain every one of subs.
func (b *coreLogBuffer) lines(subs ...string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for l := range strings.Lines(b.buf.String()) {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// coreStart runs s until the test ends (or until the returned stop is
// called), and fails the test if Run does not return after cancellation.
func coreStart(t *testing.T, s *collectors.Scheduler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(coreWait):
				t.Errorf("Run did not return %v after its context was cancelled", coreWait)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func sampleFor(topic string) []collectors.Sample {
	return []collectors.Sample{{Topic: topic, Time: time.Now(), Data: map[string]int{"n": 1}}}
}

func TestSchedulerIsolatesFailingAndPanickingCollectors(t *testing.T) {
	t.Parallel()
	var broken atomic.Bool
	broken.Store(true)
	healthy := newCoreStub("healthy", 20*time.Millisecond, nil)
	failing := newCoreStub("failing", 20*time.Millisecond, func(context.Context) ([]collectors.Sample, error) {
		if broken.Load() {
			return nil, errors.New("disk on fire")
		}
		return sampleFor("h.failing"), nil
	})
	panicky := newCoreStub("panicky", 20*time.Millisecond, func(context.Context) ([]collectors.Sample, error) {
		if broken.Load() {
			panic("boom")
		}
		return sampleFor("h.panicky"), nil
	})
	sink, obs, logs := newCoreSink(), newCoreObserver(), &coreLogBuffer{}
	s := collectors.NewScheduler(collectors.SchedulerConfig{
		Sink:     sink,
		Observer: obs,
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
	}, healthy, failing, panicky)
	coreStart(t, s)

	coreWaitFor(t, "several failing and panicking runs while the healthy one publishes", func() bool {
		return obs.errCount("failing") >= 5 && obs.errCount("panicky") >= 5 && sink.count("h.healthy") >= 10
	})
	if got := sink.declaredNames(); !slices.Equal(got, []string{"h.healthy", "h.failing", "h.panicky"}) {
		t.Errorf("declared topics = %v", got)
	}
	if n := sink.count("h.failing") + sink.count("h.panicky"); n != 0 {
		t.Errorf("failing collectors published %d samples", n)
	}
	// Statuses are reported on change only: one failing status for many
	// failing runs.
	if got := sink.statusLog("h.failing"); !slices.Equal(got, []string{"disk on fire"}) {
		t.Errorf("h.failing statuses = %q, want one failing status", got)
	}
	if got := sink.statusLog("h.panicky"); !slices.Equal(got, []string{"panic: boom"}) {
		t.Errorf("h.panicky statuses = %q, want one failing status", got)
	}
	if got := sink.statusLog("h.healthy"); !slices.Equal(got, []string{"ok"}) {
		t.Errorf("h.healthy statuses = %q, want [ok]", got)
	}

	broken.Store(false)
	coreWaitFor(t, "both collectors to recover", func() bool {
		return sink.count("h.failing") >= 2 && sink.count("h.panicky") >= 2
	})
	if got := sink.statusLog("h.failing"); !slices.Equal(got, []string{"disk on fire", "ok"}) {
		t.Errorf("h.failing statuses = %q, want failing then ok", got)
	}
	if got := sink.statusLog("h.panicky"); !slices.Equal(got, []string{"panic: boom", "ok"}) {
		t.Errorf("h.panicky statuses = %q, want failing then ok", got)
	}

	// Logs record the changes of state, not every failing run.
	for _, name := range []string{"failing", "panicky"} {
		if n := len(logs.lines("collector failing", "collector="+name)); n != 1 {
			t.Errorf("%d 'collector failing' lines for %s, want 1:\n%s", n, name, logs.lines())
		}
		if n := len(logs.lines("collector recovered", "collector="+name)); n != 1 {
			t.Errorf("%d 'collector recovered' lines for %s, want 1", n, name)
		}
	}
	if l := logs.lines("collector failing", "collector=panicky"); len(l) == 1 && !strings.Contains(l[0], "stack=") {
		t.Errorf("panic log line has no stack: %s", l[0])
	}
	if n := len(logs.lines("collector=healthy")); n != 0 {
		t.Errorf("healthy collector logged %d lines", n)
	}
}

func TestSchedulerTimesOutHangingCollector(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock)

	var first atomic.Bool
	first.Store(true)
	// hang's first run blocks like a statfs on a dead NFS mount: it ignores
	// its context until the test releases it.
	hang := newCoreStub("hang", 20*time.Millisecond, func(context.Context) ([]collectors.Sample, error) {
		if first.CompareAndSwap(true, false) {
			<-release
		}
		return sampleFor("h.hang"), nil
	})
	healthy := newCoreStub("healthy", 20*time.Millisecond, nil)
	sink, obs := newCoreSink(), newCoreObserver()
	s := collectors.NewScheduler(collectors.SchedulerConfig{
		Sink:     sink,
		Observer: obs,
		Timeout:  func(time.Duration) time.Duration { return 50 * time.Millisecond },
		Logger:   slog.New(slog.DiscardHandler),
	}, hang, healthy)
	coreStart(t, s)

	coreWaitFor(t, "the hanging collector to be marked failing", func() bool {
		return sink.lastStatus("h.hang") == "timed out after 50ms"
	})
	before := sink.count("h.healthy")
	coreWaitFor(t, "the healthy collector to keep publishing", func() bool {
		return sink.count("h.healthy") >= before+10
	})
	if n := hang.callCount(); n != 1 {
		t.Errorf("hanging collector was called %d times while its first run was stuck, want 1", n)
	}
	if obs.errCount("hang") != 1 {
		t.Errorf("observer saw %d errors for hang, want 1 (the timeout)", obs.errCount("hang"))
	}

	unblock()
	coreWaitFor(t, "the hanging collector to recover after its run ended", func() bool {
		return sink.lastStatus("h.hang") == "ok" && sink.count("h.hang") >= 1
	})
	if got := sink.statusLog("h.hang"); !slices.Equal(got, []string{"timed out after 50ms", "ok"}) {
		t.Errorf("h.hang statuses = %q", got)
	}
	if m := hang.maxActive.Load(); m != 1 {
		t.Errorf("up to %d runs of one collector at once, want 1", m)
	}
}

func TestSchedulerOnDemand(t *testing.T) {
	t.Parallel()
	clock := newCoreStub("clock", 20*time.Millisecond, nil)
	top := newCoreStub("top", 30*time.Millisecond, nil).onDemand()
	// slow's interval is an hour: only a run at subscribe time can deliver.
	slow := newCoreStub("slow", time.Hour, nil).onDemand()
	multi := newCoreStub("multi", 30*time.Millisecond, nil).onDemand("a", "b")
	sink := newCoreSink()
	s := collectors.NewScheduler(collectors.SchedulerConfig{Sink: sink, Logger: slog.New(slog.DiscardHandler)},
		clock, top, slow, multi)
	// Demand before Run starts is remembered.
	s.SetDemand("h.multi.a", true)
	coreStart(t, s)

	// afterTicks waits until the always-on clock collector ran n more
	// times: the test's measure of "a while" without sleeping.
	afterTicks := func(n int) {
		t.Helper()
		c0 := clock.callCount()
		coreWaitFor(t, "clock ticks", func() bool { return clock.callCount() >= c0+int64(n) })
	}

	afterTicks(5)
	if top.callCount() != 0 || slow.callCount() != 0 {
		t.Fatalf("on-demand collectors ran without subscribers: top %d, slow %d", top.callCount(), slow.callCount())
	}
	if !slices.Contains(sink.declaredNames(), "h.top") {
		t.Error("idle on-demand topic h.top was not declared")
	}
	coreWaitFor(t, "multi to run on demand set before Run", func() bool { return multi.callCount() >= 2 })

	s.SetDemand("h.slow", true)
	coreWaitFor(t, "a sample at once after the first subscribe", func() bool { return sink.count("h.slow") == 1 })

	s.SetDemand("h.top", true)
	coreWaitFor(t, "h.top to be collected periodically", func() bool { return sink.count("h.top") >= 3 })
	s.SetDemand("h.top", false)
	stopped := top.callCount()
	afterTicks(10)
	if n := top.callCount(); n > stopped+1 { // a run in progress may finish
		t.Errorf("h.top ran %d more times after its last subscriber left", n-stopped)
	}

	// Resubscribing after the interval has passed gives a sample at once
	// again (h.top's 30 ms are long over)...
	t0 := top.callCount()
	s.SetDemand("h.top", true)
	coreWaitFor(t, "a sample at once after resubscribing", func() bool { return top.callCount() > t0 })
	s.SetDemand("h.top", false)
	// ...but demand that comes and goes never runs a collector more often
	// than its interval: h.slow ran less than its hour ago, so however
	// often it is subscribed again, it is not run (subscribers get the
	// registry's latest value meanwhile).
	for range 20 {
		s.SetDemand("h.slow", false)
		s.SetDemand("h.slow", true)
		afterTicks(1)
	}
	afterTicks(5)
	if n := slow.callCount(); n != 1 {
		t.Errorf("h.slow (interval 1h) ran %d times while its demand flipped, want 1", n)
	}

	// A collector keeps running while any of its topics is wanted.
	s.SetDemand("h.multi.b", true)
	s.SetDemand("h.multi.a", false)
	m0 := multi.callCount()
	coreWaitFor(t, "multi to keep running for h.multi.b", func() bool { return multi.callCount() >= m0+3 })
	s.SetDemand("h.multi.b", false)
	m1 := multi.callCount()
	afterTicks(10)
	if n := multi.callCount(); n > m1+1 {
		t.Errorf("multi ran %d more times after its last topic lost demand", n-m1)
	}

	// Demand for topics that are not on-demand is ignored.
	s.SetDemand("h.clock", false)
	s.SetDemand("h.unknown", true)
	afterTicks(3)
}

func TestSchedulerStaggersFirstRuns(t *testing.T) {
	t.Parallel()
	const interval = 800 * time.Millisecond
	var stubs []collectors.Collector
	var cs []*coreStub
	for i := range 4 {
		c := newCoreStub(fmt.Sprintf("c%d", i), interval, nil)
		cs = append(cs, c)
		stubs = append(stubs, c)
	}
	s := collectors.NewScheduler(collectors.SchedulerConfig{Sink: newCoreSink(), Logger: slog.New(slog.DiscardHandler)}, stubs...)
	coreStart(t, s)
	coreWaitFor(t, "every first run", func() bool {
		for _, c := range cs {
			if c.callCount() == 0 {
				return false
			}
		}
		return true
	})
	var firsts []time.Time
	for _, c := range cs {
		ft, _ := c.firstCall()
		firsts = append(firsts, ft)
	}
	earliest := slices.MinFunc(firsts, func(a, b time.Time) int { return a.Compare(b) })
	latest := slices.MaxFunc(firsts, func(a, b time.Time) int { return a.Compare(b) })
	// Four collectors sharing an interval start at phases 0, 1/4, 2/4 and
	// 3/4 of it (600 ms apart end to end); unstaggered they would start
	// within a few milliseconds of each other.
	if spread := latest.Sub(earliest); spread < interval/4*3/2 {
		t.Errorf("first runs spread over %v, want at least %v", spread, interval/4*3/2)
	}
}

func TestSchedulerReadyAndStalled(t *testing.T) {
	t.Parallel()
	t.Run("ready after every always-on collector's first run", func(t *testing.T) {
		t.Parallel()
		healthy := newCoreStub("healthy", 20*time.Millisecond, nil)
		failing := newCoreStub("failing", 20*time.Millisecond, func(context.Context) ([]collectors.Sample, error) {
			return nil, errors.New("nope")
		})
		idle := newCoreStub("idle", 20*time.Millisecond, nil).onDemand()
		s := collectors.NewScheduler(collectors.SchedulerConfig{Sink: newCoreSink(), Logger: slog.New(slog.DiscardHandler)},
			healthy, failing, idle)
		if s.Ready() {
			t.Error("Ready before Run")
		}
		if s.Stalled(time.Now().Add(time.Hour)) {
			t.Error("Stalled before Run")
		}
		stop := coreStart(t, s)
		coreWaitFor(t, "Ready (a failed first run counts; on-demand is not waited for)", s.Ready)
		if s.Stalled(time.Now()) {
			t.Error("Stalled while collectors run")
		}
		if !s.Stalled(time.Now().Add(time.Hour)) {
			t.Error("not Stalled an hour after the last run")
		}
		stop()
		if s.Stalled(time.Now().Add(time.Hour)) {
			t.Error("Stalled after Run returned")
		}
	})
	t.Run("stalled when every collector is stuck", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		stuck := newCoreStub("stuck", 20*time.Millisecond, func(context.Context) ([]collectors.Sample, error) {
			<-release
			return nil, nil
		})
		s := collectors.NewScheduler(collectors.SchedulerConfig{
			Sink:    newCoreSink(),
			Logger:  slog.New(slog.DiscardHandler),
			Timeout: func(time.Duration) time.Duration { return 30 * time.Millisecond },
		}, stuck)
		coreStart(t, s)
		coreWaitFor(t, "Ready after the first run timed out", s.Ready)
		coreWaitFor(t, "Stalled", func() bool { return s.Stalled(time.Now()) })
	})
	t.Run("ready at once without always-on collectors", func(t *testing.T) {
		t.Parallel()
		s := collectors.NewScheduler(collectors.SchedulerConfig{Sink: newCoreSink()},
			newCoreStub("idle", time.Second, nil).onDemand())
		if !s.Ready() {
			t.Error("not Ready with only on-demand collectors")
		}
	})
}

// TestSchedulerRunReturnsWithoutLeaks is not parallel: it counts the
// process's goroutines.
func TestSchedulerRunReturnsWithoutLeaks(t *testing.T) {
	before := runtime.NumGoroutine()

	healthy := newCoreStub("healthy", 10*time.Millisecond, nil)
	failing := newCoreStub("failing", 10*time.Millisecond, func(context.Context) ([]collectors.Sample, error) {
		return nil, errors.New("nope")
	})
	panicky := newCoreStub("panicky", 10*time.Millisecond, func(context.Context) ([]collectors.Sample, error) {
		panic("boom")
	})
	// slowpoke honours its context, so cancellation ends its run.
	slowpoke := newCoreStub("slowpoke", 10*time.Millisecond, func(ctx context.Context) ([]collectors.Sample, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	top := newCoreStub("top", 10*time.Millisecond, nil).onDemand()
	s := collectors.NewScheduler(collectors.SchedulerConfig{
		Sink:    newCoreSink(),
		Logger:  slog.New(slog.DiscardHandler),
		Timeout: func(time.Duration) time.Duration { return time.Hour },
	}, healthy, failing, panicky, slowpoke, top)
	s.SetDemand("h.top", true)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	coreWaitFor(t, "runs of every collector", func() bool {
		return healthy.callCount() >= 3 && failing.callCount() >= 3 && panicky.callCount() >= 3 &&
			top.callCount() >= 3 && slowpoke.callCount() >= 1
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(coreWait):
		t.Fatal("Run did not return after cancellation")
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("second Run did not fail")
	}
	coreWaitFor(t, fmt.Sprintf("goroutines back to %d", before), func() bool {
		return runtime.NumGoroutine() <= before
	})
}

// batchSink records PublishBatch calls besides what coreSink records.
type batchSink struct {
	*coreSink
	mu      sync.Mutex
	batches [][]string
}

func (b *batchSink) PublishBatch(samples []collectors.Sample) {
	var topics []string
	for _, s := range samples {
		b.coreSink.Publish(s)
		topics = append(topics, s.Topic)
	}
	b.mu.Lock()
	b.batches = append(b.batches, topics)
	b.mu.Unlock()
}

// A run that produces several samples hands them to a BatchSink together.
func TestSchedulerPublishesARunAsOneBatch(t *testing.T) {
	sink := &batchSink{coreSink: newCoreSink()}
	c := newCoreStub("pair", 20*time.Millisecond, func(context.Context) ([]collectors.Sample, error) {
		return append(sampleFor("h.pair"), sampleFor("h.pair.more")...), nil
	})
	coreStart(t, collectors.NewScheduler(collectors.SchedulerConfig{Sink: sink}, c))
	coreWaitFor(t, "a batch", func() bool { sink.mu.Lock(); defer sink.mu.Unlock(); return len(sink.batches) > 0 })
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if got := sink.batches[0]; len(got) != 2 || got[0] != "h.pair" || got[1] != "h.pair.more" {
		t.Fatalf("first batch = %v, want [h.pair h.pair.more]", got)
	}
}
