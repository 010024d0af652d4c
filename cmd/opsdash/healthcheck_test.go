package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opsdash/opsdash/stream/httpapi/certtest"
)

// TestHealthcheckExitCodes runs `opsdash healthcheck` against servers in
// each state a container HEALTHCHECK meets. TestHealthcheck (serve_test.go)
// covers a real ready server and a stopped one; these answer /readyz the
// way a real server does while starting, stalled or draining.
func TestHealthcheckExitCodes(t *testing.T) {
	readyz := func(status int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/readyz" {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(status)
			io.WriteString(w, body)
		}
	}
	// hang answers nothing until the client gives up: healthcheck ends
	// only through its --timeout.
	hang := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

	// An address where nothing listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	absent := "http://" + ln.Addr().String()
	ln.Close()

	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc // nil: use url
		url     string
		viaEnv  bool // --server from OPSDASH_SERVER instead of the flag
		args    []string
		want    int
		stdout  string
		stderr  string
	}{
		{name: "ready", handler: readyz(200, "ready"), want: 0, stdout: "{url} is ready\n"},
		{name: "ready, another body", handler: readyz(200, "ok"), want: 0, stdout: `{url} is ready (it answered "ok")` + "\n"},
		{name: "ready, server from OPSDASH_SERVER", handler: readyz(200, "ready"), viaEnv: true, want: 0},
		{name: "draining", handler: readyz(503, "draining"), want: 1, stderr: "503 Service Unavailable draining"},
		{name: "collectors starting", handler: readyz(503, "collectors starting"), want: 1, stderr: "collectors starting"},
		{name: "collectors stalled", handler: readyz(503, "collectors stalled"), want: 1, stderr: "collectors stalled"},
		{name: "not opsdash", handler: http.NotFound, want: 1, stderr: "404"},
		{name: "no answer within --timeout", handler: hang, args: []string{"--timeout", "300ms"}, want: 1, stderr: "deadline exceeded"},
		{name: "absent", url: absent, want: 1, stderr: "connection refused"},
		{name: "bad flag", url: absent, args: []string{"--timeout", "soon"}, want: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url
			if tc.handler != nil {
				srv := httptest.NewServer(tc.handler)
				defer srv.Close()
				url = srv.URL
			}
			args := []string{"healthcheck"}
			getenv := noEnv
			if tc.viaEnv {
				getenv = func(k string) string {
					if k == "OPSDASH_SERVER" {
						return url
					}
					return ""
				}
			} else {
				args = append(args, "--server", url)
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append(args, tc.args...), &stdout, &stderr, getenv)
			if code != tc.want {
				t.Fatalf("exit code = %d, want %d\nstdout: %s\nstderr: %s", code, tc.want, stdout.String(), stderr.String())
			}
			wantOut := strings.ReplaceAll(tc.stdout, "{url}", url)
			if !strings.Contains(stdout.String(), wantOut) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stdout %q, stderr %q; want them to contain %q, %q", stdout.String(), stderr.String(), wantOut, tc.stderr)
			}
		})
	}
}

