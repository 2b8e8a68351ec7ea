package capture

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/event"
)

// churnBlock is a block of events as reset churn makes them, three per
// connection (SYN_SENT, the port search, CLOSE), about 30 µs apart.
func churnBlock() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	var b []byte
	for i := 0; len(b) < blockTarget-3*eventLen; i++ {
		at := t0.Add(time.Duration(i) * 30 * time.Microsecond)
		base := event.Event{Cookie: uint64(4096 + i), CgroupID: 9311, Netns: 4026532290, NetnsCookie: 8193,
			PID: 4242, TID: 4243, Family: 2, Comm: event.MakeComm("churn"), ThreadComm: event.MakeComm("client"),
			Dst: netip.MustParseAddrPort("127.0.0.1:9000")}
		syn, alloc, cl := base, base, base
		syn.Time, syn.Kind, syn.OldState, syn.NewState, syn.PortRange = at, event.State, event.Close, event.SynSent, [2]uint16{32768, 60999}
		alloc.Time, alloc.Kind, alloc.Latency = at.Add(2*time.Microsecond), event.Alloc, time.Duration(1500+r.IntN(3000))
		alloc.Src = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(32768+r.IntN(28232)))
		cl.Time, cl.Kind, cl.OldState, cl.NewState, cl.Src = at.Add(25*time.Microsecond), event.State, event.Established, event.Close, alloc.Src
		for _, e := range []*event.Event{&syn, &alloc, &cl} {
			n := len(b)
			b = append(b, make([]byte, eventLen)...)
			putEvent(b[n:], e)
		}
	}
	return b
}

// BenchmarkCompress: what compressing a block of events costs in the codec
// of format 5 (zstd, fastest level) and of format 6 (S2), and the ratio.
func BenchmarkCompress(b *testing.B) {
	raw := churnBlock()
	for _, v := range []byte{5, 6} {
		b.Run(fmt.Sprintf("format%d", v), func(b *testing.B) {
			enc, err := newCompressor(v)
			if err != nil {
				b.Fatal(err)
			}
			var dst []byte
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				dst = enc(dst, raw)
			}
			b.ReportMetric(float64(len(raw))/float64(len(dst)), "ratio")
		})
	}
}
