package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
