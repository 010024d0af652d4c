package flagfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const fileAuthToken = "file-auth-token-0123456789abcdef"

// writeSecret writes content to a file named name in dir, readable by its
// owner only, as a mounted Secret would be.
func writeSecret(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string
		want    string // the token; "" = an error is wanted
		wantErr string
	}{
		{"trailing newline", fileAuthToken + "\n", fileAuthToken, ""},
		{"no newline", fileAuthToken, fileAuthToken, ""},
		{"CRLF and spaces around", "  " + fileAuthToken + " \r\n\n", fileAuthToken, ""},
		{"empty", "", "", "the file is empty"},
		{"only whitespace", " \n\t\n", "", "the file is empty"},
		{"two lines", fileAuthToken + "\nsecond-line-secret\n", "", "more than one line"},
		{"too large", strings.Repeat("x", MaxTokenBytes+1), "", "larger than 4096 bytes"},
		{"largest allowed", strings.Repeat("x", MaxTokenBytes), strings.Repeat("x", MaxTokenBytes), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeSecret(t, dir, strings.ReplaceAll(tt.name, " ", "_"), tt.content)
			got, err := ReadToken("--auth-token-file", p)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("ReadToken = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ReadToken = %q, want an error containing %q", got, tt.wantErr)
			}
			msg := err.Error()
			for _, w := range []string{"--auth-token-file", p, tt.wantErr} {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if strings.Contains(msg, "second-line-secret") || strings.Contains(msg, "xxxx") {
				t.Errorf("error quotes the file's content: %q", msg)
			}
		})
	}

	for _, tt := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "missing"), "no such file"},
		{"a directory", dir, "is a directory"},
	} {
		_, err := ReadToken("--publish-token-file", tt.path)
		if err == nil || !strings.Contains(err.Error(), "--publish-token-file") || !strings.Contains(err.Error(), tt.path) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one naming the flag, %q and %q", tt.name, err, tt.path, tt.want)
		}
	}
	if os.Geteuid() != 0 { // root reads any file
		p := writeSecret(t, dir, "unreadable", fileAuthToken)
		if err := os.Chmod(p, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadToken("--auth-token-file", p); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("unreadable file: %v, want permission denied", err)
		}
	}
}
