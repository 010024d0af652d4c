package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ServerConfig configures the hub's embedded NATS server.
type ServerConfig struct {
	// Listen is host:port for agents and replicas ("127.0.0.1:4222";
	// port 0 picks a free one).
	Listen string
	// DataDir holds JetStream's file store (and, unless Secret is set,
	// the secret in SecretFile, made on first start).
	DataDir string
	// Secret, when set, is the key credentials derive from; otherwise
	// DataDir/SecretFile is read or created.
	Secret Secret
	// Logger receives the server's warnings and errors; nil: slog.Default().
	Logger *slog.Logger
}

// Server is the hub's embedded nats-server with JetStream.
type Server struct {
	ns     *server.Server
	secret Secret
	log    *slog.Logger
}

// serverReadyTimeout bounds how long StartServer waits for the embedded
// server to accept clients (JetStream recovers its store first).
const serverReadyTimeout = 30 * time.Second

// StartServer starts the embedded server and creates the fleet's streams.
// Credentials are required unless it listens on loopback only.
func StartServer(cfg ServerConfig) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("--nats-listen %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("--nats-listen %q: bad port", cfg.Listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if cfg.DataDir == "" {
		return nil, errors.New("the embedded NATS server needs --nats-data, a writable directory for its store")
	}
	secret := cfg.Secret
	if secret == nil {
		if secret, err = LoadOrCreateSecret(filepath.Join(cfg.DataDir, SecretFile)); err != nil {
			return nil, err
		}
	}
	if host == "" {
		host = "0.0.0.0"
	}
	opts := &server.Options{
		ServerName:         "opsdash-hub",
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           filepath.Join(cfg.DataDir, "jetstream"),
		NoSigs:             true,
		NoLog:              false,
		MaxPayload:         MaxValueBytes,
		JetStreamMaxMemory: 64 << 20, // the streams use files; memory is for the API only
		CustomClientAuthentication: &authenticator{
			secret:    secret,
			anonymous: loopbackOnly(cfg.Listen),
		},
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	ns.SetLoggerV2(&natsLog{log}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(serverReadyTimeout) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS server: not ready within %s (is %s free?)", serverReadyTimeout, cfg.Listen)
	}
	s := &Server{ns: ns, secret: secret, log: log}
	if err := s.ensureStreams(); err != nil {
		s.Shutdown()
		return nil, err
	}
	return s, nil
}

// ensureStreams creates the fleet's streams on the hub's own connection.
func (s *Server) ensureStreams() error {
	nc, err := nats.Connect("", nats.InProcessServer(s.ns), nats.UserInfo(s.secret.hub().User, s.secret.hub().Password))
	if err != nil {
		return fmt.Errorf("embedded NATS server: %w", err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), serverReadyTimeout)
	defer cancel()
	_, err = ensureStreams(ctx, nc, 0)
	return err
}

// ClientURL is the URL clients on this machine reach the server at.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ns.Addr() }

// Secret is the key credentials derive from.
func (s *Server) Secret() Secret { return s.secret }

// InProcessConn implements nats.InProcessConnProvider: the hub's own
// connections skip the network.
func (s *Server) InProcessConn() (net.Conn, error) { return s.ns.InProcessConn() }

// HubCredentials are the credentials of the hub's own connections.
func (s *Server) HubCredentials() Credentials { return s.secret.hub() }

// Shutdown stops the server and waits until it has.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// loopbackOnly reports whether addr binds to loopback only.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// natsLog passes nats-server's log lines to slog: notices at debug (the
// server is chatty at start), warnings and errors as such.
type natsLog struct{ log *slog.Logger }

func (l *natsLog) Noticef(format string, v ...any) { l.log.Debug("nats: " + fmt.Sprintf(format, v...)) }
func (l *natsLog) Warnf(format string, v ...any)   { l.log.Warn("nats: " + fmt.Sprintf(format, v...)) }
func (l *natsLog) Fatalf(format string, v ...any)  { l.log.Error("nats: " + fmt.Sprintf(format, v...)) }
func (l *natsLog) Errorf(format string, v ...any)  { l.log.Error("nats: " + fmt.Sprintf(format, v...)) }
func (l *natsLog) Debugf(format string, v ...any)  {}
func (l *natsLog) Tracef(format string, v ...any)  {}