// TestHealthcheckURL: which URL healthcheck asks, from --server (flag or
// OPSDASH_SERVER), the address file, --listen and whether there is a
// --tls-cert. An explicit --server is asked as given, whatever else is set.
func TestHealthcheckURL(t *testing.T) {
	dir := t.TempDir()
	cert := certtest.WriteSelfSigned(t, dir, "pinned").Cert
	written := filepath.Join(dir, "addr-http")
	if err := writeAddrFile(written, "[::]:9090", ""); err != nil {
		t.Fatal(err)
	}
	writtenTLS := filepath.Join(dir, "addr-https")
	if err := writeAddrFile(writtenTLS, "127.0.0.2:9443", cert); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "not-written-yet")
	for _, tc := range []struct {
		name, server, addrFile, listen string
		https                          bool
		want                           string
		wantLocal, wantPinned          bool
		wantErr                        string
	}{
		{name: "nothing set", listen: ":8080", want: "http://127.0.0.1:8080", wantLocal: true},
		{name: "TLS on another port", listen: ":8443", https: true, want: "https://127.0.0.1:8443", wantLocal: true, wantPinned: true},
		{name: "an explicit --server beats OPSDASH_LISTEN", server: "http://127.0.0.1:8080", listen: ":18084", want: "http://127.0.0.1:8080"},
		{name: "an explicit --server beats the address file", server: "http://127.0.0.1:8080/", addrFile: written, listen: ":18084", want: "http://127.0.0.1:8080"},
		{name: "the address file beats --listen", addrFile: written, listen: ":18084", want: "http://127.0.0.1:9090", wantLocal: true},
		{name: "the address file with TLS", addrFile: writtenTLS, listen: ":8080", want: "https://127.0.0.2:9443", wantLocal: true, wantPinned: true},
		{name: "no address file yet: --listen", addrFile: missing, listen: ":9091", want: "http://127.0.0.1:9091", wantLocal: true},
		{name: "IPv4 wildcard", listen: "0.0.0.0:9090", want: "http://127.0.0.1:9090", wantLocal: true},
		{name: "IPv6 wildcard", listen: "[::]:9090", want: "http://127.0.0.1:9090", wantLocal: true},
		{name: "a loopback address", listen: "127.0.0.2:9090", want: "http://127.0.0.2:9090", wantLocal: true},
		{name: "IPv6 loopback", listen: "[::1]:9443", https: true, want: "https://[::1]:9443", wantLocal: true, wantPinned: true},
		{name: "a name", listen: "localhost:9090", want: "http://localhost:9090", wantLocal: true},
		{name: "an https --server", server: "https://ops.example.com:8443/", listen: ":9090", https: true, want: "https://ops.example.com:8443"},
		{name: "not an address file", addrFile: cert, listen: ":8080", wantErr: "not an address file"},
		{name: "no port", listen: "8080", wantErr: `--listen "8080"`},
		{name: "port 0", listen: ":0", wantErr: "port must be a number from 1 to 65535"},
		{name: "port out of range", listen: ":70000", wantErr: "port must be a number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certFile := ""
			if tc.https {
				certFile = cert
			}
			got, err := healthTarget(tc.server, tc.addrFile, tc.listen, certFile, "")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("healthTarget = %+v, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got.base != tc.want || got.local != tc.wantLocal || (got.tls != nil) != tc.wantPinned {
				t.Errorf("healthTarget = %q, local %v, pinned %v, %v; want %q, local %v, pinned %v",
					got.base, got.local, got.tls != nil, err, tc.want, tc.wantLocal, tc.wantPinned)
			}
		})
	}
}

