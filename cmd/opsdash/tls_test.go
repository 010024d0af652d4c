package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
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

// startTLSServer runs `opsdash serve --tls-cert … --tls-key …` and returns
// its https base URL and a client TLS config that trusts its certificate.
func startTLSServer(t *testing.T, args ...string) (string, *tls.Config, func() int) {
	t.Helper()
	p := certtest.WriteSelfSigned(t, t.TempDir(), "server")
	base, stop := startServer(t, append([]string{"--tls-cert", p.Cert, "--tls-key", p.Key}, args...)...)
	return "https://" + strings.TrimPrefix(base, "http://"), &tls.Config{RootCAs: p.Pool}, stop
}

// TestTLSServesHTTPSAndWSS: with --tls-cert and --tls-key the server answers
// https (TLS 1.2 or later only), a wss:// client subscribes and gets
// updates, and shutdown still closes it with 1001.
func TestTLSServesHTTPSAndWSS(t *testing.T) {
	base, clientTLS, stop := startTLSServer(t)
	// ForceAttemptHTTP2: the client offers h2 and http/1.1 like a browser;
	// the server (fasthttp speaks HTTP/1.1 only) must pick http/1.1.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS, ForceAttemptHTTP2: true}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	httpsGet := func(path string) (int, string, *tls.ConnectionState) {
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.TLS
	}
	eventually(t, "https /readyz to report ready", func() bool { code, _, _ := httpsGet("/readyz"); return code == 200 })
	if _, _, st := httpsGet("/healthz"); st == nil || st.Version < tls.VersionTLS12 || st.NegotiatedProtocol != "http/1.1" {
		t.Errorf("TLS state = %+v, want TLS 1.2+ with ALPN http/1.1", st)
	}

	// Old protocol versions and plain HTTP are refused.
	old := clientTLS.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	addr := strings.TrimPrefix(base, "https://")
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, old); err == nil {
		c.Close()
		t.Error("a TLS 1.1 client was accepted")
	} else if !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("TLS 1.1 handshake failed with %v, want the server's protocol version alert", err)
	}
	cbc := clientTLS.Clone()
	cbc.MaxVersion = tls.VersionTLS12
	cbc.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cbc); err == nil {
		c.Close()
		t.Error("a TLS 1.2 client offering only CBC suites was accepted")
	}
	ok12 := clientTLS.Clone()
	ok12.MaxVersion = tls.VersionTLS12
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, ok12); err != nil {
		t.Errorf("TLS 1.2 client: %v", err)
	} else {
		c.Close()
	}
	plain := &http.Client{Timeout: 10 * time.Second}
	if resp, err := plain.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain http answered 200 on the TLS port")
		}
	}

	// wss: hello, subscribe, an update of a live collector.
	d := websocket.Dialer{TLSClientConfig: clientTLS, HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.Dial("wss://"+addr+"/ws", nil)
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer ws.Close()
	ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	var f struct {
		Type  string          `json:"type"`
		Topic string          `json:"topic"`
		Data  json.RawMessage `json:"data"`
	}
	if err := ws.ReadJSON(&f); err != nil || f.Type != "hello" {
		t.Fatalf("first frame %+v, %v; want hello", f, err)
	}
	if err := ws.WriteJSON(map[string]any{"type": "subscribe", "id": "1", "topics": []string{"testhost.cpu"}}); err != nil {
		t.Fatal(err)
	}
	for f.Type != "update" {
		f.Type = ""
		if err := ws.ReadJSON(&f); err != nil {
			t.Fatalf("waiting for an update over wss: %v", err)
		}
	}
	if f.Topic != "testhost.cpu" || !bytes.Contains(f.Data, []byte(`"usage_pct"`)) {
		t.Errorf("update %s %s, want testhost.cpu with usage_pct", f.Topic, f.Data)
	}

	if code := stop(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
				t.Fatalf("wss ended with %v, want close 1001", err)
			}
			break
		}
	}
}

