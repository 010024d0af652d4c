// Package flagfile reads the files that command-line flags name (token
// files, certificates, CA bundles) and words every problem with one the
// same way: the flag, the quoted path, the reason, and never the file's
// content, which may be a secret.
//
// Token files (--auth-token-file, --publish-token-file) are the way
// Kubernetes (a Secret mounted as a volume) and Docker (/run/secrets/NAME)
// hand secrets to a process without putting them in its environment or on
// its command line. Decisions (docs/deploy.md "Tokens from files" is the
// operator's description):
//   - Whitespace around the token is trimmed (editors and `echo` add a
//     newline); a file with nothing else in it, more than one line, or more
//     than MaxTokenBytes is refused: it is not a token file.
//   - The file is read once, by the caller, at startup: rotating a token is
//     a restart (see cmd/opsdash, loadTokenFile).
package flagfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxTokenBytes bounds a token file: tokens are tens of bytes, so a larger
// file is a wrong path (a certificate, a log), and reading stops even on
// /dev/zero.
const MaxTokenBytes = 4 << 10

// Error words err, met while using the file at path that flag names, as
// `flag "path": reason`. An *os.PathError's own path is dropped ("open
// /x: permission denied" → "permission denied"): the message names the
// file already. The result wraps err's reason.
func Error(flag, path string, err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s %q: %w", flag, path, err)
}

// ReadToken returns the token held in the file at path, which flag names,
// without the whitespace around it.
func ReadToken(flag, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", Error(flag, path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxTokenBytes+1))
	if err != nil {
		return "", Error(flag, path, err)
	}
	if len(b) > MaxTokenBytes {
		return "", fmt.Errorf("%s %q: larger than %d bytes, so not a token file; the file must hold only the token", flag, path, MaxTokenBytes)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s %q: the file is empty; it must hold the token", flag, path)
	}
	if strings.ContainsAny(tok, "\r\n") {
		return "", fmt.Errorf("%s %q: the file holds more than one line; it must hold only the token", flag, path)
	}
	return tok, nil
}
