// Command opsdash is a live operations dashboard: it collects this host's
// metrics and serves them to browsers and programs over WebSockets, SSE and
// a small HTTP API.
//
// Usage:
//
//	opsdash [serve] [flags]     run the dashboard (the default; a fleet's hub or replica with --nats-listen or --nats)
//	opsdash agent --nats URL    publish this host's topics to a fleet
//	opsdash credentials ...     print a host's or replica's NATS credentials (on the hub)
//	opsdash forget ... HOST...  drop decommissioned hosts from a fleet
//	opsdash watch [--server URL] [--json] PATTERN...
//	opsdash healthcheck [--server URL] [--ca FILE]
//	opsdash version
//	opsdash help                (or --help, -h)
//
// Every flag can also be set with an OPSDASH_* environment variable
// (--listen ↔ OPSDASH_LISTEN); a flag on the command line wins.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Set at build time with -ldflags "-X main.version=… -X main.commit=… -X main.date=…".
var (
	version = "dev"
	commit  = "unknown"
	date    = "unknown"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run dispatches to a subcommand and returns the process exit code. It is
// main without the process: tests call it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	} else if len(args) == 1 && isHelpFlag(args[0]) {
		// `opsdash --help` asks about opsdash, not about serve's flags
		// (`opsdash serve --help`, which the usage names).
		cmd = "help"
	}
	switch cmd {
	case "serve":
		return serveMain(ctx, args, stderr, getenv, nil)
	case "agent":
		return agentMain(ctx, args, stderr, getenv, nil)
	case "credentials":
		return credentialsMain(args, stdout, stderr, getenv)
	case "forget":
		return forgetMain(args, stdout, stderr, getenv)
	case "watch":
		return watchMain(ctx, args, stdout, stderr, getenv)
	case "healthcheck":
		return healthcheckMain(ctx, args, stdout, stderr, getenv)
	case "version":
		fmt.Fprintf(stdout, "opsdash %s (commit %s, built %s)\n", version, commit, date)
		return 0
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "opsdash: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

// isHelpFlag reports whether arg asks for help the way the flag package
// understands it: -h, -help, --h or --help.
func isHelpFlag(arg string) bool {
	switch arg {
	case "-h", "-help", "--h", "--help":
		return true
	}
	return false
}

const usage = `Usage:
  opsdash [serve] [flags]          run the dashboard (default); opsdash serve --help lists the flags;
                                   --nats-listen ADDR --nats-data DIR makes it a fleet's hub, --nats URL a replica
  opsdash agent --nats URL [--host-id ID]
                                   collect this host and publish to a fleet's NATS (--help for flags)
  opsdash credentials (--nats-data DIR | --nats-secret-file FILE) (--host-id ID | --replica NAME)
                                   on the hub: print an agent's or a replica's NATS credentials
  opsdash forget --nats URL (--nats-data DIR | --nats-secret-file FILE | --nats-credentials U:P) HOST...
                                   drop decommissioned hosts from a fleet (refused while a host's agent runs)
  opsdash watch [--server URL] [--json] PATTERN...
                                   print updates of matching topics as they arrive (--help for flags)
  opsdash healthcheck [--server URL] [--ca FILE]
                                   exit 0 when the server is ready, 1 otherwise (--help for flags)
  opsdash version                  print the version
  opsdash help                     print this

Every flag can also be set with an OPSDASH_* environment variable (--listen ↔ OPSDASH_LISTEN).
`
