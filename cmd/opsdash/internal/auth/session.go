package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"sync"
	"time"
)

// sessionIDBytes is the session id's entropy; its base64 is the cookie.
const sessionIDBytes = 32

// sessionStore holds the live browser sessions in memory. It keeps the
// SHA-256 of each id, not the id, so its table reveals no usable cookie.
type sessionStore struct {
	ttl time.Duration
	max int

	mu      sync.Mutex
	expires map[[32]byte]time.Time
}

func newSessionStore(ttl time.Duration, max int) *sessionStore {
	return &sessionStore{ttl: ttl, max: max, expires: make(map[[32]byte]time.Time)}
}

// create starts a session at now and returns its id, the cookie's value.
func (s *sessionStore) create(now time.Time) (string, error) {
	var raw [sessionIDBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("session id: %w", err)
	}
	id := base64.RawURLEncoding.EncodeToString(raw[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.expires) >= s.max {
		s.evict(now)
	}
	s.expires[sha256.Sum256([]byte(id))] = now.Add(s.ttl)
	return id, nil
}

// evict drops the expired sessions, and the one closest to expiry when
// none has expired. The caller holds mu.
func (s *sessionStore) evict(now time.Time) {
	var oldest [32]byte
	var oldestAt time.Time
	for k, exp := range s.expires {
		if !now.Before(exp) {
			delete(s.expires, k)
			continue
		}
		if oldestAt.IsZero() || exp.Before(oldestAt) {
			oldest, oldestAt = k, exp
		}
	}
	if len(s.expires) >= s.max {
		delete(s.expires, oldest)
	}
}

// valid reports whether id is a live session at now; an expired one is
// forgotten.
func (s *sessionStore) valid(id string, now time.Time) bool {
	if len(id) != base64.RawURLEncoding.EncodedLen(sessionIDBytes) {
		return false
	}
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.expires[k]
	if ok && !now.Before(exp) {
		delete(s.expires, k)
		return false
	}
	return ok
}

// revoke ends session id; it reports whether there was one.
func (s *sessionStore) revoke(id string) bool {
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.expires[k]
	delete(s.expires, k)
	return ok
}
