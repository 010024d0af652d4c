package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
)

// The address file is how `opsdash healthcheck` finds the server it runs
// beside. A healthcheck is another process: it sees the container's
// environment but not the server's command line, so after
// `docker run IMAGE serve --listen :9090` it would ask :8080. The server
// therefore writes where it really listens to --addr-file (the image sets
// OPSDASH_ADDR_FILE), and the healthcheck, given the same variable, reads it.

// addrFile is the content of --addr-file, as JSON.
type addrFile struct {
	// URL is the server's base URL as seen from the same machine:
	// http(s)://127.0.0.1:port for a wildcard --listen.
	URL string `json:"url"`
	// TLSCert is --tls-cert as an absolute path, "" without TLS: the
	// healthcheck accepts exactly this certificate.
	TLSCert string `json:"tls_cert,omitempty"`
}

// writeAddrFile writes the address file for a server bound to addr (the
// listener's address, with the real port) and serving certFile ("" for
// plain http). It replaces the file in one rename, so a healthcheck never
// reads half of it.
func writeAddrFile(path, addr, certFile string) error {
	u, err := localURL(addr, certFile != "")
	if err != nil {
		return err
	}
	content := addrFile{URL: u}
	if certFile != "" {
		if content.TLSCert, err = filepath.Abs(certFile); err != nil {
			return err
		}
	}
	b, err := json.Marshal(content)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".opsdash-addr-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename: already gone
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	// Readable by the healthcheck, which may run as another user than the
	// server (docker exec --user); it holds no secret.
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// readAddrFile reads an address file; ok is false when there is none (no
// server has written it yet, or it stopped and removed it).
func readAddrFile(path string) (f addrFile, ok bool, err error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return addrFile{}, false, nil
	}
	if err != nil {
		return addrFile{}, false, fmt.Errorf("--addr-file: %w", err)
	}
	if err := json.Unmarshal(b, &f); err != nil || f.URL == "" {
		return addrFile{}, false, fmt.Errorf("--addr-file %q: not an address file written by opsdash serve", path)
	}
	return f, true, nil
}

// localURL is the base URL of a server listening on listen (host:port),
// asked from the same machine: a wildcard host becomes 127.0.0.1.
func localURL(listen string, https bool) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("--listen %q: %v", listen, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return "", fmt.Errorf("--listen %q: the port must be a number from 1 to 65535; or give --server", listen)
	}
	switch host {
	case "", "0.0.0.0", "::":
		// A wildcard address serves loopback too (Go listens dual-stack
		// on "::").
		host = "127.0.0.1"
	}
	scheme := "http"
	if https {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port), nil
}
