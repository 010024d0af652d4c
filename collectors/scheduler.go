package collectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Observer is told about every finished run of every collector, e.g. to feed
// Prometheus counters and histograms. It is called from the collector's
// goroutine and must not block.
type Observer interface {
	// CollectorRun reports one run: how long it took and its error (nil on
	// success). A run that timed out is reported at its deadline, with took
	// equal to the timeout and an error that says so.
	CollectorRun(name string, took time.Duration, err error)
}

// SchedulerConfig configures a Scheduler.
type SchedulerConfig struct {
	// Sink receives every sample. Required. When it also implements
	// Tracker, every topic is declared when Run starts and topic health is
	// reported through SetStatus.
	Sink Sink
	// Logger receives state changes (a collector starts failing or
	// recovers). nil means slog.Default().
	Logger *slog.Logger
	// Timeout returns the per-run timeout for a collector with the given
	// interval. nil means DefaultTimeout.
	Timeout func(interval time.Duration) time.Duration
	// Observer, when set, is told about every run.
	Observer Observer
}

// DefaultTimeout is the per-run timeout used when SchedulerConfig.Timeout is
// nil: the collector's interval, but at least 1 s and at most 5 s. A run that
// outlives its interval has already missed a tick; the 1 s floor leaves very
// short intervals room for a first run (cpu waits ~200 ms for its first
// sample), and the 5 s cap keeps a slow collector (host, 60 s) from hiding a
// hang for a minute.
func DefaultTimeout(interval time.Duration) time.Duration {
	return min(max(interval, time.Second), 5*time.Second)
}

const (
	// defaultInterval replaces a non-positive collector interval.
	defaultInterval = time.Second
	// maxFirstDelay bounds the stagger offset of a collector's first run, so
	// that every always-on topic has a value within about a second of start.
	maxFirstDelay = time.Second
	// shutdownGrace is how long Run waits, once its context ends, for a run
	// in progress to notice its cancelled context and return.
	shutdownGrace = time.Second
	// stallIntervals is how many intervals without a finished run make a
	// collector count as stalled (see Stalled).
	stallIntervals = 3
)

// Scheduler runs collectors, each in its own goroutine on its own interval,
// and hands their samples to a Sink.
//
// Ticks are staggered: the always-on collectors' first runs are spread over
// the first second (each within its own interval), and later ticks keep
// that phase. Every run is bounded by a timeout. A collector that errors,
// panics or times out has its topics marked failing; the others are not
// affected. A collector whose topics are all on-demand (TopicInfo.OnDemand)
// runs only while SetDemand says someone subscribes to one of them.
type Scheduler struct {
	sink    Sink
	tracker Tracker // nil when sink does not implement Tracker
	log     *slog.Logger
	obs     Observer

	runners  []*runner
	byTopic  map[string]*runner // on-demand topic -> its runner; read-only after NewScheduler
	alwaysOn int32              // number of always-on runners

	firstDone atomic.Int32 // always-on runners that finished a first run
	started   atomic.Bool  // Run was called
	running   atomic.Bool  // Run is running
}

