package report

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/capture"
	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/netns"
)

// streamCapture makes a capture of data, read as records of recordLen
// bytes: a time step (any int64 of nanoseconds: clock steps either way), a
// namespace, a kind and a destination, and now and then a round of socket
// tables, cgroups and conntrack tables. The fuzzer reaches the aggregator and the report
// this way; random bytes rarely pass the decoder's checksums.
const recordLen = 16

func streamCapture(data []byte) []byte {
	var buf bytes.Buffer
	w, _ := capture.NewWriter(&buf, capture.Header{Host: "fuzz\x1b[2J", Start: t0,
		Netns: []netns.Settings{{Inode: 1, PortLow: 40000, PortHigh: 40009, Reserved: "40001-40002"}}})
	at := t0
	le := binary.LittleEndian
	for i := 0; len(data) >= recordLen; i, data = i+1, data[recordLen:] {
		at = at.Add(time.Duration(int64(le.Uint64(data))))
		ns := le.Uint16(data[8:]) % 4096
		kind := event.Kind(data[10]%5 + 1)
		port := uint16(40000 + int(data[11]%12))
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, data[12], data[13]}), 443)
		e := event.Event{Time: at, Kind: kind, OldState: event.TCPState(data[14] % 13), NewState: event.TCPState(data[15] % 13),
			Cookie: uint64(data[12]) << 8, Netns: uint32(ns), PID: uint32(data[13]), Family: syscall.AF_INET,
			Comm: event.MakeComm("c\u202e\x1b"), Src: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), port), Dst: dst}
		if data[15]&1 != 0 {
			e.Errno = syscall.EADDRNOTAVAIL
		}
		w.Event(&e)
		if data[14] == 0xff {
			w.SyncBegin()
			w.Round(capture.Round{Time: at, Netns: []netns.Settings{{Inode: uint32(ns), PortLow: 40000, PortHigh: 40009}},
				Tables: []event.SocketTable{{Netns: uint32(ns), Time: at, Sockets: []event.Socket{
					{Src: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), port), Dst: dst, Cookie: uint64(i), PID: 9, Comm: strings.Repeat("\x1bx", 40),
						TimeWait: data[13]&1 != 0, Expires: time.Duration(int64(le.Uint64(data)))}}}},
				Cgroups: map[uint64]cgroup.Process{uint64(i): {Path: "/\x1b]0;x\x07"}},
				Conntrack: &capture.ConntrackRound{Time: at, Tables: []nat.Table{{Netns: uint32(ns), Time: at, Count: int(data[12]), Max: int(data[13]),
					Stats: nat.Stats{InsertFailed: le.Uint64(data), Drop: uint64(data[11])}, Err: "\x1b[2J",
					Rules: []nat.Rule{{Family: "ip", Table: "nat\x1b", Chain: "\u202e", Kind: "masquerade", PortMin: uint16(data[12]), PortMax: uint16(data[13])}},
					Entries: []nat.Entry{{Proto: data[10], State: "EST\x07", Src: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), port), Dst: dst,
						NATSrc: netip.AddrPortFrom(netip.MustParseAddr("10.1.0.1"), uint16(data[11]))}}}}}})
		}
	}
	w.Close(capture.Trailer{End: at})
	return buf.Bytes()
}

// FuzzReport feeds the aggregator and the report, and the replay, from
// captures of any event stream, and checks what issue 21 asks of them:
// they finish, keep within their bounds and the memory ceiling, and print
// no control character.
func FuzzReport(f *testing.F) {
	rec := func(step int64, ns uint16, kind, port, a, b, from, to byte) []byte {
		r := make([]byte, recordLen)
		binary.LittleEndian.PutUint64(r, uint64(step))
		binary.LittleEndian.PutUint16(r[8:], ns)
		r[10], r[11], r[12], r[13], r[14], r[15] = kind, port, a, b, from, to
		return r
	}
	var steady, leaps []byte
	for i := range 200 {
		steady = append(steady, rec(int64(50*time.Millisecond), 1, byte(i), byte(i), 1, byte(i%3), 7, 2)...)
	}
	for _, step := range []int64{0, 10 * 365 * 24 * int64(time.Hour), -20 * 365 * 24 * int64(time.Hour), 1 << 62, -1 << 62, int64(time.Second)} {
		leaps = append(leaps, rec(step, 1, 0, 1, 1, 1, 0xff, 2)...)
	}
	f.Add(steady)
	f.Add(leaps)
	f.Add(rec(1, 4095, 2, 3, 4, 5, 0xff, 7))
	f.Fuzz(func(t *testing.T, data []byte) {
		data = data[:min(len(data), 64<<10)]
		c := streamCapture(data)
		r, err := Build(bytes.NewReader(c))
		if err != nil {
			t.Fatal(err)
		}
		limits, _ := Bounds(MaxMemory)
		if len(r.Final.Netns) > limits.Namespaces || len(r.Timeline) > maxSteps || len(r.PeakUsed) > maxKept {
			t.Errorf("over the bounds: %d namespaces, %d steps, %d peaks", len(r.Final.Netns), len(r.Timeline), len(r.PeakUsed))
		}
		for _, out := range []string{r.Text(), r.Markdown()} {
			if strings.ContainsAny(out, "\x1b\x07\u202e") {
				t.Errorf("a control or bidi character printed")
			}
		}
		now := t0
		p, err := NewPlayer(bytes.NewReader(c), 1e6, func() time.Time { now = now.Add(time.Hour); return now })
		if err != nil {
			t.Fatal(err)
		}
		p.Frame()
		p.Frame()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		if m.HeapAlloc > uint64(MaxMemory) {
			t.Errorf("heap %d MiB, over the %d MiB ceiling", m.HeapAlloc>>20, MaxMemory>>20)
		}
	})
}
