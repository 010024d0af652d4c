// Package pages serves the HTML pages people look at (the dashboard, a
// workload's page, the topic explorer, a topic's page; in a fleet the
// overview and each host's pages) and their embedded assets, and Render,
// the one way any page of the server is written (the auth guard's login
// page too): with the pages' security headers, never cached.
package pages

import (
	"log/slog"
	"time"

	"github.com/a-h/templ"
	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/static"
	"github.com/opsdash/opsdash/stream"
	"github.com/opsdash/opsdash/views"
)

// contentSecurityPolicy allows nothing but this server's own script, style,
// images and connections (fetch and /ws: 'self' covers ws: and wss: of the
// same host in CSP 3), no inline script or style, no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// Register mounts the pages of a single host's server and their assets:
//
//	GET /                 the dashboard of this host (?procs=mem orders processes by memory)
//	GET /workloads/{id}   one container, pod or service (?workloads=mem on / orders the card by memory)
//	GET /topics           the topic explorer (?pattern=web-1.>)
//	GET /topics/{topic}   one topic, watched live
//	GET /static/{name}    assets under content-hashed names, cached for a year
//
// Pages are rendered from reg's current state on every request (no-store:
// the first paint must show current values).
// log receives the pages that fail to render.
func Register(app *fiber.App, reg *stream.Registry, log *slog.Logger) {
	charts := views.NewSeriesCache()
	app.Get("/", func(c *fiber.Ctx) error {
		return renderLogged(c, log, fiber.StatusOK, views.DashboardPage(views.NewDashboard(reg, charts, c.Query("procs"), time.Now()).WithWorkloadsSort(c.Query("workloads"))))
	})
	app.Get("/workloads/:id", func(c *fiber.Ctx) error {
		return renderWorkload(c, log, views.NewWorkloadPage(reg, charts, c.Params("id"), time.Now()))
	})
	registerShared(app, reg, log)
}

// registerShared mounts the pages a single host's server and a fleet
// share: the explorer spans whatever the registry holds.
func registerShared(app *fiber.App, reg *stream.Registry, log *slog.Logger) {
	app.Get("/topics", func(c *fiber.Ctx) error {
		return renderLogged(c, log, fiber.StatusOK, views.TopicsPage(views.NewExplorer(reg, c.Query("pattern"), time.Now())))
	})
	app.Get("/topics/:topic", func(c *fiber.Ctx) error {
		d := views.NewTopicDetail(reg, c.Params("topic"), c.BaseURL(), time.Now())
		status := fiber.StatusOK
		if !d.Found {
			status = fiber.StatusNotFound
		}
		return renderLogged(c, log, status, views.TopicPage(d))
	})
	app.Get(static.Prefix+":name", serveAsset)
}

// renderWorkload writes a workload's page: 404 when it is not listed.
func renderWorkload(c *fiber.Ctx, log *slog.Logger, p views.WorkloadPage) error {
	status := fiber.StatusOK
	if !p.Found {
		status = fiber.StatusNotFound
	}
	return renderLogged(c, log, status, views.WorkloadPageView(p))
}

// renderLogged is Render, logging a page that fails to render.
func renderLogged(c *fiber.Ctx, log *slog.Logger, status int, page templ.Component) error {
	err := Render(c, status, page)
	if err != nil {
		log.Error("rendering page", "path", c.Path(), "err", err)
	}
	return err
}

// Render writes page as c's HTML answer with status: the security headers
// every page carries, Cache-Control no-store (a page shows current values,
// and the login page must not be kept), then the component itself (templ's
// Render on the response body).
func Render(c *fiber.Ctx, status int, page templ.Component) error {
	securityHeaders(c)
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Status(status).Type("html", "utf-8")
	return page.Render(c.UserContext(), c.Response().BodyWriter())
}

// serveAsset serves one embedded file under its content-hashed name. The
// name changes whenever the content does, so browsers may keep it forever.
func serveAsset(c *fiber.Ctx) error {
	a, ok := static.Lookup(c.Params("name"))
	if !ok {
		return fiber.ErrNotFound
	}
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderCacheControl, "public, max-age=31536000, immutable")
	c.Set(fiber.HeaderETag, a.ETag)
	if c.Get(fiber.HeaderIfNoneMatch) == a.ETag {
		return c.SendStatus(fiber.StatusNotModified)
	}
	c.Set(fiber.HeaderContentType, a.ContentType)
	return c.Send(a.Body)
}

// securityHeaders sets the headers every page carries.
func securityHeaders(c *fiber.Ctx) {
	c.Set(fiber.HeaderContentSecurityPolicy, contentSecurityPolicy)
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderXFrameOptions, "DENY") // for browsers without frame-ancestors
	c.Set(fiber.HeaderReferrerPolicy, "same-origin")
	c.Set("Cross-Origin-Opener-Policy", "same-origin")
}
