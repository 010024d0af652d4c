package certs

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCheckEvery is how often, at most, a Reloader looks at the
// --tls-cert/--tls-key files for a renewed certificate.
//
// Decisions (docs/deploy.md "TLS" is the operator's description):
//   - The check runs on a TLS handshake, not on a timer or on SIGHUP: it
//     needs no goroutine, costs two stat calls at most once per interval,
//     and works where nobody can send a signal (cert-manager rewriting a
//     Kubernetes Secret volume). A server that has no handshakes has no
//     one to show a new certificate to.
//   - A file counts as changed when its identity (device and inode), size or
//     modification time differ, so an atomic rename (the kubelet's symlink
//     swap, certbot's links, mv) and an in-place rewrite are both seen.
//   - Open connections keep the certificate they were set up with: TLS never
//     looks at it again after the handshake, so nothing is dropped.
//   - A pair that fails to load is reported only once it has failed at two
//     checks in a row with the files unchanged: tools that replace the
//     certificate and the key one after the other leave a moment where they
//     do not match, and that should not raise an alarm at every renewal.
//     Until a pair loads, the previous one is served.
const DefaultCheckEvery = 5 * time.Second

// reportAfter is how many checks in a row a changed pair must fail to
// load before the failure is logged.
const reportAfter = 2

// Reloader serves the --tls-cert/--tls-key pair through
// tls.Config.GetCertificate and loads it again when the files change (see
// DefaultCheckEvery for how and why). Its methods are safe for concurrent
// use.
type Reloader struct {
	certFile, keyFile string
	every             time.Duration // at most one check per this long
	log               *slog.Logger

	cert      atomic.Pointer[tls.Certificate] // served to every new handshake
	nextCheck atomic.Int64                    // Unix nanoseconds

	// mu is held by the one handshake that checks the files; the others
	// carry on with the current certificate instead of waiting (TryLock).
	mu       sync.Mutex
	loaded   fileStamps // of the pair being served
	failed   fileStamps // of the pair that last failed to load
	failures int        // checks in a row that failed on the files of failed
	reported bool       // the failure of failed was logged
}

// NewReloader serves p, the pair Load read at startup (so that startup
// keeps failing fast on a bad pair and the first check does not load the
// same files again), and looks at its files at most once per every (0:
// DefaultCheckEvery). log (nil: slog.Default()) receives reloads and
// failures to reload.
func NewReloader(p *Pair, every time.Duration, log *slog.Logger) *Reloader {
	if log == nil {
		log = slog.Default()
	}
	if every <= 0 {
		every = DefaultCheckEvery
	}
	r := &Reloader{certFile: p.CertFile, keyFile: p.KeyFile, every: every, log: log, loaded: p.stamps}
	r.cert.Store(p.Cert)
	r.nextCheck.Store(time.Now().Add(every).UnixNano())
	return r
}

// GetCertificate is tls.Config.GetCertificate. It never fails: when the
// files cannot be loaded the previous certificate is served.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.maybeCheck()
	return r.cert.Load(), nil
}

// Current returns the certificate new handshakes get.
func (r *Reloader) Current() *tls.Certificate { return r.cert.Load() }

// Every is how often, at most, the files are looked at.
func (r *Reloader) Every() time.Duration { return r.every }

// maybeCheck checks the files when the interval has passed and no other
// handshake is checking them already.
func (r *Reloader) maybeCheck() {
	if time.Now().UnixNano() < r.nextCheck.Load() || !r.mu.TryLock() {
		return
	}
	defer r.mu.Unlock()
	if time.Now().UnixNano() < r.nextCheck.Load() {
		return // another handshake checked while this one waited for the lock
	}
	r.check()
	r.nextCheck.Store(time.Now().Add(r.every).UnixNano())
}

// check loads the pair if its files changed. Called with mu held.
func (r *Reloader) check() {
	stamps, err := statPair(r.certFile, r.keyFile)
	if err == nil && stamps.same(r.loaded) {
		r.failures, r.reported = 0, false
		return
	}
	if r.reported && stamps.same(r.failed) {
		return // known bad and logged: wait for the files to change again
	}
	var cert *tls.Certificate
	if err == nil {
		var errs []error
		cert, stamps, errs = loadPair(r.certFile, r.keyFile)
		if len(errs) > 0 {
			err = errs[0]
			for _, e := range errs[1:] {
				err = fmt.Errorf("%w; %w", err, e)
			}
		}
	}
	if err != nil {
		if r.failures > 0 && stamps.same(r.failed) {
			r.failures++
		} else {
			r.failed, r.failures, r.reported = stamps, 1, false
		}
		if r.failures >= reportAfter && !r.reported {
			r.reported = true
			old := r.cert.Load()
			r.log.Error("TLS certificate reload failed; still serving the previous certificate until the files are fixed",
				"err", err, "serving_serial", Serial(old), "serving_not_after", NotAfter(old))
		}
		return
	}
	r.cert.Store(cert)
	r.loaded, r.failures, r.reported = stamps, 0, false
	r.log.Info("TLS certificate reloaded", "cert", r.certFile, "serial", Serial(cert),
		"subject", Subject(cert), "not_after", NotAfter(cert))
}
