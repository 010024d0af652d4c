// Package certs serves the --tls-cert/--tls-key pair of `opsdash serve`
// and checks a server's certificate for `opsdash healthcheck`:
//
//   - Load reads and checks a pair at startup (every problem named with
//     its flag and file, so a bad pair stops the server before it listens);
//   - a Reloader hands the pair to every new TLS handshake and loads it
//     again when its files change (renewal without a restart);
//   - ServerConfig is the server's TLS profile;
//   - PinnedClientConfig and CAClientConfig are the healthcheck's two ways
//     of trusting a server;
//   - Serial, Subject and NotAfter describe a certificate for logs and
//     /metrics (expiry).
//
// docs/deploy.md ("TLS", "Certificate renewal") is the operator's
// description. Errors name the flags of the files they are about
// (--tls-cert, --tls-key, --ca): this package exists for those flags.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/opsdash/opsdash/cmd/opsdash/internal/flagfile"
)

// Pair is a certificate and key loaded from their files.
type Pair struct {
	CertFile, KeyFile string
	// Cert is the parsed pair, as tls.X509KeyPair returns it.
	Cert *tls.Certificate

	stamps fileStamps // the versions of the files Cert was read from
}

// Load reads and parses the certificate and key files. The files are
// looked at before they are read, so a change made while reading shows as
// a change at a Reloader's next check. Every error names the flag and the
// file; with errors the Pair is nil.
func Load(certFile, keyFile string) (*Pair, []error) {
	cert, stamps, errs := loadPair(certFile, keyFile)
	if len(errs) > 0 {
		return nil, errs
	}
	return &Pair{CertFile: certFile, KeyFile: keyFile, Cert: cert, stamps: stamps}, nil
}

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
		return s, flagfile.Error("--tls-cert", certFile, err)
	}
	if s.key, err = os.Stat(keyFile); err != nil {
		return s, flagfile.Error("--tls-key", keyFile, err)
	}
	return s, nil
}

// loadPair reads and parses the pair (see Load) and returns the versions
// of the files it read.
func loadPair(certFile, keyFile string) (*tls.Certificate, fileStamps, []error) {
	stamps, _ := statPair(certFile, keyFile) // a failure shows again in ReadFile, with its reason
	var errs []error
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		errs = append(errs, flagfile.Error("--tls-cert", certFile, err))
	}
	keyPEM, kerr := os.ReadFile(keyFile)
	if kerr != nil {
		errs = append(errs, flagfile.Error("--tls-key", keyFile, kerr))
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

// Serial is the leaf's serial number in hexadecimal, "" when c is nil.
// Serial, Subject and NotAfter describe a certificate for logs: which one
// is being served and until when it is valid.
func Serial(c *tls.Certificate) string {
	if l := leaf(c); l != nil && l.SerialNumber != nil {
		return l.SerialNumber.Text(16)
	}
	return ""
}

// Subject is the leaf's subject, "" when c is nil.
func Subject(c *tls.Certificate) string {
	if l := leaf(c); l != nil {
		return l.Subject.String()
	}
	return ""
}

// NotAfter is when the leaf expires, the zero time when c is nil.
func NotAfter(c *tls.Certificate) time.Time {
	if l := leaf(c); l != nil {
		return l.NotAfter
	}
	return time.Time{}
}
