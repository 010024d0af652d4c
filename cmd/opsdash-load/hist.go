package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram is a concurrent, fixed-size, log-linear histogram of
// non-negative durations in nanoseconds, in the spirit of HdrHistogram:
// every power of two is split into subBuckets linear buckets, so a recorded
// value is known to within 1/subBuckets (about 3%) whatever its magnitude.
// Memory is fixed (histShards × 15 KiB) however many values are recorded,
// which is what lets every client of a 10,000-client run record every
// message into one shared histogram.
//
// Recording is safe from many goroutines at once (atomic adds only); each
// recorder passes a shard key (its client id) so that goroutines running on
// different cores rarely touch the same cache lines: the load tool shares
// the machine with the server it measures, so its own cost matters.
type histogram struct {
	shards [histShards]histShard
}

type histShard struct {
	counts [numBuckets]atomic.Uint64
	max    atomic.Int64
}

const (
	histShards    = 16
	subBucketBits = 5
	subBuckets    = 1 << subBucketBits
	// Values up to 2^63 need (63-subBucketBits+1) exponents of subBuckets each.
	numBuckets = (64 - subBucketBits + 1) * subBuckets
)

// bucketOf maps v ≥ 0 to its bucket index. Values below subBuckets get a
// bucket each; above, the top subBucketBits+1 significant bits pick it.
func bucketOf(v int64) int {
	if v < subBuckets {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - subBucketBits - 1
	return (shift+1)*subBuckets + int(uint64(v)>>uint(shift)) - subBuckets
}

// bucketUpper is the largest value that falls into bucket i.
func bucketUpper(i int) int64 {
	if i < subBuckets {
		return int64(i)
	}
	shift := i/subBuckets - 1
	mant := int64(i%subBuckets + subBuckets)
	upper := (mant+1)<<uint(shift) - 1
	if upper < 0 { // top bucket overflows int64
		return math.MaxInt64
	}
	return upper
}

// Record adds one value (negative values, e.g. from a clock step, count as 0).
func (h *histogram) Record(v int64) { h.RecordAt(0, v) }

// RecordAt adds one value into the shard chosen by key.
func (h *histogram) RecordAt(key int, v int64) {
	if v < 0 {
		v = 0
	}
	s := &h.shards[uint(key)%histShards]
	s.counts[bucketOf(v)].Add(1)
	for {
		m := s.max.Load()
		if v <= m || s.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// reset forgets every recorded value (the start of a measurement window).
// Safe while others record: each counter is zeroed atomically, and a value
// recorded meanwhile counts or not.
func (h *histogram) reset() {
	for k := range h.shards {
		s := &h.shards[k]
		for i := range s.counts {
			s.counts[i].Store(0)
		}
		s.max.Store(0)
	}
}

// merged is a histogram's shards added up, for reading.
type merged struct {
	counts [numBuckets]uint64
	n      uint64
	max    int64
}

func (h *histogram) merge() *merged {
	m := &merged{}
	for k := range h.shards {
		s := &h.shards[k]
		for i := range s.counts {
			c := s.counts[i].Load()
			m.counts[i] += c
			m.n += c
		}
		m.max = max(m.max, s.max.Load())
	}
	return m
}

// quantile returns the smallest bucket bound at or below which at least a
// fraction q of the values lie (the highest value equivalent to the q-th
// quantile, never above the exact maximum). 0 when nothing was recorded.
func (m *merged) quantile(q float64) int64 {
	if m.n == 0 {
		return 0
	}
	want := max(uint64(math.Ceil(q*float64(m.n))), 1)
	var seen uint64
	for i, c := range m.counts {
		seen += c
		if seen >= want {
			return min(bucketUpper(i), m.max)
		}
	}
	return m.max
}

// Percentiles is a histogram's summary as reported, in milliseconds.
type Percentiles struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Summary returns h's percentiles in milliseconds.
func (h *histogram) Summary() Percentiles {
	m := h.merge()
	ms := func(ns int64) float64 { return float64(ns) / float64(time.Millisecond) }
	return Percentiles{
		Count: m.n,
		P50:   ms(m.quantile(0.50)),
		P90:   ms(m.quantile(0.90)),
		P99:   ms(m.quantile(0.99)),
		P999:  ms(m.quantile(0.999)),
		Max:   ms(m.max),
	}
}
