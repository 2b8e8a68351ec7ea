package report

import (
	"bytes"
	"fmt"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/capture"
	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/frame"
	"github.com/porttrace/porttrace/internal/netns"
)

// forge writes a capture: fill gets the writer after the header.
func forge(t testing.TB, fill func(w *capture.Writer)) []byte {
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf, capture.Header{Host: "forged", Start: t0,
		Netns: []netns.Settings{{Inode: 1, PortLow: 32768, PortHigh: 60999}}})
	if err != nil {
		t.Fatal(err)
	}
	fill(w)
	w.Close(capture.Trailer{End: t0.Add(time.Minute)})
	return buf.Bytes()
}

func connect(at time.Time, ns uint32, cookie uint64, dst netip.AddrPort) event.Event {
	return event.Event{Time: at, Kind: event.State, OldState: event.Close, NewState: event.SynSent, Cookie: cookie,
		Netns: ns, PID: 42, TID: 42, Comm: event.MakeComm("client"), Family: syscall.AF_INET,
		Src: netip.MustParseAddrPort("10.0.0.1:0"), Dst: dst}
}

var hostile = map[string]func(w *capture.Writer){
	// Rounds whose socket tables name 876,000 namespaces (~545 KB).
	"namespaces in rounds": func(w *capture.Writer) {
		ino := uint32(100)
		for r := range 15 {
			var tabs []event.SocketTable
			for range 58_400 {
				tabs = append(tabs, event.SocketTable{Netns: ino, Time: t0})
				ino++
			}
			w.SyncBegin()
			w.Round(capture.Round{Time: t0.Add(time.Duration(r) * time.Second), Tables: tabs})
		}
	},
	// 400,000 events, each in its own namespace (~2.6 MB).
	"namespaces in events": func(w *capture.Writer) {
		for i := range 400_000 {
			e := connect(t0.Add(time.Duration(i)*100*time.Microsecond), uint32(1000+i), uint64(i+1), netip.MustParseAddrPort("10.0.0.2:443"))
			w.Event(&e)
		}
	},
	// Rounds naming 300,000 cgroups (~3 MB).
	"cgroups": func(w *capture.Writer) {
		id := uint64(1)
		for r := range 20 {
			cg := map[uint64]cgroup.Process{}
			for range 15_000 {
				cg[id] = cgroup.Process{Path: fmt.Sprintf("/kubepods/burstable/pod%08x-aaaa-bbbb-cccc-%012x/%064x", id, id, id),
					Container: fmt.Sprintf("%012x", id), PodUID: fmt.Sprintf("%08x-aaaa-bbbb-cccc-%012x", id, id)}
				id++
			}
			w.SyncBegin()
			w.Round(capture.Round{Time: t0.Add(time.Duration(r) * time.Second), Tables: []event.SocketTable{{Netns: 1, Time: t0}}, Cgroups: cg})
		}
	},
	// Ten spaces, then ten years later, then 2116.
	"clock steps": func(w *capture.Writer) {
		for _, base := range []time.Time{t0, t0.AddDate(10, 0, 0), time.Unix(0, 1<<62)} {
			for i := range 10 {
				e := connect(base.Add(time.Duration(i)*time.Millisecond), 1, uint64(base.Unix())+uint64(i), netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}), 443))
				w.Event(&e)
				e.Kind, e.Src = event.TimeWait, netip.MustParseAddrPort("10.0.0.1:40000")
				w.Event(&e)
			}
		}
	},
}

// peakHeap runs fn and samples the heap meanwhile: the most it held.
func peakHeap(fn func()) uint64 {
	runtime.GC()
	stop := make(chan struct{})
	peak := make(chan uint64)
	go func() {
		var m runtime.MemStats
		var most uint64
		for {
			runtime.ReadMemStats(&m)
			most = max(most, m.HeapAlloc)
			select {
			case <-stop:
				peak <- most
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	fn()
	close(stop)
	return <-peak
}

// TestHostileCaptures: report and replay of the captures issue 21 forged
// stay far under the memory ceiling, finish, and say what they dropped.
// `porttrace report` of the full-size ones, peak RSS and seconds before ->
// after: 876,000 namespaces in rounds 436 MB, 12.4 s -> 60 MB, 2.2 s; 1M
// events each in its own namespace 591 MB, 32 s -> 42 MB, 0.8 s; 1.8M
// cgroups 793 MB, 45.5 s -> 51 MB, 13.8 s; clock steps 43 s / killed at
// 90 s -> 0.15 s. Here (heap, not RSS) before: see the commit.
func TestHostileCaptures(t *testing.T) {
	if testing.Short() {
		t.Skip("forges captures of up to 3 MB")
	}
	const ceiling = 96 << 20 // heap: well under MaxMemory's 256 MiB of RSS
	for name, fill := range hostile {
		t.Run(name, func(t *testing.T) {
			data := forge(t, fill)
			var r *Report
			var err error
			start := time.Now()
			heap := peakHeap(func() { r, err = Build(bytes.NewReader(data)) })
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s (%d KB): peak heap %d MiB, %s; dropped: %s", name, len(data)>>10, heap>>20, took.Round(time.Millisecond), r.Final.Dropped)
			if heap > ceiling {
				t.Errorf("peak heap %d MiB, over %d MiB", heap>>20, ceiling>>20)
			}
			if r.Final.Dropped.String() == "" || !bytes.Contains([]byte(r.Text()), []byte("dropped")) {
				t.Errorf("nothing said dropped")
			}
			heap = peakHeap(func() {
				now := t0
				p, err := NewPlayer(bytes.NewReader(data), 1e6, func() time.Time { now = now.Add(time.Hour); return now })
				if err != nil {
					t.Fatal(err)
				}
				for range 3 {
					p.Frame()
				}
			})
			if heap > ceiling {
				t.Errorf("replay: peak heap %d MiB, over %d MiB", heap>>20, ceiling>>20)
			}
		})
	}
}

// TestReplayClockSteps: a replay at real speed of a capture with clock
// steps takes the steps out: the 10-year and 2116 steps of the forged
// capture play in seconds, not in ninety years.
func TestReplayClockSteps(t *testing.T) {
	data := forge(t, hostile["clock steps"])
	now := t0
	p, err := NewPlayer(bytes.NewReader(data), 1, func() time.Time { now = now.Add(time.Second); return now })
	if err != nil {
		t.Fatal(err)
	}
	var f frame.Frame
	for range 10 {
		f = p.Frame()
	}
	if p.done != "end of the capture" || f.Summary.Dropped.ClockSteps != 2 {
		t.Errorf("after 10 s of replay: %q, dropped %+v; want the end, two clock steps", p.done, f.Summary.Dropped)
	}
}
