package httpapi

import "testing"

func TestSecretAuthorizes(t *testing.T) {
	s := NewSecret("s3cret")
	for _, tt := range []struct {
		header string
		want   bool
	}{
		{"Bearer s3cret", true},
		{"bearer s3cret", true},
		{"Bearer  s3cret ", true},
		{"Bearer s3cre", false},
		{"Bearer s3cret2", false},
		{"Basic s3cret", false},
		{"s3cret", false},
		{"Bearer ", false},
		{"", false},
	} {
		if got := s.Authorizes(tt.header); got != tt.want {
			t.Errorf("Authorizes(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
	for _, empty := range []Secret{{}, NewSecret("")} {
		if empty.Matches("") || empty.Authorizes("Bearer ") {
			t.Errorf("%+v: an empty secret matches the empty token", empty)
		}
	}
}