// envMap is a getenv over a map.
func envMap(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// imageHealthcheck is the Dockerfile's HEALTHCHECK command line (the test
// of the Dockerfile pins it): no --server, which would beat every setting
// of the container.
var imageHealthcheck = []string{"healthcheck"}

// TestHealthcheckTLS runs the image's healthcheck against a real server
// serving TLS, with a self-signed certificate and with one a private CA
// issued for names other than 127.0.0.1. With the server's environment
// (OPSDASH_LISTEN, OPSDASH_TLS_CERT) it asks https on the right port and
// accepts exactly the server's certificate; an explicit https URL is
// verified the usual way, against --ca or the system's roots.
func TestHealthcheckTLS(t *testing.T) {
	dir := t.TempDir()
	self := certtest.WriteSelfSigned(t, dir, "self")
	other := certtest.WriteSelfSigned(t, dir, "other")
	issued := certtest.IssuedByCA(t, "opsdash.internal").WriteFiles(t, dir, "issued")

	for _, srv := range []struct {
		name      string
		cert, key string
		ca        string // what --ca needs
		namesIP   bool   // the certificate is valid for 127.0.0.1
	}{
		{name: "self-signed", cert: self.Cert, key: self.Key, ca: self.CA, namesIP: true},
		{name: "issued by a private CA for other names", cert: issued.Cert, key: issued.Key, ca: issued.CA},
	} {
		t.Run(srv.name, func(t *testing.T) {
			base, _ := startServer(t, "--tls-cert", srv.cert, "--tls-key", srv.key)
			port := base[strings.LastIndex(base, ":")+1:]

			// Wait for readiness with a client of the test's own.
			pool := x509.NewCertPool()
			caPEM, err := os.ReadFile(srv.ca)
			if err != nil || !pool.AppendCertsFromPEM(caPEM) {
				t.Fatalf("CA file %s: %v", srv.ca, err)
			}
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
			defer client.CloseIdleConnections()
			eventually(t, "https /readyz to report ready", func() bool {
				resp, err := client.Get("https://127.0.0.1:" + port + "/readyz")
				if err != nil {
					return false
				}
				resp.Body.Close()
				return resp.StatusCode == 200
			})

			serverEnv := map[string]string{"OPSDASH_LISTEN": ":" + port, "OPSDASH_TLS_CERT": srv.cert}
			byIP := struct {
				want   int
				stderr string
			}{0, ""}
			if !srv.namesIP {
				byIP.want, byIP.stderr = 1, "certificate for 127.0.0.1"
			}
			for _, tc := range []struct {
				name   string
				env    map[string]string
				args   []string
				want   int
				stdout string
				stderr string
			}{
				{name: "the image's command line in the server's environment", env: serverEnv, args: imageHealthcheck,
					want: 0, stdout: "https://127.0.0.1:" + port + " is ready\n"},
				{name: "no --server, the server's environment", env: serverEnv, args: []string{"healthcheck"}, want: 0, stdout: "https://127.0.0.1:" + port + " is ready\n"},
				{name: "no --server, flags", args: []string{"healthcheck", "--listen", "127.0.0.1:" + port, "--tls-cert", srv.cert},
					want: 0, stdout: "https://127.0.0.1:" + port + " is ready\n"},
				{name: "another certificate in OPSDASH_TLS_CERT",
					env: map[string]string{"OPSDASH_LISTEN": ":" + port, "OPSDASH_TLS_CERT": other.Cert}, args: imageHealthcheck,
					want: 1, stderr: "is not the one in --tls-cert \"" + other.Cert + "\""},
				{name: "no OPSDASH_TLS_CERT: plain http to the TLS port", env: map[string]string{"OPSDASH_LISTEN": ":" + port},
					args: imageHealthcheck, want: 1, stderr: `"http://127.0.0.1:` + port + `/readyz"`},
				{name: "--ca, by a name in the certificate", args: []string{"healthcheck", "--server", "https://localhost:" + port, "--ca", srv.ca},
					want: 0, stdout: "https://localhost:" + port + " is ready\n"},
				{name: "--ca, by IP address", args: []string{"healthcheck", "--server", "https://127.0.0.1:" + port, "--ca", srv.ca},
					want: byIP.want, stderr: byIP.stderr},
				{name: "--ca of another CA", args: []string{"healthcheck", "--server", "https://localhost:" + port, "--ca", other.Cert},
					want: 1, stderr: "unknown authority"},
				{name: "explicit URL, system roots", args: []string{"healthcheck", "--server", "https://localhost:" + port},
					want: 1, stderr: "unknown authority"},
				{name: "explicit URL: the server's certificate is not pinned", env: serverEnv,
					args: []string{"healthcheck", "--server", "https://localhost:" + port}, want: 1, stderr: "unknown authority"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					var stdout, stderr bytes.Buffer
					code := run(context.Background(), append(tc.args, "--timeout", "10s"), &stdout, &stderr, envMap(tc.env))
					if code != tc.want {
						t.Fatalf("exit code = %d, want %d\nstdout: %s\nstderr: %s", code, tc.want, stdout.String(), stderr.String())
					}
					if !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
						t.Errorf("stdout %q, stderr %q; want them to contain %q, %q", stdout.String(), stderr.String(), tc.stdout, tc.stderr)
					}
				})
			}
		})
	}
}

