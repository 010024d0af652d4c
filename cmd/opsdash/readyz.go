package main

import (
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
)

// The server's own readiness, GET /readyz (not to be confused with
// healthcheck.go, the `opsdash healthcheck` client that asks it).

// readiness is what /readyz asks the collectors (a *collectors.Scheduler).
type readiness interface {
	// Ready reports whether every always-on collector has finished a
	// first run.
	Ready() bool
	// Stalled reports whether, at now, the collectors have stopped making
	// progress: no always-on collector has finished a run within three of
	// its intervals. One stuck collector among working ones is not a stall.
	Stalled(now time.Time) bool
}

// readyzHandler answers GET /readyz: 200 "ready", or 503 with the reason
// ("draining", "collectors starting", "collectors stalled"). Draining comes
// first: once shutdown has begun a load balancer must stop sending new
// clients here, whatever the collectors say.
func readyzHandler(draining *atomic.Bool, sched readiness) fiber.Handler {
	return func(c *fiber.Ctx) error {
		switch {
		case draining.Load():
			return c.Status(fiber.StatusServiceUnavailable).SendString("draining")
		case !sched.Ready():
			return c.Status(fiber.StatusServiceUnavailable).SendString("collectors starting")
		case sched.Stalled(time.Now()):
			return c.Status(fiber.StatusServiceUnavailable).SendString("collectors stalled")
		}
		return c.SendString("ready")
	}
}
