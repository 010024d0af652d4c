package auth

import (
	"sync"
	"time"

	"github.com/opsdash/opsdash/stream/httpapi"
	"github.com/opsdash/opsdash/stream/ratelimit"
)

// failureLimiter is a token bucket per client address for presented
// tokens: an attempt takes one, a right token gives it back, so only wrong
// ones use the budget up. Taking before checking (rather than counting
// after) means parallel attempts cannot all slip through a full bucket.
type failureLimiter struct {
	limit ratelimit.Limit
	max   int

	mu      sync.Mutex
	buckets map[string]*ratelimit.Bucket
	// pruned is when prune last scanned the table: at most once a second,
	// so that a full table (many addresses at once) costs a new address
	// one eviction, not a scan of every bucket.
	pruned time.Time
}

func newFailureLimiter(burst int, every time.Duration, max int) *failureLimiter {
	return &failureLimiter{limit: ratelimit.Every(every, burst), max: max, buckets: make(map[string]*ratelimit.Bucket)}
}

// take spends one attempt of key at now; when none is left it returns
// false and how long until one is.
func (l *failureLimiter) take(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.max {
			l.prune(now)
		}
		b = new(ratelimit.Bucket)
		l.buckets[key] = b
	}
	return b.Take(l.limit, now)
}

// refund gives back the attempt of a right token; a full bucket is
// forgotten, so clients that only send right tokens cost no memory.
func (l *failureLimiter) refund(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.buckets[key]; b != nil && b.Refund(l.limit, now) {
		delete(l.buckets, key)
	}
}

// prune forgets the buckets that have refilled, and an arbitrary one when
// all are in use (many addresses at once: each keeps its own limit only
// while the table has room). The caller holds mu.
func (l *failureLimiter) prune(now time.Time) {
	if now.Sub(l.pruned) >= time.Second {
		l.pruned = now
		for k, b := range l.buckets {
			if b.Full(l.limit, now) {
				delete(l.buckets, k)
			}
		}
	}
	if len(l.buckets) >= l.max {
		for k := range l.buckets {
			delete(l.buckets, k)
			break
		}
	}
}

// limitKey is the limiter's key for a client address: an IPv6 client by
// its /64 (httpapi.ClientKey, which the per-IP connection limit counts
// too), so that walking through its addresses buys no extra attempts.
func limitKey(ip string) string { return httpapi.ClientKey(ip) }
