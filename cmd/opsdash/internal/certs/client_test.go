package certs

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/opsdash/opsdash/stream/httpapi/certtest"
)

// serveTLS accepts TLS handshakes on a loopback port with ServerConfig,
// serving pair, and returns the address.
func serveTLS(t *testing.T, pair certtest.Files) string {
	t.Helper()
	p, errs := Load(pair.Cert, pair.Key)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ServerConfig(NewReloader(p, time.Hour, nil).GetCertificate))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

func handshake(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err == nil {
		c.Close()
	}
	return err
}

// TestClientConfigs: the pinned config accepts exactly the certificate in
// the file (names and chain aside) and says so when it sees another; the
// CA config verifies a chain and its names against the CA file; the
// server refuses TLS 1.1.
func TestClientConfigs(t *testing.T) {
	dir := t.TempDir()
	self := certtest.WriteSelfSigned(t, dir, "self")
	other := certtest.WriteSelfSigned(t, dir, "other")
	issued := certtest.IssuedByCA(t, "opsdash.internal").WriteFiles(t, dir, "issued")
	selfAddr, issuedAddr := serveTLS(t, self), serveTLS(t, issued)

	pinned, err := PinnedClientConfig(self.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(selfAddr, pinned); err != nil {
		t.Errorf("pinned to the served certificate: %v", err)
	}
	wrong, _ := PinnedClientConfig(other.Cert)
	if err := handshake(selfAddr, wrong); err == nil || !strings.Contains(err.Error(), "is not the one in --tls-cert \""+other.Cert+"\"") {
		t.Errorf("pinned to another certificate: %v", err)
	}

	ca, err := CAClientConfig(issued.CA)
	if err != nil {
		t.Fatal(err)
	}
	byName := ca.Clone()
	byName.ServerName = "opsdash.internal"
	if err := handshake(issuedAddr, byName); err != nil {
		t.Errorf("--ca, by a name in the certificate: %v", err)
	}
	if err := handshake(issuedAddr, ca); err == nil {
		t.Error("--ca, by an IP address the certificate does not name: accepted")
	}

	old := pinned.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if err := handshake(selfAddr, old); err == nil {
		t.Error("a TLS 1.1 client was accepted")
	}

	for _, f := range []func(string) (*tls.Config, error){PinnedClientConfig, CAClientConfig} {
		if _, err := f(dir + "/missing.pem"); err == nil || !strings.Contains(err.Error(), "no such file") || strings.Contains(err.Error(), "open ") {
			t.Errorf("missing file: %v, want the flag, the path and the reason once", err)
		}
	}
}
