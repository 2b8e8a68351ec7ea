package report

import (
	"bytes"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/capture"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/summary"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// incident writes 25 s of a client failing from second 12 to 15.
func incident(t *testing.T, trailer bool) []byte {
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf, capture.Header{Host: "h", Backend: "fentry", Start: t0,
		Netns: []netns.Settings{{Inode: 7, PortLow: 40000, PortHigh: 40009}}})
	if err != nil {
		t.Fatal(err)
	}
	dst := netip.MustParseAddrPort("127.0.0.1:8080")
	for i := 0; i < 250; i++ {
		at := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		e := event.Event{Time: at, Kind: event.State, OldState: event.Close, NewState: event.SynSent, Cookie: uint64(i + 1),
			Netns: 7, PID: 42, TID: 42, Comm: event.MakeComm("client"), Family: syscall.AF_INET,
			Src: netip.MustParseAddrPort("127.0.0.1:0"), Dst: dst}
		w.Event(&e)
		if i >= 120 && i < 150 {
			e.OldState, e.NewState, e.Errno, e.Flags = event.SynSent, event.Close, syscall.EADDRNOTAVAIL, event.Searched
			w.Event(&e)
		}
		w.Flush()
	}
	if trailer {
		w.Close(capture.Trailer{End: t0.Add(25 * time.Second), Reason: "duration"})
	}
	return buf.Bytes()
}

func TestBuild(t *testing.T) {
	r, err := Build(bytes.NewReader(incident(t, true)))
	if err != nil {
		t.Fatal(err)
	}
	if r.Events != 280 || r.Failures != 30 || r.Damage != "" || r.Trailer == nil {
		t.Fatalf("events %d failures %d damage %q", r.Events, r.Failures, r.Damage)
	}
	if len(r.Timeline) != 3 || r.Timeline[1].Failures != 30 || r.Timeline[0].Conns != 100 || r.Timeline[2].Time != t0.Add(25*time.Second) {
		t.Errorf("timeline %+v", r.Timeline)
	}
	if r.Peak == nil || r.Peak.Time != t0.Add(20*time.Second) {
		t.Errorf("peak at %v, want the step ending at 20 s", r.Peak)
	}
	sp := r.Final.Spaces[0]
	if sp.TotalConns != 250 || sp.TotalFailures != 30 || sp.Usable != 10 {
		t.Errorf("space %+v", sp)
	}
	for _, want := range []string{"250", "30 EADDRNOTAVAIL", "client[42]", "DIAGNOSIS (each port space at its own worst 10 s; the most failures at 12:00:20"} {
		if !strings.Contains(r.Text(), want) {
			t.Errorf("text lacks %q:\n%s", want, r.Text())
		}
	}
	if !strings.Contains(r.Markdown(), "| PORT SPACE | NETNS |") {
		t.Errorf("markdown:\n%s", r.Markdown())
	}
}

func TestBuildCutOff(t *testing.T) {
	data := incident(t, false)
	r, err := Build(bytes.NewReader(data[:len(data)-10]))
	if err != nil {
		t.Fatal(err)
	}
	if r.Trailer != nil || !strings.Contains(r.Damage, "truncated") || r.Events < 270 || r.Failures != 30 {
		t.Errorf("cut off: trailer %v damage %q events %d failures %d", r.Trailer, r.Damage, r.Events, r.Failures)
	}
	if !strings.Contains(r.Text(), "without a trailer") {
		t.Errorf("the text does not say the capture was cut off")
	}
}

func TestPlayer(t *testing.T) {
	wall := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return wall }
	p, err := NewPlayer(bytes.NewReader(incident(t, true)), 2, clock)
	if err != nil {
		t.Fatal(err)
	}
	if s := p.Frame(); len(s.Spaces) != 1 || s.Spaces[0].TotalConns != 1 || s.Warning != "" {
		t.Errorf("at the start, only the first event: %+v", s.Spaces)
	}
	wall = wall.Add(3 * time.Second) // 6 s of capture at speed 2
	s := p.Frame()
	if len(s.Spaces) != 1 || s.Spaces[0].TotalConns != 61 || s.Spaces[0].TotalFailures != 0 {
		t.Fatalf("after 6 s: %+v", s.Spaces)
	}
	wall = wall.Add(5 * time.Second) // 16 s: the failures
	if s := p.Frame(); s.Spaces[0].TotalFailures != 30 || len(s.Findings) == 0 {
		t.Errorf("after 16 s: %d failures, findings %v", s.Spaces[0].TotalFailures, s.Findings)
	}
	wall = wall.Add(time.Minute)
	if s := p.Frame(); s.Spaces[0].TotalConns != 250 || s.Warning != "replay: end of the capture" {
		t.Errorf("at the end: %d, %q", s.Spaces[0].TotalConns, s.Warning)
	}
}

// TestRoundRacingEvents: a socket that closed while the tables were read,
// and which the dump still saw open, is not brought back.
func TestRoundRacingEvents(t *testing.T) {
	var buf bytes.Buffer
	w, _ := capture.NewWriter(&buf, capture.Header{Start: t0})
	ns := []netns.Settings{{Inode: 7, PortLow: 40000, PortHigh: 40009}}
	src, dst := netip.MustParseAddrPort("127.0.0.1:40001"), netip.MustParseAddrPort("127.0.0.1:8080")
	e := event.Event{Time: t0, Kind: event.State, OldState: event.Close, NewState: event.SynSent, Cookie: 5, Netns: 7, Src: src, Dst: dst}
	w.Event(&e)
	w.SyncBegin()
	e.Time, e.OldState, e.NewState = t0.Add(time.Second), event.Established, event.Close
	w.Event(&e)
	w.Round(capture.Round{Time: t0.Add(500 * time.Millisecond), Netns: ns,
		Tables: []event.SocketTable{{Netns: 7, Time: t0.Add(500 * time.Millisecond), Sockets: []event.Socket{{Src: src, Dst: dst, State: 1, Cookie: 5}}}}})
	w.Close(capture.Trailer{End: t0.Add(2 * time.Second)})
	r, err := Build(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Final.Spaces) != 1 || r.Final.Spaces[0].Live != 0 {
		t.Errorf("spaces %+v: the closed socket came back", r.Final.Spaces)
	}
}

