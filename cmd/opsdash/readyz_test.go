package main

import (
	"io"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
)

// fakeReadiness is a scheduler in a chosen state; it records the time
// Stalled was asked about.
type fakeReadiness struct {
	ready, stalled bool
	askedAt        time.Time
}

func (f *fakeReadiness) Ready() bool { return f.ready }

func (f *fakeReadiness) Stalled(now time.Time) bool {
	f.askedAt = now
	return f.stalled
}

// askReadyz serves one GET /readyz through h.
func askReadyz(t *testing.T, h fiber.Handler) (int, string) {
	t.Helper()
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Get("/readyz", h)
	resp, err := app.Test(httptest.NewRequest("GET", "/readyz", nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestReadyz: /readyz says 503 "draining" as soon as shutdown begins, even
// with healthy collectors (a real drain is too quick for a client to see
// it), and otherwise reports the collectors' state.
func TestReadyz(t *testing.T) {
	for _, tc := range []struct {
		name                     string
		draining, ready, stalled bool
		wantCode                 int
		wantBody                 string
	}{
		{name: "ready", ready: true, wantCode: 200, wantBody: "ready"},
		{name: "starting", wantCode: 503, wantBody: "collectors starting"},
		{name: "stalled", ready: true, stalled: true, wantCode: 503, wantBody: "collectors stalled"},
		{name: "draining", draining: true, ready: true, wantCode: 503, wantBody: "draining"},
		{name: "draining while starting", draining: true, wantCode: 503, wantBody: "draining"},
		{name: "draining while stalled", draining: true, ready: true, stalled: true, wantCode: 503, wantBody: "draining"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var draining atomic.Bool
			draining.Store(tc.draining)
			code, body := askReadyz(t, readyzHandler(&draining, &fakeReadiness{ready: tc.ready, stalled: tc.stalled}))
			if code != tc.wantCode || body != tc.wantBody {
				t.Errorf("/readyz = %d %q, want %d %q", code, body, tc.wantCode, tc.wantBody)
			}
		})
	}
}

// TestReadyzFollowsDraining: the handler reads the flag on every request,
// so setting it (as serve does when shutdown begins) turns a ready server
// unready without re-registering anything; the stall check is asked about
// the time of the request.
func TestReadyzFollowsDraining(t *testing.T) {
	var draining atomic.Bool
	sched := &fakeReadiness{ready: true}
	h := readyzHandler(&draining, sched)

	before := time.Now()
	if code, body := askReadyz(t, h); code != 200 || body != "ready" {
		t.Fatalf("before draining: /readyz = %d %q, want 200 ready", code, body)
	}
	if sched.askedAt.Before(before) || sched.askedAt.After(time.Now()) {
		t.Errorf("Stalled asked about %v, not the time of the request (after %v)", sched.askedAt, before)
	}

	draining.Store(true)
	if code, body := askReadyz(t, h); code != 503 || body != "draining" {
		t.Fatalf("after draining began: /readyz = %d %q, want 503 draining", code, body)
	}
}
