package churn

import (
	"net/netip"
	"testing"
	"time"
)

func TestPercentiles(t *testing.T) {
	ns := make([]uint32, 0, 1000)
	for i := 1000; i >= 1; i-- { // unsorted on purpose
		ns = append(ns, uint32(i))
	}
	p50, p99 := percentiles(ns)
	if p50 != 500*time.Nanosecond || p99 != 990*time.Nanosecond {
		t.Errorf("p50 %v p99 %v of 1..1000 ns, want 500ns and 990ns", p50, p99)
	}
	if p50, p99 := percentiles(nil); p50 != 0 || p99 != 0 {
		t.Errorf("empty sample: %v %v", p50, p99)
	}
}

func TestSpread(t *testing.T) {
	base := netip.MustParseAddrPort("127.1.0.1:10000")
	for k, want := range map[int]string{0: "127.1.0.1:10000", 999: "127.1.0.1:10999", 1000: "127.1.0.2:10000", 99_999: "127.1.0.100:10999"} {
		if got := spread(base, k).String(); got != want {
			t.Errorf("spread %d = %s, want %s", k, got, want)
		}
	}
}
