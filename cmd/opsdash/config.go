package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path"
	"strings"
	"time"

	"github.com/opsdash/opsdash/cmd/opsdash/internal/auth"
	"github.com/opsdash/opsdash/cmd/opsdash/internal/clientip"
	"github.com/opsdash/opsdash/cmd/opsdash/internal/envflag"
	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
	"github.com/opsdash/opsdash/stream/httpapi"
)

// envPrefix is prepended to a flag's name (upper case, '-' → '_') to give the
// environment variable that sets it: --listen ↔ OPSDASH_LISTEN.
const envPrefix = "OPSDASH_"

// envName is the environment variable that sets flag name.
func envName(name string) string { return envflag.Name(envPrefix, name) }

// parseWithEnv parses args into fs after the OPSDASH_* variables: a flag
// beats its variable, which beats the default.
func parseWithEnv(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	return envflag.Parse(fs, envPrefix, args, getenv)
}

// defaultListen is serve's default address; healthcheck and watch derive
// their default server URL from it.
const defaultListen = ":8080"

// defaultDrainTimeout is how long shutdown waits for clients by default.
const defaultDrainTimeout = 10 * time.Second

// minFrameBytes is the smallest --max-frame-bytes: a client must be able
// to send a subscribe request of a few patterns.
const minFrameBytes = 1024

// serveConfig is everything `opsdash serve` can be told.
type serveConfig struct {
	Listen           string
	AddrFile         string // --addr-file: where serve writes its address for healthcheck (addrfile.go)
	HostID           string
	NetInclude       envflag.List
	AllowedOrigins   envflag.List
	AllowedHosts     envflag.List
	PublishToken     string
	PublishTokenFile string // --publish-token-file, read into PublishToken by validate
	SendBuffer       int
	MaxFrameBytes    int
	MaxConns         int
	MaxConnsPerIP    int
	MaxOpenConns     int
	MaxSubs          int
	RequestRate      float64
	Heartbeat        time.Duration
	WriteTimeout     time.Duration
	HandshakeTimeout time.Duration
	DrainTimeout     time.Duration
	MaxTopics        int
	MaxValueBytes    int
	TopicTTL         time.Duration
	HistoryLen       int
	LogFormat        string
	LogLevel         string
	Intervals        envflag.DurationMap
	TrustedProxies   envflag.List
	Auth             authConfig
	TLS              tlsConfig
	Metrics          metricsConfig
	Fleet            fleetConfig // fleet.go: hub (--nats-listen) or replica (--nats)
	Workloads        workloadsConfig

	publishTokenFromFile bool             // PublishToken was read from PublishTokenFile
	proxies              clientip.Proxies // TrustedProxies, parsed by validate
}

