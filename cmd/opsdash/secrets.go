package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// Tokens from files (--auth-token-file, --publish-token-file): the way
// Kubernetes (a Secret mounted as a volume) and Docker (/run/secrets/NAME)
// hand secrets to a process without putting them in its environment or on
// its command line.
//
// Decisions:
//   - The file is read once, at startup; to rotate a token, replace the
//     file and restart. Re-reading it would need the publish API to swap
//     its token while running, and a half-rotated fleet (some replicas with
//     the old token, some with the new) is what a rolling restart avoids.
//   - Whitespace around the token is trimmed (editors and `echo` add a
//     newline); a file with nothing else in it, more than one line, or more
//     than maxTokenFileBytes is refused: it is not a token file.
//   - Setting a token and its file is refused rather than one silently
//     winning, whether each came from a flag or a variable.
//   - Errors name the flag and the path, never the file's content.

// maxTokenFileBytes bounds a token file: tokens are tens of bytes, so a
// larger file is a wrong path (a certificate, a log), and reading stops
// even on /dev/zero.
const maxTokenFileBytes = 4 << 10

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
	tok, err := readTokenFile("--"+name+"-file", file)
	if err != nil {
		return err
	}
	*token, *loaded = tok, true
	return nil
}

// readTokenFile returns the token held in the file at path, without the
// whitespace around it. Errors name flag and path and never quote the
// file's content.
func readTokenFile(flagName, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s %q: %w", flagName, path, unwrapPath(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("%s %q: %w", flagName, path, unwrapPath(err))
	}
	if len(b) > maxTokenFileBytes {
		return "", fmt.Errorf("%s %q: larger than %d bytes, so not a token file; the file must hold only the token", flagName, path, maxTokenFileBytes)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s %q: the file is empty; it must hold the token", flagName, path)
	}
	if strings.ContainsAny(tok, "\r\n") {
		return "", fmt.Errorf("%s %q: the file holds more than one line; it must hold only the token", flagName, path)
	}
	return tok, nil
}
