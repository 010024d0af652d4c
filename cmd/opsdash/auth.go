package main

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/cmd/opsdash/internal/pages"
	"github.com/opsdash/opsdash/views"
)

// Authentication (--auth-token). With a token set, everything but a short
// list of open paths needs it: programs send "Authorization: Bearer
// <token>", browsers sign in once at /login and then carry a session cookie.
// docs/deploy.md ("Authentication") is the operator's description.
//
// Decisions:
//   - Default deny: the guard protects every path except openPaths, so a
//     route added later is protected without anyone remembering to.
//   - The cookie holds a random session id (256 bits), never the token or
//     anything derived from it; sessions live in memory, so they end with
//     the process or after --auth-session-ttl, and /logout ends one.
//   - Only a presented token that is wrong counts as a failure (onFailure,
//     the per-IP limiter): a browser's first visit without any credential,
//     or a cookie from before a restart, is not an attack.
//   - A token in the query string is refused with 400 even when right:
//     URLs end up in proxy logs and browser history.

const (
	// minTokenLen is the shortest token validate accepts: with the
	// per-IP limit below, guessing 16 random characters is hopeless.
	minTokenLen = 16
	// sessionCookie names the browser session cookie.
	sessionCookie = "opsdash_session"
	// sessionIDBytes is the session id's entropy; its base64 is the cookie.
	sessionIDBytes = 32
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
	// maxNextLen bounds the return path carried through the login.
	maxNextLen = 2048
)

// openPaths need no token: probes, the assets of the login page, the login
// itself, the publish API (it has its own --publish-token) and /metrics
// (the metrics change puts require() in front of it when asked to).
// Compared with the path lower-cased and without a trailing slash, the
// way Fiber routes by default.
var openPaths = map[string]bool{
	"/healthz":        true,
	"/readyz":         true,
	"/login":          true,
	"/logout":         true,
	"/metrics":        true,
	"/api/v1/publish": true,
}

// openPrefix is the embedded assets (static.Prefix).
const openPrefix = "/static/"

// queryTokenParams are query parameters that look like a token and are
// refused with 400.
var queryTokenParams = []string{"token", "access_token", "auth_token"}

// authConfig holds the flags of authentication.
type authConfig struct {
	// Token, when set, is needed to view and subscribe.
	Token string
	// TokenFile names a file holding Token (--auth-token-file); validate
	// reads it into Token.
	TokenFile string
	// SessionTTL is how long a browser login lasts.
	SessionTTL time.Duration

	tokenFromFile bool // Token was read from TokenFile
}

func (a *authConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&a.Token, "auth-token", "", "token needed to view and subscribe: programs send 'Authorization: Bearer <token>', "+
		"browsers sign in at /login; at least 16 printable characters, e.g. from 'openssl rand -hex 32' "+
		"(prefer OPSDASH_AUTH_TOKEN or --auth-token-file: a flag is visible to every user in ps)")
	fs.StringVar(&a.TokenFile, "auth-token-file", "", "file holding --auth-token, e.g. a mounted Kubernetes Secret or /run/secrets/opsdash_auth_token; "+
		"whitespace around the token is trimmed; read at startup (restart to rotate); not together with --auth-token")
	fs.DurationVar(&a.SessionTTL, "auth-session-ttl", 12*time.Hour, "how long a browser stays signed in (sessions also end when the server restarts)")
}

// validate reads --auth-token-file into Token and checks the token's shape
// without ever quoting it: the errors are printed, and a token must not end
// up in a terminal or a log.
func (a *authConfig) validate() []error {
	var errs []error
	if err := loadTokenFile(&a.Token, &a.tokenFromFile, "auth-token", a.TokenFile); err != nil {
		errs = append(errs, err)
	}
	what := "--auth-token" // names where the token came from
	if a.tokenFromFile {
		what = fmt.Sprintf("--auth-token-file %q: the token", a.TokenFile)
	}
	if a.Token != "" {
		if n := len(a.Token); n < minTokenLen {
			errs = append(errs, fmt.Errorf("%s must be at least %d characters long (it has %d); generate one with: openssl rand -hex 32", what, minTokenLen, n))
		}
		for i := 0; i < len(a.Token); i++ {
			if b := a.Token[i]; b <= ' ' || b >= 0x7f {
				errs = append(errs, fmt.Errorf("%s may hold only printable ASCII characters without spaces (it is sent in an Authorization header); character %d is not one", what, i+1))
				break
			}
		}
	}
	if a.SessionTTL < time.Minute {
		errs = append(errs, fmt.Errorf("--auth-session-ttl must be at least 1m (got %v)", a.SessionTTL))
	}
	return errs
}