// NewScheduler returns a Scheduler for cs. It panics if cfg.Sink is nil.
// Run starts it.
//
// A collector is on-demand when every topic it declares is OnDemand; a
// collector that mixes on-demand and always-on topics runs always, because
// its always-on topics need it.
func NewScheduler(cfg SchedulerConfig, cs ...Collector) *Scheduler {
	if cfg.Sink == nil {
		panic("collectors: NewScheduler needs a Sink")
	}
	s := &Scheduler{
		sink:    cfg.Sink,
		log:     cfg.Logger,
		obs:     cfg.Observer,
		byTopic: make(map[string]*runner),
	}
	if t, ok := cfg.Sink.(Tracker); ok {
		s.tracker = t
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	timeout := cfg.Timeout
	if timeout == nil {
		timeout = DefaultTimeout
	}

	var intervals []time.Duration
	for _, c := range cs {
		interval := c.Interval()
		if interval <= 0 {
			interval = defaultInterval
		}
		topics := c.Topics()
		r := &runner{
			s:        s,
			c:        c,
			name:     c.Name(),
			interval: interval,
			timeout:  timeout(interval),
			topics:   topics,
			onDemand: len(topics) > 0,
			demand:   make(map[string]bool),
			wake:     make(chan struct{}, 1),
			status:   make(map[string]string),
			log:      s.log.With("collector", c.Name()),
		}
		if r.timeout <= 0 {
			r.timeout = DefaultTimeout(interval)
		}
		for _, t := range topics {
			r.onDemand = r.onDemand && t.OnDemand
		}
		if r.onDemand {
			for _, t := range topics {
				s.byTopic[t.Name] = r
			}
		} else {
			s.alwaysOn++
			intervals = append(intervals, interval)
		}
		s.runners = append(s.runners, r)
	}
	offsets := staggerOffsets(intervals)
	i := 0
	for _, r := range s.runners {
		if !r.onDemand {
			r.offset = offsets[i]
			i++
		}
	}
	return s
}

// Run declares every topic (when the Sink is a Tracker), then runs each
// collector in its own goroutine until ctx ends. It returns nil after all of
// its goroutines have returned, or an error at once if Run was called before.
//
// When ctx ends, a run in progress gets up to a second to notice its
// cancelled context; a run stuck in an uninterruptible call (a statfs on a
// dead NFS mount) is abandoned: its goroutine ends when the call does, and
// its result is dropped.
func (s *Scheduler) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("collectors: Scheduler.Run called twice")
	}
	if s.tracker != nil {
		for _, r := range s.runners {
			for _, t := range r.topics {
				s.tracker.Declare(t)
			}
		}
	}
	start := time.Now()
	for _, r := range s.runners {
		r.lastDone.Store(start.UnixNano())
	}
	s.running.Store(true)
	defer s.running.Store(false)

	var wg sync.WaitGroup
	for _, r := range s.runners {
		wg.Go(func() { r.loop(ctx, start) })
	}
	wg.Wait()
	return nil
}

// SetDemand records whether anyone subscribes to topic, the full name of an
// on-demand topic. The registry calls it when the topic gains its first
// subscriber (true) and loses its last (false). An on-demand collector runs
// at once when the first of its topics is wanted and stops after the last
// is not. Calls for other topics are ignored. SetDemand is safe from any
// goroutine, before or during Run, and never blocks beyond a short lock.
func (s *Scheduler) SetDemand(topic string, subscribed bool) {
	r := s.byTopic[topic]
	if r == nil {
		return
	}
	r.mu.Lock()
	if subscribed {
		if len(r.demand) == 0 {
			r.epoch++
		}
		r.demand[topic] = true
	} else {
		delete(r.demand, topic)
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default: // a wake-up is already pending; the loop rereads the demand
	}
}

// Ready reports whether every always-on collector has finished a first run,
// successful or not (a timed-out run counts). On-demand collectors are not
// waited for. With no always-on collector it is true at once.
func (s *Scheduler) Ready() bool {
	return s.firstDone.Load() >= s.alwaysOn
}

// Stalled reports whether the scheduler has stopped making progress: while
// Run runs, no always-on collector has finished a run (successfully, with
// an error, or by timing out) within the last three of its own intervals,
// measured from the last finished run or from Run's start. One stuck
// collector does not make the scheduler stalled as long as others finish
// runs; a wedged scheduler does. It is false before Run, after Run
// returned, and when there is no always-on collector.
func (s *Scheduler) Stalled(now time.Time) bool {
	if !s.running.Load() || s.alwaysOn == 0 {
		return false
	}
	for _, r := range s.runners {
		if r.onDemand {
			continue
		}
		last := time.Unix(0, r.lastDone.Load())
		if now.Sub(last) <= stallIntervals*r.interval {
			return false
		}
	}
	return true
}

