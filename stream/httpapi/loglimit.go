package httpapi

import (
	"sync"
	"time"
)

// Refusals (a foreign Origin, a foreign Host) are logged so that an
// operator sees them, but one client repeating a refused request must not
// be able to fill the disk: without a limit a single client wrote about 40
// MiB of log per second. logLimiter lets through the first line per client
// (ClientKey: an IPv6 client by its /64) and cause, then one per
// logEvery, each saying how many were held back since the last one.

// logEvery is how often, at most, a client's refusals of one cause are
// logged after the first.
const logEvery = time.Minute

// maxLogKeys bounds the limiter's table (plus the key the others share).
// When it is full of clients seen within logEvery (many addresses at
// once), the other clients' lines share one key, so the log still gets at
// most one line per logEvery for them.
const maxLogKeys = 4096

// otherClients is the key that clients share when the table is full.
const otherClients = "(other clients)"

type logKey struct{ client, cause string }

type logEntry struct {
	last time.Time
	held int // lines held back since last
}

// logLimiter decides which refusal lines get logged. The zero value is
// ready to use.
type logLimiter struct {
	mu     sync.Mutex
	seen   map[logKey]*logEntry
	pruned time.Time // the last pruneLocked: at most one a second, so a full table costs no scan per request
}

// allow reports whether to log a line for client (an IP address) and
// cause at now, and how many lines of theirs were held back before it.
func (l *logLimiter) allow(client, cause string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = make(map[logKey]*logEntry)
	}
	k := logKey{ClientKey(client), cause}
	e := l.seen[k]
	if e == nil {
		if len(l.seen) >= maxLogKeys && now.Sub(l.pruned) >= time.Second {
			l.pruned = now
			l.pruneLocked(now)
		}
		if len(l.seen) >= maxLogKeys {
			k.client = otherClients
			e = l.seen[k]
		}
		if e == nil {
			l.seen[k] = &logEntry{last: now}
			return true, 0
		}
	}
	if now.Sub(e.last) < logEvery {
		e.held++
		return false, 0
	}
	held := e.held
	e.last, e.held = now, 0
	return true, held
}

// pruneLocked forgets the clients whose last line is older than logEvery
// and that have nothing held back.
func (l *logLimiter) pruneLocked(now time.Time) {
	for k, e := range l.seen {
		if now.Sub(e.last) >= logEvery && e.held == 0 {
			delete(l.seen, k)
		}
	}
}