// authGuard protects pages, /ws, /sse and /api/v1/topics* (everything but
// openPaths) when a token is configured. Without one it lets everything
// through and mounts nothing.
type authGuard struct {
	enabled   bool
	digest    [32]byte // sha256 of the token: compared in constant time
	log       *slog.Logger
	onFailure func()
	clientIP  func(*fiber.Ctx) string
	now       func() time.Time
	sessions  *sessionStore
	limiter   *failureLimiter
}

// newAuthGuard returns the guard of cfg. onFailure (may be nil) is called
// once per wrong token presented, for /metrics.
func newAuthGuard(cfg authConfig, log *slog.Logger, onFailure func()) *authGuard {
	if log == nil {
		log = slog.Default()
	}
	if onFailure == nil {
		onFailure = func() {}
	}
	ttl := cfg.SessionTTL
	if ttl <= 0 {
		ttl = 12 * time.Hour
	}
	g := &authGuard{
		enabled:   cfg.Token != "",
		log:       log,
		onFailure: onFailure,
		clientIP:  func(c *fiber.Ctx) string { return c.IP() },
		now:       time.Now,
		sessions:  newSessionStore(ttl, maxSessions),
		limiter:   newFailureLimiter(failBurst, failEvery, maxLimited),
	}
	if g.enabled {
		g.digest = sha256.Sum256([]byte(cfg.Token))
	}
	return g
}

// withClientIP sets how the guard tells clients apart for its per-address
// limit of wrong tokens (the trusted-proxies setting); nil keeps c.IP(),
// the peer address. It returns g.
func (g *authGuard) withClientIP(f func(*fiber.Ctx) string) *authGuard {
	if f != nil {
		g.clientIP = f
	}
	return g
}

// install adds the guard's middleware and its routes (GET and POST /login,
// /logout). It must run before any route it protects is registered.
func (g *authGuard) install(app *fiber.App) {
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
	app.Get("/logout", g.handleLogout)
	app.Post("/logout", g.handleLogout)
}

// require is a handler that lets a request through only with the token or
// a session (for routes among openPaths that a flag puts behind it, such
// as /metrics). Without a token configured it lets everything through.
func (g *authGuard) require() fiber.Handler {
	if !g.enabled {
		return func(c *fiber.Ctx) error { return c.Next() }
	}
	return g.check
}

