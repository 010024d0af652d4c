//go:build linux

package stream

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// yielder pauses a busy flush loop for a few microseconds in a way that lets
// the Go scheduler poll the network (see "Pacing" in flush.go). A plain
// time.Sleep would do that too, but with nothing else to run the runtime
// then waits in epoll with a whole millisecond's resolution, so each pause
// of a loop with more work would cost up to 1 ms. Instead the loop waits
// for a timerfd through the runtime's poller: with nothing else to run,
// epoll returns when the timer fires, microseconds later.
type yielder struct {
	f  *os.File // the timerfd, opened on the first pause
	fd int
}

// pause waits about d, letting other goroutines and the network poller run.
func (y *yielder) pause(d time.Duration) {
	if y.f == nil {
		fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
		if err != nil {
			time.Sleep(d)
			return
		}
		y.fd, y.f = fd, os.NewFile(uintptr(fd), "opsdash-flush-pause")
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if err := unix.TimerfdSettime(y.fd, 0, &spec, nil); err != nil {
		time.Sleep(d)
		return
	}
	var buf [8]byte
	if _, err := y.f.Read(buf[:]); err != nil {
		time.Sleep(d)
	}
}

// close releases the timerfd (the loop is exiting).
func (y *yielder) close() {
	if y.f != nil {
		_ = y.f.Close()
		y.f = nil
	}
}
