package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/opsdash/opsdash/cmd/opsdash/internal/certs"
	"github.com/opsdash/opsdash/stream/httpapi"
)

// tlsConfig holds the flags of TLS (--tls-cert, --tls-key).
type tlsConfig struct {
	CertFile string
	KeyFile  string

	// certCheck is how often, at most, the pair's files are looked at for
	// a renewed certificate (0: certs.DefaultCheckEvery). Tests make it
	// short.
	certCheck time.Duration

	// Set by prepare, once: the pair is loaded a single time, checked by
	// validate and then used by listen. serveConfig is passed by value, and
	// these fields travel with it.
	prepared bool
	errs     []error
	pair     *certs.Pair // nil without TLS or when the pair did not load
}

func (t *tlsConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&t.CertFile, "tls-cert", "", "PEM certificate file (leaf first, then intermediates): serve https and wss; needs --tls-key; "+
		"a renewed pair written over the files is picked up without a restart (looked at on new connections, at most every "+certs.DefaultCheckEvery.String()+")")
	fs.StringVar(&t.KeyFile, "tls-key", "", "PEM private key file of --tls-cert")
}

// prepare loads the TLS pair, the first time it is called; later calls do
// nothing.
func (t *tlsConfig) prepare() {
	if t.prepared {
		return
	}
	t.prepared = true
	switch {
	case t.CertFile == "" && t.KeyFile == "":
		return
	case t.CertFile == "":
		t.errs = append(t.errs, fmt.Errorf("--tls-key %q needs --tls-cert too", t.KeyFile))
		return
	case t.KeyFile == "":
		t.errs = append(t.errs, fmt.Errorf("--tls-cert %q needs --tls-key too", t.CertFile))
		return
	}
	t.pair, t.errs = certs.Load(t.CertFile, t.KeyFile)
}

// validate checks that the TLS flags come as a pair and that both files can
// be read and hold a matching certificate and key. Errors name the flag and
// the file. What it loaded is kept for serving.
func (t *tlsConfig) validate() []error {
	t.prepare()
	return t.errs
}

// enabled reports whether the server serves TLS itself.
func (t *tlsConfig) enabled() bool { return t.CertFile != "" }

// listen wraps the serving listener: each connection's kernel send buffer
// is capped on the TCP socket, TLS runs over it when configured, and the
// corking connection sits on top (cork(tls(tcp))), so that a batch of
// WebSocket frames becomes one TLS record and one write system call.
//
// With TLS the certificate comes from a certs.Reloader, which picks up a
// renewed pair; it starts from the pair validate loaded and is returned
// (nil without TLS) for /metrics to report the served certificate's
// expiry. log receives the reloader's reports.
func (t *tlsConfig) listen(ln net.Listener, sndbuf int, log *slog.Logger) (net.Listener, *certs.Reloader, error) {
	if !t.enabled() {
		return httpapi.WrapListener(ln, sndbuf), nil, nil
	}
	if log == nil {
		log = slog.Default()
	}
	t.prepare()
	if t.pair == nil {
		return nil, nil, fmt.Errorf("TLS: %w", errors.Join(t.errs...)) // validate refused this already
	}
	r := certs.NewReloader(t.pair, t.certCheck, log)
	cert := r.Current()
	log.Info("TLS certificate loaded", "cert", t.CertFile, "serial", certs.Serial(cert), "subject", certs.Subject(cert),
		"not_after", certs.NotAfter(cert), "reload_check", r.Every().String())
	return httpapi.WrapTLSListener(ln, sndbuf, certs.ServerConfig(r.GetCertificate)), r, nil
}
