package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
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

	"github.com/opsdash/opsdash/stream"
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
// renew them with certtest.Files.Install), and returns its address, a pool trusting a
// and b, the live file paths and the server's logs.
func startRenewableTLS(t *testing.T, a, b certtest.Files) (addr string, roots *x509.CertPool, certFile, keyFile string, logs *syncBuffer) {
	t.Helper()
	roots = x509.NewCertPool()
	roots.AddCert(a.Leaf)
	roots.AddCert(b.Leaf)
	live := filepath.Join(filepath.Dir(a.Cert), "live")
	if err := os.Mkdir(live, 0o700); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(live, "tls.crt"), filepath.Join(live, "tls.key")
	a.Install(t, certFile, keyFile)
	addr, logs = startServeConfig(t, []string{"--tls-cert", certFile, "--tls-key", keyFile},
		func(c *serveConfig) { c.TLS.certCheck = time.Millisecond })
	return addr, roots, certFile, keyFile, logs
}

func TestTLSCertificateReload(t *testing.T) {
	dir := t.TempDir()
	a := certtest.WriteSelfSigned(t, dir, "a")
	b := certtest.WriteSelfSigned(t, dir, "b")
	serialA, serialB := a.Leaf.SerialNumber, b.Leaf.SerialNumber
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
	// nextUpdate reads until an update of testhost.cpu sampled after since.
	nextUpdate := func(since time.Time) {
		t.Helper()
		ws.SetReadDeadline(time.Now().Add(15 * time.Second))
		for {
			var f stream.ServerMessage
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
	b.Install(t, certFile, keyFile)
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
	certtest.ReplaceFile(t, garbage, certFile)
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
	a.Install(t, certFile, keyFile)
	eventually(t, "the fixed pair to be served", func() bool {
		return handshakeSerial(t, addr, roots).Cmp(serialA) == 0
	})
	// The first connections lived through all of it.
	if code := keepAliveGet(t, kc, kr, "/healthz"); code != 200 {
		t.Fatalf("/healthz on the first connection = %d", code)
	}
	nextUpdate(time.Now())
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
	b.Install(t, certFile, keyFile)
	// Each scrape is a new TLS connection (no keep-alive), so each one lets
	// the server look at the files again.
	eventually(t, "the renewed certificate's expiry on /metrics", func() bool { return expiry() == float64(untilB.Unix()) })

	plain, _ := startServeConfig(t, nil, func(*serveConfig) {})
	if _, ok := sample(mustScrape(t, "http://"+plain), name); ok {
		t.Errorf("%s is exported by a server without TLS", name)
	}
}
