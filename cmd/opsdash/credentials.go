package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/opsdash/opsdash/cmd/internal/fleet"
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
	host := fs.String("host-id", "", "print the credentials of this host's agent: they publish only this host's topics")
	replica := fs.String("replica", "", "print the credentials of a replica (opsdash serve --nats) with this name: they read everything and publish only the publish API's topics")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: opsdash credentials (--nats-data DIR | --nats-secret-file FILE) (--host-id ID | --replica NAME)\n\n"+
			"Prints USER:PASSWORD for --nats-credentials (or OPSDASH_NATS_CREDENTIALS) of an agent or a replica.\n\n")
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
	if (*host == "") == (*replica == "") {
		errs = append(errs, errors.New("give one of --host-id ID or --replica NAME"))
	}
	for _, n := range []struct{ flag, v string }{{"--host-id", *host}, {"--replica", *replica}} {
		if n.v != "" && !validName(n.v) {
			errs = append(errs, fmt.Errorf("%s %q: a host id or name is one token of [a-z0-9_-]", n.flag, n.v))
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
	if *host != "" {
		fmt.Fprintln(stdout, secret.Agent(*host))
	} else {
		fmt.Fprintln(stdout, secret.Replica(*replica))
	}
	return 0
}
