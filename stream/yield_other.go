//go:build !linux

package stream

import "time"

// yielder pauses a busy flush loop (see yield_linux.go).
type yielder struct{}

func (y *yielder) pause(d time.Duration) { time.Sleep(d) }
func (y *yielder) close()                {}
