package certs

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsdash/opsdash/stream/httpapi/certtest"
)

// checkNow runs one check of the files at once, whatever the interval.
func (r *Reloader) checkNow() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.check()
}

// TestCertReloaderReporting: a pair that fails to load is not reported at
// the first failure (the files may be half replaced), is reported once
// when it fails again unchanged, and the previous certificate is served
// throughout; a stale interval means no check at all.
func TestCertReloaderReporting(t *testing.T) {
	dir := t.TempDir()
	a := certtest.WriteSelfSigned(t, dir, "a")
	b := certtest.WriteSelfSigned(t, dir, "b")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	a.Install(t, certFile, keyFile)
	pair, errs := Load(certFile, keyFile)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	logs := &bytes.Buffer{}
	r := NewReloader(pair, time.Hour, slog.New(slog.NewJSONHandler(logs, nil)))
	serving := func() string { return Serial(r.Current()) }
	serialA, serialB := a.Leaf.SerialNumber.Text(16), b.Leaf.SerialNumber.Text(16)

	// Unchanged files: nothing happens.
	r.checkNow()
	if serving() != serialA || logs.String() != "" {
		t.Fatalf("unchanged files: serving %s, logs %q", serving(), logs.String())
	}

	// The key is replaced first, as a tool writing one file after the
	// other does: not loadable, not reported yet.
	certtest.ReplaceFile(t, b.Key, keyFile)
	r.checkNow()
	if serving() != serialA || strings.Contains(logs.String(), "failed") {
		t.Fatalf("half-replaced pair: serving %s (want %s), logs %q", serving(), serialA, logs.String())
	}
	// Then the certificate: the new pair is served.
	certtest.ReplaceFile(t, b.Cert, certFile)
	r.checkNow()
	if serving() != serialB || strings.Contains(logs.String(), "failed") || !strings.Contains(logs.String(), "reloaded") {
		t.Fatalf("replaced pair: serving %s (want %s), logs %q", serving(), serialB, logs.String())
	}

	// A mismatched pair that stays: reported at the second check, once.
	certtest.ReplaceFile(t, a.Key, keyFile)
	for i := 0; i < 5; i++ {
		r.checkNow()
		if serving() != serialB {
			t.Fatalf("check %d with a mismatched pair: serving %s, want %s", i, serving(), serialB)
		}
		want := 0
		if i >= reportAfter-1 {
			want = 1
		}
		if n := strings.Count(logs.String(), "reload failed"); n != want {
			t.Fatalf("after check %d: %d failure reports, want %d:\n%s", i+1, n, want, logs.String())
		}
	}
	var rec struct {
		Level, Err string
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rec); err != nil || rec.Level != "ERROR" ||
		!strings.Contains(rec.Err, "does not match") || !strings.Contains(rec.Err, keyFile) {
		t.Errorf("failure report %s (%v): want an ERROR naming the key file and the mismatch", lines[len(lines)-1], err)
	}

	// A file that disappears is a failure too, reported once, and a later
	// good pair recovers.
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		r.checkNow()
	}
	if n := strings.Count(logs.String(), "reload failed"); n != 2 || serving() != serialB {
		t.Fatalf("missing certificate: %d reports in all (want 2), serving %s:\n%s", n, serving(), logs.String())
	}
	a.Install(t, certFile, keyFile)
	r.checkNow()
	if serving() != serialA {
		t.Fatalf("after the fix: serving %s, want %s", serving(), serialA)
	}

	// GetCertificate looks at the files no more than once per interval
	// (an hour here, so not at all) and never fails.
	b.Install(t, certFile, keyFile)
	for i := 0; i < 3; i++ {
		c, err := r.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil || Serial(c) != serialA {
			t.Fatalf("GetCertificate within the interval = %s, %v; want %s unchanged", Serial(c), err, serialA)
		}
	}
}

// TestFileStamps: a file's version changes with an in-place rewrite (size,
// time) and with a rename over it (another file), and not otherwise.
func TestFileStamps(t *testing.T) {
	dir := t.TempDir()
	a := certtest.WriteSelfSigned(t, dir, "a")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	a.Install(t, certFile, keyFile)
	s0, err := statPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	s1, _ := statPair(certFile, keyFile)
	if !s0.same(s1) {
		t.Fatal("the same files look changed")
	}
	// Renamed over with identical content and modification time: another
	// inode, so a change.
	fi, _ := os.Stat(certFile)
	certtest.ReplaceFile(t, certFile, certFile)
	if err := os.Chtimes(certFile, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	s2, _ := statPair(certFile, keyFile)
	if s2.same(s0) {
		t.Error("a file renamed over the certificate was not seen")
	}
	// Rewritten in place with another size: a change.
	if err := os.WriteFile(keyFile, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	s3, _ := statPair(certFile, keyFile)
	if s3.same(s2) {
		t.Error("a key rewritten in place was not seen")
	}
	// A missing file has no stamp, and is reported with its flag.
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	s4, err := statPair(certFile, keyFile)
	if err == nil || !strings.Contains(err.Error(), "--tls-key") || s4.same(s3) {
		t.Errorf("missing key: %v, %v", s4, err)
	}
}
