package pages

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/static"
	"github.com/opsdash/opsdash/stream"
)

// fakeFleet is the replica side the pages ask: its hosts, and which
// history loads they asked for.
type fakeFleet struct {
	hosts      []string
	backfilled []string
	reg        *stream.Registry // the pages' registry, for tests to publish to
}

func (f *fakeFleet) Hosts() []string { return f.hosts }
func (f *fakeFleet) Backfill(_ context.Context, topic string, n int) {
	f.backfilled = append(f.backfilled, topic)
}

// fleetApp is a replica's pages over a registry holding the summaries of
// web-1 (fine), web-2 (a failing collector) and web-3 (silent).
func fleetApp(t *testing.T, hosts ...string) (*fiber.App, *fakeFleet) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := stream.NewRegistry(stream.RegistryConfig{Host: "hub", Logger: log})
	summary := func(host string, cpu float64, failing ...string) {
		reg.Declare(collectors.TopicInfo{Name: host + ".summary", Interval: time.Second})
		reg.Declare(collectors.TopicInfo{Name: host + ".cpu", Interval: time.Second})
		if failing == nil {
			failing = []string{}
		}
		b, _ := json.Marshal(map[string]any{"cpu_pct": cpu, "mem_pct": 40, "disk_pct": 70, "rx_bytes_per_s": 1000, "tx_bytes_per_s": 2000, "load1": 0.5, "failing": failing})
		for seq := uint64(1); seq <= 3; seq++ {
			reg.PublishAt(stream.Sequenced{Topic: host + ".summary", Seq: seq, TS: time.Now().UnixMilli(), Data: b})
		}
	}
	summary("web-1", 12.5)
	summary("web-2", 50, "disk.io")
	summary("web-3", 99)
	reg.SetStatus("web-3.summary", errors.New("no value from web-3 since 10:00:00 UTC: the host or its agent is silent"))
	f := &fakeFleet{hosts: hosts, reg: reg}
	if f.hosts == nil {
		f.hosts = []string{"web-1", "web-2", "web-3"}
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	RegisterFleet(app, reg, FleetSite{Fleet: f, AddHost: []string{"opsdash credentials --host-id NEW-HOST --nats-data /data"}}, log)
	return app, f
}

var hostRowRE = regexp.MustCompile(`<tr data-topic="[^"]+" data-interval="[0-9]+" data-status="[a-z]+" data-state="([a-z]+)" data-host="([^"]+)"`)

