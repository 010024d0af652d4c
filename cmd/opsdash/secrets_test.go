package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	fileAuthToken    = "file-auth-token-0123456789abcdef"
	filePublishToken = "file-publish-token-0123456789"
)

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

// TestTokenFileConfig: the token files are read by validate, from flags or
// OPSDASH_*_FILE variables; a token and its file together, an empty file
// or a token that is no good are refused with a message naming the flag
// and the path and never the token.
func TestTokenFileConfig(t *testing.T) {
	dir := t.TempDir()
	authFile := writeSecret(t, dir, "auth", fileAuthToken+"\n")
	pubFile := writeSecret(t, dir, "publish", filePublishToken+"\n")
	empty := writeSecret(t, dir, "empty", "\n")
	short := writeSecret(t, dir, "short", "short-secret\n")
	spaced := writeSecret(t, dir, "spaced", "secret secret secret\n")

	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		auth, pub string   // the tokens wanted when valid
		want      []string // substrings of the error; nil = valid
	}{
		{name: "flags", args: []string{"--auth-token-file", authFile, "--publish-token-file", pubFile}, auth: fileAuthToken, pub: filePublishToken},
		{name: "environment", env: map[string]string{"OPSDASH_AUTH_TOKEN_FILE": authFile, "OPSDASH_PUBLISH_TOKEN_FILE": pubFile},
			auth: fileAuthToken, pub: filePublishToken},
		{name: "--metrics-auth is satisfied by a token file", args: []string{"--auth-token-file", authFile, "--metrics-auth"}, auth: fileAuthToken},
		{name: "auth token and its file", args: []string{"--auth-token", testAuthToken, "--auth-token-file", authFile},
			want: []string{"--auth-token and --auth-token-file are both set", "OPSDASH_AUTH_TOKEN_FILE", "set only one"}},
		{name: "auth token from env, file from flag", args: []string{"--auth-token-file", authFile}, env: map[string]string{"OPSDASH_AUTH_TOKEN": testAuthToken},
			want: []string{"--auth-token and --auth-token-file are both set"}},
		{name: "publish token and its file", env: map[string]string{"OPSDASH_PUBLISH_TOKEN": "publish-token-0123456789", "OPSDASH_PUBLISH_TOKEN_FILE": pubFile},
			want: []string{"--publish-token and --publish-token-file are both set", "OPSDASH_PUBLISH_TOKEN"}},
		{name: "empty auth token file", args: []string{"--auth-token-file", empty}, want: []string{"--auth-token-file", empty, "the file is empty"}},
		{name: "empty publish token file", args: []string{"--publish-token-file", empty}, want: []string{"--publish-token-file", empty, "the file is empty"}},
		{name: "missing file", args: []string{"--auth-token-file", filepath.Join(dir, "nope")}, want: []string{"--auth-token-file", filepath.Join(dir, "nope"), "no such file"}},
		{name: "short token in the file", args: []string{"--auth-token-file", short},
			want: []string{`--auth-token-file "` + short + `": the token must be at least 16 characters long (it has 12)`}},
		{name: "space in the file's token", args: []string{"--auth-token-file", spaced},
			want: []string{`--auth-token-file "` + spaced + `": the token may hold only printable ASCII`}},
		{name: "both problems at once", args: []string{"--auth-token-file", empty, "--publish-token-file", empty},
			want: []string{"--auth-token-file", "--publish-token-file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg serveConfig
			if err := parseWithEnv(newServeFlags(&cfg), tt.args, env(tt.env)); err != nil {
				t.Fatal(err)
			}
			err := cfg.validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if cfg.Auth.Token != tt.auth || cfg.PublishToken != tt.pub {
					t.Fatalf("tokens = %q, %q; want %q, %q", cfg.Auth.Token, cfg.PublishToken, tt.auth, tt.pub)
				}
				// validate may run again: the file's token is not then
				// taken for a token set beside its file.
				if err := cfg.validate(); err != nil {
					t.Fatalf("second validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
			for _, secret := range []string{fileAuthToken, filePublishToken, testAuthToken, "publish-token-0123456789", "short-secret", "secret secret"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error quotes a token:\n%v", err)
				}
			}
		})
	}
}

// TestTokenFilesServe: a server started with --auth-token-file and
// --publish-token-file accepts exactly the files' tokens (without their
// trailing newlines) as bearer tokens.
func TestTokenFilesServe(t *testing.T) {
	dir := t.TempDir()
	authFile := writeSecret(t, dir, "auth", fileAuthToken+"\n")
	pubFile := writeSecret(t, dir, "publish", filePublishToken+"\n")
	base, _ := startServer(t, "--auth-token-file", authFile, "--publish-token-file", pubFile)

	for _, tt := range []struct {
		name string
		h    map[string]string
		want int
	}{
		{"the file's token", map[string]string{"Authorization": "Bearer " + fileAuthToken}, 200},
		{"no token", nil, 401},
		{"the path instead of the token", map[string]string{"Authorization": "Bearer " + authFile}, 401},
	} {
		if resp, body := authRequest(t, "GET", base+"/api/v1/topics", tt.h, nil); resp.StatusCode != tt.want {
			t.Errorf("%s: GET /api/v1/topics = %d %s, want %d", tt.name, resp.StatusCode, body, tt.want)
		}
	}
	ws := authWSHello(t, base, http.Header{"Authorization": {"Bearer " + fileAuthToken}})
	ws.Close()

	publish := func(token string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/api/v1/publish", strings.NewReader(`{"topic":"app.orders","data":{"count":1}}`))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := authNoRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := publish(filePublishToken); code/100 != 2 {
		t.Errorf("publish with the file's publish token = %d, want 2xx", code)
	}
	if code := publish(fileAuthToken); code != 401 {
		t.Errorf("publish with the auth token = %d, want 401", code)
	}
}

// TestTokenFileStartupErrors: through the command, a bad token file stops
// startup with exit 2, and the message names the flag and path, not the
// token given beside it.
func TestTokenFileStartupErrors(t *testing.T) {
	dir := t.TempDir()
	empty := writeSecret(t, dir, "empty", "")
	authFile := writeSecret(t, dir, "auth", fileAuthToken+"\n")
	var stderr bytes.Buffer
	code := serveMain(context.Background(), []string{"--listen", "127.0.0.1:0", "--publish-token-file", empty, "--auth-token-file", authFile},
		&stderr, env(map[string]string{"OPSDASH_AUTH_TOKEN": testAuthToken}), nil)
	if code != 2 {
		t.Fatalf("exit code %d, want 2; stderr:\n%s", code, stderr.String())
	}
	out := stderr.String()
	for _, w := range []string{"--publish-token-file", empty, "the file is empty", "--auth-token and --auth-token-file are both set"} {
		if !strings.Contains(out, w) {
			t.Errorf("stderr does not mention %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, testAuthToken) || strings.Contains(out, fileAuthToken) {
		t.Errorf("stderr holds a token:\n%s", out)
	}
}

// TestServeHelpDocumentsNewFlags: `opsdash serve --help` lists the token
// files and says when they are read.
func TestServeHelpDocumentsNewFlags(t *testing.T) {
	var stderr bytes.Buffer
	if code := serveMain(context.Background(), []string{"--help"}, &stderr, env(nil), nil); code != 0 {
		t.Fatalf("--help exit code %d", code)
	}
	out := stderr.String()
	for _, w := range []string{"-auth-token-file", "-publish-token-file", "restart to rotate", "not together with --auth-token",
		"picked up without a restart"} {
		if !strings.Contains(out, w) {
			t.Errorf("--help does not mention %q:\n%s", w, out)
		}
	}
}
