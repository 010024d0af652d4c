package certtest_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opsdash/opsdash/stream/httpapi/certtest"
)

// TestPairsVerify: each pair verifies through its Pool for the names it
// promises and no others, and its files load as a TLS key pair.
func TestPairsVerify(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		pair      *certtest.Pair
		good, bad []string
	}{
		{certtest.SelfSigned(t, "a", time.Now().Add(time.Hour)), []string{"127.0.0.1", "localhost"}, []string{"example.com"}},
		{certtest.IssuedByCA(t, "opsdash.internal"), []string{"localhost", "opsdash.internal"}, []string{"127.0.0.1"}},
	} {
		leaf := tc.pair.Certificate.Leaf
		inter := x509.NewCertPool()
		for _, der := range tc.pair.Certificate.Certificate[1:] {
			c, _ := x509.ParseCertificate(der)
			inter.AddCert(c)
		}
		for _, name := range tc.good {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: tc.pair.Pool, Intermediates: inter, DNSName: name}); err != nil {
				t.Errorf("%s for %s: %v", leaf.Subject, name, err)
			}
		}
		for _, name := range tc.bad {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: tc.pair.Pool, DNSName: name}); err == nil {
				t.Errorf("%s verifies for %s", leaf.Subject, name)
			}
		}
		f := tc.pair.WriteFiles(t, dir, leaf.Subject.CommonName)
		c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			t.Fatal(err)
		}
		if c.Leaf.SerialNumber.Cmp(leaf.SerialNumber) != 0 || len(c.Certificate) != len(tc.pair.Certificate.Certificate) {
			t.Errorf("%s: the files hold another chain", leaf.Subject)
		}
	}
	a := certtest.SelfSigned(t, "a", time.Now().Add(time.Hour))
	b := certtest.SelfSigned(t, "b", time.Now().Add(time.Hour))
	if a.Certificate.Leaf.SerialNumber.Cmp(b.Certificate.Leaf.SerialNumber) == 0 {
		t.Error("two certificates share a serial number")
	}
}

// TestInstall: installing a pair over live files makes them hold it, as new
// files (a rename), which is what a reloader must notice.
func TestInstall(t *testing.T) {
	dir := t.TempDir()
	a := certtest.SelfSigned(t, "a", time.Now().Add(time.Hour)).WriteFiles(t, dir, "a")
	b := certtest.SelfSigned(t, "b", time.Now().Add(time.Hour)).WriteFiles(t, dir, "b")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	for _, f := range []certtest.Files{a, b} {
		before, _ := os.Stat(certFile)
		f.Install(t, certFile, keyFile)
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		if c.Leaf.SerialNumber.Cmp(f.Leaf.SerialNumber) != 0 {
			t.Errorf("installed %s, the files hold %s", f.Leaf.Subject, c.Leaf.Subject)
		}
		if after, _ := os.Stat(certFile); before != nil && os.SameFile(before, after) {
			t.Error("the certificate file was rewritten in place, not replaced")
		}
	}
}
