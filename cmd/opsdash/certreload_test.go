package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/opsdash/opsdash/stream/httpapi/certtest"
)

// startServeConfig runs the whole server (serve, as `opsdash serve` does)
// with the configuration of args, after tune has changed what no flag sets.
// It returns the bound address and the server's logs.
func startServeConfig(t *testing.T, args []string, tune func(*serveConfig)) (string, *syncBuffer) {
	t.Helper()
	var cfg serveConfig
	args = append([]string{"--listen", "127.0.0.1:0", "--host-id", "testhost", "--drain-timeout", "5s"}, args...)
	if err := parseWithEnv(newServeFlags(&cfg), args, env(nil)); err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	tune(&cfg)
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slog.New(slog.NewJSONHandler(logs, nil)), env(nil), started) }()
	var addr string
	select {
	case addr = <-started:
	case err := <-done:
		t.Fatalf("serve ended before listening: %v\n%s", err, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("server did not stop within 15s")
		}
	})
	return addr, logs
}

// pemSerial returns the serial number of the first certificate in a PEM file.
func pemSerial(t *testing.T, path string) *big.Int {
	t.Helper()
	c := parsePEMCert(t, path)
	return c.SerialNumber
}

func parsePEMCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// replaceFile puts src's content at dst the way cert-manager's kubelet,
// certbot and mv do: written beside it, then renamed over it.
func replaceFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// installPair makes the pair p the content of the live files.
func installPair(t *testing.T, p certtest.Files, cert, key string) {
	t.Helper()
	replaceFile(t, p.Key, key)
	replaceFile(t, p.Cert, cert)
}

// handshakeSerial opens a new TLS connection (never a resumed session: a
// fresh client config each time) and returns the serial of the server's
// certificate.
func handshakeSerial(t *testing.T, addr string, roots *x509.CertPool) *big.Int {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

// countLines counts the log lines holding msg.
func countLines(logs, msg string) int {
	n := 0
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, msg) {
			n++
		}
	}
	return n
}

