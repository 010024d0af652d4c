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
		{name: "ready", handler: readyz(200, "ready"), want: 0, stdout: "ready: ready"},
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
			if !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stdout %q, stderr %q; want them to contain %q, %q", stdout.String(), stderr.String(), tc.stdout, tc.stderr)
			}
		})
	}
}

// TestHealthcheckURL: which URL healthcheck asks, from --server,
// OPSDASH_SERVER, --listen and whether there is a --tls-cert.
func TestHealthcheckURL(t *testing.T) {
	for _, tc := range []struct {
		name, server, envServer, listen string
		https                           bool
		want                            string
		wantLocal                       bool
		wantErr                         string
	}{
		{name: "nothing set", listen: ":8080", want: "http://127.0.0.1:8080", wantLocal: true},
		{name: "TLS on another port", listen: ":8443", https: true, want: "https://127.0.0.1:8443", wantLocal: true},
		{name: "the image's --server with TLS in the environment", server: "http://127.0.0.1:8080", listen: ":8443", https: true,
			want: "https://127.0.0.1:8443", wantLocal: true},
		{name: "the default with a trailing slash", server: "http://127.0.0.1:8080/", listen: ":9090", want: "http://127.0.0.1:9090", wantLocal: true},
		{name: "IPv4 wildcard", listen: "0.0.0.0:9090", want: "http://127.0.0.1:9090", wantLocal: true},
		{name: "IPv6 wildcard", listen: "[::]:9090", want: "http://127.0.0.1:9090", wantLocal: true},
		{name: "a loopback address", listen: "127.0.0.2:9090", want: "http://127.0.0.2:9090", wantLocal: true},
		{name: "IPv6 loopback", listen: "[::1]:9443", https: true, want: "https://[::1]:9443", wantLocal: true},
		{name: "a name", listen: "localhost:9090", want: "http://localhost:9090", wantLocal: true},
		{name: "explicit --server wins", server: "https://ops.example.com:8443/", envServer: "http://127.0.0.1:9999", listen: ":9090", https: true,
			want: "https://ops.example.com:8443"},
		{name: "OPSDASH_SERVER behind the image's --server", server: "http://127.0.0.1:8080", envServer: "http://127.0.0.1:9090", listen: ":8443", https: true,
			want: "http://127.0.0.1:9090"},
		{name: "OPSDASH_SERVER alone", envServer: "http://10.0.0.5:8080", listen: ":8080", want: "http://10.0.0.5:8080"},
		{name: "no port", listen: "8080", wantErr: `--listen "8080"`},
		{name: "port 0", listen: ":0", wantErr: "port must be a number from 1 to 65535"},
		{name: "port out of range", listen: ":70000", wantErr: "port must be a number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, local, err := healthURL(tc.server, tc.envServer, tc.listen, tc.https)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("healthURL = %q, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want || local != tc.wantLocal {
				t.Errorf("healthURL = %q, local %v, %v; want %q, local %v", got, local, err, tc.want, tc.wantLocal)
			}
		})
	}
}

// envMap is a getenv over a map.
func envMap(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// imageHealthcheck is the Dockerfile's HEALTHCHECK command line (the test
// of the Dockerfile pins it).
var imageHealthcheck = []string{"healthcheck", "--server", "http://127.0.0.1:8080"}

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
					want: 0, stdout: "ready: ready"},
				{name: "no --server, the server's environment", env: serverEnv, args: []string{"healthcheck"}, want: 0, stdout: "ready: ready"},
				{name: "no --server, flags", args: []string{"healthcheck", "--listen", "127.0.0.1:" + port, "--tls-cert", srv.cert},
					want: 0, stdout: "ready: ready"},
				{name: "another certificate in OPSDASH_TLS_CERT",
					env: map[string]string{"OPSDASH_LISTEN": ":" + port, "OPSDASH_TLS_CERT": other.Cert}, args: imageHealthcheck,
					want: 1, stderr: "is not the one in --tls-cert \"" + other.Cert + "\""},
				{name: "no OPSDASH_TLS_CERT: plain http to the TLS port", env: map[string]string{"OPSDASH_LISTEN": ":" + port},
					args: imageHealthcheck, want: 1, stderr: `"http://127.0.0.1:` + port + `/readyz"`},
				{name: "--ca, by a name in the certificate", args: []string{"healthcheck", "--server", "https://localhost:" + port, "--ca", srv.ca},
					want: 0, stdout: "ready: ready"},
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
