package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/opsdash/opsdash/stream/httpapi"
)

// tlsConfig holds the flags of TLS (--tls-cert, --tls-key).
type tlsConfig struct {
	CertFile string
	KeyFile  string

	// certCheck is how often, at most, the pair's files are looked at for
	// a renewed certificate (0: defaultCertCheck). Tests make it short.
	certCheck time.Duration

	// Set by prepare, once: the pair is loaded a single time, checked by
	// validate and then used by listen. serveConfig is passed by value, and
	// these fields travel with it.
	prepared   bool
	errs       []error
	cert       *tls.Certificate // nil without TLS or when the pair did not load
	certStamps fileStamps       // the versions of the files cert was read from
}

func (t *tlsConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&t.CertFile, "tls-cert", "", "PEM certificate file (leaf first, then intermediates): serve https and wss; needs --tls-key; "+
		"a renewed pair written over the files is picked up without a restart (looked at on new connections, at most every "+defaultCertCheck.String()+")")
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
	cert, stamps, errs := loadPair(t.CertFile, t.KeyFile)
	t.errs = append(t.errs, errs...)
	t.cert, t.certStamps = cert, stamps
}

// validate checks that the TLS flags come as a pair and that both files can
// be read and hold a matching certificate and key. Errors name the flag and
// the file. What it parsed and
// loaded is kept for serving.
func (t *tlsConfig) validate() []error {
	t.prepare()
	return t.errs
}

// unwrapPath drops the path from an *os.PathError ("open /x: permission
// denied" → "permission denied"): the message already names the file.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// enabled reports whether the server serves TLS itself.
func (t *tlsConfig) enabled() bool { return t.CertFile != "" }

// serverTLS returns the server's TLS settings: TLS 1.2 and 1.3 only, and
// for 1.2 only forward-secret AEAD suites (the "intermediate" profile every
// current client supports; 1.3's suites are all of that kind). ALPN offers
// http/1.1 only: fasthttp does not speak h2. The certificate comes from a
// certReloader, which picks up a renewed pair; it starts from the pair
// validate loaded. log receives the reloader's reports.
func (t *tlsConfig) serverTLS(log *slog.Logger) (*tls.Config, *certReloader, error) {
	t.prepare()
	if t.cert == nil {
		return nil, nil, fmt.Errorf("TLS: %w", errors.Join(t.errs...)) // validate refused this already
	}
	every := t.certCheck
	if every <= 0 {
		every = defaultCertCheck
	}
	r := newCertReloader(t.CertFile, t.KeyFile, t.cert, t.certStamps, every, log)
	return &tls.Config{
		GetCertificate: r.getCertificate,
		MinVersion:     tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		NextProtos: []string{"http/1.1"},
	}, r, nil
}

// listen wraps the serving listener: each connection's kernel send buffer
// is capped on the TCP socket, TLS runs over it when configured, and the
// corking connection sits on top (cork(tls(tcp))), so that a batch of
// WebSocket frames becomes one TLS record and one write system call.
//
// With TLS it also returns the certReloader that serves the certificate
// (nil without TLS), for /metrics to report the served certificate's expiry.
func (t *tlsConfig) listen(ln net.Listener, sndbuf int, log *slog.Logger) (net.Listener, *certReloader, error) {
	if !t.enabled() {
		return httpapi.WrapListener(ln, sndbuf), nil, nil
	}
	if log == nil {
		log = slog.Default()
	}
	cfg, r, err := t.serverTLS(log)
	if err != nil {
		return nil, nil, err
	}
	cert := r.current()
	log.Info("TLS certificate loaded", "cert", t.CertFile, "serial", certSerial(cert), "subject", certSubject(cert),
		"not_after", certNotAfter(cert), "reload_check", r.every.String())
	return httpapi.WrapTLSListener(ln, sndbuf, cfg), r, nil
}
