package httpapi

import (
	"errors"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// Request bodies. fasthttp reads a request's whole body before any handler
// runs, so a limit that only the publish handler checks would let anyone
// make the server read and hold a body of that size (Fiber's default: 4
// MiB) before the token was looked at. LimitBodies sets each request's
// limit from its headers instead, before the body is read: a publish that
// carries the right token may send MaxPublishBytes, any other request
// maxOtherBody (the sign-in form is the largest other body). A refused
// body is never read: fasthttp answers through the error handler, which
// answers a publish without the right token as the publish API does (401,
// or 429 once a client's wrong tokens are over their limit), so a big body
// tells no one whether the token was right.

// maxOtherBody is the body limit of every request but an authorized
// publish.
const maxOtherBody = 16 << 10

// LimitBodies installs the per-request body limits on app's server. Call
// it once, after fiber.New with FiberConfig and before serving.
func (s *Server) LimitBodies(app *fiber.App) {
	app.Server().HeaderReceived = s.requestConfig
}

// requestConfig is fasthttp's HeaderReceived: the body limit of one
// request, decided from its headers.
func (s *Server) requestConfig(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if s.cfg.PublishToken != "" && h.IsPost() && isPublishPath(string(h.RequestURI())) &&
		s.publish.Authorizes(string(h.Peek(fiber.HeaderAuthorization))) {
		// One byte over, so that the handler's 413 names the limit.
		return fasthttp.RequestConfig{MaxRequestBodySize: s.cfg.MaxPublishBytes + 1}
	}
	return fasthttp.RequestConfig{MaxRequestBodySize: maxOtherBody}
}

// isPublishPath reports whether a request URI routes to the publish API,
// as Fiber routes it by default: case-insensitive, a trailing slash
// ignored, the query string aside.
func isPublishPath(uri string) bool {
	path, _, _ := strings.Cut(uri, "?")
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	return strings.EqualFold(path, publishPath)
}

// publishPath is the route of the publish API.
const publishPath = "/api/v1/publish"

// handleError is the error handler FiberConfig installs: ErrorHandler,
// except that a publish whose body was refused unread (413) is first
// asked for its credentials, so that a wrong token gets 401 (and counts)
// whatever the size of its body.
func (s *Server) handleError(c *fiber.Ctx, err error) error {
	var fe *fiber.Error
	if errors.As(err, &fe) && fe.Code == fiber.StatusRequestEntityTooLarge && s.cfg.PublishToken != "" &&
		c.Method() == fiber.MethodPost && isPublishPath(c.OriginalURL()) {
		c.Context().SetConnectionClose() // the body is still in the socket
		if !s.authorizePublish(c) {
			return nil
		}
	}
	return ErrorHandler(c, err)
}

// authorizePublish checks a publish request's credentials with
// Config.PublishAuth, or else by comparing its bearer token with the
// publish token. It returns false after answering the request (401).
func (s *Server) authorizePublish(c *fiber.Ctx) bool {
	if s.cfg.PublishAuth != nil {
		return s.cfg.PublishAuth(c)
	}
	if s.publish.Authorizes(c.Get(fiber.HeaderAuthorization)) {
		return true
	}
	c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="opsdash publish"`)
	_ = WriteError(c, fiber.StatusUnauthorized, "unauthorized", "a valid Authorization: Bearer token is required")
	return false
}