// newServeFlags defines serve's flags on a new FlagSet writing usage to out.
//
// Defaults come from the constants of the packages that own them, never
// as literals here, so --help, the docs' tables (TestDocsMatchServeFlags)
// and the code agree. The flags keep their documented spellings, "0
// turns a limit off" and "--send-buffer 0 keeps the system's buffer"
// among them; serve translates them into the config structs, whose own
// rule is that zero means the default (stream.NoLimit; see limitFlag).
func newServeFlags(cfg *serveConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&cfg.Listen, "listen", defaultListen, "address to serve on (host:port)")
	fs.StringVar(&cfg.AddrFile, "addr-file", "", "write the local URL (and --tls-cert) to this `file` once serving, removed on exit; "+
		"opsdash healthcheck with the same setting asks that server, whichever way its port was given (the image sets OPSDASH_ADDR_FILE)")
	fs.StringVar(&cfg.HostID, "host-id", "", "host id, the first token of this host's topics (default: the hostname, or $HOST_ETC/hostname)")
	fs.Var(&cfg.NetInclude, "net-include", "comma-separated interface name patterns (e.g. 'veth*,docker0') to report although virtual or loopback")
	fs.Var(&cfg.AllowedOrigins, "allowed-origins", "comma-separated extra browser origins allowed to open /ws and /sse (e.g. https://ops.example.com)")
	fs.Var(&cfg.AllowedHosts, "allowed-hosts", "comma-separated extra names the Host header may carry (e.g. ops.example.com, *.example.com); "+
		"without --auth-token, a request naming a host that is not loopback, this machine's name or address, --host-id or one of these gets 403")
	fs.StringVar(&cfg.PublishToken, "publish-token", "", "bearer token that enables POST /api/v1/publish (off when empty; "+
		fmt.Sprintf("at least %d printable characters, as --auth-token; prefer OPSDASH_PUBLISH_TOKEN or --publish-token-file)", auth.MinTokenLen))
	fs.StringVar(&cfg.PublishTokenFile, "publish-token-file", "", "file holding --publish-token, e.g. a mounted Kubernetes Secret or /run/secrets/opsdash_publish_token; "+
		"whitespace around the token is trimmed; read at startup (restart to rotate); not together with --publish-token")
	fs.IntVar(&cfg.SendBuffer, "send-buffer", httpapi.DefaultSendBuffer, "kernel send buffer per connection in bytes (SO_SNDBUF); 0 keeps the system default")
	fs.IntVar(&cfg.MaxFrameBytes, "max-frame-bytes", httpapi.DefaultMaxFrameBytes,
		fmt.Sprintf("largest WebSocket frame a client may send (at least %d); larger frames close with 1009", minFrameBytes))
	fs.IntVar(&cfg.MaxConns, "max-conns", httpapi.DefaultMaxConns, "WebSocket and SSE connections in total (0 = no limit); over it: close 1013")
	fs.IntVar(&cfg.MaxConnsPerIP, "max-conns-per-ip", httpapi.DefaultMaxConnsPerIP, "connections per client IP, IPv6 clients per /64 (0 = no limit); over it: close 1008")
	fs.IntVar(&cfg.MaxOpenConns, "max-open-conns", httpapi.DefaultMaxOpenConns, "TCP connections open at once, of every kind (0 = no limit); over it new connections wait to be accepted; "+
		fmt.Sprintf("lowered to fit the file descriptor limit (ulimit -n) less an eighth of it (at least %d) for files", fdReserveMin))
	fs.IntVar(&cfg.MaxSubs, "max-subscriptions", stream.DefaultMaxSubscriptions, "subscribed patterns per connection (0 = no limit)")
	fs.Float64Var(&cfg.RequestRate, "request-rate", stream.DefaultRequestsPerSecond, "requests per second per connection (0 = no limit)")
	fs.DurationVar(&cfg.Heartbeat, "heartbeat", httpapi.DefaultHeartbeat, "WebSocket ping period; a silent client is closed after 2.5 times that")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", httpapi.DefaultWriteTimeout,
		fmt.Sprintf("how long a client may leave the server's writes to it unsent (a full socket) before the connection is closed (%d)", stream.CloseWriteTimeout))
	fs.DurationVar(&cfg.HandshakeTimeout, "handshake-timeout", httpapi.DefaultHandshakeTimeout,
		"deadline for a new connection's first byte, for reading a whole request (headers and body, a WebSocket upgrade) and for the TLS handshake")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", defaultDrainTimeout, "how long shutdown waits for connections to close; what is still open shortly before it runs out is closed")
	fs.IntVar(&cfg.MaxTopics, "max-topics", stream.DefaultMaxTopics, "topics that may be created through the publish API (0 = no limit)")
	fs.IntVar(&cfg.MaxValueBytes, "max-value-bytes", stream.DefaultMaxValueBytes,
		fmt.Sprintf("largest value (compact JSON) one publish item may carry, over it: 413 (0 = no limit beyond the %s body); "+
			"a published topic's history also keeps at most %s", byteSize(httpapi.DefaultMaxPublishBytes), byteSize(stream.DefaultPublishedHistoryBytes)))
	fs.DurationVar(&cfg.TopicTTL, "topic-ttl", stream.DefaultPublishedTTL, "a published topic not published for this long expires")
	fs.IntVar(&cfg.HistoryLen, "history", stream.DefaultHistoryLen, "values kept per topic for charts and ?history=N")
	fs.Var(&cfg.Intervals, "intervals", "per-collector intervals, e.g. 'cpu=2s,disk.usage=30s' (collector names as in docs/topics.md)")
	fs.StringVar(&cfg.LogFormat, "log-format", "auto", "log format: text, json, or auto (text on a terminal, JSON otherwise)")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.Var(&cfg.TrustedProxies, "trusted-proxies", "comma-separated IPs or CIDR ranges of your own proxies (e.g. '10.0.0.0/8,::1'); "+
		"only their X-Forwarded-For and X-Forwarded-Host are believed (default: trust nobody)")
	cfg.Auth.register(fs)
	cfg.TLS.register(fs)
	cfg.Metrics.register(fs)
	cfg.Fleet.register(fs)
	cfg.Workloads.register(fs)
	return fs
}

