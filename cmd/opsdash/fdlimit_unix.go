//go:build unix

package main

import "syscall"

// raiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit (Go's
// runtime does so too at start on Linux; doing it here says so, and covers
// the other systems) and returns the soft limit in force, 0 when unknown.
func raiseFileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = raised.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			lim = raised
		}
	}
	if lim.Cur >= 1<<62 { // RLIM_INFINITY: no limit to keep below
		return 0
	}
	return uint64(lim.Cur)
}
