package main

import "github.com/opsdash/opsdash/collectors"

// The connection cap and the file descriptor limit. Every connection is a
// file descriptor; so are the files the collectors read, the listener and,
// in a fleet, the NATS connections. A process out of descriptors fails to
// accept (the listener backs off and retries, httpapi.AcceptListener) and
// fails to read /proc, so the cap on open connections is kept below the
// limit with a reserve for the rest.

// fdReserveMin and fdReserveDiv size the descriptors kept out of the
// connection cap for files, the listener and NATS: an eighth of the limit,
// and at least 64. The culprit sampler's held descriptors
// (collectors.CulpritFDs) are kept out too: it holds one per process, up
// to a quarter of the limit, all the time.
const (
	fdReserveMin = 64
	fdReserveDiv = 8
)

// openConnsCap returns the connection cap to use for the flag value want
// (0: no cap) under a soft descriptor limit of fdLimit (0: unknown), and
// whether it had to be lowered to fit.
func openConnsCap(want int, fdLimit uint64) (int, bool) {
	if fdLimit == 0 {
		return limitFlag(want), false
	}
	limit := int(min(fdLimit, 1<<30))
	fit := limit - max(fdReserveMin, limit/fdReserveDiv) - collectors.CulpritFDs(uint64(limit))
	fit = max(fit, 1)
	if want == 0 || want <= fit {
		return limitFlag(want), false
	}
	return fit, true
}
