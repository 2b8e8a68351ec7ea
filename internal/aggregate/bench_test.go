package aggregate

import (
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/event"
)

// BenchmarkAdd is the aggregator's cost per event in steady state: 1,024
// connections a second toward 8 upstreams from 4 processes, each sending
// what the probes send of it: SYN_SENT, its port search, TIME_WAIT, second
// after second. It must not allocate.
func BenchmarkAdd(b *testing.B) {
	s := newStream(&testing.T{}, DefaultLimits)
	type step struct {
		kind     event.Kind
		old, new event.TCPState
	}
	steps := []step{{event.State, event.Close, event.SynSent}, {event.Alloc, 0, 0}, {event.TimeWait, 0, 0}}
	const conns = 1024
	var evs []event.Event
	for c := range conns {
		for _, st := range steps {
			evs = append(evs, event.Event{Time: at(float64(c) / conns), Kind: st.kind, OldState: st.old, NewState: st.new,
				Cookie: uint64(c + 1), Netns: testNetns, PID: uint32(800 + c%4), Comm: event.MakeComm("nginx"),
				Family: syscall.AF_INET, Latency: 7 * time.Microsecond,
				Src: netip.AddrPortFrom(src, uint16(40000+c)), Dst: netip.AddrPortFrom(upstream.Addr(), uint16(8000+c%8))})
		}
	}
	// Warm up: a minute of seconds fills every window and TIME_WAIT slot.
	sec := 0
	second := func() {
		for i := range evs {
			evs[i].Time = evs[i].Time.Add(time.Second)
			s.a.Add(&evs[i])
		}
		sec++
		s.a.Tick(at(float64(sec)))
	}
	for range 70 {
		second()
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if i == len(evs) {
			b.StopTimer()
			sec++
			s.a.Tick(at(float64(sec)))
			for j := range evs {
				evs[j].Time = evs[j].Time.Add(time.Second)
			}
			i = 0
			b.StartTimer()
		}
		s.a.Add(&evs[i])
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
