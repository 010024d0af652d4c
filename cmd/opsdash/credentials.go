package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

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
	data := fs.String("nats-data", "", "the hub's --nats-data directory (its secret is fleet.secret there)")
	secretFile := fs.String("nats-secret-file", "", "the hub's --nats-secret-file, when its secret is not in --nats-data")
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
	path := *secretFile
	if path == "" && *data != "" {
		path = filepath.Join(*data, fleet.SecretFile)
	}
	if path == "" {
		errs = append(errs, errors.New("give the hub's --nats-data DIR or --nats-secret-file FILE"))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(stderr, "opsdash credentials: %v\n", err)
		return 2
	}
	secret, err := fleet.ReadSecret(path)
	if err != nil {
		fmt.Fprintf(stderr, "opsdash credentials: the hub's secret: %v (has the hub started once with this --nats-data?)\n", err)
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
