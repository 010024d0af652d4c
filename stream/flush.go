package stream

import (
	"runtime"
	"sync"
	"time"
)

// Flush loops: who writes a session's pending output, and when.
//
// A registry has one flush loop per P (GOMAXPROCS when it is created), each
// owning a ready queue of sessions; a session belongs to one loop for its
// life. A publish hands its value to every loop's inbox and returns: its
// cost does not grow with the subscribers, it never waits for a write, and
// at most a handful of goroutines ever compete with it for the CPU (one
// writer goroutine per session let a single publish make 5,000 goroutines
// runnable, and the publisher waited behind all of them). The inbox keeps
// the newest value per topic (per topic and routes, see offer): a loop
// that is behind takes only that, and offers it to its own sessions'
// mailboxes at the start of its next round; a session that the offer finds
// idle joins the round.
//
// A session's turn (Session.turn) takes everything pending for it (replies,
// then the newest value of each pending topic, up to turnBytes) and hands
// it to Conn.WriteFrames in one call. Conns over sockets never block
// (NonBlockingConn): what the socket does not take is kept by the Conn, and
// the session is parked on a goroutine of its own (waitWritable) until the
// client has read it; meanwhile newer values conflate in its mailbox. So a
// client that stopped reading never holds a loop.
//
// The window: after a write the session stays out of the ready queue for
// RegistryConfig.FlushWindow, so values offered meanwhile leave together
// in one write when it ends, instead of one system call each. A session
// that has not written for a window is idle, and its first value goes at
// once. Replies skip the rest of a window, and a window never conflates:
// a value that would replace an unsent one keeps it instead (early.go). A
// loop keeps its sessions in
// their window in a FIFO: it writes sessions one after another and every
// window is equally long, so the FIFO is in order of the windows' ends.
//
// Pacing: with every P busy, Go's scheduler polls the network only from
// sysmon, every 10 ms, and a publisher's request (or a client's) waits
// that long to be noticed, and then for its turn. A loop that has been busy
// for busySlice pauses for yieldPause (yielder), which lets the P run what
// is runnable and poll the network at once. Under overload that costs a
// little throughput, which conflation absorbs (a client then gets fewer,
// newer values), never the publisher's rate.

// DefaultFlushWindow is RegistryConfig.FlushWindow's default: short next to
// the intervals of a dashboard's topics (1 s), so it only ever delays a
// session that receives more than 50 values a second, and long enough that
// such a session writes two or more values per system call (a topic at
// 100 Hz: two).
const DefaultFlushWindow = 20 * time.Millisecond

const (
	// turnBytes bounds the frame bytes one turn takes from a session (at
	// least one frame is taken, however large): what a Conn keeps unsent
	// is at most about this much. The rest waits, conflating, for the
	// session's next turn.
	turnBytes = 64 << 10
	// busySlice and yieldPause: see "Pacing" above.
	busySlice  = time.Millisecond
	yieldPause = 20 * time.Microsecond
)

// wstate is where a session's writing stands (guarded by Session.mu).
type wstate uint8

const (
	wIdle    wstate = iota // nothing pending, or pending and waiting for an offer to kick it
	wReady                 // on its loop's ready queue
	wWriting               // its loop is writing it
	wRecent                // in its window after a write (on its loop's recent FIFO)
	wParked                // its Conn holds unsent bytes; waitWritable runs
)

// flushSet is a registry's flush loops and their clock.
type flushSet struct {
	loops  []*flusher
	window int64 // FlushWindow in ns; 0: no window
	epoch  time.Time
	// now is the loops' and the max_hz clock, monotonic ns since epoch
	// (tests replace it).
	now func() int64
}

func (fs *flushSet) init(r *Registry, window time.Duration) {
	fs.epoch = time.Now()
	fs.now = func() int64 { return int64(time.Since(fs.epoch)) }
	fs.window = int64(max(window, 0))
	n := max(runtime.GOMAXPROCS(0), 1)
	fs.loops = make([]*flusher, n)
	for i := range fs.loops {
		fs.loops[i] = &flusher{r: r, wake: make(chan struct{}, 1)}
	}
}

// loopFor picks the flush loop of a session with order key order.
func (fs *flushSet) loopFor(order uint64) *flusher { return fs.loops[order%uint64(len(fs.loops))] }

// flusher is one flush loop. Its goroutine runs only while a session of
// the loop is ready or in its window, so an idle registry has none.
type flusher struct {
	r *Registry

	// mu guards what follows. A leaf: nothing else is locked while it is
	// held, and it is taken with no other lock held (a session is queued
	// after its Session.mu is released, a value after Registry.mu).
	mu      sync.Mutex
	ready   fifo[*Session]
	recent  fifo[recentEntry]
	inbox   map[*topic]int // topic → its newest value's index in values
	values  []loopValue    // published values not yet offered, in order
	running bool
	wake    chan struct{} // a session became ready while the loop waits
}

// loopValue is a published value on its way to the sessions: the topic's
// routes when it was published, and how many older values of the topic it
// replaced in an inbox (which its subscribers will never get).
type loopValue struct {
	t       *topic
	seq     uint64
	frame   []byte
	subs    []route
	skipped uint64
}

