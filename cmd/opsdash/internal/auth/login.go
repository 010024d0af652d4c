package auth

import (
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/cmd/opsdash/internal/pages"
	"github.com/opsdash/opsdash/stream/httpapi"
	"github.com/opsdash/opsdash/views"
)

// maxNextLen bounds the return path carried through the login.
const maxNextLen = 2048

// handleLoginPage serves GET /login (?next=/path).
func (g *Guard) handleLoginPage(c *fiber.Ctx) error {
	if p := tokenInQuery(c); p != "" {
		return refuseQueryToken(c, p)
	}
	return loginPage(c, fiber.StatusOK, safeNext(c.Query("next")), "")
}

// handleLogin serves POST /login: form fields token and next. The right
// token starts a session and redirects (303) to next, a local path; the
// page's own sign-in form sends no next, and the page it sat on (Referer)
// is used instead.
func (g *Guard) handleLogin(c *fiber.Ctx) error {
	if p := tokenInQuery(c); p != "" {
		return refuseQueryToken(c, p)
	}
	next := c.FormValue("next")
	if next == "" {
		next = sameHostReferer(c)
	}
	next = safeNext(next)
	tok := c.FormValue("token")
	if tok == "" {
		if wantsHTML(c) {
			return loginPage(c, fiber.StatusUnauthorized, next, "Enter the access token.")
		}
		return httpapi.WriteError(c, fiber.StatusUnauthorized, "unauthorized", "the form field token is empty")
	}
	cred, retry := g.tryToken(c, &g.auth, tok, "login")
	switch cred {
	case credLimited:
		return g.refuseLimited(c, retry, next)
	case credWrong:
		if wantsHTML(c) {
			return loginPage(c, fiber.StatusUnauthorized, next, "That token is not valid.")
		}
		return httpapi.WriteError(c, fiber.StatusUnauthorized, "unauthorized", "the token is not valid")
	}
	id, err := g.sessions.Create(g.now())
	if err != nil {
		return err // no randomness: a 500, and no session
	}
	c.Cookie(&fiber.Cookie{
		Name:     SessionCookie,
		Value:    id,
		Path:     "/",
		MaxAge:   int(g.ttl / time.Second),
		HTTPOnly: true,                           // no script reads it
		SameSite: fiber.CookieSameSiteStrictMode, // no other site's page sends it
		Secure:   c.Protocol() == "https",        // TLS here, or a proxy that says so
	})
	g.log.Info("auth: signed in", "client_ip", g.clientIP(c))
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Redirect(next, fiber.StatusSeeOther)
}

// handleLogout serves POST /logout: it ends the request's session,
// clears the cookie and sends the browser to the login page. A request
// from another site's page is refused (403): its answer would clear the
// cookie, signing the user out, even though SameSite keeps the cookie
// itself from being sent.
func (g *Guard) handleLogout(c *fiber.Ctx) error {
	if !g.sameOrigin(c) {
		return httpapi.WriteError(c, fiber.StatusForbidden, "forbidden", "sign out from a page of this server")
	}
	if id := c.Cookies(SessionCookie); id != "" {
		if g.sessions.Revoke(id) {
			g.log.Info("auth: signed out", "client_ip", g.clientIP(c))
		}
	}
	clearSessionCookie(c)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Redirect("/login", fiber.StatusSeeOther)
}

func clearSessionCookie(c *fiber.Ctx) {
	c.Cookie(&fiber.Cookie{
		Name: SessionCookie, Path: "/", Expires: time.Unix(0, 0),
		HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode, Secure: c.Protocol() == "https",
	})
}

// loginPage renders the sign-in page returning to next, with msg.
func loginPage(c *fiber.Ctx, status int, next, msg string) error {
	return renderLogin(c, status, views.Login{Next: next, Error: msg})
}

// renderLogin renders the sign-in page as every page is rendered.
func renderLogin(c *fiber.Ctx, status int, l views.Login) error {
	return pages.Render(c, status, views.LoginPage(l))
}

// sameHostReferer returns the path and query of the Referer when it is a
// page of this host, else "".
func sameHostReferer(c *fiber.Ctx) string {
	ref := c.Get(fiber.HeaderReferer)
	if ref == "" {
		return ""
	}
	u, err := url.Parse(ref)
	if err != nil || !strings.EqualFold(u.Host, string(c.Request().Host())) {
		return ""
	}
	return u.RequestURI()
}

// safeNext returns next when it is a path on this site, else "/". It
// refuses anything a browser could read as another site ("//evil",
// "/\evil", control characters it would strip), any scheme or host, and
// the login and logout pages themselves.
func safeNext(next string) string {
	if next == "" || len(next) > maxNextLen || next[0] != '/' || strings.HasPrefix(next, "//") {
		return "/"
	}
	for i := 0; i < len(next); i++ {
		if b := next[i]; b <= ' ' || b >= 0x7f || b == '\\' {
			return "/"
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return "/"
	}
	switch strings.TrimSuffix(strings.ToLower(u.Path), "/") {
	case "/login", "/logout":
		return "/"
	}
	return next
}

// returnPath is where a login started by refusing c returns to: the page
// asked for, when it was asked for with GET.
func returnPath(c *fiber.Ctx) string {
	if c.Method() == fiber.MethodGet || c.Method() == fiber.MethodHead {
		return safeNext(c.OriginalURL())
	}
	return "/"
}
