package fleet

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Browser sessions in a fleet live in KV opsdash_sessions, so that a
// browser signed in on one replica is signed in on all of them and a
// replica that fails over keeps everyone signed in. As the in-memory store
// does, it keeps the SHA-256 of each id, never the cookie itself.
const (
	sessionIDBytes = 32
	// sessionCacheFor is how long a replica trusts a session it looked up
	// before asking the bucket again: a sign-out on another replica is
	// honoured here within this long.
	sessionCacheFor = 2 * time.Second
	// sessionCacheMax bounds the local cache.
	sessionCacheMax = 10000
)

// SessionStore is the fleet's browser session store (it implements the
// auth package's SessionStore).
type SessionStore struct {
	nc  *nats.Conn
	ttl time.Duration

	mu     sync.Mutex // guards what follows; never held across a NATS request
	kv     jetstream.KeyValue
	cached map[string]cachedSession // key -> what the bucket said
}

type cachedSession struct {
	expires, checked time.Time
}

// NewSessionStore returns the session store on nc; sessions last ttl (the
// replica's --auth-session-ttl; the bucket keeps entries that long).
func NewSessionStore(nc *nats.Conn, ttl time.Duration) *SessionStore {
	return &SessionStore{nc: nc, ttl: ttl, cached: map[string]cachedSession{}}
}

// bucket returns the sessions bucket, looking it up (or creating it) the
// first time. The lookup runs without s.mu: with NATS unreachable it takes
// up to the request timeout, and other requests' lookups must not queue
// behind it one at a time. Two first lookups at once find the same bucket.
func (s *SessionStore) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	s.mu.Lock()
	kv := s.kv
	s.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	js, err := jetstream.New(s.nc)
	if err != nil {
		return nil, err
	}
	kv, err = js.KeyValue(ctx, SessionsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, sessionsConfig(s.ttl))
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kv == nil {
		s.kv = kv
	}
	return s.kv, nil
}

func sessionKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// Create starts a session at now and returns its id.
func (s *SessionStore) Create(now time.Time) (string, error) {
	var raw [sessionIDBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("session id: %w", err)
	}
	id := base64.RawURLEncoding.EncodeToString(raw[:])
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	kv, err := s.bucket(ctx)
	if err != nil {
		return "", fmt.Errorf("session store: %w", err)
	}
	exp := now.Add(s.ttl)
	if _, err := kv.Put(ctx, sessionKey(id), []byte(strconv.FormatInt(exp.UnixMilli(), 10))); err != nil {
		return "", fmt.Errorf("session store: %w", err)
	}
	s.remember(sessionKey(id), exp, now)
	return id, nil
}

// Valid reports whether id is a live session at now.
func (s *SessionStore) Valid(id string, now time.Time) bool {
	if len(id) != base64.RawURLEncoding.EncodedLen(sessionIDBytes) {
		return false
	}
	key := sessionKey(id)
	s.mu.Lock()
	c, ok := s.cached[key]
	s.mu.Unlock()
	if ok && now.Sub(c.checked) < sessionCacheFor {
		return now.Before(c.expires)
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	kv, err := s.bucket(ctx)
	if err != nil {
		return ok && now.Before(c.expires) // NATS away: trust what we knew
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		s.forget(key)
		return false
	}
	if err != nil {
		return ok && now.Before(c.expires)
	}
	ms, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil {
		return false
	}
	exp := time.UnixMilli(ms)
	s.remember(key, exp, now)
	return now.Before(exp)
}

// Revoke ends session id on every replica.
func (s *SessionStore) Revoke(id string) bool {
	key := sessionKey(id)
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	s.forget(key)
	kv, err := s.bucket(ctx)
	if err != nil {
		return false
	}
	if _, err := kv.Get(ctx, key); err != nil {
		return false
	}
	return kv.Delete(ctx, key) == nil
}

func (s *SessionStore) remember(key string, exp, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cached) >= sessionCacheMax {
		clear(s.cached) // a cache: the bucket still knows them
	}
	s.cached[key] = cachedSession{expires: exp, checked: now}
}

func (s *SessionStore) forget(key string) {
	s.mu.Lock()
	delete(s.cached, key)
	s.mu.Unlock()
}