// isOpenPath reports whether path needs no token.
func isOpenPath(path string) bool {
	p := strings.ToLower(path)
	if strings.HasPrefix(p, openPrefix) {
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
func (g *authGuard) check(c *fiber.Ctx) error {
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
	if c.Cookies(sessionCookie) != "" {
		clearSessionCookie(c)
		msg = "Your session has ended (it expired, you signed out, or the server restarted). Sign in again."
	}
	return g.refuse(c, "", "this server needs a token: send 'Authorization: Bearer <token>', or sign in at /login", msg)
}

// authenticate looks at the Authorization header first, then at the
// session cookie. retry is how long a limited client should wait.
func (g *authGuard) authenticate(c *fiber.Ctx) (credential, time.Duration) {
	if h := c.Get(fiber.HeaderAuthorization); h != "" {
		tok, _ := bearerToken(h) // another scheme is a wrong token too
		return g.tryToken(c, tok, "header")
	}
	if g.sessions.valid(c.Cookies(sessionCookie), g.now()) {
		return credValid, 0
	}
	return credNone, 0
}

// tryToken checks a presented token under the per-address limit; via says
// where it came from, for the log.
func (g *authGuard) tryToken(c *fiber.Ctx, tok, via string) (credential, time.Duration) {
	ip := g.clientIP(c)
	key := limitKey(ip)
	now := g.now()
	if ok, retry := g.limiter.take(key, now); !ok {
		g.log.Debug("auth: attempt refused, too many wrong tokens", "client_ip", ip, "path", c.Path(), "via", via)
		return credLimited, retry
	}
	if g.matches(tok) {
		g.limiter.refund(key, now)
		return credValid, 0
	}
	g.onFailure()
	// Never the token: only who, where and how.
	g.log.Info("auth: wrong token", "client_ip", ip, "path", c.Path(), "via", via)
	return credWrong, 0
}

// matches compares tok with the token in constant time: both are hashed
// first, so neither the content nor the length leaks through timing.
func (g *authGuard) matches(tok string) bool {
	got := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(got[:], g.digest[:]) == 1
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header (scheme case-insensitive); ok is false for any other scheme.
func bearerToken(h string) (tok string, ok bool) {
	const prefix = "bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(h[len(prefix):]), true
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
	return jsonErr(c, fiber.StatusBadRequest, "bad_request",
		"a token is not accepted in the URL (?"+param+"=), where proxies, logs and browser history keep it: "+
			"send 'Authorization: Bearer <token>', or sign in at /login")
}

// refuse answers 401: a browser gets the login page (with msg when not
// empty), a program JSON. errCode goes into WWW-Authenticate ("" when no
// credential was presented, RFC 6750).
func (g *authGuard) refuse(c *fiber.Ctx, errCode, apiMsg, msg string) error {
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
			l.Reload = errCode == "" && c.Cookies(sessionCookie) == "" && c.Get("Sec-Fetch-Site") == "cross-site"
		}
		return renderLogin(c, fiber.StatusUnauthorized, l)
	}
	return jsonErr(c, fiber.StatusUnauthorized, "unauthorized", apiMsg)
}

// returnPath is where a login started by refusing c returns to: the page
// asked for, when it was asked for with GET.
func returnPath(c *fiber.Ctx) string {
	if c.Method() == fiber.MethodGet || c.Method() == fiber.MethodHead {
		return safeNext(c.OriginalURL())
	}
	return "/"
}

// refuseLimited answers 429 with Retry-After; a browser gets the login
// page, returning to next.
func (g *authGuard) refuseLimited(c *fiber.Ctx, retry time.Duration, next string) error {
	secs := int(math.Ceil(retry.Seconds()))
	c.Set(fiber.HeaderRetryAfter, strconv.Itoa(max(secs, 1)))
	msg := fmt.Sprintf("too many wrong tokens from your address: try again in %d s", max(secs, 1))
	if wantsHTML(c) {
		return loginPage(c, fiber.StatusTooManyRequests, next, "Too many wrong tokens from your address. Wait a few seconds and try again.")
	}
	return jsonErr(c, fiber.StatusTooManyRequests, "rate_limited", msg)
}

// handleLoginPage serves GET /login (?next=/path).
func (g *authGuard) handleLoginPage(c *fiber.Ctx) error {
	if p := tokenInQuery(c); p != "" {
		return refuseQueryToken(c, p)
	}
	return loginPage(c, fiber.StatusOK, safeNext(c.Query("next")), "")
}

// handleLogin serves POST /login: form fields token and next. The right
// token starts a session and redirects (303) to next, a local path; the
// page's own sign-in form sends no next, and the page it sat on (Referer)
// is used instead.
func (g *authGuard) handleLogin(c *fiber.Ctx) error {
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
		return jsonErr(c, fiber.StatusUnauthorized, "unauthorized", "the form field token is empty")
	}
	cred, retry := g.tryToken(c, tok, "login")
	switch cred {
	case credLimited:
		return g.refuseLimited(c, retry, next)
	case credWrong:
		if wantsHTML(c) {
			return loginPage(c, fiber.StatusUnauthorized, next, "That token is not valid.")
		}
		return jsonErr(c, fiber.StatusUnauthorized, "unauthorized", "the token is not valid")
	}
	id, err := g.sessions.create(g.now())
	if err != nil {
		return err // no randomness: a 500, and no session
	}
	c.Cookie(&fiber.Cookie{
		Name:     sessionCookie,
		Value:    id,
		Path:     "/",
		MaxAge:   int(g.sessions.ttl / time.Second),
		HTTPOnly: true,                           // no script reads it
		SameSite: fiber.CookieSameSiteStrictMode, // no other site's page sends it
		Secure:   c.Protocol() == "https",        // TLS here, or a proxy that says so
	})
	g.log.Info("auth: signed in", "client_ip", g.clientIP(c))
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Redirect(next, fiber.StatusSeeOther)
}

// handleLogout ends the request's session, clears the cookie and sends the
// browser to the login page.
func (g *authGuard) handleLogout(c *fiber.Ctx) error {
	if id := c.Cookies(sessionCookie); id != "" {
		if g.sessions.revoke(id) {
			g.log.Info("auth: signed out", "client_ip", g.clientIP(c))
		}
	}
	clearSessionCookie(c)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Redirect("/login", fiber.StatusSeeOther)
}

