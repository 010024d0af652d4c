package stream

// batch holds the values of one batch publish until they are delivered.
type batch []batchValue

type batchValue struct {
	seq   uint64
	frame []byte
	subs  []route // sorted by Session.order (subscribersLocked)
}

// batchChunk is how many values of a batch are offered per pass: a
// session's share of a pass is a bitmask.
const batchChunk = 64

// deliver offers the batch session by session: each subscriber gets all of
// its values of the batch under one lock and its writer starts right
// after, so it sends them in one write, and writers on the other core get
// going while later sessions are still being offered to. (Offering value
// by value instead starts each writer at the first value, and every later
// one then costs a write system call of its own.)
//
// The values' route lists are all sorted by Session.order, so walking them
// side by side (a k-way merge) meets each session once, with its slot of
// every value it subscribes to at hand: no map from session to values, and
// nothing allocated per batch.
func (b batch) deliver() {
	var pos [batchChunk]int // per value: its next route
	var slots [batchChunk]*slot
	for start := 0; start < len(b); start += batchChunk {
		vals := b[start:min(start+batchChunk, len(b))]
		clear(pos[:])
		for {
			// The next session is the lowest order at the head of any list.
			var next *Session
			for i, v := range vals {
				if p := pos[i]; p < len(v.subs) && (next == nil || v.subs[p].s.order < next.order) {
					next = v.subs[p].s
				}
			}
			if next == nil {
				break
			}
			var mask uint64
			for i, v := range vals {
				if p := pos[i]; p < len(v.subs) && v.subs[p].s == next {
					mask |= 1 << i
					slots[i] = v.subs[p].slot
					pos[i]++
				}
			}
			next.offerBatch(vals, mask, &slots)
		}
	}
}
