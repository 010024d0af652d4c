package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
)

// CulpritSource is the record of who was on top each second that
// GET /api/v1/culprits answers from: a single host's culprit sampler, or
// in a fleet the agent of the host asked for.
type CulpritSource interface {
	// Culprits returns host's second kept nearest to at (its newest when
	// at is zero). An error wrapping collectors.ErrNoCulprits means none
	// is kept near at, or host is not one this server knows; any other
	// means the record cannot be reached now.
	Culprits(ctx context.Context, host string, at time.Time) (collectors.CulpritSecond, error)
}

// culpritsWait bounds how long an answer may take (a fleet asks the
// host's agent over NATS).
const culpritsWait = 3 * time.Second

// culpritsBody is the 200 answer of GET /api/v1/culprits.
type culpritsBody struct {
	Host string `json:"host"`
	// At is the time asked for, TS the second answering it (Unix ms).
	At int64 `json:"at"`
	TS int64 `json:"ts"`
	// OldestTS and NewestTS bound the record kept.
	OldestTS int64           `json:"oldest_ts"`
	NewestTS int64           `json:"newest_ts"`
	Culprits json.RawMessage `json:"culprits"`
}

// handleCulprits serves GET /api/v1/culprits?host=H&at=T: the top
// processes and workloads of host H (this server's host without it) in the
// second nearest to T (Unix milliseconds, or RFC 3339), the newest second
// without "at". 400 bad_request for an unreadable H or T, 404 not_found
// when no second near T is kept (the answer says which are), the host is
// unknown or the sampler is not running, 503 unavailable when a fleet
// host's agent does not answer.
func (s *Server) handleCulprits(c *fiber.Ctx) error {
	src := s.cfg.Culprits
	if src == nil {
		return WriteError(c, fiber.StatusNotFound, "not_found", "the culprit sampler is not running")
	}
	host := c.Query("host", s.reg.Host())
	if !stream.ValidTopic(host) || strings.Contains(host, ".") {
		return WriteError(c, fiber.StatusBadRequest, stream.CodeBadRequest,
			`"host" must be a host id (one token of a-z, 0-9, _ and -), got `+strconv.Quote(host))
	}
	var at time.Time
	if q := c.Query("at"); q != "" {
		t, err := parseAt(q)
		if err != nil {
			return WriteError(c, fiber.StatusBadRequest, stream.CodeBadRequest,
				`"at" must be Unix milliseconds or an RFC 3339 time, got `+strconv.Quote(q))
		}
		at = t
	}
	ctx, cancel := context.WithTimeout(context.Background(), culpritsWait)
	defer cancel()
	sec, err := src.Culprits(ctx, host, at)
	switch {
	case errors.Is(err, collectors.ErrNoCulprits):
		return WriteError(c, fiber.StatusNotFound, "not_found", err.Error())
	case err != nil:
		return WriteError(c, fiber.StatusServiceUnavailable, "unavailable", err.Error())
	}
	if at.IsZero() {
		at = sec.TS
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(culpritsBody{
		Host: host, At: at.UnixMilli(), TS: sec.TS.UnixMilli(),
		OldestTS: sec.Oldest.UnixMilli(), NewestTS: sec.Newest.UnixMilli(), Culprits: sec.Data,
	})
}

// parseAt reads a time as Unix milliseconds or RFC 3339.
func parseAt(q string) (time.Time, error) {
	if ms, err := strconv.ParseInt(q, 10, 64); err == nil {
		return time.UnixMilli(ms), nil
	}
	return time.Parse(time.RFC3339Nano, q)
}
