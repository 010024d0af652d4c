// Package static holds the files the browser loads (the stylesheet and the
// client script), embedded in the binary so that nothing comes from a CDN.
//
// Every file is served under a content-hashed name (app.js becomes
// app.3f2a9c1d0b.js), computed once at start-up: pages link the hashed name
// and the server sends it with a one-year immutable cache lifetime, so a
// browser never runs an old script against a newer server after an upgrade,
// and never asks twice for a file it already holds.
package static

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"path"
	"sort"
	"strings"
)

// files is every asset: app.js, style.css and icon.svg are the whole client.
//
//go:embed *.css *.js *.svg
var files embed.FS

// Prefix is the URL path under which assets are served.
const Prefix = "/static/"

// Asset is one embedded file.
type Asset struct {
	// Name is the file's plain name ("app.js").
	Name string
	// Hashed is the content-hashed name it is served under ("app.3f2a9c1d0b.js").
	Hashed string
	// ContentType is the MIME type, with charset for text.
	ContentType string
	// ETag is a strong validator derived from the content.
	ETag string
	// Body is the file's content; shared, read-only.
	Body []byte
}

var (
	byPlain  = map[string]*Asset{}
	byHashed = map[string]*Asset{}
)

func init() {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		panic("static: " + err.Error()) // embedded at build time; cannot fail
	}
	for _, e := range entries {
		body, err := files.ReadFile(e.Name())
		if err != nil {
			panic("static: " + err.Error())
		}
		body = strip(e.Name(), body)
		sum := sha256.Sum256(body)
		h := hex.EncodeToString(sum[:])[:10]
		ext := path.Ext(e.Name())
		ct := mime.TypeByExtension(ext)
		switch ext { // the system's mime table may be missing (distroless)
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		}
		a := &Asset{
			Name:        e.Name(),
			Hashed:      strings.TrimSuffix(e.Name(), ext) + "." + h + ext,
			ContentType: ct,
			ETag:        `"` + h + `"`,
			Body:        body,
		}
		byPlain[a.Name] = a
		byHashed[a.Hashed] = a
	}
}

// Path returns the URL of the asset with plain name name, under its hashed
// name ("/static/app.3f2a9c1d0b.js"). It panics for an unknown name: pages
// link a fixed set of assets, so a typo is a programming error that the
// component tests catch.
func Path(name string) string {
	a, ok := byPlain[name]
	if !ok {
		panic("static: no asset " + name)
	}
	return Prefix + a.Hashed
}

// Lookup returns the asset served under hashed, the part of the URL after
// Prefix. Only hashed names are served: a page from an older build that
// asks for its old script gets a 404, not a newer script it may not match.
func Lookup(hashed string) (*Asset, bool) {
	a, ok := byHashed[hashed]
	return a, ok
}

// Assets lists every asset, sorted by plain name.
func Assets() []*Asset {
	out := make([]*Asset, 0, len(byPlain))
	for _, a := range byPlain {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// strip drops what a browser does not need from a script or stylesheet:
// comments on lines of their own, indentation and blank lines (about a
// quarter of app.js). The sources stay commented for people; the page
// budget (HTML + JS + CSS under 100 KiB) counts what is served. It is not
// a minifier: it never looks inside a line, so it cannot break one. Our
// scripts have no template literals and no line continuations (a test
// checks), which is what makes dropping a line that starts with // safe.
func strip(name string, body []byte) []byte {
	var comment string
	switch path.Ext(name) {
	case ".js":
		comment = "//"
	case ".css":
		comment = "/*" // a comment line of its own: /* … */ on one line
	default:
		return body
	}
	out := make([]byte, 0, len(body))
	for line := range strings.SplitSeq(string(body), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, comment) && (comment == "//" || strings.HasSuffix(line, "*/")) {
			continue
		}
		out = append(out, line...)
		out = append(out, '\n')
	}
	return out
}
