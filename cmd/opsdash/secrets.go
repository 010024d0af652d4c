package main

import (
	"fmt"

	"github.com/opsdash/opsdash/cmd/opsdash/internal/flagfile"
)

// Tokens from files (--auth-token-file, --publish-token-file); reading
// one is flagfile.ReadToken. Decisions:
//   - The file is read once, at startup; to rotate a token, replace the
//     file and restart. Re-reading it would need the publish API to swap
//     its token while running, and a half-rotated fleet (some replicas with
//     the old token, some with the new) is what a rolling restart avoids.
//   - Setting a token and its file is refused rather than one silently
//     winning, whether each came from a flag or a variable.
//   - Errors name the flag and the path, never the file's content.

// loadTokenFile fills *token from file, the value of --NAME-file, once
// (loaded remembers it, so validate may run again). With file empty it does
// nothing. name is the token's flag without dashes ("auth-token").
func loadTokenFile(token *string, loaded *bool, name, file string) error {
	if file == "" || *loaded {
		return nil
	}
	if *token != "" {
		return fmt.Errorf("--%s and --%s-file are both set (as flags or as %s and %s): set only one",
			name, name, envName(name), envName(name+"-file"))
	}
	tok, err := flagfile.ReadToken("--"+name+"-file", file)
	if err != nil {
		return err
	}
	*token, *loaded = tok, true
	return nil
}