// staggerOffsets spreads the first runs of n collectors: the i-th starts at
// i/n of min(its interval, maxFirstDelay). Collectors sharing an interval
// thus tick at evenly spaced phases, and every first run happens within
// the first second.
func staggerOffsets(intervals []time.Duration) []time.Duration {
	n := int64(len(intervals))
	out := make([]time.Duration, len(intervals))
	for i, iv := range intervals {
		window := min(iv, maxFirstDelay)
		out[i] = time.Duration(int64(window) * int64(i) / n)
	}
	return out
}

// nextTick returns the first tick of the schedule prev, prev+interval,
// prev+2*interval, ... that lies after now. A run that overran its interval
// skips the ticks it missed instead of firing them in a burst, and the
// collector keeps its phase.
func nextTick(prev time.Time, interval time.Duration, now time.Time) time.Time {
	next := prev.Add(interval)
	if next.After(now) {
		return next
	}
	missed := now.Sub(prev) / interval
	return prev.Add((missed + 1) * interval)
}

// runResult is what one Collect call produced.
type runResult struct {
	samples []Sample
	err     error
}

// panicError is a recovered panic from Collect. Its message is shown to users
// as the topics' error; the stack goes to the log.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// timeoutError is a run that did not finish within its timeout.
type timeoutError struct{ after time.Duration }

func (t *timeoutError) Error() string { return fmt.Sprintf("timed out after %s", t.after) }

// runner drives one collector.
type runner struct {
	s        *Scheduler
	c        Collector
	name     string
	interval time.Duration
	timeout  time.Duration
	offset   time.Duration // first-run delay of an always-on collector
	topics   []TopicInfo
	onDemand bool
	log      *slog.Logger

	mu     sync.Mutex
	demand map[string]bool // on-demand topics someone subscribes to
	// epoch counts the times demand went from none to some. The loop runs
	// at once when it changed, even if it never saw the demand drop (an
	// unsubscribe and resubscribe between two of its wake-ups).
	epoch uint64
	wake  chan struct{} // one-slot signal: demand changed

	// Used only by the runner's goroutine.
	inflight     <-chan runResult  // a timed-out run still in progress
	status       map[string]string // topic -> "" (ok) or error; absent = not reported yet
	failing      bool
	failedRuns   int
	failingSince time.Time

	// Read by other goroutines.
	finished atomic.Bool  // a first run has finished
	lastDone atomic.Int64 // unix nanos of the last finished run, or of Run's start
}

// wanted reports whether someone subscribes to one of the runner's topics,
// and the demand epoch.
func (r *runner) wanted() (bool, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.demand) > 0, r.epoch
}

// loop runs the collector on its schedule until ctx ends.
func (r *runner) loop(ctx context.Context, start time.Time) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()

	var next, lastRun time.Time
	var seenEpoch uint64
	active := !r.onDemand
	if active {
		next = start.Add(r.offset)
		timer.Reset(time.Until(next))
	}
	for {
		if r.onDemand {
			switch wanted, epoch := r.wanted(); {
			case wanted && (!active || epoch != seenEpoch):
				// The first subscriber wants a value now, not in an
				// interval; but demand that comes and goes (a viewer
				// toggling proc.top) never runs the collector more often
				// than its interval: the next run is one interval after
				// the last, or now if that is past.
				active, seenEpoch = true, epoch
				next = time.Now()
				if due := lastRun.Add(r.interval); !lastRun.IsZero() && due.After(next) {
					next = due
				}
				timer.Reset(time.Until(next))
			case !wanted && active:
				active = false
				timer.Stop()
				r.log.Debug("on-demand collector idle")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
			continue
		case <-timer.C:
		}
		lastRun = time.Now()
		r.runOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		next = nextTick(next, r.interval, time.Now())
		timer.Reset(time.Until(next))
	}
}

