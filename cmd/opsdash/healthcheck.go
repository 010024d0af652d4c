package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/opsdash/opsdash/cmd/opsdash/internal/certs"
)

// defaultServer is the URL of a server started with the default --listen,
// seen from the same machine: watch's default --server.
const defaultServer = "http://127.0.0.1" + defaultListen

// healthcheckMain is the `opsdash healthcheck` client: it asks a server's
// /readyz (answered by readyz.go) and exits 0 when it is ready, 1
// otherwise, 2 on bad flags. It exists so that a container image without
// curl can have a HEALTHCHECK.
//
// Without --server it asks the local server: the one that wrote --addr-file
// (the image sets OPSDASH_ADDR_FILE, see addrfile.go), else the one that
// --listen and --tls-cert describe (OPSDASH_LISTEN and OPSDASH_TLS_CERT: in
// a container the healthcheck runs with the server's environment), over
// https when there is a certificate, accepting only that certificate. See
// healthTarget.
func healthcheckMain(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "the server's http(s) base URL, asked as given (default: the local server, of --addr-file, else of --listen and --tls-cert)")
	addrFile := fs.String("addr-file", "", "without --server: the file the local server wrote its address to (serve --addr-file); when it is missing, --listen and --tls-cert are used")
	listen := fs.String("listen", defaultListen, "without --server and --addr-file: the local server's --listen")
	certFile := fs.String("tls-cert", "", "without --server and --addr-file: the local server's --tls-cert; ask over https and accept only this certificate")
	caFile := fs.String("ca", "", "PEM file of the CA certificates to verify an https --server with (default: the system's roots)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for an answer")
	if err := parseWithEnv(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		// The flag package has printed a command-line error already, but
		// not one from an OPSDASH_* variable: say it, or a container's
		// health check fails without a word.
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 2
	}
	target, err := healthTarget(*server, *addrFile, *listen, *certFile, *caFile)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 2
	}
	client := &http.Client{Transport: target.transport()}
	defer client.CloseIdleConnections()

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	url := target.base + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "healthcheck: %s: %s %s\n", url, resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	// Which server answered is what the reader cannot tell from the exit
	// code (it may come from --addr-file, OPSDASH_LISTEN or a flag); the
	// body of a ready opsdash is just "ready" and would say nothing new.
	line := target.base + " is ready"
	if b := strings.TrimSpace(string(body)); b != "ready" {
		line += fmt.Sprintf(" (it answered %q)", b)
	}
	fmt.Fprintln(stdout, line)
	return 0
}

// checkTarget is the server a healthcheck asks and how it trusts it.
type checkTarget struct {
	base  string      // base URL without a trailing slash
	local bool        // derived from --listen: this machine's server, never through a proxy
	tls   *tls.Config // nil: Go's defaults (system roots)
}

// transport is a one-request transport to the target.
func (t checkTarget) transport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = t.tls
	tr.DisableKeepAlives = true
	if t.local {
		// An HTTPS_PROXY in the environment is for the outside world, not
		// for a server on this machine's own address.
		tr.Proxy = nil
	}
	return tr
}

// healthTarget works out which server to ask and how to verify it:
//
//   - an explicit URL (--server, else OPSDASH_SERVER) is asked as given; an
//     https one is verified against --ca, or the system's roots;
//   - otherwise the local server: the one that wrote addrFile, where it
//     really listens (whatever flags it was started with), else the one of
//     --listen and --tls-cert; https with the certificate pinned when
//     there is one, else http.
func healthTarget(server, addrFile, listen, certFile, caFile string) (checkTarget, error) {
	if s := strings.TrimRight(server, "/"); s != "" {
		t := checkTarget{base: s}
		var err error
		if strings.HasPrefix(s, "https://") && caFile != "" {
			t.tls, err = certs.CAClientConfig(caFile)
		}
		return t, err
	}
	base := ""
	if addrFile != "" {
		f, ok, err := readAddrFile(addrFile)
		if err != nil {
			return checkTarget{}, err
		}
		if ok {
			base, certFile = f.URL, f.TLSCert
		}
	}
	if base == "" {
		var err error
		if base, err = localURL(listen, certFile != ""); err != nil {
			return checkTarget{}, err
		}
	}
	t := checkTarget{base: base, local: true}
	if strings.HasPrefix(base, "https://") {
		var err error
		t.tls, err = certs.PinnedClientConfig(certFile)
		return t, err
	}
	return t, nil
}
