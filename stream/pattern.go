package stream

import (
	"errors"
	"fmt"
	"strings"
)

// MaxTopicLen caps the length of a topic name or pattern in bytes. NATS
// subjects have no hard limit, but a dashboard topic never needs more, and a
// cap keeps hostile patterns from costing more than a few hundred bytes each.
const MaxTopicLen = 255

// ErrInvalidTopic means a topic or pattern does not follow the topic
// syntax: dot-separated tokens of [a-z0-9_-], at most MaxTopicLen bytes;
// patterns may also use "*" as a token and ">" as their last token.
var ErrInvalidTopic = errors.New("invalid topic")

// validToken reports whether tok is a non-empty run of [a-z0-9_-].
func validToken(tok string) bool {
	if tok == "" {
		return false
	}
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ValidTopic reports whether name is a valid topic: one or more
// dot-separated tokens of [a-z0-9_-], at most MaxTopicLen bytes, no
// wildcards.
func ValidTopic(name string) bool {
	if name == "" || len(name) > MaxTopicLen {
		return false
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			if !validToken(name[start:i]) {
				return false
			}
			start = i + 1
		}
	}
	return true
}

// Pattern is a parsed subscription pattern with NATS subject semantics:
// "*" matches exactly one token, ">" (only as the last token) matches one or
// more trailing tokens. A pattern without wildcards matches only itself.
// The zero Pattern matches nothing.
type Pattern struct {
	raw    string
	toks   []string // tokens; "*" is a wildcard, a trailing ">" is dropped and tail set
	tail   bool     // pattern ended in ">"
	wild   bool     // pattern has any wildcard
	parsed bool
}

// ParsePattern parses a subscription pattern. Errors wrap ErrInvalidTopic.
func ParsePattern(p string) (Pattern, error) {
	if p == "" {
		return Pattern{}, fmt.Errorf("%w: empty pattern", ErrInvalidTopic)
	}
	if len(p) > MaxTopicLen {
		return Pattern{}, fmt.Errorf("%w: pattern longer than %d bytes", ErrInvalidTopic, MaxTopicLen)
	}
	toks := strings.Split(p, ".")
	pat := Pattern{raw: p, parsed: true}
	for i, tok := range toks {
		switch {
		case tok == "*":
			pat.wild = true
		case tok == ">":
			if i != len(toks)-1 {
				return Pattern{}, fmt.Errorf("%w: %q: \">\" must be the last token", ErrInvalidTopic, p)
			}
			pat.wild, pat.tail = true, true
			toks = toks[:i]
		case !validToken(tok):
			return Pattern{}, fmt.Errorf("%w: %q: tokens are [a-z0-9_-]+ separated by dots", ErrInvalidTopic, p)
		}
	}
	pat.toks = toks
	return pat, nil
}

// String returns the pattern as it was written.
func (p Pattern) String() string { return p.raw }

// Literal reports whether the pattern has no wildcards (it names one topic).
func (p Pattern) Literal() bool { return p.parsed && !p.wild }

// Match reports whether topic matches the pattern. An invalid topic matches
// nothing.
func (p Pattern) Match(topic string) bool {
	return ValidTopic(topic) && p.matchValid(topic)
}

// literalFirst returns the pattern's first token when it is not a wildcard.
func (p Pattern) literalFirst() (string, bool) {
	if !p.parsed || len(p.toks) == 0 || p.toks[0] == "*" {
		return "", false
	}
	return p.toks[0], true
}

// matchValid is Match for a topic known to be valid (every topic of the
// registry), without checking it again: the registry matches patterns
// against its topics under its lock, where the check was most of the cost.
func (p Pattern) matchValid(topic string) bool {
	if !p.parsed {
		return false
	}
	if !p.wild {
		return p.raw == topic
	}
	rest := topic
	for _, tok := range p.toks {
		if rest == "" {
			return false // topic has fewer tokens than the pattern
		}
		var cur string
		if i := strings.IndexByte(rest, '.'); i >= 0 {
			cur, rest = rest[:i], rest[i+1:]
			if rest == "" {
				return false // unreachable for a valid topic; keeps "a." from matching "a.>"
			}
		} else {
			cur, rest = rest, ""
		}
		if tok != "*" && tok != cur {
			return false
		}
	}
	if p.tail {
		return rest != "" // ">" needs at least one more token
	}
	return rest == ""
}

func containsPattern(ps []Pattern, raw string) bool {
	for _, p := range ps {
		if p.raw == raw {
			return true
		}
	}
	return false
}

// matchAny reports whether any of ps matches name, a topic of the registry.
func matchAny(ps []Pattern, name string) bool {
	for _, p := range ps {
		if p.matchValid(name) {
			return true
		}
	}
	return false
}