// keepAliveGet sends GET path on an open HTTP/1.1 connection and returns
// the status.
func keepAliveGet(t *testing.T, c net.Conn, r *bufio.Reader, path string) int {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path); err != nil {
		t.Fatalf("write on the open connection: %v", err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("read on the open connection: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestTLSCertificateReload: a running server shows a certificate written
// over its --tls-cert/--tls-key files to every new handshake, keeps the
// connections it has (WebSocket and keep-alive HTTP), keeps serving the
// previous certificate while the files hold a broken pair (reporting it
// once), and recovers when they are fixed. The local healthcheck, which
// pins the certificate in the file, passes after a renewal.
// startRenewableTLS runs the server on a copy of pair a under a "live"
// folder beside it, looking at its files on every handshake (so a test can
// renew them with installPair), and returns its address, a pool trusting a
// and b, the live file paths and the server's logs.
func startRenewableTLS(t *testing.T, a, b certtest.Files) (addr string, roots *x509.CertPool, certFile, keyFile string, logs *syncBuffer) {
	t.Helper()
	roots = x509.NewCertPool()
	roots.AddCert(parsePEMCert(t, a.Cert))
	roots.AddCert(parsePEMCert(t, b.Cert))
	live := filepath.Join(filepath.Dir(a.Cert), "live")
	if err := os.Mkdir(live, 0o700); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(live, "tls.crt"), filepath.Join(live, "tls.key")
	installPair(t, a, certFile, keyFile)
	addr, logs = startServeConfig(t, []string{"--tls-cert", certFile, "--tls-key", keyFile},
		func(c *serveConfig) { c.TLS.certCheck = time.Millisecond })
	return addr, roots, certFile, keyFile, logs
}

func TestTLSCertificateReload(t *testing.T) {
	dir := t.TempDir()
	a := writeTestPair(t, dir, "a")
	b := writeTestPair(t, dir, "b")
	serialA, serialB := pemSerial(t, a.Cert), pemSerial(t, b.Cert)
	if serialA.Cmp(serialB) == 0 {
		t.Fatal("test pairs share a serial")
	}
	addr, roots, certFile, keyFile, logs := startRenewableTLS(t, a, b)
	if got := handshakeSerial(t, addr, roots); got.Cmp(serialA) != 0 {
		t.Fatalf("first certificate serial %x, want %x", got, serialA)
	}

	// Connections opened before the renewal: a wss subscriber and a
	// keep-alive https connection.
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: roots}, HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.Dial("wss://"+addr+"/ws", nil)
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer ws.Close()
	type frame struct {
		Type  string `json:"type"`
		Topic string `json:"topic"`
		TS    int64  `json:"ts"`
	}
	// nextUpdate reads until an update of testhost.cpu sampled after since.
	nextUpdate := func(since time.Time) {
		t.Helper()
		ws.SetReadDeadline(time.Now().Add(15 * time.Second))
		for {
			var f frame
			if err := ws.ReadJSON(&f); err != nil {
				t.Fatalf("the open wss connection: %v", err)
			}
			if f.Type == "update" && f.Topic == "testhost.cpu" && f.TS >= since.UnixMilli() {
				return
			}
		}
	}
	if err := ws.WriteJSON(map[string]any{"type": "subscribe", "id": "1", "topics": []string{"testhost.cpu"}}); err != nil {
		t.Fatal(err)
	}
	nextUpdate(time.Time{})
	kc, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	kr := bufio.NewReader(kc)
	if code := keepAliveGet(t, kc, kr, "/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}

	// Renewal: new handshakes get b; the open connections carry on with a.
	installPair(t, b, certFile, keyFile)
	eventually(t, "a new handshake to see the renewed certificate", func() bool {
		return handshakeSerial(t, addr, roots).Cmp(serialB) == 0
	})
	renewed := time.Now()
	nextUpdate(renewed)
	if code := keepAliveGet(t, kc, kr, "/healthz"); code != 200 {
		t.Fatalf("/healthz on the connection opened before the renewal = %d", code)
	}
	if got := kc.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(serialA) != 0 {
		t.Errorf("the open connection's certificate changed to %x", got)
	}
	if got := ws.UnderlyingConn().(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(serialA) != 0 {
		t.Errorf("the open wss connection's certificate changed to %x", got)
	}
	if !strings.Contains(logs.String(), `"msg":"TLS certificate reloaded"`) || !strings.Contains(logs.String(), `"serial":"`+serialB.Text(16)+`"`) {
		t.Errorf("no reload log naming serial %x:\n%s", serialB, logs.String())
	}
	// The healthcheck of the container image pins the file's certificate:
	// after the renewal it is the one served.
	hcEnv := env(map[string]string{"OPSDASH_LISTEN": addr, "OPSDASH_TLS_CERT": certFile})
	eventually(t, "the local healthcheck to pass with the renewed certificate", func() bool {
		return run(context.Background(), []string{"healthcheck", "--timeout", "5s"}, io.Discard, io.Discard, hcEnv) == 0
	})

	// A broken renewal (a certificate file that does not parse): handshakes keep
	// working with b, and the failure is logged once.
	garbage := filepath.Join(dir, "garbage.crt")
	if err := os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	replaceFile(t, garbage, certFile)
	eventually(t, "the broken pair to be reported", func() bool {
		if got := handshakeSerial(t, addr, roots); got.Cmp(serialB) != 0 {
			t.Fatalf("with a broken pair in the files, a handshake got serial %x, want the previous %x", got, serialB)
		}
		return strings.Contains(logs.String(), "TLS certificate reload failed")
	})
	for i := 0; i < 5; i++ {
		if got := handshakeSerial(t, addr, roots); got.Cmp(serialB) != 0 {
			t.Fatalf("with a broken pair, serial %x, want %x", got, serialB)
		}
	}
	out := logs.String()
	if n := countLines(out, "TLS certificate reload failed"); n != 1 {
		t.Errorf("the broken pair was reported %d times, want once:\n%s", n, out)
	}
	for _, w := range []string{`"level":"ERROR"`, certFile, `"serving_serial":"` + serialB.Text(16) + `"`} {
		if !strings.Contains(out, w) {
			t.Errorf("the failure log does not mention %s:\n%s", w, out)
		}
	}

	// Fixed: the next good pair is served.
	installPair(t, a, certFile, keyFile)
	eventually(t, "the fixed pair to be served", func() bool {
		return handshakeSerial(t, addr, roots).Cmp(serialA) == 0
	})
	// The first connections lived through all of it.
	if code := keepAliveGet(t, kc, kr, "/healthz"); code != 200 {
		t.Fatalf("/healthz on the first connection = %d", code)
	}
	nextUpdate(time.Now())
}

// checkNow runs one check of the files at once, whatever the interval.
func (r *certReloader) checkNow() {
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
	a := writeTestPair(t, dir, "a")
	b := writeTestPair(t, dir, "b")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	installPair(t, a, certFile, keyFile)
	cert, stamps, errs := loadPair(certFile, keyFile)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	logs := &syncBuffer{}
	r := newCertReloader(certFile, keyFile, cert, stamps, time.Hour, slog.New(slog.NewJSONHandler(logs, nil)))
	serving := func() string { return certSerial(r.current()) }
	serialA, serialB := pemSerial(t, a.Cert).Text(16), pemSerial(t, b.Cert).Text(16)

	// Unchanged files: nothing happens.
	r.checkNow()
	if serving() != serialA || logs.String() != "" {
		t.Fatalf("unchanged files: serving %s, logs %q", serving(), logs.String())
	}

	// The key is replaced first, as a tool writing one file after the
	// other does: not loadable, not reported yet.
	replaceFile(t, b.Key, keyFile)
	r.checkNow()
	if serving() != serialA || strings.Contains(logs.String(), "failed") {
		t.Fatalf("half-replaced pair: serving %s (want %s), logs %q", serving(), serialA, logs.String())
	}
	// Then the certificate: the new pair is served.
	replaceFile(t, b.Cert, certFile)
	r.checkNow()
	if serving() != serialB || strings.Contains(logs.String(), "failed") || !strings.Contains(logs.String(), "reloaded") {
		t.Fatalf("replaced pair: serving %s (want %s), logs %q", serving(), serialB, logs.String())
	}

	// A mismatched pair that stays: reported at the second check, once.
	replaceFile(t, a.Key, keyFile)
	for i := 0; i < 5; i++ {
		r.checkNow()
		if serving() != serialB {
			t.Fatalf("check %d with a mismatched pair: serving %s, want %s", i, serving(), serialB)
		}
		want := 0
		if i >= certReportAfter-1 {
			want = 1
		}
		if n := countLines(logs.String(), "reload failed"); n != want {
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
	if n := countLines(logs.String(), "reload failed"); n != 2 || serving() != serialB {
		t.Fatalf("missing certificate: %d reports in all (want 2), serving %s:\n%s", n, serving(), logs.String())
	}
	installPair(t, a, certFile, keyFile)
	r.checkNow()
	if serving() != serialA {
		t.Fatalf("after the fix: serving %s, want %s", serving(), serialA)
	}

	// getCertificate looks at the files no more than once per interval
	// (an hour here, so not at all) and never fails.
	installPair(t, b, certFile, keyFile)
	for i := 0; i < 3; i++ {
		c, err := r.getCertificate(&tls.ClientHelloInfo{})
		if err != nil || certSerial(c) != serialA {
			t.Fatalf("getCertificate within the interval = %s, %v; want %s unchanged", certSerial(c), err, serialA)
		}
	}
}

// TestFileStamps: a file's version changes with an in-place rewrite (size,
// time) and with a rename over it (another file), and not otherwise.
func TestFileStamps(t *testing.T) {
	dir := t.TempDir()
	a := writeTestPair(t, dir, "a")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	installPair(t, a, certFile, keyFile)
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
	replaceFile(t, certFile, certFile)
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

// /metrics reports when the certificate new connections get expires, and a
// renewal shows at the next scrape: the signal for an alert on a renewal
// that never happened or could not be loaded. Without TLS the series is
// absent.
func TestTLSCertificateExpiryMetric(t *testing.T) {
	dir := t.TempDir()
	// Whole seconds apart, far enough that the two cannot be confused.
	untilA := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	untilB := untilA.Add(90 * 24 * time.Hour)
	a := certtest.SelfSigned(t, "a", untilA).WriteFiles(t, dir, "a")
	b := certtest.SelfSigned(t, "b", untilB).WriteFiles(t, dir, "b")
	addr, roots, certFile, keyFile, _ := startRenewableTLS(t, a, b)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	const name = "opsdash_tls_certificate_expiry_timestamp_seconds"
	expiry := func() float64 {
		code, fams := scrapeWith(t, client, "https://"+addr, "")
		if code != http.StatusOK {
			t.Fatalf("GET /metrics = %d", code)
		}
		v, ok := sample(fams, name)
		if !ok {
			t.Fatalf("%s is missing from /metrics over TLS", name)
		}
		return v
	}
	if got, want := expiry(), float64(untilA.Unix()); got != want {
		t.Fatalf("%s = %v, want %v (the first certificate's expiry)", name, got, want)
	}
	installPair(t, b, certFile, keyFile)
	// Each scrape is a new TLS connection (no keep-alive), so each one lets
	// the server look at the files again.
	eventually(t, "the renewed certificate's expiry on /metrics", func() bool { return expiry() == float64(untilB.Unix()) })

	plain, _ := startServeConfig(t, nil, func(*serveConfig) {})
	if _, ok := sample(mustScrape(t, "http://"+plain), name); ok {
		t.Errorf("%s is exported by a server without TLS", name)
	}
}
