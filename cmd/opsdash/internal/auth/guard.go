// Package auth is the server's authentication (--auth-token): with a token
// set, everything but a short list of open paths needs it. Programs send
// "Authorization: Bearer <token>"; browsers sign in once at /login and
// then carry a session cookie. docs/deploy.md ("Authentication") is the
// operator's description.
//
// A Guard is built from a Config with New and installed on the Fiber app
// with Install, before the routes it protects; Require puts it in front of
// an open route that a flag closes (/metrics). The files: guard.go (what
// is open, how a request is checked and refused), login.go (signing in
// and out), session.go (the browser sessions), limiter.go (the
// per-address limit of wrong tokens).
//
// Decisions:
//   - Default deny: the guard protects every path except openPaths, so a
//     route added later is protected without anyone remembering to.
//   - The cookie holds a random session id (256 bits), never the token or
//     anything derived from it; sessions live in memory, so they end with
//     the process or after --auth-session-ttl, and /logout ends one.
//   - Only a presented token that is wrong counts as a failure (OnFailure,
//     the per-address limiter): a browser's first visit without any
//     credential, or a cookie from before a restart, is not an attack. An
//     Authorization header of another scheme than Bearer (Basic, from a
//     proxy's own login) is not ours: it is ignored, not counted, and a
//     session cookie still works beside it.
//   - The publish token (--publish-token) follows the same rules as the
//     auth token: CheckToken at startup, wrong ones limited per address
//     (a limiter of its own) and counted with their own label
//     (AuthorizePublish).
//   - Signing out is POST /logout from a page of this server (the Origin
//     check of the streams): a link or a form on another site cannot sign
//     a user out.
//   - A token in the query string is refused with 400 even when right:
//     URLs end up in proxy logs and browser history.
package auth

import (
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/static"
	"github.com/opsdash/opsdash/stream/httpapi"
	"github.com/opsdash/opsdash/views"
)

const (
	// MinTokenLen is the shortest token CheckToken accepts: with the
	// per-address limit of wrong tokens, guessing 16 random characters is
	// hopeless.
	MinTokenLen = 16
	// DefaultSessionTTL is how long a browser login lasts by default.
	DefaultSessionTTL = 12 * time.Hour
	// MinSessionTTL is the shortest session a server should be configured
	// with: a shorter one signs people out while they look.
	MinSessionTTL = time.Minute
	// SessionCookie names the browser session cookie.
	SessionCookie = "opsdash_session"
	// maxSessions bounds the session table: a script that keeps logging in
	// with the right token evicts the oldest sessions, not memory.
	maxSessions = 10000
	// Wrong tokens from one client address: failBurst at once, then one
	// more every failEvery. Past that, attempts are answered 429 without
	// looking at the token.
	failBurst = 5
	failEvery = time.Second
	// maxLimited bounds the limiter's table of client addresses.
	maxLimited = 10000
)

// openPaths need no token: probes, the assets of the login page, the login
// itself, the publish API (it has its own --publish-token) and /metrics
// (Require goes in front of it when --metrics-auth asks for it).
// Compared with the path lower-cased and without a trailing slash, the
// way Fiber routes by default. The embedded assets (static.Prefix) are
// open too.
var openPaths = map[string]bool{
	"/healthz":        true,
	"/readyz":         true,
	"/login":          true,
	"/logout":         true,
	"/metrics":        true,
	"/api/v1/publish": true,
}

// queryTokenParams are query parameters that look like a token and are
// refused with 400.
var queryTokenParams = []string{"token", "access_token", "auth_token"}

