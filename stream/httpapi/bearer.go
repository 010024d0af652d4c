package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"
)

// BearerToken returns the token of an "Authorization: Bearer <token>"
// header value: the scheme is matched case-insensitively and whitespace
// around the token is dropped. ok is false for any other scheme.
func BearerToken(header string) (token string, ok bool) {
	const prefix = "bearer "
	if len(header) < len(prefix) || !strings.EqualFold(header[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(header[len(prefix):]), true
}

// Secret is a token that requests must present (the publish token, the
// auth token), kept as its SHA-256 digest: presented tokens are hashed and
// the fixed-size digests compared in constant time, so that timing reveals
// neither the token's content nor its length. The zero Secret, and the
// Secret of "", match nothing.
type Secret struct {
	digest [sha256.Size]byte
	set    bool
}

// NewSecret returns the Secret of token.
func NewSecret(token string) Secret {
	if token == "" {
		return Secret{}
	}
	return Secret{digest: sha256.Sum256([]byte(token)), set: true}
}

// Matches reports whether token is the secret.
func (s Secret) Matches(token string) bool {
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], s.digest[:]) == 1 && s.set
}

// Authorizes reports whether an Authorization header value carries the
// secret as a bearer token.
func (s Secret) Authorizes(header string) bool {
	tok, ok := BearerToken(header)
	return ok && s.Matches(tok)
}
