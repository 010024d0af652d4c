package auth

import "time"

// SessionStore keeps the browser sessions a sign-in starts. The default
// keeps them in this process's memory (session.go); a fleet of replicas
// shares one (NATS KV, cmd/internal/fleet), so that a browser signed in on
// one replica is signed in on every other.
type SessionStore interface {
	// Create starts a session at now and returns its id, the cookie's
	// value: 32 random bytes in unpadded base64url.
	Create(now time.Time) (string, error)
	// Valid reports whether id is a live session at now.
	Valid(id string, now time.Time) bool
	// Revoke ends session id; it reports whether there was one.
	Revoke(id string) bool
}

// Create implements SessionStore.
func (s *sessionStore) Create(now time.Time) (string, error) { return s.create(now) }

// Valid implements SessionStore.
func (s *sessionStore) Valid(id string, now time.Time) bool { return s.valid(id, now) }

// Revoke implements SessionStore.
func (s *sessionStore) Revoke(id string) bool { return s.revoke(id) }