// Config configures a Guard. Zero fields take the defaults (the zero rule
// of stream.NoLimit's comment): a zero Config is a guard that lets
// everything through.
type Config struct {
	// Token, when set, is needed to view and subscribe; "" turns the guard
	// off (it mounts nothing and lets everything through). CheckToken
	// says whether a token is good enough.
	Token string
	// SessionTTL is how long a browser login lasts; 0 means
	// DefaultSessionTTL.
	SessionTTL time.Duration
	// Logger receives sign-ins, sign-outs and wrong tokens (never a token);
	// nil means slog.Default().
	Logger *slog.Logger
	// PublishToken, when set, is the token of POST /api/v1/publish, which
	// AuthorizePublish checks; it is independent of Token.
	PublishToken string
	// OnFailure, when set, is called once per wrong token presented (for
	// /metrics), with which token it was meant to be: TokenAuth or
	// TokenPublish.
	OnFailure func(token string)
	// SameOrigin reports whether a request comes from a page of this
	// server (or carries no Origin: a program); POST /logout answers 403
	// otherwise. nil allows every request.
	SameOrigin func(*fiber.Ctx) bool
	// ClientIP tells clients apart for the per-address limit of wrong
	// tokens and names them in logs (clientip.Proxies.ClientIP behind
	// trusted proxies); nil means c.IP(), the peer address.
	ClientIP func(*fiber.Ctx) string
	// Sessions keeps the browser sessions; nil means in this process's
	// memory (they end with it). A fleet passes one all replicas share.
	Sessions SessionStore
}

// CheckToken reports what is wrong with tok as a token: too short, or
// holding characters that cannot travel in an Authorization header. Each
// error starts with what (where the token came from, e.g. "--auth-token")
// and never quotes the token: the errors are printed, and a token must not
// end up in a terminal or a log.
func CheckToken(what, tok string) []error {
	var errs []error
	if n := len(tok); n < MinTokenLen {
		errs = append(errs, fmt.Errorf("%s must be at least %d characters long (it has %d); generate one with: openssl rand -hex 32", what, MinTokenLen, n))
	}
	for i := 0; i < len(tok); i++ {
		if b := tok[i]; b <= ' ' || b >= 0x7f {
			errs = append(errs, fmt.Errorf("%s may hold only printable ASCII characters without spaces (it is sent in an Authorization header); character %d is not one", what, i+1))
			break
		}
	}
	return errs
}

// The tokens a Guard checks, as OnFailure names them (the label of
// opsdash_auth_failures_total).
const (
	TokenAuth    = "auth"
	TokenPublish = "publish"
)

// Guard protects pages, /ws, /sse and /api/v1/topics* (everything but
// openPaths) when a token is configured. Without one it lets everything
// through and mounts nothing. It also checks the publish token
// (AuthorizePublish).
type Guard struct {
	enabled    bool
	log        *slog.Logger
	onFailure  func(token string)
	clientIP   func(*fiber.Ctx) string
	sameOrigin func(*fiber.Ctx) bool
	now        func() time.Time
	sessions   SessionStore
	ttl        time.Duration // a session's lifetime (the cookie's Max-Age)
	auth       tokenCheck    // Token
	publish    tokenCheck    // PublishToken
}

// tokenCheck is one token and the per-address limiter of wrong guesses
// at it.
type tokenCheck struct {
	name    string // TokenAuth or TokenPublish
	secret  httpapi.Secret
	limiter *failureLimiter
}