func clearSessionCookie(c *fiber.Ctx) {
	c.Cookie(&fiber.Cookie{
		Name: sessionCookie, Path: "/", Expires: time.Unix(0, 0),
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

// jsonErr answers in the API's error shape {"error":{"code","message"}}.
func jsonErr(c *fiber.Ctx, status int, code, msg string) error {
	return c.Status(status).JSON(fiber.Map{"error": fiber.Map{"code": code, "message": msg}})
}

// wantsHTML reports whether c comes from a browser navigating (it asks
// for text/html by name); fetch, EventSource, WebSocket and programs do
// not, and get JSON.
func wantsHTML(c *fiber.Ctx) bool {
	return strings.Contains(strings.ToLower(c.Get(fiber.HeaderAccept)), "text/html")
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

// sessionStore holds the live browser sessions in memory. It keeps the
// SHA-256 of each id, not the id, so its table reveals no usable cookie.
type sessionStore struct {
	ttl time.Duration
	max int

	mu      sync.Mutex
	expires map[[32]byte]time.Time
}

func newSessionStore(ttl time.Duration, max int) *sessionStore {
	return &sessionStore{ttl: ttl, max: max, expires: make(map[[32]byte]time.Time)}
}

// create starts a session at now and returns its id, the cookie's value.
func (s *sessionStore) create(now time.Time) (string, error) {
	var raw [sessionIDBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("session id: %w", err)
	}
	id := base64.RawURLEncoding.EncodeToString(raw[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.expires) >= s.max {
		s.evict(now)
	}
	s.expires[sha256.Sum256([]byte(id))] = now.Add(s.ttl)
	return id, nil
}

// evict drops the expired sessions, and the one closest to expiry when
// none has expired. The caller holds mu.
func (s *sessionStore) evict(now time.Time) {
	var oldest [32]byte
	var oldestAt time.Time
	for k, exp := range s.expires {
		if !now.Before(exp) {
			delete(s.expires, k)
			continue
		}
		if oldestAt.IsZero() || exp.Before(oldestAt) {
			oldest, oldestAt = k, exp
		}
	}
	if len(s.expires) >= s.max {
		delete(s.expires, oldest)
	}
}

// valid reports whether id is a live session at now; an expired one is
// forgotten.
func (s *sessionStore) valid(id string, now time.Time) bool {
	if len(id) != base64.RawURLEncoding.EncodedLen(sessionIDBytes) {
		return false
	}
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.expires[k]
	if ok && !now.Before(exp) {
		delete(s.expires, k)
		return false
	}
	return ok
}

// revoke ends session id; it reports whether there was one.
func (s *sessionStore) revoke(id string) bool {
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.expires[k]
	delete(s.expires, k)
	return ok
}

// failureLimiter is a token bucket per client address for presented
// tokens: an attempt takes one, a right token gives it back, so only wrong
// ones use the budget up. Taking before checking (rather than counting
// after) means parallel attempts cannot all slip through a full bucket.
type failureLimiter struct {
	burst float64
	every time.Duration
	max   int

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newFailureLimiter(burst int, every time.Duration, max int) *failureLimiter {
	return &failureLimiter{burst: float64(burst), every: every, max: max, buckets: make(map[string]*bucket)}
}

// refill brings b up to date at now.
func (l *failureLimiter) refill(b *bucket, now time.Time) {
	if el := now.Sub(b.last); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+float64(el)/float64(l.every))
		b.last = now
	}
}

// take spends one attempt of key at now; when none is left it returns
// false and how long until one is.
func (l *failureLimiter) take(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.max {
			l.prune(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) * float64(l.every))
	}
	b.tokens--
	return true, 0
}

// refund gives back the attempt of a right token; a full bucket is
// forgotten, so clients that only send right tokens cost no memory.
func (l *failureLimiter) refund(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		return
	}
	l.refill(b, now)
	b.tokens++
	if b.tokens >= l.burst {
		delete(l.buckets, key)
	}
}

// prune forgets the buckets that have refilled, and an arbitrary one when
// all are in use (many addresses at once: each keeps its own limit only
// while the table has room). The caller holds mu.
func (l *failureLimiter) prune(now time.Time) {
	for k, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= l.max {
		for k := range l.buckets {
			delete(l.buckets, k)
			break
		}
	}
}

// limitKey is the limiter's key for a client address: an IPv6 client by
// its /64, which one host or home usually owns whole, so that walking
// through its addresses buys no extra attempts.
func limitKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.String()
		}
	}
	return a.String()
}
