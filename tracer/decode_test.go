package tracer

import (
	"net/netip"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/porttrace/porttrace/internal/event"
)

func raw(k *bpfEvent) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(k)), unsafe.Sizeof(*k))
}

func TestDecode(t *testing.T) {
	tr := &Tracer{probes: probes{clock: clock{offset: 1_000_000_000}}}
	k := bpfEvent{TsNs: 5, Kind: uint8(bpfEventKindEV_CONNECT), Ret: -int32(syscall.EADDRNOTAVAIL),
		LatencyNs: 2500, Tid: 11, Pid: 10, Netns: 42, NetnsCookie: 7, Family: syscall.AF_INET6, Sport: 0, Dport: 8080,
		Flags: uint8(bpfEventFlagFLAG_LATENCY_APPROX)}
	// A v4-mapped destination on an AF_INET6 socket is the IPv4 address.
	copy(k.Daddr[:], netip.MustParseAddr("::ffff:127.0.0.1").AsSlice())
	copy(k.Comm[:], []int8{'n', 'g', 'i', 'n', 'x'})
	copy(k.ThreadComm[:], []int8{'w', 'o', 'r', 'k', 'e', 'r'})
	var ev event.Event
	if err := tr.decode(raw(&k), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Kind != event.Connect || ev.Errno != syscall.EADDRNOTAVAIL || ev.Latency != 2500 || ev.PID != 10 ||
		ev.TID != 11 || ev.Comm.String() != "nginx" || ev.ThreadComm.String() != "worker" || ev.NetnsCookie != 7 || ev.Dst != netip.MustParseAddrPort("127.0.0.1:8080") ||
		ev.Flags != event.LatencyApprox || !ev.Time.Equal(time.Unix(1, 5)) {
		t.Errorf("decoded %+v", ev)
	}

	k.Family = syscall.AF_INET
	k.Saddr = [16]uint8{10, 0, 0, 1, 0xff}
	k.Sport, k.Ret = 40000, 0
	if err := tr.decode(raw(&k), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Src != netip.MustParseAddrPort("10.0.0.1:40000") || ev.Errno != 0 {
		t.Errorf("IPv4 source %v errno %v", ev.Src, ev.Errno)
	}
	if err := tr.decode(raw(&k)[:20], &ev); err == nil {
		t.Error("a short record decoded")
	}
}

func BenchmarkDecode(b *testing.B) {
	tr := &Tracer{}
	k := bpfEvent{Kind: uint8(bpfEventKindEV_STATE), Family: syscall.AF_INET}
	r := raw(&k)
	var ev event.Event
	b.ReportAllocs()
	for b.Loop() {
		tr.decode(r, &ev)
	}
}

// TestDecodeSynSent: a record that also stands for its socket's deferred
// SYN_SENT is read as two events, the SYN_SENT first, at its own time,
// without the source port the search found later, with the port range.
func TestDecodeSynSent(t *testing.T) {
	tr := &Tracer{probes: probes{clock: clock{offset: 1_000_000_000}}}
	k := bpfEvent{TsNs: 9000, SynSentNs: 4000, Kind: uint8(bpfEventKindEV_ALLOC), LatencyNs: 5000, Cookie: 77,
		Tid: 11, Pid: 10, Netns: 42, Family: syscall.AF_INET, Sport: 40001, Dport: 8080, RangeLow: 40000, RangeHigh: 40009,
		Flags: uint8(bpfEventFlagFLAG_LATENCY_APPROX | bpfEventFlagFLAG_OWNER_FROM_SOCKET)}
	copy(k.Saddr[:], []uint8{127, 0, 0, 1})
	copy(k.Daddr[:], []uint8{127, 0, 0, 2})
	var ev, syn event.Event
	if err := tr.decode(raw(&k), &ev); err != nil {
		t.Fatal(err)
	}
	if !tr.synSent(raw(&k), &ev, &syn) {
		t.Fatal("no SYN_SENT from a record that carries one")
	}
	want := event.Event{Time: time.Unix(1, 4000), Kind: event.State, OldState: event.Close, NewState: event.SynSent,
		Flags: event.OwnerFromSocket, Cookie: 77, TID: 11, PID: 10, Netns: 42, Family: syscall.AF_INET,
		Src: netip.MustParseAddrPort("127.0.0.1:0"), Dst: netip.MustParseAddrPort("127.0.0.2:8080"), PortRange: [2]uint16{40000, 40009}}
	if syn != want {
		t.Errorf("SYN_SENT %+v\nwant     %+v", syn, want)
	}
	if ev.Kind != event.Alloc || ev.Src.Port() != 40001 || ev.Latency != 5000 || ev.PortRange != [2]uint16{} || !ev.Time.Equal(time.Unix(1, 9000)) {
		t.Errorf("the record itself: %+v", ev)
	}
	k.SynSentNs = 0
	if tr.decode(raw(&k), &ev); tr.synSent(raw(&k), &ev, &syn) {
		t.Error("a SYN_SENT from a record that carries none")
	}
}