// New returns the guard of cfg.
func New(cfg Config) *Guard {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.OnFailure == nil {
		cfg.OnFailure = func(string) {}
	}
	if cfg.SameOrigin == nil {
		cfg.SameOrigin = func(*fiber.Ctx) bool { return true }
	}
	if cfg.ClientIP == nil {
		cfg.ClientIP = func(c *fiber.Ctx) string { return c.IP() }
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.Sessions == nil {
		cfg.Sessions = newSessionStore(cfg.SessionTTL, maxSessions)
	}
	return &Guard{
		enabled:    cfg.Token != "",
		log:        cfg.Logger,
		onFailure:  cfg.OnFailure,
		clientIP:   cfg.ClientIP,
		sameOrigin: cfg.SameOrigin,
		now:        time.Now,
		sessions:   cfg.Sessions,
		ttl:        cfg.SessionTTL,
		auth:       newTokenCheck(TokenAuth, cfg.Token),
		publish:    newTokenCheck(TokenPublish, cfg.PublishToken),
	}
}

func newTokenCheck(name, token string) tokenCheck {
	return tokenCheck{name: name, secret: httpapi.NewSecret(token), limiter: newFailureLimiter(failBurst, failEvery, maxLimited)}
}

// Install adds the guard's middleware and its routes (GET and POST /login,
// POST /logout). It must run before any route it protects is registered.
func (g *Guard) Install(app *fiber.App) {
	if !g.enabled {
		return
	}
	app.Use(func(c *fiber.Ctx) error {
		if isOpenPath(c.Path()) {
			return c.Next()
		}
		return g.check(c)
	})
	app.Get("/login", g.handleLoginPage)
	app.Post("/login", g.handleLogin)
	app.Post("/logout", g.handleLogout)
}

// Require is a handler that lets a request through only with the token or
// a session (for routes among openPaths that a flag puts behind it, such
// as /metrics). Without a token configured it lets everything through.
func (g *Guard) Require() fiber.Handler {
	if !g.enabled {
		return func(c *fiber.Ctx) error { return c.Next() }
	}
	return g.check
}

// isOpenPath reports whether path needs no token.
func isOpenPath(path string) bool {
	p := strings.ToLower(path)
	if strings.HasPrefix(p, static.Prefix) {
		return true
	}
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	return openPaths[p]
}

// credential is what a request showed.
type credential int

const (
	credNone    credential = iota // nothing, or a cookie of an unknown or expired session
	credValid                     // the token, or a live session
	credWrong                     // a token that is not the token
	credLimited                   // a token from an address over its limit; not looked at
)

// check lets c through with valid credentials and answers it otherwise.
func (g *Guard) check(c *fiber.Ctx) error {
	if p := tokenInQuery(c); p != "" {
		return refuseQueryToken(c, p)
	}
	cred, retry := g.authenticate(c)
	switch cred {
	case credValid:
		return c.Next()
	case credLimited:
		return g.refuseLimited(c, retry, returnPath(c))
	case credWrong:
		return g.refuse(c, "invalid_token", "the token is not valid", "That token is not valid.")
	}
	msg := ""
	if c.Cookies(SessionCookie) != "" {
		clearSessionCookie(c)
		msg = "Your session has ended (it expired, you signed out, or the server restarted). Sign in again."
	}
	return g.refuse(c, "", "this server needs a token: send 'Authorization: Bearer <token>', or sign in at /login", msg)
}

// authenticate looks at a bearer token in the Authorization header first,
// then at the session cookie. An Authorization header of another scheme
// is not meant for opsdash (a proxy's Basic login passes it on): it is
// neither a credential nor a wrong one. retry is how long a limited client
// should wait.
func (g *Guard) authenticate(c *fiber.Ctx) (credential, time.Duration) {
	if tok, ok := httpapi.BearerToken(c.Get(fiber.HeaderAuthorization)); ok {
		return g.tryToken(c, &g.auth, tok, "header")
	}
	if g.sessions.Valid(c.Cookies(SessionCookie), g.now()) {
		return credValid, 0
	}
	return credNone, 0
}

// tryToken checks a presented token against chk under chk's per-address
// limit; via says where it came from, for the log.
func (g *Guard) tryToken(c *fiber.Ctx, chk *tokenCheck, tok, via string) (credential, time.Duration) {
	ip := g.clientIP(c)
	key := limitKey(ip)
	now := g.now()
	if ok, retry := chk.limiter.take(key, now); !ok {
		g.log.Debug("auth: attempt refused, too many wrong tokens", "client_ip", ip, "path", c.Path(), "via", via, "token", chk.name)
		return credLimited, retry
	}
	if chk.secret.Matches(tok) {
		chk.limiter.refund(key, now)
		return credValid, 0
	}
	g.onFailure(chk.name)
	// Never the token: only who, where and how. The limiter bounds these
	// lines per address.
	g.log.Info("auth: wrong token", "client_ip", ip, "path", c.Path(), "via", via, "token", chk.name)
	return credWrong, 0
}

// AuthorizePublish checks the publish token of a POST /api/v1/publish
// (httpapi.Config.PublishAuth) as the auth token is checked: a wrong one
// is answered 401, counted (OnFailure with TokenPublish) and logged, and
// an address past its wrong guesses gets 429 without the token being
// looked at. A request without a bearer token gets 401 uncounted. It
// returns true to let the request through, false once it has answered.
func (g *Guard) AuthorizePublish(c *fiber.Ctx) bool {
	tok, ok := httpapi.BearerToken(c.Get(fiber.HeaderAuthorization))
	cred := credNone
	var retry time.Duration
	if ok {
		cred, retry = g.tryToken(c, &g.publish, tok, "publish")
	}
	switch cred {
	case credValid:
		return true
	case credLimited:
		secs := int(math.Ceil(retry.Seconds()))
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(max(secs, 1)))
		_ = httpapi.WriteError(c, fiber.StatusTooManyRequests, "rate_limited",
			fmt.Sprintf("too many wrong tokens from your address: try again in %d s", max(secs, 1)))
		return false
	}
	challenge := `Bearer realm="opsdash publish"`
	if cred == credWrong {
		challenge += `, error="invalid_token"`
	}
	c.Set(fiber.HeaderWWWAuthenticate, challenge)
	_ = httpapi.WriteError(c, fiber.StatusUnauthorized, "unauthorized", "a valid Authorization: Bearer token is required")
	return false
}

