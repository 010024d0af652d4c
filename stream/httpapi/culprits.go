package httpapi

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/stream"
)

// CulpritSource is the record of who was on top each second that
// GET /api/v1/culprits answers from: collectors.CulpritSampler.
type CulpritSource interface {
	// CulpritsAt returns the second kept nearest to at, its time and its
	// JSON, false when none is near enough.
	CulpritsAt(at time.Time) (time.Time, json.RawMessage, bool)
	// CulpritsSpan returns the oldest and newest seconds kept, zero
	// times when none is.
	CulpritsSpan() (oldest, newest time.Time)
}

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

// handleCulprits serves GET /api/v1/culprits?at=T: the top processes and
// workloads of the second nearest to T (Unix milliseconds, or RFC 3339),
// the newest second without "at". 400 bad_request for an unreadable T,
// 404 not_found when no second near T is kept (the answer says which are)
// or the sampler is not running.
func (s *Server) handleCulprits(c *fiber.Ctx) error {
	src := s.cfg.Culprits
	if src == nil {
		return WriteError(c, fiber.StatusNotFound, "not_found", "the culprit sampler is not running")
	}
	oldest, newest := src.CulpritsSpan()
	at := newest
	if q := c.Query("at"); q != "" {
		t, err := parseAt(q)
		if err != nil {
			return WriteError(c, fiber.StatusBadRequest, stream.CodeBadRequest,
				`"at" must be Unix milliseconds or an RFC 3339 time, got `+strconv.Quote(q))
		}
		at = t
	}
	ts, data, ok := src.CulpritsAt(at)
	if !ok {
		msg := "no culprits recorded yet"
		if !newest.IsZero() {
			msg = fmt.Sprintf("no culprits recorded near %s; kept from %s to %s",
				at.UTC().Format(time.RFC3339), oldest.UTC().Format(time.RFC3339), newest.UTC().Format(time.RFC3339))
		}
		return WriteError(c, fiber.StatusNotFound, "not_found", msg)
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(culpritsBody{
		Host: s.reg.Host(), At: at.UnixMilli(), TS: ts.UnixMilli(),
		OldestTS: oldest.UnixMilli(), NewestTS: newest.UnixMilli(), Culprits: data,
	})
}

// parseAt reads a time as Unix milliseconds or RFC 3339.
func parseAt(q string) (time.Time, error) {
	if ms, err := strconv.ParseInt(q, 10, 64); err == nil {
		return time.UnixMilli(ms), nil
	}
	return time.Parse(time.RFC3339Nano, q)
}