// TestTLSValidation: every bad TLS or proxy setting stops startup (exit 2)
// with a message naming the flag and the file.
func TestTLSValidation(t *testing.T) {
	dir := t.TempDir()
	a := certtest.WriteSelfSigned(t, dir, "a")
	b := certtest.WriteSelfSigned(t, dir, "b")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.crt")
	tests := []struct {
		name string
		cfg  tlsConfig
		want []string // substrings of the joined errors
	}{
		{"cert without key", tlsConfig{CertFile: a.Cert}, []string{"--tls-cert", a.Cert, "needs --tls-key"}},
		{"key without cert", tlsConfig{KeyFile: a.Key}, []string{"--tls-key", a.Key, "needs --tls-cert"}},
		{"missing cert file", tlsConfig{CertFile: missing, KeyFile: a.Key}, []string{"--tls-cert", missing, "no such file"}},
		{"missing key file", tlsConfig{CertFile: a.Cert, KeyFile: missing}, []string{"--tls-key", missing, "no such file"}},
		{"directory as key", tlsConfig{CertFile: a.Cert, KeyFile: dir}, []string{"--tls-key", dir, "is a directory"}},
		{"mismatched pair", tlsConfig{CertFile: a.Cert, KeyFile: b.Key}, []string{"--tls-cert", a.Cert, "--tls-key", b.Key, "does not match"}},
		{"not PEM", tlsConfig{CertFile: garbage, KeyFile: a.Key}, []string{"--tls-cert", garbage, "PEM"}},
		{"key where the cert goes", tlsConfig{CertFile: a.Key, KeyFile: a.Key}, []string{"--tls-cert", a.Key}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.cfg.validate()
			if len(errs) == 0 {
				t.Fatal("no error")
			}
			msg := ""
			for _, e := range errs {
				msg += e.Error() + "\n"
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("errors do not mention %q:\n%s", w, msg)
				}
			}
		})
	}
	for _, ok := range []tlsConfig{{}, {CertFile: a.Cert, KeyFile: a.Key}} {
		if errs := ok.validate(); len(errs) > 0 {
			t.Errorf("%+v: unexpected errors %v", ok, errs)
		}
	}
	// Every trusted proxy that does not parse is named.
	for _, tt := range []struct {
		proxies string
		want    []string
	}{
		{"10.0.0.0/8,proxy.example,10.1.2.3/33", []string{`--trusted-proxies "proxy.example"`, `--trusted-proxies "10.1.2.3/33"`}},
		{"10.0.0.0/8,::1,192.0.2.7,fd00::/8", nil},
	} {
		var cfg serveConfig
		if err := parseWithEnv(newServeFlags(&cfg), []string{"--trusted-proxies", tt.proxies}, env(nil)); err != nil {
			t.Fatal(err)
		}
		err := cfg.validate()
		if tt.want == nil && err != nil {
			t.Errorf("--trusted-proxies %s: unexpected errors %v", tt.proxies, err)
		}
		for _, w := range tt.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("--trusted-proxies %s: errors %v do not mention %q", tt.proxies, err, w)
			}
		}
	}

	if os.Geteuid() != 0 { // root reads any file
		unreadable := filepath.Join(dir, "unreadable.key")
		if err := os.WriteFile(unreadable, []byte("x"), 0o000); err != nil {
			t.Fatal(err)
		}
		errs := (&tlsConfig{CertFile: a.Cert, KeyFile: unreadable}).validate()
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), "--tls-key") || !strings.Contains(errs[0].Error(), "permission denied") {
			t.Errorf("unreadable key: %v", errs)
		}
	}

	// Through the command: exit 2 before anything listens, every problem named.
	var stderr bytes.Buffer
	code := serveMain(context.Background(), []string{"--listen", "127.0.0.1:0", "--tls-cert", a.Cert, "--tls-key", b.Key,
		"--trusted-proxies", "nope"}, &stderr, func(string) string { return "" }, nil)
	if code != 2 {
		t.Fatalf("exit code %d, want 2; stderr:\n%s", code, stderr.String())
	}
	for _, w := range []string{"--tls-cert", a.Cert, b.Key, "--trusted-proxies"} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("stderr does not mention %q:\n%s", w, stderr.String())
		}
	}
	// The environment works too.
	stderr.Reset()
	env := map[string]string{"OPSDASH_TLS_CERT": missing, "OPSDASH_TLS_KEY": a.Key}
	code = serveMain(context.Background(), []string{"--listen", "127.0.0.1:0"}, &stderr, func(k string) string { return env[k] }, nil)
	if code != 2 || !strings.Contains(stderr.String(), missing) {
		t.Fatalf("OPSDASH_TLS_CERT of a missing file: exit %d, stderr:\n%s", code, stderr.String())
	}
}

