package auth

import (
	"testing"
	"time"
)

func TestLimitKey(t *testing.T) {
	tests := map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"::ffff:192.0.2.7":     "192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2::9":      "2001:db8:1:2::/64",
		"not an ip":            "not an ip",
	}
	for in, want := range tests {
		if got := limitKey(in); got != want {
			t.Errorf("limitKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFailureLimiterBounded(t *testing.T) {
	l := newFailureLimiter(2, time.Second, 2)
	now := time.Unix(1000, 0)
	for _, k := range []string{"a", "b", "c"} {
		if ok, _ := l.take(k, now); !ok {
			t.Fatalf("first attempt of %s refused", k)
		}
	}
	if len(l.buckets) > 2 {
		t.Fatalf("%d buckets, want at most 2", len(l.buckets))
	}
	// A right token gives its attempt back and leaves nothing behind.
	l.refund("c", now)
	if _, ok := l.buckets["c"]; ok {
		t.Error("a full bucket is kept")
	}
}
