package auth

import (
	"testing"
	"time"
)

func TestSessionStoreBounded(t *testing.T) {
	s := newSessionStore(time.Hour, 3)
	now := time.Unix(1000, 0)
	var ids []string
	for i := 0; i < 4; i++ {
		id, err := s.create(now.Add(time.Duration(i) * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if len(s.expires) != 3 {
		t.Fatalf("%d sessions kept, want 3", len(s.expires))
	}
	if s.valid(ids[0], now.Add(5*time.Second)) {
		t.Error("the oldest session survived a full table")
	}
	for _, id := range ids[1:] {
		if !s.valid(id, now.Add(5*time.Second)) {
			t.Errorf("session %s lost", id)
		}
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Errorf("session id %s given twice", id)
		}
		seen[id] = true
	}
}
