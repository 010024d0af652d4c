// Package certtest makes throwaway TLS certificates for tests: a
// self-signed one for 127.0.0.1 and localhost, or one that a private CA
// issued for names only, in memory and written to PEM files.
//
// It is a test helper in the manner of net/http/httptest: an ordinary,
// non-internal package, because the tests of stream/httpapi (its TLS
// listener) and of cmd/opsdash (TLS flags, certificate reload, the
// healthcheck) both need it, and an internal package under either would be
// invisible to the other. Nothing but tests imports it.
package certtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Pair is a certificate chain with its private key.
type Pair struct {
	// Certificate is the chain (leaf first) and key, for
	// tls.Config.Certificates; its Leaf is set.
	Certificate tls.Certificate
	// Pool trusts the pair: the certificate itself when it is self-signed,
	// else the CA that issued it.
	Pool *x509.CertPool

	chainPEM, keyPEM, caPEM []byte
}

// SelfSigned returns a new self-signed certificate (ECDSA P-256, its own
// CA) for 127.0.0.1 and localhost, with the common name "opsdash test
// <name>" and a random serial number, valid from an hour ago until
// notAfter.
func SelfSigned(t testing.TB, name string, notAfter time.Time) *Pair {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "opsdash test " + name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der := create(t, tmpl, tmpl, key, key)
	return newPair(t, der, nil, key)
}

// WriteSelfSigned writes a new self-signed pair (see SelfSigned), valid for
// a day, to dir as name.crt and name.key: the usual case of SelfSigned and
// WriteFiles in one call.
func WriteSelfSigned(t testing.TB, dir, name string) Files {
	t.Helper()
	return SelfSigned(t, name, time.Now().Add(24*time.Hour)).WriteFiles(t, dir, name)
}

// IssuedByCA returns a certificate that a new private CA ("opsdash test
// CA") issued for localhost and name, and not for any IP address, as a
// CA of an organisation would; it is valid for a day.
func IssuedByCA(t testing.TB, name string) *Pair {
	t.Helper()
	caKey, leafKey := newKey(t), newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "opsdash test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER := create(t, caTmpl, caTmpl, caKey, caKey)
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", name},
	}
	leafDER := create(t, leafTmpl, caCert, leafKey, caKey)
	return newPair(t, leafDER, caDER, leafKey)
}

// Files are the PEM files WriteFiles wrote.
type Files struct {
	// Cert holds the chain (leaf first, then the CA when there is one),
	// Key the private key (PKCS #8): a --tls-cert/--tls-key pair.
	Cert, Key string
	// CA holds the certificate that verifies Cert: Cert itself when it is
	// self-signed.
	CA string
	// Pool trusts the pair, as Pair.Pool.
	Pool *x509.CertPool
	// Leaf is the certificate in Cert (its serial number tells an old
	// pair from a renewed one).
	Leaf *x509.Certificate
}

// WriteFiles writes the pair to dir as name.crt and name.key (and, for an
// issued pair, its CA as name-ca.crt), readable by the owner only.
func (p *Pair) WriteFiles(t testing.TB, dir, name string) Files {
	t.Helper()
	f := Files{Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key"), Pool: p.Pool, Leaf: p.Certificate.Leaf}
	write(t, f.Cert, p.chainPEM)
	write(t, f.Key, p.keyPEM)
	f.CA = f.Cert
	if p.caPEM != nil {
		f.CA = filepath.Join(dir, name+"-ca.crt")
		write(t, f.CA, p.caPEM)
	}
	return f
}

// Install makes the files certFile and keyFile hold the pair f, as a
// renewal does: the key first, then the certificate, each with
// ReplaceFile.
func (f Files) Install(t testing.TB, certFile, keyFile string) {
	t.Helper()
	ReplaceFile(t, f.Key, keyFile)
	ReplaceFile(t, f.Cert, certFile)
}

// ReplaceFile puts src's content at dst the way cert-manager's kubelet,
// certbot and mv do: written beside dst, then renamed over it (so dst
// becomes another file, not the same one rewritten).
func ReplaceFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".new"
	write(t, tmp, b)
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

func newPair(t testing.TB, leafDER, caDER []byte, key *ecdsa.PrivateKey) *Pair {
	t.Helper()
	leaf, err := x509.ParseCertificate(leafDER)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := &Pair{
		Certificate: tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key, Leaf: leaf},
		Pool:        x509.NewCertPool(),
		chainPEM:    pemBlock("CERTIFICATE", leafDER),
		keyPEM:      pemBlock("PRIVATE KEY", keyDER),
	}
	if caDER == nil {
		p.Pool.AddCert(leaf)
		return p
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p.Pool.AddCert(ca)
	p.Certificate.Certificate = append(p.Certificate.Certificate, caDER)
	p.caPEM = pemBlock("CERTIFICATE", caDER)
	p.chainPEM = append(p.chainPEM, p.caPEM...)
	return p
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// serial is a random serial number, so that two certificates of one test
// (an old and a renewed one) are told apart by it.
func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}

func create(t testing.TB, tmpl, parent *x509.Certificate, key, signer *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func write(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
