package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ConnConfig says how to reach NATS.
type ConnConfig struct {
	// URLs are the servers, e.g. "nats://hub:4222" (ignored with InProcess).
	URLs []string
	// InProcess, when set, connects to the hub's own embedded server
	// without the network.
	InProcess *Server
	// Credentials log in (zero: none; the hub's own connections use the
	// hub's).
	Credentials Credentials
	// Name names the connection in the server's monitoring.
	Name string
	// InboxPrefix replaces _INBOX for reply subjects (agents: their own).
	InboxPrefix string
	// ReconnectBuf is how many bytes of publishes are kept while
	// disconnected and sent on reconnect (0: 1 MiB). An agent's five
	// seconds of values are about 60 KB.
	ReconnectBuf int
	// OnState is told when the connection is up (true) or lost (false).
	// It runs on nats.go's callback goroutine and must be quick.
	OnState func(connected bool)
	// Logger receives connection changes; nil: slog.Default().
	Logger *slog.Logger
}

// Connect connects to NATS and keeps reconnecting for ever: a first
// connection that fails is retried in the background (OnState(true) says
// when it succeeds), so a replica or agent starts whether or not NATS is
// up.
func Connect(cfg ConnConfig) (*nats.Conn, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	state := cfg.OnState
	if state == nil {
		state = func(bool) {}
	}
	buf := cfg.ReconnectBuf
	if buf == 0 {
		buf = 1 << 20
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.ReconnectJitter(500*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(buf),
		// A server that stops answering (SIGSTOP, a cut link) is noticed
		// within 2 × 2 s instead of the default 2 × 2 min.
		nats.PingInterval(2 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.ConnectHandler(func(*nats.Conn) { log.Info("nats connected"); state(true) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()); state(true) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats connection lost", "err", err)
			state(false)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats error", "subject", subj, "err", err)
		}),
	}
	if !cfg.Credentials.IsZero() {
		opts = append(opts, nats.UserInfo(cfg.Credentials.User, cfg.Credentials.Password))
	}
	if cfg.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(cfg.InboxPrefix))
	}
	url := strings.Join(cfg.URLs, ",")
	if cfg.InProcess != nil {
		opts = append(opts, nats.InProcessServer(cfg.InProcess))
		url = ""
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", url, err)
	}
	return nc, nil
}

// ensureStreams creates the fleet's stream and buckets or brings them to
// this version's configuration (idempotent, every replica does it), and
// returns the stream's info. With sessionTTL 0 the sessions bucket is left
// alone.
func ensureStreams(ctx context.Context, nc *nats.Conn, sessionTTL time.Duration) (*jetstream.StreamInfo, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	st, err := js.CreateOrUpdateStream(ctx, streamConfig())
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, nats.ErrPermissionViolation) {
		return nil, fmt.Errorf("stream %s: %w", StreamName, err)
	}
	if err != nil {
		// No right to create or update (a replica on a NATS set up by its
		// operator): use the stream as it is.
		if st, err = js.Stream(ctx, StreamName); err != nil {
			return nil, fmt.Errorf("stream %s: %w", StreamName, err)
		}
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, hostsConfig()); err != nil {
		if _, err2 := js.KeyValue(ctx, HostsBucket); err2 != nil {
			return nil, fmt.Errorf("bucket %s: %w", HostsBucket, err)
		}
	}
	if sessionTTL > 0 {
		if _, err := js.CreateOrUpdateKeyValue(ctx, sessionsConfig(sessionTTL)); err != nil {
			if _, err2 := js.KeyValue(ctx, SessionsBucket); err2 != nil {
				return nil, fmt.Errorf("bucket %s: %w", SessionsBucket, err)
			}
		}
	}
	return st.Info(ctx)
}
