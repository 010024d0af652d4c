package collectors

import (
	"context"
	"math"
	"sync"
	"time"
)

// Rates from counters.
//
// The kernel reports I/O as counters that only grow (bytes read, packets
// received, ticks of CPU time). A rate is the difference between two
// readings divided by the time between them. Two things make a plain
// subtraction wrong:
//
//   - Wrap: a counter kept in 32 bits (32-bit kernels, some NIC drivers)
//     starts over at 0 after 2^32-1; a 64-bit one after 2^64-1.
//   - Reset: the device was re-created (an interface deleted and added, a
//     disk re-attached) or the host rebooted; the counter starts over from 0
//     at an arbitrary point.
//
// Both show up as a reading below the previous one. A wrap is only believed
// when the distance it implies is small: less than a quarter of the
// counter's range (2^30 for a counter that was within 32 bits, 2^62
// otherwise). Anything else is a reset, and the new reading becomes the
// baseline with no rate for that interval, rather than a negative or absurd
// one. The price is a missed interval when a 32-bit counter really wraps by
// more than 2^30 in one interval (1 GiB/s of a 32-bit byte counter sampled
// once a second), which no longer happens on 64-bit kernels.

// wrapLimit32 and wrapLimit64 bound the distance a wrap may imply.
const (
	wrapLimit32 = 1 << 30
	wrapLimit64 = 1 << 62
)

// counterDelta returns how far a monotonically increasing counter moved from
// prev to cur, allowing for a 32- or 64-bit wrap. ok is false when cur is
// below prev in a way that is not a plausible wrap: the counter was reset.
func counterDelta(prev, cur uint64) (delta uint64, ok bool) {
	if cur >= prev {
		return cur - prev, true
	}
	if prev <= math.MaxUint32 {
		// Within 32 bits: could be a 32-bit counter that wrapped. Both
		// values fit in 32 bits, so this cannot overflow.
		d := (math.MaxUint32 - prev) + cur + 1
		return d, d < wrapLimit32
	}
	d := cur - prev // modulo 2^64: the distance of a 64-bit wrap
	return d, d < wrapLimit64
}

// ratesPerSecond writes (cur[i]-prev[i]) / elapsed, per second, into out for
// every counter. It returns false, leaving out unspecified, when elapsed is
// not positive or any counter was reset (see counterDelta): a reset of one
// counter of a device means the device's counters started over, so none of
// its rates over this interval can be trusted. prev, cur and out have the
// same length.
func ratesPerSecond(prev, cur []uint64, elapsed time.Duration, out []float64) bool {
	if elapsed <= 0 {
		return false
	}
	secs := elapsed.Seconds()
	for i := range cur {
		d, ok := counterDelta(prev[i], cur[i])
		if !ok {
			return false
		}
		out[i] = float64(d) / secs
	}
	return true
}

// maxCounters is the most counters one key can track: enough for a network
// interface (bytes, packets, errors and drops, each in and out).
const maxCounters = 8

// counterReading is one key's previous reading.
type counterReading struct {
	at    time.Time
	v     [maxCounters]uint64
	n     uint8
	round uint32 // the round in which the key was last observed
}

// counterRates keeps the previous reading of each key's counters (per disk,
// per interface, per process) and turns each new reading into per-second
// rates. It forgets keys that were not observed in a round, so its memory
// follows the current set of keys, not every interface or process ever seen.
//
// Use: observe every key of one collection, then call endRound. Not safe for
// concurrent use.
type counterRates[K comparable] struct {
	prev  map[K]counterReading
	round uint32
}

func newCounterRates[K comparable]() *counterRates[K] {
	return &counterRates[K]{prev: make(map[K]counterReading)}
}

// observe records cur (at most maxCounters values) as key's reading taken at
// time at. When key has a previous reading with the same number of counters,
// at is later than it, and no counter was reset, it writes the per-second
// rates since that reading into out (len(out) >= len(cur)) and returns true.
// Otherwise (first reading of the key, reset, clock not advanced) it returns
// false; either way cur becomes the key's baseline.
func (c *counterRates[K]) observe(key K, at time.Time, cur []uint64, out []float64) bool {
	if len(cur) > maxCounters {
		panic("collectors: counterRates.observe: too many counters")
	}
	old, seen := c.prev[key]
	next := counterReading{at: at, n: uint8(len(cur)), round: c.round}
	copy(next.v[:], cur)
	c.prev[key] = next
	if !seen || int(old.n) != len(cur) {
		return false
	}
	// time.Time.Sub uses the monotonic clock when both readings carry it,
	// so a wall-clock step does not produce a negative or huge interval.
	return ratesPerSecond(old.v[:old.n], cur, at.Sub(old.at), out)
}