// The overview: every host with its numbers on first paint, silent and
// failing hosts first, the fleet's assets, the add-a-host commands.
func TestFleetOverview(t *testing.T) {
	app, _ := fleetApp(t)
	resp, body := do(t, app, httptest.NewRequest("GET", "/", nil))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("GET / = %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	var order, states []string
	for _, m := range hostRowRE.FindAllStringSubmatch(body, -1) {
		states, order = append(states, m[1]), append(order, m[2])
	}
	if strings.Join(order, ",") != "web-3,web-2,web-1" {
		t.Errorf("rows %v, want the silent host, then the failing one, then the rest", order)
	}
	if len(states) == 3 && states[0] != "failing" {
		t.Errorf("the silent host's row is %q, want failing", states[0])
	}
	for _, want := range []string{`data-f="cpu_pct">12.5%`, "failing: disk.io", "no value from web-3", "3 hosts · 1 silent · 1 failing",
		static.Path("fleet.js"), static.Path("fleet.css"), `href="/hosts/web-1"`, "opsdash credentials --host-id NEW-HOST"} {
		if !strings.Contains(body, want) {
			t.Errorf("the overview lacks %q", want)
		}
	}
	if strings.Contains(body, `<details class="add-host" open`) {
		t.Error("the add-a-host commands are open in a fleet of three hosts")
	}
	_, filtered := do(t, app, httptest.NewRequest("GET", "/?q=web-2", nil))
	if got := hostRowRE.FindAllStringSubmatch(filtered, -1); len(got) != 1 || got[0][2] != "web-2" {
		t.Errorf("?q=web-2 shows %d rows", len(got))
	}
}

// A hub without agents shows itself and, open, how to add a host.
func TestFleetOverviewOfALoneHub(t *testing.T) {
	app, _ := fleetApp(t, "web-1")
	_, body := do(t, app, httptest.NewRequest("GET", "/", nil))
	if !strings.Contains(body, `<details class="add-host" open`) {
		t.Error("a hub alone does not show the add-a-host commands open")
	}
}

// /hosts/{host} is the host's dashboard, its charts' history loaded from
// the store first; an unknown host is a 404.
func TestFleetHostPage(t *testing.T) {
	app, f := fleetApp(t)
	resp, body := do(t, app, httptest.NewRequest("GET", "/hosts/web-1", nil))
	if resp.StatusCode != 200 || !strings.Contains(body, `data-topic="web-1.cpu"`) || !strings.Contains(body, `data-testid="dashboard"`) {
		t.Errorf("GET /hosts/web-1 = %d, without web-1's dashboard", resp.StatusCode)
	}
	if strings.Join(f.backfilled, ",") != "web-1.cpu,web-1.mem,web-1.net.io,web-1.disk.io" {
		t.Errorf("history loaded for %v, want the charts' topics", f.backfilled)
	}
	if resp, _ := do(t, app, httptest.NewRequest("GET", "/hosts/nope", nil)); resp.StatusCode != 404 {
		t.Errorf("GET /hosts/nope = %d, want 404", resp.StatusCode)
	}
	if _, body := do(t, app, httptest.NewRequest("GET", "/topics", nil)); !strings.Contains(body, "web-3.summary") || !strings.Contains(body, "web-1.cpu") {
		t.Error("the explorer does not span the fleet")
	}
}

// A fleet host's workloads are that host's: the Workloads card of
// /hosts/web-1 links to /hosts/web-1/workloads/{id}, which shows web-1's
// workload (its history loaded from the store first), not the one of the
// same id on the server's own host; /workloads/{id}, a single host's page,
// is not served by a fleet.
func TestFleetWorkloadPage(t *testing.T) {
	app, f := fleetApp(t)
	reg := f.reg
	for _, host := range []string{"web-1", "hub"} {
		row := collectors.WorkloadRow{ID: "docker-0123456789ab", Kind: "docker", Name: host + "-app", State: "running", CPUCores: 0.25}
		reg.Declare(collectors.TopicInfo{Name: host + ".workloads", Interval: 5 * time.Second})
		reg.Publish(collectors.Sample{Topic: host + ".workloads", Time: time.Now(), Data: collectors.WorkloadsData{CgroupVersion: 2, Running: 1, Workloads: []collectors.WorkloadRow{row}}})
		reg.Declare(collectors.TopicInfo{Name: host + ".workload." + row.ID, Interval: 5 * time.Second})
		reg.Publish(collectors.Sample{Topic: host + ".workload." + row.ID, Time: time.Now(), Data: collectors.WorkloadData{WorkloadRow: row}})
	}
	_, dash := do(t, app, httptest.NewRequest("GET", "/hosts/web-1", nil))
	for _, want := range []string{`href="/hosts/web-1/workloads/docker-0123456789ab"`, `data-href="/hosts/web-1/workloads/{id}"`} {
		if !strings.Contains(dash, want) {
			t.Errorf("/hosts/web-1 lacks %s", want)
		}
	}
	if strings.Contains(dash, `href="/workloads/`) {
		t.Error("/hosts/web-1 links to a single host's workload page")
	}
	f.backfilled = nil
	resp, body := do(t, app, httptest.NewRequest("GET", "/hosts/web-1/workloads/docker-0123456789ab", nil))
	if resp.StatusCode != 200 || !strings.Contains(body, `data-topic="web-1.workload.docker-0123456789ab"`) || !strings.Contains(body, "web-1-app") {
		t.Errorf("GET /hosts/web-1/workloads/docker-0123456789ab = %d, without web-1's workload", resp.StatusCode)
	}
	if !strings.Contains(body, `on <a href="/hosts/web-1">web-1</a>`) {
		t.Error("a fleet workload's page does not say (and link) which host it runs on")
	}
	if strings.Join(f.backfilled, ",") != "web-1.workload.docker-0123456789ab" {
		t.Errorf("history loaded for %v, want the workload's topic", f.backfilled)
	}
	for _, path := range []string{"/hosts/nope/workloads/docker-0123456789ab", "/hosts/web-1/workloads/docker-ffffffffffff", "/workloads/docker-0123456789ab"} {
		if resp, _ := do(t, app, httptest.NewRequest("GET", path, nil)); resp.StatusCode != 404 {
			t.Errorf("GET %s = %d, want 404", path, resp.StatusCode)
		}
	}
}

// The charts of a host's dashboard name the culprits of a second from
// GET /api/v1/culprits: a single host's server asks for its own host, a
// fleet host's page for that host (answered by its agent), and the
// workloads named link to that host's pages.
func TestCulpritsAPIOfAHostsDashboard(t *testing.T) {
	if _, body := do(t, pagesApp(t), httptest.NewRequest("GET", "/", nil)); !strings.Contains(body, `data-culprits-api="/api/v1/culprits" data-host-path=""`) {
		t.Error("a single host's dashboard does not ask GET /api/v1/culprits for its own host")
	}
	app, _ := fleetApp(t)
	if _, body := do(t, app, httptest.NewRequest("GET", "/hosts/web-1", nil)); !strings.Contains(body, `data-culprits-api="/api/v1/culprits?host=web-1" data-host-path="/hosts/web-1"`) {
		t.Error("a fleet host's dashboard does not ask GET /api/v1/culprits?host=web-1")
	}
}

// The overview asks for a value every other second (max_hz 0.5, said on
// the page for app.js), and its sparklines as rendered step as far: a
// point per two of the summary's one-a-second values, the newest last,
// so the points fleet.js adds live continue them at the same scale.
func TestFleetSparklineMatchesItsRate(t *testing.T) {
	app, f := fleetApp(t, "web-1", "web-4")
	f.reg.Declare(collectors.TopicInfo{Name: "web-4.summary", Interval: time.Second})
	for seq := uint64(1); seq <= 59; seq++ {
		b, _ := json.Marshal(map[string]any{"cpu_pct": seq, "failing": []string{}})
		f.reg.PublishAt(stream.Sequenced{Topic: "web-4.summary", Seq: seq, TS: time.Now().UnixMilli(), Data: b})
	}
	_, body := do(t, app, httptest.NewRequest("GET", "/", nil))
	if !strings.Contains(body, `data-max-hz="0.5"`) {
		t.Error(`the overview does not say it asks for max_hz 0.5 (body[data-max-hz])`)
	}
	m := regexp.MustCompile(`data-host="web-4"[\s\S]*?<polyline points="([^"]*)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no sparkline for web-4")
	}
	pts := strings.Fields(m[1])
	// cpu_pct = seq: y = 100 - seq; seqs 59, 57, … 1 at x = 29, 28, … 0.
	if len(pts) != 30 || pts[0] != "0,99" || pts[28] != "28,43" || pts[29] != "29,41" {
		t.Errorf("web-4's sparkline %v; want 30 points from every other value, 0,99 … 28,43 29,41", pts)
	}
}
