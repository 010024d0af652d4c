package stream

import "time"

// Write latency, for RegistryConfig.WriteObserver. The writer loop brackets
// each Conn.WriteFrames call with writeStart and observeWrite. Without an
// observer neither reads the clock; with one, a write costs two clock reads
// and the observer's call, and no allocation.

// writeStart returns when a write begins, or the zero time when nobody
// observes writes.
func (r *Registry) writeStart() time.Time {
	if r.cfg.WriteObserver == nil {
		return time.Time{}
	}
	return time.Now()
}

// observeWrite reports a finished write of frames that began at start.
func (r *Registry) observeWrite(start time.Time, frames int) {
	if obs := r.cfg.WriteObserver; obs != nil {
		obs(time.Since(start), frames)
	}
}
