package certs

import "crypto/tls"

// ServerConfig returns the server's TLS settings, with the certificate of
// every handshake from getCertificate (a Reloader's GetCertificate): TLS
// 1.2 and 1.3 only, and for 1.2 only forward-secret AEAD suites (the
// "intermediate" profile every current client supports; 1.3's suites are
// all of that kind). ALPN offers http/1.1 only: fasthttp does not speak h2.
func ServerConfig(getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		GetCertificate: getCertificate,
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
	}
}
