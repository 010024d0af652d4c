package main

import (
	"sync"
	"sync/atomic"
)

// sendLog is one topic's send-time table: when the request that carried
// each pub_seq started. Receivers read it to turn a received pub_seq into a
// latency, and latest into freshness. Seqs start at 1; entry 0 holds the
// time of a seq-0 warm-up, if any.
type sendLog struct {
	latest atomic.Uint64 // newest pub_seq whose request has started (0: none)

	mu   sync.RWMutex
	sent []int64 // sent[s]: when pub_seq s was sent (Unix ns)
}

// record notes that pub_seq seq was sent at ns. latest is stored after the
// table, so whoever sees latest ≥ seq finds seq's entry. A seq past the
// end fills the gap with ns (only lines lost between processes make one),
// keeping the table dense.
func (l *sendLog) record(seq uint64, ns int64) {
	l.mu.Lock()
	for uint64(len(l.sent)) < seq {
		l.sent = append(l.sent, ns)
	}
	if seq == uint64(len(l.sent)) {
		l.sent = append(l.sent, ns)
	} else {
		l.sent[seq] = ns
	}
	l.mu.Unlock()
	l.latest.Store(seq)
}

// at returns when pub_seq seq was sent, 0 if it was not recorded.
func (l *sendLog) at(seq uint64) int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if seq < uint64(len(l.sent)) {
		return l.sent[seq]
	}
	return 0
}

// table returns the whole table; the caller must only read entries up to a
// latest it loaded before (later appends may reallocate).
func (l *sendLog) table() []int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.sent
}
