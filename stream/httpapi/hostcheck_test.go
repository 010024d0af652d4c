package httpapi

import (
	"fmt"
	"testing"
	"time"
)

func TestHostPolicy(t *testing.T) {
	p := newHostPolicy([]string{"web-1", "web-1.example.net."}, []string{"ops.example.com", "*.lan.example", "192.0.2.7", " "})
	for host, want := range map[string]bool{
		"":                           true, // no Host: a program
		"localhost":                  true,
		"LOCALHOST.:8080":            true,
		"app.localhost:3000":         true,
		"127.0.0.1:8080":             true,
		"127.9.9.9":                  true,
		"[::1]:8080":                 true,
		"web-1:8080":                 true,
		"WEB-1.example.net":          true,
		"ops.example.com:443":        true,
		"a.b.lan.example":            true,
		"lan.example":                false, // the wildcard is for subdomains
		"192.0.2.7:80":               true,
		"[::ffff:192.0.2.7]":         true, // the same address, IPv4-mapped
		"192.0.2.8":                  false,
		"0.0.0.0:8080":               false,
		"rebind.attacker.example":    false,
		"web-1.attacker.example":     false,
		"localhost.attacker.example": false,
	} {
		if got := p.allows(host); got != want {
			t.Errorf("allows(%q) = %v, want %v", host, got, want)
		}
	}
	if !newHostPolicy(nil, []string{"*"}).allows("anything.example") {
		t.Error(`"*" does not turn the check off`)
	}
}

func TestLogLimiter(t *testing.T) {
	var l logLimiter
	now := time.Unix(1e9, 0)
	if ok, _ := l.allow("192.0.2.1", "origin", now); !ok {
		t.Fatal("the first line was held back")
	}
	for i := range 9 {
		if ok, _ := l.allow("192.0.2.1", "origin", now.Add(time.Duration(i)*time.Second)); ok {
			t.Fatal("a repeated line within a minute was logged")
		}
	}
	if ok, _ := l.allow("192.0.2.1", "host", now); !ok {
		t.Error("another cause of the same client was held back")
	}
	if ok, _ := l.allow("2001:db8::1", "origin", now); !ok {
		t.Error("another client was held back")
	}
	if ok, _ := l.allow("2001:db8::2", "origin", now); ok {
		t.Error("another address of the same /64 was logged")
	}
	if ok, held := l.allow("192.0.2.1", "origin", now.Add(logEvery)); !ok || held != 9 {
		t.Errorf("a minute later: %v, %d held back, want logged with 9", ok, held)
	}
	// Many clients at once: the table stays bounded and they share one
	// line a minute.
	logged := 0
	for i := range 3 * maxLogKeys {
		if ok, _ := l.allow(fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&255, i&255), "origin", now.Add(time.Second)); ok {
			logged++
		}
	}
	if len(l.seen) > maxLogKeys+1 || logged > maxLogKeys+1 {
		t.Errorf("%d keys, %d lines for %d clients", len(l.seen), logged, 3*maxLogKeys)
	}
}