// endRound forgets every key that was not observed since the previous
// endRound (an interface that was deleted, a process that exited).
func (c *counterRates[K]) endRound() {
	for k, r := range c.prev {
		if r.round != c.round {
			delete(c.prev, k)
		}
	}
	c.round++
}

// len reports how many keys are remembered.
func (c *counterRates[K]) len() int { return len(c.prev) }

// round2dp rounds x to two decimal places, which is all a dashboard shows,
// and keeps payloads short ("1234.57" rather than "1234.5678901234").
func round2dp(x float64) float64 {
	return math.Round(x*100) / 100
}

// clampPct bounds a percentage to 0..100. Ratios of two counters sampled at
// slightly different instants (I/O time against wall time) can overshoot.
func clampPct(x float64) float64 {
	switch {
	case x < 0 || math.IsNaN(x):
		return 0
	case x > 100:
		return 100
	}
	return x
}

// minRateWindow is the shortest interval a rate is computed over: the first
// run after start waits for it when the baseline taken at construction is
// younger, so that the first values are not noise over a few milliseconds
// (where one packet looks like a flood).
const minRateWindow = 200 * time.Millisecond

// rateTopic is what the collectors of one topic of counter rates (disk.io,
// net.io) share: the previous reading of each device's counters, a baseline
// read at construction so that the first run already has rates, a wait on
// that first run while the baseline is younger than minRateWindow, and no
// sample until a reading has one before it. Embedded, it is the collector's
// Collect.
type rateTopic[T any] struct {
	topic string
	// sample reads the counters at now, passes each device's through
	// rates.observe and returns the payload of the devices that had a
	// rate. It runs with mu held, so the collector's own caches may rely
	// on it.
	sample func(ctx context.Context, now time.Time, rates *counterRates[string]) (T, error)

	mu       sync.Mutex
	rates    *counterRates[string]
	lastRead time.Time
	// youngBaseline is set while the only reading is the one taken at
	// construction.
	youngBaseline bool
}

// startRates sets up t for topic and reads the baseline. Best effort: if the
// read fails, the first Collect takes the baseline instead.
func (t *rateTopic[T]) startRates(topic string, sample func(context.Context, time.Time, *counterRates[string]) (T, error)) {
	t.topic, t.sample, t.rates = topic, sample, newCounterRates[string]()
	if _, err := t.read(context.Background(), time.Now()); err == nil {
		t.youngBaseline = true
	}
}

// Collect reads the counters and reports rates since the previous reading.
// A device seen for the first time has no rate yet and appears from the
// next run on.
func (t *rateTopic[T]) Collect(ctx context.Context) ([]Sample, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.youngBaseline {
		// The baseline from construction may be only milliseconds
		// old: give the first rates a meaningful window.
		if wait := minRateWindow - time.Since(t.lastRead); wait > 0 {
			if err := sleepOrDone(ctx, wait); err != nil {
				return nil, err
			}
		}
		t.youngBaseline = false
	}
	now := time.Now()
	data, err := t.read(ctx, now)
	if err != nil {
		return nil, err
	}
	if data == nil {
		return nil, nil // only a baseline so far
	}
	return []Sample{{Topic: t.topic, Time: now, Data: *data}}, nil
}

// read reads the counters at now and returns the rates, or nil when there
// was no earlier reading. t.mu is held (or t is not shared yet).
func (t *rateTopic[T]) read(ctx context.Context, now time.Time) (*T, error) {
	data, err := t.sample(ctx, now, t.rates)
	if err != nil {
		return nil, err
	}
	t.rates.endRound()
	hadBaseline := !t.lastRead.IsZero()
	t.lastRead = now
	if !hadBaseline {
		return nil, nil
	}
	return &data, nil
}
