package certs

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/opsdash/opsdash/cmd/opsdash/internal/flagfile"
)

// PinnedClientConfig accepts exactly one server certificate: the leaf (first
// certificate) of certFile, the file the server itself serves.
//
// Why skipping Go's verification is safe here: InsecureSkipVerify turns
// off only the chain and name checks; the handshake still proves that the
// peer holds the private key of the certificate it presents (its signature
// over the handshake is checked against that certificate's key). Requiring
// that certificate to be byte for byte the server's own leaf is then
// stronger than those checks: no other key, whoever issued it, passes. A
// name check is also the wrong tool for 127.0.0.1, which a certificate
// rarely names, and a self-signed certificate has no chain to check.
// Expiry is not checked: readiness is the question, not renewal.
func PinnedClientConfig(certFile string) (*tls.Config, error) {
	want, err := readLeaf(certFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // see above: replaced by the pin below
		// VerifyConnection, unlike VerifyPeerCertificate, also runs on
		// resumed sessions, so the pin holds on every connection.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server sent no certificate")
			}
			if got := cs.PeerCertificates[0]; !bytes.Equal(got.Raw, want.Raw) {
				return fmt.Errorf("the server's certificate (%s) is not the one in --tls-cert %q (%s): another server on this address, "+
					"or the file changed and the server has not loaded it yet (it looks at most every %v on a new connection; "+
					"see its log for 'TLS certificate reload failed')",
					describeCert(got), certFile, describeCert(want), DefaultCheckEvery)
			}
			return nil
		},
	}, nil
}

// CAClientConfig verifies the server's chain against the CA certificates in caFile
// instead of the system's roots, with the usual name check.
func CAClientConfig(caFile string) (*tls.Config, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, flagfile.Error("--ca", caFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("--ca %q: no PEM certificate in the file", caFile)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
}

// readLeaf returns the first certificate of a PEM file: the server's own
// in a --tls-cert file (leaf first, then intermediates).
func readLeaf(certFile string) (*x509.Certificate, error) {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return nil, flagfile.Error("--tls-cert", certFile, err)
	}
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("--tls-cert %q: no PEM certificate in the file", certFile)
		}
		if block.Type == "CERTIFICATE" {
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("--tls-cert %q: %v", certFile, err)
			}
			return cert, nil
		}
	}
}

// describeCert names a certificate for a person comparing two of them.
func describeCert(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return fmt.Sprintf("subject %q, SHA-256 %X…", c.Subject.String(), sum[:8])
}