// runOnce runs Collect once, bounded by the timeout, and records the outcome.
func (r *runner) runOnce(ctx context.Context) {
	if r.inflight != nil {
		select {
		case <-r.inflight:
			// The timed-out run has ended; its late result is stale.
			r.inflight = nil
		default:
			// Still stuck: never run a collector twice at once. The topics
			// stay failing with the timeout error.
			return
		}
	}

	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, r.timeout)
	done := make(chan runResult, 1) // buffered: a late run must not block
	go func() {
		defer cancel()
		samples, err := safeCollect(rctx, r.c)
		done <- runResult{samples, err}
	}()

	deadline := time.NewTimer(r.timeout)
	defer deadline.Stop()
	select {
	case res := <-done:
		if res.err != nil && errors.Is(rctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			// The collector gave up at its deadline: report it as what it is.
			res.err = &timeoutError{r.timeout}
		}
		if ctx.Err() != nil {
			return // shutting down: the result may be a cancellation
		}
		r.finish(time.Since(start), res.samples, res.err)
	case <-deadline.C:
		r.inflight = done
		r.finish(r.timeout, nil, &timeoutError{r.timeout})
	case <-ctx.Done():
		grace := time.NewTimer(shutdownGrace)
		defer grace.Stop()
		select {
		case <-done:
		case <-grace.C:
		}
	}
}

// safeCollect calls c.Collect and turns a panic into an error.
func safeCollect(ctx context.Context, c Collector) (samples []Sample, err error) {
	defer func() {
		if p := recover(); p != nil {
			samples, err = nil, &panicError{value: p, stack: debug.Stack()}
		}
	}()
	return c.Collect(ctx)
}

// finish records a run's outcome: observer, topic statuses, state-change
// logs, samples. A run that returns samples together with an error publishes
// them; topics that got a sample are ok, the others fail with the error.
func (r *runner) finish(took time.Duration, samples []Sample, err error) {
	if r.s.obs != nil {
		r.s.obs.CollectorRun(r.name, took, err)
	}
	now := time.Now()

	var produced map[string]bool
	if err != nil && len(samples) > 0 {
		produced = make(map[string]bool, len(samples))
		for _, smp := range samples {
			produced[smp.Topic] = true
		}
	}
	for _, t := range r.topics {
		terr := err
		if produced[t.Name] {
			terr = nil
		}
		r.setStatus(t.Name, terr)
	}
	r.logTransition(now, err)
	for i := range samples {
		if samples[i].Time.IsZero() {
			samples[i].Time = now
		}
	}
	if b, ok := r.s.sink.(BatchSink); ok && len(samples) > 1 {
		b.PublishBatch(samples)
	} else {
		for _, smp := range samples {
			r.s.sink.Publish(smp)
		}
	}

	r.lastDone.Store(now.UnixNano())
	if r.finished.CompareAndSwap(false, true) && !r.onDemand {
		r.s.firstDone.Add(1)
	}
}

// setStatus tells the Tracker about topic's health when it changed: first
// report, ok <-> failing, or a different error message.
func (r *runner) setStatus(topic string, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if old, known := r.status[topic]; known && old == msg {
		return
	}
	r.status[topic] = msg
	if r.s.tracker != nil {
		r.s.tracker.SetStatus(topic, err)
	}
}

// logTransition logs when the collector starts failing or recovers, not once
// per failing run.
func (r *runner) logTransition(now time.Time, err error) {
	switch {
	case err != nil && !r.failing:
		r.failing, r.failedRuns, r.failingSince = true, 1, now
		attrs := []any{"error", err.Error()}
		if p, ok := errors.AsType[*panicError](err); ok {
			attrs = append(attrs, "stack", string(p.stack))
		}
		r.log.Warn("collector failing", attrs...)
	case err != nil:
		r.failedRuns++
	case r.failing:
		r.log.Info("collector recovered",
			"failed_runs", r.failedRuns,
			"failing_for", now.Sub(r.failingSince).Round(time.Millisecond).String())
		r.failing, r.failedRuns = false, 0
	}
}
