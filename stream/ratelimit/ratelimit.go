// Package ratelimit holds the token bucket that opsdash's limits share: a
// connection's requests per second (stream.Session) and the wrong tokens
// one client address may present (cmd/opsdash/internal/auth).
//
// A Bucket is two words and has no constructor: its zero value is a full
// bucket, so a per-connection or per-address bucket costs nothing until it
// is used, and its Limit lives once in the owner's configuration rather
// than in every bucket.
package ratelimit

import "time"

// Limit is a bucket's shape: Rate tokens come back per second, up to
// Burst. A Rate of 0 or below means no limit (Take always succeeds).
type Limit struct {
	Rate  float64 // tokens per second
	Burst float64 // the bucket's size; at least 1 to let anything through
}

// Every returns the Limit that gives one token back per period d, up to
// burst.
func Every(d time.Duration, burst int) Limit {
	return Limit{Rate: float64(time.Second) / float64(d), Burst: float64(burst)}
}

// Bucket is a token bucket. The zero value is full. It is not safe for
// concurrent use: its owner holds a lock around it.
type Bucket struct {
	used float64   // tokens spent and not yet given back; 0 = full
	last time.Time // when used was last brought up to date
}

// refill brings the bucket up to date at now.
func (b *Bucket) refill(l Limit, now time.Time) {
	if !b.last.IsZero() {
		if el := now.Sub(b.last); el > 0 {
			b.used = max(0, b.used-el.Seconds()*l.Rate)
		}
	}
	if now.After(b.last) {
		b.last = now
	}
}

// Take spends one token at now. When none is left it returns false and
// how long until one is.
func (b *Bucket) Take(l Limit, now time.Time) (bool, time.Duration) {
	if l.Rate <= 0 {
		return true, 0
	}
	b.refill(l, now)
	if left := l.Burst - b.used; left < 1 {
		return false, time.Duration((1 - left) / l.Rate * float64(time.Second))
	}
	b.used++
	return true, 0
}

// Refund gives one token back at now (an attempt that turned out not to
// count) and reports whether the bucket is full again, so an owner keeping
// buckets per key can forget it.
func (b *Bucket) Refund(l Limit, now time.Time) (full bool) {
	b.refill(l, now)
	b.used = max(0, b.used-1)
	return b.used == 0
}

// Full reports whether the bucket has refilled completely at now.
func (b *Bucket) Full(l Limit, now time.Time) bool {
	b.refill(l, now)
	return b.used == 0
}