// offer hands published values to every flush loop's inbox. Each loop
// takes them under one lock, so values published together reach a session
// in the same round (one write).
//
// A value replaces the one of its topic waiting in the inbox only when
// both have the same routes: the replaced value then counts as dropped for
// exactly the sessions it was offered to (Stats: offered = sent + dropped).
// When the routes changed in between (a session subscribed or left), both
// stay, each offered to its own routes, and the mailboxes conflate them.
func (fs *flushSet) offer(vals ...loopValue) {
	for _, f := range fs.loops {
		f.mu.Lock()
		for _, v := range vals {
			i, ok := f.inbox[v.t]
			if ok && sameRoutes(f.values[i].subs, v.subs) {
				old := &f.values[i]
				if v.seq < old.seq { // overtaken by a concurrent publish: the older one loses
					old.skipped++
					continue
				}
				v.skipped = old.skipped + 1
				*old = v
				continue
			}
			if f.inbox == nil {
				f.inbox = make(map[*topic]int)
			}
			if !ok || v.seq > f.values[i].seq {
				f.inbox[v.t] = len(f.values) // later values of the topic merge into the newest
			}
			f.values = append(f.values, v)
		}
		start := !f.running
		f.running = true
		f.mu.Unlock()
		f.started(start)
	}
}

// sameRoutes reports whether a and b are the same route list: a topic's
// list is never modified, only replaced when its routes change
// (subscribersLocked), so the same list is the same routes.
func sameRoutes(a, b []route) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// recentEntry is a session in its window, which ends at due. seq tells a
// stale entry (the session wrote again since, for a reply) from the
// current one.
type recentEntry struct {
	s   *Session
	due int64
	seq uint32
}

// push puts a session that became ready on the queue and makes sure the
// loop runs.
func (f *flusher) push(s *Session) {
	f.mu.Lock()
	f.ready.push(s)
	start := !f.running
	f.running = true
	f.mu.Unlock()
	f.started(start)
}

// pushRecent starts a session's window (the loop's own goroutine only).
func (f *flusher) pushRecent(e recentEntry) {
	f.mu.Lock()
	f.recent.push(e)
	f.mu.Unlock()
}

// started starts the loop's goroutine, or wakes it.
func (f *flusher) started(start bool) {
	if start {
		go f.run()
		return
	}
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// run is the flush loop. Each round it takes the sessions whose window
// ended and every ready session, and gives each its turn; with nothing
// ready it sleeps until the next window ends, and it returns when no
// session of the loop is ready or in a window.
func (f *flusher) run() {
	fs := &f.r.flush
	var (
		work   []recentEntry // seq 0 and due 0: from the ready queue
		frames []Frame
		timer  *time.Timer
		pauses yielder
		values []loopValue
	)
	defer pauses.close()
	busySince := fs.now()
	for {
		f.mu.Lock()
		now := fs.now()
		for f.recent.len() > 0 && f.recent.peek().due <= now {
			work = append(work, f.recent.pop())
		}
		for n := f.ready.len(); n > 0; n-- {
			work = append(work, recentEntry{s: f.ready.pop()})
		}
		values, f.values = f.values, values[:0]
		clear(f.inbox)
		if len(work) == 0 && len(values) == 0 {
			if f.recent.len() == 0 {
				f.running = false
				f.mu.Unlock()
				return
			}
			wait := time.Duration(f.recent.peek().due - now)
			f.mu.Unlock()
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-f.wake:
				timer.Stop()
			case <-timer.C:
			}
			busySince = fs.now()
			continue
		}
		f.mu.Unlock()
		// Offer the published values to this loop's sessions; those it
		// finds idle join this round. (Sessions queued meanwhile are taken,
		// with everything else, at the top of the next round: the loop
		// exits only when it finds nothing there under one lock.)
		work = f.offerValues(values, work)
		clear(values)
		for i, e := range work {
			frames = e.s.turn(e, frames)
			work[i] = recentEntry{}
			if now := fs.now(); now-busySince >= int64(busySlice) {
				pauses.pause(yieldPause)
				busySince = fs.now()
			}
		}
		work = work[:0]
	}
}

// offerValues offers the values to this loop's sessions among their routes
// and returns work with the sessions that the offers made ready.
func (f *flusher) offerValues(values []loopValue, work []recentEntry) []recentEntry {
	for _, v := range values {
		for _, rt := range v.subs {
			if rt.f == f && rt.s.offerFromLoop(rt.slot, v.seq, v.frame, v.skipped) {
				work = append(work, recentEntry{s: rt.s})
			}
		}
	}
	return work
}

// fifo is a first-in first-out queue on a slice that reuses its space.
type fifo[T any] struct {
	buf  []T
	head int
}

func (q *fifo[T]) len() int { return len(q.buf) - q.head }

func (q *fifo[T]) push(v T) {
	if q.head > 0 && q.head >= len(q.buf)/2 {
		// Slide the live part down, so the slice does not grow forever.
		n := copy(q.buf, q.buf[q.head:])
		clear(q.buf[n:])
		q.buf, q.head = q.buf[:n], 0
	}
	q.buf = append(q.buf, v)
}

func (q *fifo[T]) peek() T { return q.buf[q.head] }

func (q *fifo[T]) pop() T {
	var zero T
	v := q.buf[q.head]
	q.buf[q.head] = zero
	q.head++
	if q.head == len(q.buf) {
		q.buf, q.head = q.buf[:0], 0
	}
	return v
}
