package aggregate

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// TestMemoryBound fills every table to its limit with the widest spread of
// values the sketches can hold, and measures the heap: the figure the
// README's memory bound quotes.
func TestMemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a million sockets")
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	base := heap()
	s := newStream(t, DefaultLimits)
	lims := DefaultLimits
	// Each space: every 10 s slot gets port search latencies and lifetimes
	// from 1 µs to 1000 s, the worst case for the sketches' bins.
	for i := 0; i < lims.Spaces+100; i++ {
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), 443)
		w := who{uint32(1000 + i), "client"}
		for slot := 0; slot < 6; slot++ {
			for d := time.Microsecond; d < 1000*time.Second; d = d * 21 / 20 {
				c := s.open(at(float64(slot*10)), w, dst, d)
				s.closeTW(at(float64(slot*10)).Add(d), w, c, dst)
				delete(s.ports, c) // the harness's own memory
			}
		}
	}
	for i := 0; i < lims.Sockets; i++ {
		s.open(at(59), curl, upstream, time.Microsecond)
	}
	s.summary(59.5)
	used := heap() - base
	t.Logf("limits %+v: %d spaces, %d processes, %d sockets followed: %.0f MiB of heap",
		lims, len(s.a.spaces), len(s.a.procs), len(s.a.socks), float64(used)/(1<<20))
	if len(s.a.spaces) > lims.Spaces || len(s.a.procs) > lims.Processes || len(s.a.socks) > lims.Sockets {
		t.Errorf("over the limits")
	}
	if used > 220<<20 {
		t.Errorf("%d MiB: more than the 190 MiB documented, by far", used>>20)
	}
}
