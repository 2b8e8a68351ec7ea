package window

import (
	"testing"
	"time"
)

func TestCounter(t *testing.T) {
	var c Counter
	for s := int64(0); s < 100; s++ {
		c.Add(s, 2)
	}
	if got := c.Sum(100, 60); got != 120 {
		t.Errorf("last 60 s: %d, want 120", got)
	}
	if got := c.Sum(100, 1); got != 2 {
		t.Errorf("last second: %d, want 2", got)
	}
	c.Add(10, 5) // older than the window: only the total
	if c.Total != 205 || c.Sum(100, 60) != 120 {
		t.Errorf("late add: total %d sum %d", c.Total, c.Sum(100, 60))
	}
	if got := c.Sum(1000, 60); got != 0 {
		t.Errorf("after a long gap: %d, want 0", got)
	}
	var d Counter
	d.Add(1000, 3)
	d.Add(999, 4)
	c.Merge(&d, 1001)
	if c.Sum(1001, 10) != 7 || c.Total != 212 {
		t.Errorf("merged: %d total %d", c.Sum(1001, 10), c.Total)
	}
	if r := (&Counter{}).Rate(0, 10); r != 0 {
		t.Errorf("rate at second 0 = %v", r)
	}
}

func TestExpiry(t *testing.T) {
	var e Expiry
	e.Add(0, 60, 10)
	e.Add(0, 500, 1) // beyond the span: held at its end
	e.Add(5, 3, 7)   // already due: ignored
	if e.Size() != 11 {
		t.Fatalf("size %d, want 11", e.Size())
	}
	e.Advance(59)
	if e.Size() != 11 {
		t.Errorf("before due: %d", e.Size())
	}
	e.Advance(60)
	if e.Size() != 1 || e.Released.Sum(61, 1) != 10 {
		t.Errorf("at due: size %d released %d", e.Size(), e.Released.Sum(61, 1))
	}
	e.Advance(200)
	if e.Size() != 0 {
		t.Errorf("at the end: %d", e.Size())
	}
}

func TestGaugeSlope(t *testing.T) {
	var g Gauge
	if _, ok := g.Slope(10, 10); ok {
		t.Error("slope without samples")
	}
	for s := int64(20); s <= 40; s += 2 { // every other second
		g.Set(s, int(3*s))
	}
	if v, ok := g.Slope(40, 10); !ok || v != 3 {
		t.Errorf("slope %v %v, want 3", v, ok)
	}
	if v, ok := g.Slope(24, 10); !ok || v != 3 { // only 20..24 exist
		t.Errorf("young slope %v %v, want 3 from what there is", v, ok)
	}
	if _, ok := g.Slope(22, 10); ok {
		t.Error("slope over two seconds")
	}
}

func TestRecentCountsTheCurrentSecond(t *testing.T) {
	var c Counter
	c.Add(5, 2)
	c.Add(10, 3)
	if got := c.Recent(10, 60); got != 5 {
		t.Errorf("Recent(10, 60) = %d, want 5 (second 10 still filling, included)", got)
	}
	if got := c.Sum(10, 60); got != 2 {
		t.Errorf("Sum(10, 60) = %d, want 2 (complete seconds only)", got)
	}
	if got := c.Recent(70, 60); got != 0 {
		t.Errorf("Recent(70, 60) = %d, want 0", got)
	}
}

// TestExpiryLeap: a leap of the clock expires everything in one pass over
// the slots, not a step per second (issue 21: a timestamp in 2116).
func TestExpiryLeap(t *testing.T) {
	var e Expiry
	e.Add(0, 30, 5)
	e.Add(0, 50, 2)
	done := make(chan struct{})
	go func() { e.Advance(1 << 62); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Advance walks every second of a leap")
	}
	if e.Size() != 0 || e.Released.Total != 7 {
		t.Errorf("size %d, released %d; want 0 and 7", e.Size(), e.Released.Total)
	}
}
