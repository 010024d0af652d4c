package ratelimit

import (
	"testing"
	"time"
)

func TestBucketSpendsBurstThenRefillsAtRate(t *testing.T) {
	l := Limit{Rate: 2, Burst: 3} // one token back every 500 ms
	var b Bucket
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		if ok, _ := b.Take(l, t0); !ok {
			t.Fatalf("take %d of a full bucket of 3 refused", i+1)
		}
	}
	ok, wait := b.Take(l, t0)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("fourth take = %v, wait %v; want refused, wait 500ms", ok, wait)
	}
	if ok, wait := b.Take(l, t0.Add(250*time.Millisecond)); ok || wait != 250*time.Millisecond {
		t.Fatalf("half a token later = %v, wait %v; want refused, wait 250ms", ok, wait)
	}
	if ok, _ := b.Take(l, t0.Add(500*time.Millisecond)); !ok {
		t.Fatal("a token that came back was refused")
	}
	if b.Full(l, t0.Add(time.Second)) {
		t.Fatal("full after 1 s with 3 spent at 2/s")
	}
	if !b.Full(l, t0.Add(2*time.Second)) {
		t.Fatal("not full after 1.5 s more")
	}
}

func TestRefundGivesBackAndReportsFull(t *testing.T) {
	l := Every(time.Minute, 2)
	var b Bucket
	now := time.Unix(1000, 0)
	b.Take(l, now)
	b.Take(l, now)
	if full := b.Refund(l, now); full {
		t.Fatal("one refund of two spent reported full")
	}
	if full := b.Refund(l, now); !full {
		t.Fatal("second refund did not report full")
	}
	if full := b.Refund(l, now); !full {
		t.Fatal("a refund of a full bucket must keep it full, not overfill")
	}
	if ok, _ := b.Take(l, now); !ok {
		t.Fatal("take after refunds refused")
	}
	if ok, _ := b.Take(l, now); !ok {
		t.Fatal("overfilled bucket check: second take refused")
	}
	if ok, _ := b.Take(l, now); ok {
		t.Fatal("third take of a bucket of 2 allowed: refunds overfilled it")
	}
}

func TestNoRateMeansNoLimit(t *testing.T) {
	var b Bucket
	for range 100 {
		if ok, _ := b.Take(Limit{Rate: 0, Burst: 1}, time.Unix(1, 0)); !ok {
			t.Fatal("Rate 0 refused a take")
		}
	}
}

func TestClockGoingBackwardsGivesNothing(t *testing.T) {
	l := Limit{Rate: 1, Burst: 1}
	var b Bucket
	t0 := time.Unix(1000, 0)
	b.Take(l, t0)
	if ok, _ := b.Take(l, t0.Add(-time.Hour)); ok {
		t.Fatal("an earlier time refilled the bucket")
	}
}