// validate reports every bad value at once, so a misconfigured deployment
// fails fast with a message that names what to fix. It also reads what
// the configuration names once, for serve to use: the token files (into
// PublishToken and Auth.Token), the TLS pair and the trusted proxies.
func (c *serveConfig) validate() error {
	var errs []error
	if err := loadTokenFile(&c.PublishToken, &c.publishTokenFromFile, "publish-token", c.PublishTokenFile); err != nil {
		errs = append(errs, err)
	} else if c.PublishToken != "" {
		// The same rules as the auth token: the publish API is as open to
		// guessing, and a weak token there lets anyone feed the dashboard.
		what := "--publish-token"
		if c.publishTokenFromFile {
			what = fmt.Sprintf("--publish-token-file %q: the token", c.PublishTokenFile)
		}
		errs = append(errs, auth.CheckToken(what, c.PublishToken)...)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: %v", c.Listen, err))
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"--send-buffer", c.SendBuffer}, {"--max-conns", c.MaxConns}, {"--max-conns-per-ip", c.MaxConnsPerIP}, {"--max-open-conns", c.MaxOpenConns},
		{"--max-subscriptions", c.MaxSubs}, {"--max-topics", c.MaxTopics}, {"--max-value-bytes", c.MaxValueBytes},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative (got %d)", f.name, f.v))
		}
	}
	if c.MaxFrameBytes < minFrameBytes {
		errs = append(errs, fmt.Errorf("--max-frame-bytes must be at least %d (got %d)", minFrameBytes, c.MaxFrameBytes))
	}
	if c.RequestRate < 0 {
		errs = append(errs, fmt.Errorf("--request-rate must not be negative (got %v)", c.RequestRate))
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"--heartbeat", c.Heartbeat}, {"--write-timeout", c.WriteTimeout}, {"--handshake-timeout", c.HandshakeTimeout},
		{"--drain-timeout", c.DrainTimeout}, {"--topic-ttl", c.TopicTTL},
	} {
		if f.d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive (got %v)", f.name, f.d))
		}
	}
	if c.HistoryLen < 1 {
		errs = append(errs, fmt.Errorf("--history must be at least 1 (got %d)", c.HistoryLen))
	}
	errs = append(errs, c.Auth.validate()...)
	errs = append(errs, c.TLS.validate()...)
	var proxyErrs []error
	c.proxies, proxyErrs = clientip.ParseProxies(c.TrustedProxies)
	for _, err := range proxyErrs {
		errs = append(errs, fmt.Errorf("--trusted-proxies %w", err))
	}
	errs = append(errs, c.Metrics.validate(c.Auth.Token)...)
	errs = append(errs, c.Fleet.validate()...)
	errs = append(errs, c.Workloads.validate()...)
	for _, p := range c.NetInclude {
		if _, err := path.Match(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("--net-include %q: %v", p, err))
		}
	}
	if err := collectors.CheckIntervals(c.Intervals); err != nil {
		errs = append(errs, fmt.Errorf("--intervals: %v", err))
	}
	errs = append(errs, logFlagErrors(c.LogFormat, c.LogLevel)...)
	return errors.Join(errs...)
}

// loopbackOnly reports whether addr binds to loopback only, so that the
// server can warn loudly when it is reachable from elsewhere without auth.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// hostEnv reads the HOST_* variables gopsutil honours, for logging and for
// the collectors that must resolve paths under a mounted host root.
func hostEnv() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"HOST_PROC", "HOST_SYS", "HOST_ETC", "HOST_ROOT"} {
		if v := os.Getenv(k); v != "" {
			m[k] = v
		}
	}
	return m
}

// limitFlag translates a limit flag, where 0 turns the limit off, into
// the config structs' spelling, where 0 means the default and
// stream.NoLimit turns it off.
func limitFlag[T int | float64](v T) T {
	if v == 0 {
		return stream.NoLimit
	}
	return v
}

// byteSize spells n bytes for --help: 64 KiB, 1 MiB.
func byteSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// authConfig holds the flags of authentication (package auth).
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
		fmt.Sprintf("browsers sign in at /login; at least %d printable characters, e.g. from 'openssl rand -hex 32' ", auth.MinTokenLen)+
		"(prefer OPSDASH_AUTH_TOKEN or --auth-token-file: a flag is visible to every user in ps)")
	fs.StringVar(&a.TokenFile, "auth-token-file", "", "file holding --auth-token, e.g. a mounted Kubernetes Secret or /run/secrets/opsdash_auth_token; "+
		"whitespace around the token is trimmed; read at startup (restart to rotate); not together with --auth-token")
	fs.DurationVar(&a.SessionTTL, "auth-session-ttl", auth.DefaultSessionTTL, "how long a browser stays signed in (sessions also end when the server restarts)")
}

// validate reads --auth-token-file into Token and checks the token's shape
// (auth.CheckToken, which never quotes it).
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
		errs = append(errs, auth.CheckToken(what, a.Token)...)
	}
	if a.SessionTTL < auth.MinSessionTTL {
		errs = append(errs, fmt.Errorf("--auth-session-ttl must be at least %s (got %v)", shortDuration(auth.MinSessionTTL), a.SessionTTL))
	}
	return errs
}

// shortDuration spells d as a person would, without the zero units Go
// adds: 1m, 12h, 1h30m (time.Duration's String says 1m0s, 12h0m0s).
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// metricsConfig holds the flags of GET /metrics.
type metricsConfig struct {
	// Auth puts /metrics behind the auth token (--metrics-auth). Off by
	// default: a Prometheus server usually scrapes from inside the network
	// and the metrics hold counts, not host data.
	Auth bool
}

func (m *metricsConfig) register(fs *flag.FlagSet) {
	fs.BoolVar(&m.Auth, "metrics-auth", false, "require the auth token (--auth-token) on GET /metrics too")
}

// validate reports a configuration that cannot do what it says: the
// operator asked for /metrics behind a token and there is none, which
// would leave it open while they believe it closed.
func (m *metricsConfig) validate(authToken string) []error {
	if m.Auth && authToken == "" {
		return []error{errors.New("--metrics-auth needs --auth-token: without a token /metrics would stay open")}
	}
	return nil
}
