package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// defaultCertCheck is how often, at most, the --tls-cert/--tls-key files
// are looked at for a renewed certificate.
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
const defaultCertCheck = 5 * time.Second

// certReportAfter is how many checks in a row a changed pair must fail to
// load before the failure is logged.
const certReportAfter = 2

// fileStamps identifies a version of the certificate and key files; a nil
// entry is a file that could not be looked at.
type fileStamps struct {
	cert, key os.FileInfo
}

// same reports whether s and o describe the same versions of the files.
func (s fileStamps) same(o fileStamps) bool {
	return sameFileVersion(s.cert, o.cert) && sameFileVersion(s.key, o.key)
}

func sameFileVersion(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// statPair looks at both files (following symbolic links, as a Kubernetes
// Secret volume is made of them). The error names the flag and the file.
func statPair(certFile, keyFile string) (fileStamps, error) {
	var s fileStamps
	var err error
	if s.cert, err = os.Stat(certFile); err != nil {
		return s, fmt.Errorf("--tls-cert %q: %w", certFile, unwrapPath(err))
	}
	if s.key, err = os.Stat(keyFile); err != nil {
		return s, fmt.Errorf("--tls-key %q: %w", keyFile, unwrapPath(err))
	}
	return s, nil
}

// loadPair reads and parses the certificate and key files. The files are
// looked at before they are read, so a change made while reading shows as a
// change at the next check. Every error names the flag and the file.
func loadPair(certFile, keyFile string) (*tls.Certificate, fileStamps, []error) {
	stamps, _ := statPair(certFile, keyFile) // a failure shows again in ReadFile, with its reason
	var errs []error
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		errs = append(errs, fmt.Errorf("--tls-cert %q: %w", certFile, unwrapPath(err)))
	}
	keyPEM, kerr := os.ReadFile(keyFile)
	if kerr != nil {
		errs = append(errs, fmt.Errorf("--tls-key %q: %w", keyFile, unwrapPath(kerr)))
	}
	if err != nil || kerr != nil {
		return nil, stamps, errs
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, stamps, []error{fmt.Errorf("--tls-cert %q and --tls-key %q: %v", certFile, keyFile, err)}
	}
	return &cert, stamps, nil
}

// certReloader serves the --tls-cert/--tls-key pair through
// tls.Config.GetCertificate and loads it again when the files change (see
// defaultCertCheck for how and why).
type certReloader struct {
	certFile, keyFile string
	every             time.Duration // at most one check per this long; 0 checks on every handshake
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

// newCertReloader starts from a pair loaded at startup (cert, read from
// files described by stamps), so that startup keeps failing fast on a bad
// pair and the first check does not load the same files again.
func newCertReloader(certFile, keyFile string, cert *tls.Certificate, stamps fileStamps, every time.Duration, log *slog.Logger) *certReloader {
	if log == nil {
		log = slog.Default()
	}
	r := &certReloader{certFile: certFile, keyFile: keyFile, every: every, log: log, loaded: stamps}
	r.cert.Store(cert)
	r.nextCheck.Store(time.Now().Add(every).UnixNano())
	return r
}

// getCertificate is tls.Config.GetCertificate. It never fails: when the
// files cannot be loaded the previous certificate is served.
func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.maybeCheck()
	return r.cert.Load(), nil
}

// current returns the certificate new handshakes get.
func (r *certReloader) current() *tls.Certificate { return r.cert.Load() }

// maybeCheck checks the files when the interval has passed and no other
// handshake is checking them already.
func (r *certReloader) maybeCheck() {
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
func (r *certReloader) check() {
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
		if r.failures >= certReportAfter && !r.reported {
			r.reported = true
			old := r.cert.Load()
			r.log.Error("TLS certificate reload failed; still serving the previous certificate until the files are fixed",
				"err", err, "serving_serial", certSerial(old), "serving_not_after", certNotAfter(old))
		}
		return
	}
	r.cert.Store(cert)
	r.loaded, r.failures, r.reported = stamps, 0, false
	r.log.Info("TLS certificate reloaded", "cert", r.certFile, "serial", certSerial(cert),
		"subject", certSubject(cert), "not_after", certNotAfter(cert))
}

// leaf returns the parsed leaf certificate of c (set by tls.X509KeyPair
// since Go 1.23), or nil.
func leaf(c *tls.Certificate) *x509.Certificate {
	if c == nil {
		return nil
	}
	if c.Leaf != nil {
		return c.Leaf
	}
	if len(c.Certificate) == 0 {
		return nil
	}
	l, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil
	}
	return l
}

// certSerial, certSubject and certNotAfter describe a certificate for
// logs: which one is being served and until when it is valid.
func certSerial(c *tls.Certificate) string {
	if l := leaf(c); l != nil && l.SerialNumber != nil {
		return l.SerialNumber.Text(16)
	}
	return ""
}

func certSubject(c *tls.Certificate) string {
	if l := leaf(c); l != nil {
		return l.Subject.String()
	}
	return ""
}

func certNotAfter(c *tls.Certificate) time.Time {
	if l := leaf(c); l != nil {
		return l.NotAfter
	}
	return time.Time{}
}
