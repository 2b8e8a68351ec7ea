package report

import (
	"bytes"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/capture"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
)

// TestEachSpaceAtItsWorst: namespace 7's space fails in the first 10 s
// and goes quiet; namespace 8's fails more in the next 10 s. Each is
// diagnosed at its own worst step, with the rates of that step.
func TestEachSpaceAtItsWorst(t *testing.T) {
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf, capture.Header{Host: "h", Backend: "fentry", Start: t0,
		Netns: []netns.Settings{{Inode: 7, PortLow: 40000, PortHigh: 40009}, {Inode: 8, PortLow: 40000, PortHigh: 40009}}})
	if err != nil {
		t.Fatal(err)
	}
	dst := netip.MustParseAddrPort("127.0.0.1:8080")
	cookie := uint64(0)
	attempt := func(at time.Time, ns uint32, fail bool) {
		cookie++
		e := event.Event{Time: at, Kind: event.State, OldState: event.Close, NewState: event.SynSent, Cookie: cookie,
			Netns: ns, PID: ns * 10, TID: ns * 10, Comm: event.MakeComm("client"), Family: syscall.AF_INET,
			Src: netip.MustParseAddrPort("127.0.0.1:0"), Dst: dst}
		w.Event(&e)
		if fail {
			e.OldState, e.NewState, e.Errno, e.Flags = event.SynSent, event.Close, syscall.EADDRNOTAVAIL, event.Searched
			w.Event(&e)
		}
	}
	for i := range 50 { // netns 7: 5/s over the first 10 s, 10 failing
		attempt(t0.Add(time.Duration(i)*200*time.Millisecond), 7, i >= 40)
	}
	for i := range 40 { // netns 8: 4/s over the next 10 s, 30 failing
		attempt(t0.Add(10*time.Second+time.Duration(i)*250*time.Millisecond), 8, i >= 10)
	}
	w.Flush()
	w.Close(capture.Trailer{End: t0.Add(25 * time.Second), Reason: "duration"})
	r, err := Build(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if r.Peak == nil || r.Peak.Time != t0.Add(20*time.Second) {
		t.Fatalf("peak %v, want the step ending at 20 s", r.Peak)
	}
	at := map[uint32]time.Time{}
	for _, s := range r.Peak.Spaces {
		at[s.Netns] = r.WorstAt[s.Where()]
		want := map[uint32]float64{7: 5, 8: 4}[s.Netns]
		if s.Conns.S10 != want {
			t.Errorf("netns %d: %v attempts/s quoted, want %v, its worst step's", s.Netns, s.Conns.S10, want)
		}
	}
	if at[7] != t0.Add(10*time.Second) || at[8] != t0.Add(20*time.Second) {
		t.Errorf("worst steps %v, want netns 7 at 10 s and 8 at 20 s", at)
	}
	seen := map[uint32]bool{}
	for _, f := range r.Findings {
		seen[f.Netns] = true
	}
	if !seen[7] || !seen[8] {
		t.Errorf("findings %v: want both namespaces diagnosed", r.Findings)
	}
}