// TestPeakUsedPerSpace: every space's PEAK USED is its own, not the
// fullest space's of the step.
func TestPeakUsedPerSpace(t *testing.T) {
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf, capture.Header{Host: "h", Backend: "fentry", Start: t0,
		Netns: []netns.Settings{{Inode: 7, PortLow: 40000, PortHigh: 40009}}})
	if err != nil {
		t.Fatal(err)
	}
	half, full := netip.MustParseAddrPort("127.0.0.1:8080"), netip.MustParseAddrPort("127.0.0.1:9090")
	cookie := uint64(0)
	open := func(dst netip.AddrPort, n int, at time.Time) {
		for i := range n {
			cookie++
			e := event.Event{Time: at, Kind: event.State, OldState: event.Close, NewState: event.SynSent, Cookie: cookie,
				Netns: 7, PID: 42, TID: 42, Comm: event.MakeComm("client"), Family: syscall.AF_INET,
				Src: netip.MustParseAddrPort("127.0.0.1:0"), Dst: dst}
			w.Event(&e)
			e.Kind, e.Src = event.Alloc, netip.AddrPortFrom(e.Src.Addr(), uint16(40000+i))
			w.Event(&e)
		}
	}
	open(half, 5, t0.Add(time.Second))
	open(full, 10, t0.Add(2*time.Second))
	w.Close(capture.Trailer{End: t0.Add(15 * time.Second), Reason: "duration"})
	r, err := Build(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.PeakUsed["127.0.0.1 -> 127.0.0.1:8080 (netns 7)"]; got != 50 {
		t.Errorf("peak of the half-full space %v%%, want 50 (peaks %v)", got, r.PeakUsed)
	}
	if got := r.PeakUsed["127.0.0.1 -> 127.0.0.1:9090 (netns 7)"]; got != 100 {
		t.Errorf("peak of the full space %v%%, want 100", got)
	}
	if text := r.Text(); !strings.Contains(text, "50.0% of 10") {
		t.Errorf("text lacks the half-full space's own peak:\n%s", text)
	}
}

// TestGoneNamespaceStays: namespace 7's client fails, then the namespace
// goes at 25 s while namespace 8 stays busy until 200 s, long after the
// aggregator forgot 7 (GoneFor): the report still lists 7's space, gone,
// with its failures, and its peak.
func TestGoneNamespaceStays(t *testing.T) {
	var buf bytes.Buffer
	ns7 := netns.Settings{Inode: 7, Cookie: 70, PortLow: 40000, PortHigh: 40009}
	ns8 := netns.Settings{Inode: 8, Cookie: 80, PortLow: 40000, PortHigh: 40009}
	w, err := capture.NewWriter(&buf, capture.Header{Host: "h", Backend: "fentry", Start: t0, Netns: []netns.Settings{ns7, ns8}})
	if err != nil {
		t.Fatal(err)
	}
	dst := netip.MustParseAddrPort("127.0.0.1:8080")
	cookie := uint64(0)
	attempt := func(at time.Time, ino uint32, fail bool) {
		cookie++
		e := event.Event{Time: at, Kind: event.State, OldState: event.Close, NewState: event.SynSent, Cookie: cookie,
			Netns: ino, PID: 40 + ino, TID: 40 + ino, Comm: event.MakeComm("client"), Family: syscall.AF_INET,
			Src: netip.MustParseAddrPort("127.0.0.1:0"), Dst: dst}
		w.Event(&e)
		if fail {
			e.OldState, e.NewState, e.Errno, e.Flags = event.SynSent, event.Close, syscall.EADDRNOTAVAIL, event.Searched
			w.Event(&e)
		}
	}
	for i := range 100 {
		attempt(t0.Add(time.Duration(i)*100*time.Millisecond), 7, true)
	}
	w.Round(capture.Round{Time: t0.Add(25 * time.Second), Netns: []netns.Settings{ns8}})
	for s := 26; s < 200; s++ {
		attempt(t0.Add(time.Duration(s)*time.Second), 8, false)
	}
	w.Close(capture.Trailer{End: t0.Add(200 * time.Second), Reason: "duration"})

	r, err := Build(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var gone *summary.SpaceSummary
	for i := range r.Final.Spaces {
		if r.Final.Spaces[i].Netns == 7 {
			gone = &r.Final.Spaces[i]
		}
	}
	if gone == nil || !gone.Gone || gone.TotalFailures != 100 || gone.Usable != 10 {
		t.Fatalf("namespace 7's space in the final summary: %+v; want it gone, with 100 failures of 10 usable ports", gone)
	}
	if !strings.Contains(r.Text(), "100 EADDRNOTAVAIL") || len(r.Findings) == 0 || r.Findings[0].Netns != 7 {
		t.Errorf("text or findings miss namespace 7: %+v\n%s", r.Findings, r.Text())
	}
}
