package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
)

// beOpsdash, set to 1 in a child's environment, makes the test binary run
// opsdash's main with its arguments instead of the tests: a test gets a
// real server process (one it can stop with SIGSTOP) without building one.
const beOpsdash = "OPSDASH_TEST_BE_MAIN"

// chromiumMissing is set when a browser test skipped for want of Chromium.
var chromiumMissing atomic.Bool

func TestMain(m *testing.M) {
	if os.Getenv(beOpsdash) == "1" {
		main() // exits
	}
	code := m.Run()
	if chromiumMissing.Load() {
		// Shown by `go test -v` and by `go test` run in this directory;
		// `go test ./...` prints only "ok" for a passing package, which
		// is why the README says how to see it.
		fmt.Fprintln(os.Stderr, "opsdash: the browser tests were SKIPPED: Chromium not found "+
			"(apt-get install chromium, or set OPSDASH_CHROMIUM); the pages were not tested in a browser")
	}
	os.Exit(code)
}

// TestHelp: `opsdash --help` and `-h` on the bare command list the
// subcommands, as `opsdash help` does; `opsdash serve --help` lists serve's
// flags.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"-help"}, {"help"}} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, &stdout, &stderr, noEnv)
		if code != 0 || stderr.Len() > 0 {
			t.Errorf("opsdash %s: exit %d, stderr %q", args[0], code, stderr.String())
		}
		for _, want := range []string{"opsdash [serve] [flags]", "opsdash watch", "opsdash healthcheck", "opsdash version", "opsdash serve --help"} {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("opsdash %s does not show %q:\n%s", args[0], want, stdout.String())
			}
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--help"}, &stdout, &stderr, noEnv); code != 0 || !strings.Contains(stderr.String(), "-listen") {
		t.Errorf("opsdash serve --help: exit %d, %q; want serve's flags", code, stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"nonsense"}, &stdout, &stderr, noEnv); code != 2 || !strings.Contains(stderr.String(), "opsdash watch") {
		t.Errorf("opsdash nonsense: exit %d, %q; want 2 and the usage", code, stderr.String())
	}
}
