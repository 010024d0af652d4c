package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opsdash/opsdash/cmd/internal/fleet"
	"github.com/opsdash/opsdash/cmd/opsdash/internal/envflag"
)

// credentialsMain runs `opsdash credentials`: on the hub, print the NATS
// credentials of one host's agent (--host-id) or of one replica
// (--replica), derived from the hub's secret. Nothing is stored: the same
// command prints the same credentials again, and adding a host is this
// command plus `opsdash agent` on the host.
func credentialsMain(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("credentials", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var hub hubSecret
	hub.register(fs)
	var hosts, replicas envflag.List
	fs.Var(&hosts, "host-id", "the credentials of this host's agent (comma-separated: several): they publish only this host's topics")
	fs.Var(&replicas, "replica", "the credentials of a replica (opsdash serve --nats) with this name (comma-separated: several): they read everything and publish only the publish API's topics")
	outDir := fs.String("out-dir", "", "write each to a file named after its user (agent-ID, replica-NAME; mode 0600) in this directory instead of printing it: for --nats-credentials-file")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: opsdash credentials (--nats-data DIR | --nats-secret-file FILE) (--host-id ID,… | --replica NAME,…) [--out-dir DIR]\n\n"+
			"Prints USER:PASSWORD, one line each, for --nats-credentials (or OPSDASH_NATS_CREDENTIALS) of agents or replicas.\n\n")
		fs.PrintDefaults()
	}
	if err := parseWithEnv(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "opsdash credentials: %v\n", err)
		return 2
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " ")))
	}
	if len(hosts)+len(replicas) == 0 {
		errs = append(errs, errors.New("give --host-id ID or --replica NAME (or both)"))
	}
	for _, n := range hosts {
		if !validName(n) {
			errs = append(errs, fmt.Errorf("--host-id %q: a host id is one token of [a-z0-9_-]", n))
		}
	}
	for _, n := range replicas {
		if !validName(n) {
			errs = append(errs, fmt.Errorf("--replica %q: a name is one token of [a-z0-9_-]", n))
		}
	}
	if hub.path() == "" {
		errs = append(errs, errHubSecret)
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(stderr, "opsdash credentials: %v\n", err)
		return 2
	}
	secret, err := hub.read()
	if err != nil {
		fmt.Fprintf(stderr, "opsdash credentials: %v\n", err)
		return 1
	}
	var all []fleet.Credentials
	for _, h := range hosts {
		all = append(all, secret.Agent(h))
	}
	for _, r := range replicas {
		all = append(all, secret.Replica(r))
	}
	for _, c := range all {
		if *outDir == "" {
			fmt.Fprintln(stdout, c)
			continue
		}
		if err := os.WriteFile(filepath.Join(*outDir, c.User), []byte(c.String()+"\n"), 0o600); err != nil {
			fmt.Fprintf(stderr, "opsdash credentials: %v\n", err)
			return 1
		}
	}
	return 0
}

// hubSecret is how a command run on the hub finds the hub's secret: its
// --nats-data directory or its --nats-secret-file.
type hubSecret struct{ data, file string }

var errHubSecret = errors.New("give the hub's --nats-data DIR or --nats-secret-file FILE")

func (h *hubSecret) register(fs *flag.FlagSet) {
	fs.StringVar(&h.data, "nats-data", "", "the hub's --nats-data directory (its secret is fleet.secret there)")
	fs.StringVar(&h.file, "nats-secret-file", "", "the hub's --nats-secret-file, when its secret is not in --nats-data")
}

// path is the secret's file, "" when neither flag is given.
func (h *hubSecret) path() string {
	if h.file == "" && h.data != "" {
		return filepath.Join(h.data, fleet.SecretFile)
	}
	return h.file
}

func (h *hubSecret) read() (fleet.Secret, error) {
	s, err := fleet.ReadSecret(h.path())
	if err != nil {
		return nil, fmt.Errorf("the hub's secret: %w (has the hub started once with this --nats-data?)", err)
	}
	return s, nil
}

// forgetWait bounds `opsdash forget` as a whole (NATS unreachable: it
// gives up rather than retrying for ever).
const forgetWait = 30 * time.Second

// forgetMain runs `opsdash forget HOST...`: drop decommissioned hosts from
// the fleet (fleet.Forget), connecting to its NATS with the hub's rights.
func forgetMain(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("forget", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var hub hubSecret
	hub.register(fs)
	var urls envflag.List
	fs.Var(&urls, "nats", "the fleet's NATS URLs (comma-separated), e.g. nats://hub:4222")
	creds := fs.String("nats-credentials", "", "USER:PASSWORD of a NATS user that may write KV opsdash_hosts and purge stream OPSDASH, on a NATS of your own (a hub's: give its secret instead)")
	credsFile := fs.String("nats-credentials-file", "", "file holding --nats-credentials")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: opsdash forget --nats URL (--nats-data DIR | --nats-secret-file FILE | --nats-credentials[-file] …) HOST...\n\n"+
			"Drops decommissioned hosts from the fleet: every replica removes their topics and leaves them off\n"+
			"the overview. Refused while a host's agent runs; an agent started again brings its host back.\n\n")
		fs.PrintDefaults()
	}
	if err := parseWithEnv(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "opsdash forget: %v\n", err)
		return 2
	}
	var errs []error
	if fs.NArg() == 0 {
		errs = append(errs, errors.New("name the hosts to forget"))
	}
	for _, h := range fs.Args() {
		if !validName(h) {
			errs = append(errs, fmt.Errorf("%q: a host id is one token of [a-z0-9_-]", h))
		}
	}
	if len(urls) == 0 {
		errs = append(errs, errors.New("give the fleet's --nats URL"))
	}
	own := *creds != "" || *credsFile != ""
	switch {
	case own && hub.path() != "":
		errs = append(errs, errors.New("give the hub's secret or --nats-credentials, not both"))
	case !own && hub.path() == "":
		errs = append(errs, errors.New("give the hub's --nats-data DIR or --nats-secret-file FILE, or on a NATS of your own --nats-credentials"))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(stderr, "opsdash forget: %v\n", err)
		return 2
	}
	var admin fleet.Credentials
	var err error
	if own {
		admin, err = readCredentials(*creds, *credsFile)
	} else {
		var secret fleet.Secret
		if secret, err = hub.read(); err == nil {
			admin = secret.Admin()
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "opsdash forget: %v\n", err)
		return 1
	}
	nc, err := fleet.Connect(fleet.ConnConfig{URLs: urls, Credentials: admin, Name: "opsdash forget",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Fprintf(stderr, "opsdash forget: %v\n", err)
		return 1
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), forgetWait)
	defer cancel()
	code := 0
	for _, h := range fs.Args() {
		removed, err := fleet.Forget(ctx, nc, h)
		if err != nil {
			fmt.Fprintf(stderr, "opsdash forget: %s: %v\n", h, err)
			code = 1
			continue
		}
		fmt.Fprintf(stdout, "forgot %s (%d stored values removed; each topic's last is kept, so its seqs continue if it comes back)\n", h, removed)
	}
	return code
}
