package pages

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/stream"
	"github.com/opsdash/opsdash/views"
)

// Fleet is what the fleet's pages need of a replica (a *fleet.Replica).
type Fleet interface {
	// Hosts lists the fleet's hosts, sorted.
	Hosts() []string
	// Backfill loads up to n past values of topic from the fleet's store
	// into the registry, once; it returns when they are there.
	Backfill(ctx context.Context, topic string, n int)
}

// FleetSite configures the fleet's pages.
type FleetSite struct {
	// Fleet is the replica whose hosts the pages show.
	Fleet Fleet
	// AddHost are the command lines the overview shows for adding a host.
	AddHost []string
}

// hostChartTopics are the topics whose history a host's dashboard draws
// (views' chart definitions) and how many values each needs.
var hostChartTopics = []string{"cpu", "mem", "net.io", "disk.io"}

// RegisterFleet mounts the pages of a hub or replica (instead of
// Register's) and their assets:
//
//	GET /                              the fleet overview (?q=web- filters hosts)
//	GET /hosts/{host}                  one host's dashboard, as / is in single mode
//	GET /hosts/{host}/workloads/{id}   one of its workloads
//	GET /topics, /topics/{topic}       the explorer, over every host's topics
//	GET /static/{name}                 the assets
func RegisterFleet(app *fiber.App, reg *stream.Registry, site FleetSite, log *slog.Logger) {
	charts := views.NewSeriesCache()
	app.Get("/", func(c *fiber.Ctx) error {
		f := views.NewFleet(reg, site.Fleet.Hosts(), c.Query("q"), site.AddHost, time.Now())
		f.Scripts, f.Styles = []string{"fleet.js"}, []string{"fleet.css"}
		return renderLogged(c, log, fiber.StatusOK, views.FleetPage(f))
	})
	app.Get("/hosts/:host", func(c *fiber.Ctx) error {
		host := c.Params("host")
		if !slices.Contains(site.Fleet.Hosts(), host) {
			return fiber.NewError(fiber.StatusNotFound, "no host "+host+" in this fleet")
		}
		for _, suffix := range hostChartTopics {
			site.Fleet.Backfill(c.UserContext(), host+"."+suffix, views.ChartWindowS+1)
		}
		d := views.NewDashboard(views.HostSource{Source: reg, ID: host}, charts, c.Query("procs"), time.Now()).WithWorkloadsSort(c.Query("workloads"))
		d.Fleet = true
		return renderLogged(c, log, fiber.StatusOK, views.DashboardPage(d))
	})
	app.Get("/hosts/:host/workloads/:id", func(c *fiber.Ctx) error {
		host, id := c.Params("host"), c.Params("id")
		if !slices.Contains(site.Fleet.Hosts(), host) {
			return fiber.NewError(fiber.StatusNotFound, "no host "+host+" in this fleet")
		}
		// As many values as a chart of 1-s values needs: a workload's
		// (every 5 s by default) has fewer stored, and gets them all.
		site.Fleet.Backfill(c.UserContext(), host+".workload."+id, views.ChartWindowS+1)
		p := views.NewWorkloadPage(views.HostSource{Source: reg, ID: host}, charts, id, time.Now())
		p.Fleet = true
		return renderWorkload(c, log, p)
	})
	registerShared(app, reg, log)
}
