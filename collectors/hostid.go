package collectors

import (
	"os"
	"path/filepath"
	"strings"
)

// HostID returns the host id, the first token of every topic this host's
// collectors produce. It is override (from --host-id / OPSDASH_HOST_ID) when
// that is not blank; otherwise the host's hostname: $HOST_ETC/hostname when
// HOST_ETC is set (a container watching the host through a bind mount of its
// /etc), else os.Hostname(). The result is passed through SanitizeHostID, so
// it is a valid topic token and never empty.
func HostID(override string) string {
	if s := strings.TrimSpace(override); s != "" {
		return SanitizeHostID(s)
	}
	return SanitizeHostID(hostname())
}

// SanitizeHostID turns s into a topic token: surrounding space trimmed,
// lowercased, every character outside [a-z0-9_-] (dots included, since '.'
// separates topic tokens) replaced by '-'. An empty result becomes
// "localhost".
func SanitizeHostID(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return "localhost"
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return b.String()
}

// hostname returns the host's hostname as written, unsanitized:
// $HOST_ETC/hostname when HOST_ETC is set and the file names a host, else
// os.Hostname() (which, in a container without host UTS namespace, is the
// container's), else "".
func hostname() string {
	if etc := os.Getenv("HOST_ETC"); etc != "" {
		if b, err := os.ReadFile(filepath.Join(etc, "hostname")); err == nil {
			if h := parseHostnameFile(string(b)); h != "" {
				return h
			}
		}
	}
	h, _ := os.Hostname()
	return h
}

// parseHostnameFile returns the hostname in the contents of an
// /etc/hostname file: the first line that is neither blank nor a comment
// (hostname(5)), trimmed.
func parseHostnameFile(content string) string {
	for line := range strings.Lines(content) {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			return line
		}
	}
	return ""
}