// tokenInQuery returns the name of a query parameter that carries a token.
func tokenInQuery(c *fiber.Ctx) string {
	args := c.Context().QueryArgs()
	for _, p := range queryTokenParams {
		if args.Has(p) {
			return p
		}
	}
	return ""
}

func refuseQueryToken(c *fiber.Ctx, param string) error {
	return httpapi.WriteError(c, fiber.StatusBadRequest, "bad_request",
		"a token is not accepted in the URL (?"+param+"=), where proxies, logs and browser history keep it: "+
			"send 'Authorization: Bearer <token>', or sign in at /login")
}

// refuse answers 401: a browser gets the login page (with msg when not
// empty), a program JSON. errCode goes into WWW-Authenticate ("" when no
// credential was presented, RFC 6750).
func (g *Guard) refuse(c *fiber.Ctx, errCode, apiMsg, msg string) error {
	challenge := `Bearer realm="opsdash"`
	if errCode != "" {
		challenge += `, error="` + errCode + `"`
	}
	c.Set(fiber.HeaderWWWAuthenticate, challenge)
	if wantsHTML(c) {
		l := views.Login{Next: returnPath(c), Error: msg}
		if c.Method() == fiber.MethodGet || c.Method() == fiber.MethodHead {
			// A link from another site brings no SameSite=Strict cookie;
			// one reload from this page does, if the browser has one.
			l.Reload = errCode == "" && c.Cookies(SessionCookie) == "" && c.Get("Sec-Fetch-Site") == "cross-site"
		}
		return renderLogin(c, fiber.StatusUnauthorized, l)
	}
	return httpapi.WriteError(c, fiber.StatusUnauthorized, "unauthorized", apiMsg)
}

// refuseLimited answers 429 with Retry-After; a browser gets the login
// page, returning to next.
func (g *Guard) refuseLimited(c *fiber.Ctx, retry time.Duration, next string) error {
	secs := int(math.Ceil(retry.Seconds()))
	c.Set(fiber.HeaderRetryAfter, strconv.Itoa(max(secs, 1)))
	msg := fmt.Sprintf("too many wrong tokens from your address: try again in %d s", max(secs, 1))
	if wantsHTML(c) {
		return loginPage(c, fiber.StatusTooManyRequests, next, "Too many wrong tokens from your address. Wait a few seconds and try again.")
	}
	return httpapi.WriteError(c, fiber.StatusTooManyRequests, "rate_limited", msg)
}

// wantsHTML reports whether c comes from a browser navigating (it asks
// for text/html by name); fetch, EventSource, WebSocket and programs do
// not, and get JSON.
func wantsHTML(c *fiber.Ctx) bool {
	return strings.Contains(strings.ToLower(c.Get(fiber.HeaderAccept)), "text/html")
}