// dialFrom opens /ws with an X-Forwarded-For header and returns the first
// frame's type ("hello" when admitted) or the close code it was refused
// with.
func dialFrom(t *testing.T, wsURL, xff string) (*websocket.Conn, string, int) {
	t.Helper()
	h := http.Header{}
	if xff != "" {
		h.Set("X-Forwarded-For", xff)
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	c, _, err := d.Dial(wsURL, h)
	if err != nil {
		t.Fatalf("dial with X-Forwarded-For %q: %v", xff, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	var f struct {
		Type string `json:"type"`
	}
	if err := c.ReadJSON(&f); err != nil {
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return c, "", ce.Code
		}
		t.Fatalf("X-Forwarded-For %q: %v", xff, err)
	}
	return c, f.Type, 0
}

// TestTrustedProxiesPerIPLimit: behind a trusted proxy (here the test
// itself on 127.0.0.1) the per-IP limit counts the forwarded client, the
// rightmost X-Forwarded-For address that is not a proxy; a forged leftmost
// entry changes nothing. Without --trusted-proxies the header is ignored.
func TestTrustedProxiesPerIPLimit(t *testing.T) {
	t.Run("trusted", func(t *testing.T) {
		base, _ := startServer(t, "--trusted-proxies", "127.0.0.1,10.0.0.0/8", "--max-conns-per-ip", "1")
		wsURL := "ws" + strings.TrimPrefix(base, "http") + "/ws"
		for _, step := range []struct {
			xff       string
			wantHello bool
		}{
			{"203.0.113.1", true},                   // client A
			{"203.0.113.2", true},                   // client B, same proxy: its own count
			{"203.0.113.1", false},                  // A again: over its limit
			{"198.51.100.66, 203.0.113.2", false},   // B with a forged leftmost entry: still B
			{"203.0.113.1, 10.1.1.1", false},        // A through a second, trusted proxy
			{"203.0.113.3, 10.1.1.1", true},         // C through that proxy
			{"2001:db8::1", true},                   // an IPv6 client
			{"[2001:db8::1]:4711, 10.1.1.1", false}, // the same one, with a port
		} {
			_, typ, code := dialFrom(t, wsURL, step.xff)
			if step.wantHello && typ != "hello" {
				t.Fatalf("X-Forwarded-For %q: refused with %d, want admitted", step.xff, code)
			}
			if !step.wantHello && code != websocket.ClosePolicyViolation {
				t.Fatalf("X-Forwarded-For %q: got %q/%d, want close 1008", step.xff, typ, code)
			}
		}
	})
	t.Run("untrusted", func(t *testing.T) {
		base, _ := startServer(t, "--max-conns-per-ip", "1")
		wsURL := "ws" + strings.TrimPrefix(base, "http") + "/ws"
		if _, typ, code := dialFrom(t, wsURL, "203.0.113.1"); typ != "hello" {
			t.Fatalf("first connection refused with %d", code)
		}
		// Another "client" named by a header the server does not trust is
		// the same peer, 127.0.0.1.
		if _, _, code := dialFrom(t, wsURL, "203.0.113.2"); code != websocket.ClosePolicyViolation {
			t.Fatalf("spoofed X-Forwarded-For got close %d, want 1008", code)
		}
	})
}
