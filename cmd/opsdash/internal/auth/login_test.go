package auth

import (
	"strings"
	"testing"
)

func TestSafeNext(t *testing.T) {
	tests := map[string]string{
		"":                              "/",
		"/":                             "/",
		"/topics?pattern=*.cpu":         "/topics?pattern=*.cpu",
		"/topics/web-1.cpu":             "/topics/web-1.cpu",
		"//evil.example":                "/",
		"///evil.example":               "/",
		`/\evil.example`:                "/",
		"/\t/evil.example":              "/",
		"https://evil.example/":         "/",
		"evil.example":                  "/",
		"javascript:alert(1)":           "/",
		"/login?next=/":                 "/",
		"/LOGOUT":                       "/",
		"/caf\u00e9":                    "/",
		"/" + strings.Repeat("a", 3000): "/",
	}
	for in, want := range tests {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}
