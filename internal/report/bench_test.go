package report

import (
	"bytes"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/capture"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
)

// BenchmarkReport replays a capture of a million events shaped like a proxy
// churning toward 8 upstreams (connect, port search, 4 state changes,
// TIME_WAIT per connection) and reports events per second (per core with
// -cpu 1), allocations per event (per block and per report, not per
// event: a fraction), and the capture's size per event.
func BenchmarkReport(b *testing.B) {
	const n = 1_000_000
	var buf bytes.Buffer
	w, _ := capture.NewWriter(&buf, capture.Header{Start: t0, Netns: []netns.Settings{{Inode: 7, PortLow: 32768, PortHigh: 60999}}})
	kinds := []struct {
		kind     event.Kind
		old, new event.TCPState
	}{{event.State, event.Close, event.SynSent}, {event.Alloc, 0, 0}, {event.Connect, 0, 0},
		{event.State, event.SynSent, event.Established}, {event.State, event.Established, event.FinWait1},
		{event.TimeWait, 0, 0}, {event.State, event.FinWait2, event.Close}}
	for i := 0; i < n; i++ {
		c := i / len(kinds)
		k := kinds[i%len(kinds)]
		e := event.Event{Time: t0.Add(time.Duration(i) * 100 * time.Microsecond), Kind: k.kind, OldState: k.old, NewState: k.new,
			Cookie: uint64(c + 1), Netns: 7, PID: uint32(800 + c%4), Comm: event.MakeComm("nginx"), Family: syscall.AF_INET,
			Latency: 7 * time.Microsecond, Errno: syscall.EINPROGRESS,
			Src: netip.MustParseAddrPort("127.0.0.1:40000"), Dst: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(8000+c%8))}
		w.Event(&e)
	}
	w.Close(capture.Trailer{End: t0.Add(100 * time.Second)})
	data := buf.Bytes()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for b.Loop() {
		r, err := Build(bytes.NewReader(data))
		if err != nil || r.Events != n {
			b.Fatal(err, r.Events)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	events := float64(n) * float64(b.N)
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/events, "allocs/event")
	b.ReportMetric(float64(len(data))/n, "bytes/event")
}
