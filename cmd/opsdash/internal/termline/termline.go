// Package termline renders what `opsdash watch` prints: a topic's JSON
// value as one line a person reads in a terminal (Render), cut to the
// terminal's width (Truncate).
package termline

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Render renders a JSON payload compactly for people, keeping the
// server's field order: an object as key=value pairs, nested objects in
// braces, arrays in brackets, strings bare unless they need quotes. An
// empty payload is "-"; one that is not JSON is returned as it is.
func Render(data json.RawMessage) string {
	if len(bytes.TrimSpace(data)) == 0 {
		return "-"
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var b strings.Builder
	tok, err := dec.Token()
	if err != nil {
		return string(data)
	}
	if d, ok := tok.(json.Delim); ok && d == '{' {
		err = renderMembers(dec, &b)
	} else {
		err = renderValue(dec, tok, &b)
	}
	if err != nil {
		return string(data)
	}
	return b.String()
}

// renderMembers renders an object's members up to its closing brace.
func renderMembers(dec *json.Decoder, b *strings.Builder) error {
	for i := 0; dec.More(); i++ {
		key, err := dec.Token()
		if err != nil {
			return err
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		name, _ := key.(string)
		b.WriteString(bareOrQuoted(name))
		b.WriteByte('=')
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if err := renderValue(dec, tok, b); err != nil {
			return err
		}
	}
	_, err := dec.Token() // '}'
	return err
}

// renderValue renders the value that starts with tok.
func renderValue(dec *json.Decoder, tok json.Token, b *strings.Builder) error {
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			b.WriteByte('{')
			if err := renderMembers(dec, b); err != nil {
				return err
			}
			b.WriteByte('}')
		case '[':
			b.WriteByte('[')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					b.WriteByte(' ')
				}
				t, err := dec.Token()
				if err != nil {
					return err
				}
				if err := renderValue(dec, t, b); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil { // ']'
				return err
			}
			b.WriteByte(']')
		}
	case string:
		b.WriteString(bareOrQuoted(v))
	case json.Number:
		b.WriteString(v.String())
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case nil:
		b.WriteString("null")
	}
	return nil
}

// bareOrQuoted leaves a string bare when it cannot be mistaken for the
// separators of the rendering, and quotes it otherwise.
func bareOrQuoted(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) || strings.ContainsRune(`="{}[]`, r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// Truncate cuts s to width characters, marking the cut with "…"; width 0
// leaves it whole.
func Truncate(s string, width int) string {
	if width <= 0 || utf8.RuneCountInString(s) <= width {
		return s
	}
	n := 0
	for i := range s {
		if n == width-1 {
			return s[:i] + "…"
		}
		n++
	}
	return s
}
