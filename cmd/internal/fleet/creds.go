package fleet

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Users of the hub's embedded server. Each password is an HMAC of the
// user name under the hub's secret, so the hub needs no user table and
// `opsdash credentials` can issue any host's credentials from the secret
// alone. The user name says the role and what it may touch:
//
//   - agent-<host>: publish only host's subjects (opsdash.m.<host>.>, its
//     descriptor, its own last values), hear only its demand leases;
//   - replica-<name>: read every value and descriptor, publish only the
//     publish API's subjects (opsdash.p.>), demand leases and sessions;
//   - hub: the hub's own connections, everything.
const (
	agentUserPrefix   = "agent-"
	replicaUserPrefix = "replica-"
	hubUser           = "hub"
	// SecretFile is the secret's name in the hub's --nats-data directory.
	SecretFile = "fleet.secret"
	// agentInboxPrefix + host: an agent's reply subjects, so that it needs
	// no permission on other clients' inboxes (_INBOX.>).
	agentInboxPrefix = "_OPSDASH_INBOX."
)

// Credentials are a NATS user and password.
type Credentials struct {
	User, Password string
}

// String is the form `opsdash credentials` prints and --nats-credentials
// reads: USER:PASSWORD.
func (c Credentials) String() string { return c.User + ":" + c.Password }

// IsZero reports whether no credentials are set.
func (c Credentials) IsZero() bool { return c.User == "" && c.Password == "" }

// ParseCredentials reads USER:PASSWORD (surrounding space trimmed, as in a
// file).
func ParseCredentials(s string) (Credentials, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Credentials{}, nil
	}
	u, p, ok := strings.Cut(s, ":")
	if !ok || u == "" || p == "" {
		return Credentials{}, errors.New("credentials must be USER:PASSWORD, as printed by 'opsdash credentials'")
	}
	return Credentials{User: u, Password: p}, nil
}

// Secret is the hub's key: every credential is derived from it.
type Secret []byte

// secretBytes is the secret's entropy.
const secretBytes = 32

// LoadOrCreateSecret reads the secret in path (hex), creating it (mode
// 0600, 32 random bytes) when the file does not exist: a hub's first start
// makes its own.
func LoadOrCreateSecret(path string) (Secret, error) {
	s, err := ReadSecret(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	var raw [secretBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("fleet secret: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("fleet secret: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) { // another process made it first: use theirs
		return ReadSecret(path)
	}
	if err != nil {
		return nil, fmt.Errorf("fleet secret: %w", err)
	}
	_, err = f.WriteString(hex.EncodeToString(raw[:]) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("fleet secret %s: %w", path, err)
	}
	return Secret(raw[:]), nil
}

// ReadSecret reads the secret in path (hex, as LoadOrCreateSecret writes).
func ReadSecret(path string) (Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(raw) < 16 {
		return nil, fmt.Errorf("fleet secret %s: want at least 16 bytes in hex", path)
	}
	return Secret(raw), nil
}

// Agent returns the credentials of the agent of host.
func (s Secret) Agent(host string) Credentials { return s.user(agentUserPrefix + host) }

// Replica returns the credentials of replica name.
func (s Secret) Replica(name string) Credentials { return s.user(replicaUserPrefix + name) }

// hub returns the credentials of the hub's own connections.
func (s Secret) hub() Credentials { return s.user(hubUser) }

// Admin returns the credentials with the hub's own rights, for
// administration from outside the hub (opsdash forget).
func (s Secret) Admin() Credentials { return s.hub() }

func (s Secret) user(name string) Credentials {
	return Credentials{User: name, Password: s.password(name)}
}

func (s Secret) password(user string) string {
	m := hmac.New(sha256.New, s)
	m.Write([]byte("opsdash nats user\x00" + user))
	return hex.EncodeToString(m.Sum(nil))
}

// authenticator is the embedded server's check of every client: a known
// role's user with its HMAC password gets that role's permissions. With
// anonymous set (the server listens on loopback only), a client without
// credentials is let in with every permission, as any local process could
// read the store from disk anyway.
type authenticator struct {
	secret    Secret
	anonymous bool
}

// Check implements server.Authentication.
func (a *authenticator) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	if o.Username == "" && o.Password == "" && o.Token == "" {
		if a.anonymous {
			c.RegisterUser(&server.User{Username: "anonymous"})
		}
		return a.anonymous
	}
	perms, ok := permissionsFor(o.Username)
	if !ok || !hmac.Equal([]byte(o.Password), []byte(a.secret.password(o.Username))) {
		return false
	}
	c.RegisterUser(&server.User{Username: o.Username, Permissions: perms})
	return true
}

// permissionsFor returns the permissions of user by its role (nil: all).
func permissionsFor(user string) (*server.Permissions, bool) {
	switch {
	case user == hubUser:
		return nil, true
	case strings.HasPrefix(user, agentUserPrefix):
		host := strings.TrimPrefix(user, agentUserPrefix)
		return agentPermissions(host), validToken(host)
	case strings.HasPrefix(user, replicaUserPrefix):
		return replicaPermissions(), validToken(strings.TrimPrefix(user, replicaUserPrefix))
	}
	return nil, false
}

// validToken reports whether s is one topic token, [a-z0-9_-]+: a host id
// or replica name that cannot widen a subject.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// agentPermissions: an agent publishes its own host's values and
// descriptor, reads its own last values (to continue its seqs) and hears
// demand for its own topics; nothing of any other host.
func agentPermissions(host string) *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			MetricPrefix + host + ".>",
			"$KV." + HostsBucket + "." + host,
			"$JS.API.DIRECT.GET." + StreamName + "." + MetricPrefix + host + ".>",
			agentPrefix + host + ".>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			DemandPrefix + host + ".>",
			agentPrefix + host + ".>",
			agentInboxPrefix + host + ".>",
		}},
		// Answering the duplicate check of a second agent of the same host.
		Response: &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute},
	}
}

// replicaPermissions: a replica reads everything through JetStream (its
// own consumers, direct gets, the descriptors), publishes only the publish
// API's subjects, demand leases, culprit requests and sessions, and may create the fleet's
// streams (idempotently) but not delete them.
func replicaPermissions() *server.Permissions {
	pub := []string{
		PublishedPrefix + ">",
		DemandPrefix + ">",
		agentPrefix + "*.culprits", // asking an agent for its host's culprits (culprits.go)
		"$KV." + SessionsBucket + ".>",
		"$JS.API.INFO",
		"$JS.FC.>", // flow control of the KV watchers' push consumers
	}
	for _, s := range []string{StreamName, "KV_" + HostsBucket, "KV_" + SessionsBucket} {
		pub = append(pub,
			"$JS.API.STREAM.INFO."+s, "$JS.API.STREAM.CREATE."+s, "$JS.API.STREAM.UPDATE."+s,
			"$JS.API.CONSUMER.CREATE."+s, "$JS.API.CONSUMER.CREATE."+s+".>",
			"$JS.API.CONSUMER.DELETE."+s+".>", "$JS.API.CONSUMER.INFO."+s+".>",
			"$JS.API.CONSUMER.MSG.NEXT."+s+".>",
			"$JS.API.DIRECT.GET."+s, "$JS.API.DIRECT.GET."+s+".>",
		)
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
}
