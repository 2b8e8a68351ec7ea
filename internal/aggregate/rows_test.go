package aggregate

import (
	"net/netip"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/summary"
)

func TestEvictionBoundsMemory(t *testing.T) {
	s := newStream(t, Limits{Spaces: 16, Processes: 4, Sockets: 50})
	var total uint64
	for i := 0; i < 40; i++ {
		dst := netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(1000+i))
		s.churn(who{uint32(100 + i), "client"}, dst, 1, float64(i), float64(i+1), time.Millisecond)
		s.a.Tick(at(float64(i) + 0.5))
		total++
	}
	r := s.summary(41)
	if len(s.a.spaces) > 16 || len(s.a.procs) > 4 {
		t.Fatalf("tables grew past their limits: %d spaces, %d processes", len(s.a.spaces), len(s.a.procs))
	}
	var sum uint64
	var other *summary.SpaceSummary
	for i := range r.Spaces {
		sum += r.Spaces[i].TotalConns
		if r.Spaces[i].Other {
			other = &r.Spaces[i]
		}
	}
	if sum != total || other == nil || other.TotalConns == 0 {
		t.Errorf("connections across rows %d, want %d, with an 'other' row (%v)", sum, total, other)
	}
	// The newest (hottest) destination keeps its own row.
	s.space(r, netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), 1039))
	for i := 0; i < 100; i++ {
		s.open(at(42), curl, upstream, time.Microsecond)
	}
	if len(s.a.socks) > 50 || s.summary(43).Untracked != 50 {
		t.Errorf("followed sockets %d (limit 50), untracked %d", len(s.a.socks), s.summary(43).Untracked)
	}
}