// TestHealthcheckPlainHTTP: without a certificate the local server is asked
// over http on OPSDASH_LISTEN's port, also through the image's explicit
// default --server; any other explicit URL is asked as given.
func TestHealthcheckPlainHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "ready")
	}))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	absent := "http://" + ln.Addr().String()
	ln.Close()
	missing := filepath.Join(t.TempDir(), "missing.pem")

	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		want   int
		stderr string
	}{
		{name: "OPSDASH_LISTEN", env: map[string]string{"OPSDASH_LISTEN": ":" + port}, args: []string{"healthcheck"}, want: 0},
		{name: "OPSDASH_LISTEN with the image's command line", env: map[string]string{"OPSDASH_LISTEN": "0.0.0.0:" + port}, args: imageHealthcheck, want: 0},
		{name: "OPSDASH_SERVER with the image's command line", env: map[string]string{"OPSDASH_SERVER": srv.URL}, args: imageHealthcheck, want: 0},
		{name: "an explicit URL beats OPSDASH_LISTEN", env: map[string]string{"OPSDASH_LISTEN": ":" + port},
			args: []string{"healthcheck", "--server", absent}, want: 1, stderr: "connection refused"},
		{name: "--ca does not matter for http", args: []string{"healthcheck", "--server", srv.URL, "--ca", missing}, want: 0},
		{name: "bad OPSDASH_LISTEN", env: map[string]string{"OPSDASH_LISTEN": port}, args: imageHealthcheck, want: 2, stderr: `--listen "` + port + `"`},
		{name: "unreadable OPSDASH_TLS_CERT", env: map[string]string{"OPSDASH_LISTEN": ":" + port, "OPSDASH_TLS_CERT": missing},
			args: imageHealthcheck, want: 2, stderr: "--tls-cert \"" + missing + "\": no such file"},
		{name: "unreadable --ca", args: []string{"healthcheck", "--server", "https://localhost:" + port, "--ca", missing},
			want: 2, stderr: "--ca \"" + missing + "\": no such file"},
		{name: "--ca without a certificate", args: []string{"healthcheck", "--server", "https://localhost:" + port, "--ca", writeFile(t, "not PEM\n")},
			want: 2, stderr: "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr, envMap(tc.env))
			if code != tc.want {
				t.Fatalf("exit code = %d, want %d\nstdout: %s\nstderr: %s", code, tc.want, stdout.String(), stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q, want it to contain %q", stderr.String(), tc.stderr)
			}
		})
	}
}

// writeFile writes content to a new file and returns its path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// A bad OPSDASH_* value is said on stderr, not only in the exit code.
func TestHealthcheckBadEnvIsReported(t *testing.T) {
	var stderr strings.Builder
	getenv := func(k string) string {
		if k == "OPSDASH_TIMEOUT" {
			return "5" // no unit
		}
		return ""
	}
	if code := run(context.Background(), []string{"healthcheck"}, io.Discard, &stderr, getenv); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), "OPSDASH_TIMEOUT") {
		t.Fatalf("stderr %q does not name OPSDASH_TIMEOUT", stderr.String())
	}
}

// TestHealthcheckFollowsTheAddressFile is `docker run IMAGE serve --listen
// :PORT`: the port (and TLS) are given to serve as flags, which a
// healthcheck process cannot see; with the image's OPSDASH_ADDR_FILE in
// both environments it asks the right server anyway, even when
// OPSDASH_LISTEN says otherwise. The server removes the file as it stops.
func TestHealthcheckFollowsTheAddressFile(t *testing.T) {
	dir := t.TempDir()
	pair := certtest.WriteSelfSigned(t, dir, "srv")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"http", nil},
		{"https, --tls-cert as a flag", []string{"--tls-cert", pair.Cert, "--tls-key", pair.Key}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addrFile := filepath.Join(t.TempDir(), "opsdash.addr")
			_, stop := startServer(t, append([]string{"--addr-file", addrFile}, tc.args...)...)
			env := envMap(map[string]string{"OPSDASH_ADDR_FILE": addrFile, "OPSDASH_LISTEN": "127.0.0.1:1"})
			var stdout, stderr bytes.Buffer
			eventually(t, "the healthcheck to pass", func() bool {
				stdout.Reset()
				stderr.Reset()
				return run(context.Background(), append(slices.Clone(imageHealthcheck), "--timeout", "10s"), &stdout, &stderr, env) == 0
			})
			if !strings.Contains(stdout.String(), "ready") {
				t.Errorf("stdout %q", stdout.String())
			}
			if code := stop(); code != 0 {
				t.Fatalf("serve exited %d", code)
			}
			if _, err := os.Stat(addrFile); !os.IsNotExist(err) {
				t.Errorf("the address file is still there after the server stopped (%v)", err)
			}
			stderr.Reset()
			if code := run(context.Background(), imageHealthcheck, io.Discard, &stderr, env); code != 1 || !strings.Contains(stderr.String(), "127.0.0.1:1") {
				t.Errorf("with the server gone: exit %d, %q; want 1 from asking OPSDASH_LISTEN", code, stderr.String())
			}
		})
	}
}
