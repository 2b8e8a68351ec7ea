package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/netns"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func sample(i int) event.Event {
	e := event.Event{
		Time: t0.Add(time.Duration(i) * time.Millisecond), Kind: event.Kind(1 + i%6), Flags: event.LatencyApprox,
		OldState: event.SynSent, NewState: event.Close, Errno: syscall.EADDRNOTAVAIL, Latency: time.Duration(i) * time.Microsecond,
		Cookie: uint64(1000 + i), CgroupID: 77, Netns: 4026532177, TID: 812, PID: 811, Family: syscall.AF_INET,
		Comm: event.MakeComm("nginx"),
		Src:  netip.MustParseAddrPort("127.0.0.1:40000"), Dst: netip.MustParseAddrPort("127.0.0.1:8080"),
	}
	if i%3 == 1 {
		e.Family = syscall.AF_INET6
		e.Src, e.Dst = netip.MustParseAddrPort("[::1]:40001"), netip.MustParseAddrPort("[2001:db8::1]:443")
	}
	if i%7 == 2 {
		e.Src = netip.AddrPort{}
	}
	if i%5 == 3 {
		e.PortRange = [2]uint16{40000, uint16(40004 + i)}
	}
	if e.Kind == event.NAT {
		e.NATSrc, e.Proto = netip.MustParseAddrPort("192.0.2.1:41000"), 6
		if e.Family == syscall.AF_INET6 {
			e.NATSrc = netip.MustParseAddrPort("[2001:db8::9]:41001")
		}
	}
	return e
}

// write makes a capture of n events with a round of socket tables in the middle, and
// returns it with the offsets where blocks end.
func write(t *testing.T, n int, trailer bool) []byte {
	t.Helper()
	return writeVersion(t, n, trailer, Version)
}

// writeVersion is write in an older format version.
func writeVersion(t *testing.T, n int, trailer bool, version byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := newWriter(&buf, Header{Host: "h", Kernel: "6.1", Backend: "fentry", Start: t0,
		Netns: []netns.Settings{{Inode: 4026532177, PortLow: 40000, PortHigh: 40099}}}, version)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		e := sample(i)
		if err := w.Event(&e); err != nil {
			t.Fatal(err)
		}
		if i == n/2 {
			w.SyncBegin()
			w.Round(Round{Time: t0, Netns: []netns.Settings{{Inode: 4026532177}}, Tables: []event.SocketTable{{Netns: 4026532177, Time: t0,
				Sockets: []event.Socket{{Src: netip.MustParseAddrPort("127.0.0.1:40005"), Dst: netip.MustParseAddrPort("127.0.0.1:8080"), TimeWait: true, Expires: time.Second, Cookie: 9}}}}})
		}
		if i%100 == 99 {
			w.Flush()
		}
	}
	if trailer {
		if err := w.Close(Trailer{End: t0.Add(time.Minute), Lost: 3, Reason: "duration"}); err != nil {
			t.Fatal(err)
		}
	} else {
		w.Flush()
	}
	return buf.Bytes()
}

// readAll returns the events and rounds read, and the error that ended
// the read (nil for a clean end).
func readAll(data []byte) (*Reader, []event.Event, int, error) {
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, nil, 0, err
	}
	var evs []event.Event
	rounds := 0
	var ev event.Event
	for {
		rec, err := r.Next(&ev)
		if err == io.EOF {
			return r, evs, rounds, nil
		}
		if err != nil {
			return r, evs, rounds, err
		}
		if rec.Event != nil {
			evs = append(evs, *rec.Event)
		} else if rec.Round != nil {
			rounds++
		}
	}
}

func TestRoundTrip(t *testing.T) {
	data := write(t, 1000, true)
	r, evs, rounds, err := readAll(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1000 || rounds != 1 || r.Trailer == nil || r.Trailer.Events != 1000 || r.Trailer.Lost != 3 {
		t.Fatalf("%d events, %d rounds, trailer %+v", len(evs), rounds, r.Trailer)
	}
	if r.Header.Backend != "fentry" || r.Header.Netns[0].PortHigh != 40099 {
		t.Errorf("header %+v", r.Header)
	}
	for i, got := range evs {
		if want := sample(i); got != want {
			t.Fatalf("event %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
	t.Logf("1000 events: %d bytes (%.1f per event)", len(data), float64(len(data))/1000)
}

// TestTruncatedAnywhere cuts the file at every length: each read returns
// a prefix of the events and either ends cleanly at a block boundary or
// says where the file was cut. Never a panic, never an invented event.
func TestTruncatedAnywhere(t *testing.T) {
	data := write(t, 300, true)
	for n := 0; n < len(data); n++ {
		r, evs, _, err := readAll(data[:n])
		if r == nil {
			if err == nil {
				t.Fatalf("cut at %d: no reader, no error", n)
			}
			continue // the header is cut: an error, nothing to read
		}
		for i, e := range evs {
			if e != sample(i) {
				t.Fatalf("cut at %d: event %d differs", n, i)
			}
		}
		var be *BlockError
		if err != nil && (!errors.As(err, &be) || !errors.Is(err, ErrTruncated)) {
			t.Fatalf("cut at %d: %v, want a truncation at a block", n, err)
		}
		if r.Trailer != nil {
			t.Fatalf("cut at %d: a trailer", n)
		}
	}
}

func TestCorruptBlock(t *testing.T) {
	data := write(t, 300, true)
	bad := bytes.Clone(data)
	bad[len(bad)/2] ^= 0x40
	_, evs, _, err := readAll(bad)
	var be *BlockError
	if !errors.As(err, &be) || !errors.Is(err, ErrCorrupt) || be.Index == 0 {
		t.Fatalf("flipped bit: %v", err)
	}
	if len(evs) == 0 || len(evs) >= 300 {
		t.Errorf("%d events before the bad block", len(evs))
	}
	t.Logf("%v (after %d events)", err, len(evs))
}

func TestNotACapture(t *testing.T) {
	for name, data := range map[string][]byte{
		"empty":   nil,
		"text":    []byte("hello world\n"),
		"random":  randomBytes(4096),
		"version": []byte(magic + "\x09"),
	} {
		_, _, _, err := readAll(data)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if name == "version" && !strings.Contains(err.Error(), "version 9") {
			t.Errorf("version: %v", err)
		}
	}
}

func randomBytes(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// failAfter is a disk that fills after n bytes.
type failAfter struct {
	buf bytes.Buffer
	n   int
}

func (f *failAfter) Write(b []byte) (int, error) {
	room := f.n - f.buf.Len()
	if len(b) > room {
		f.buf.Write(b[:max(room, 0)])
		return max(room, 0), syscall.ENOSPC
	}
	return f.buf.Write(b)
}

func TestDiskFull(t *testing.T) {
	full := write(t, 2000, true)
	disk := &failAfter{n: len(full) / 2}
	w, err := NewWriter(disk, Header{Start: t0})
	if err != nil {
		t.Fatal(err)
	}
	var werr error
	for i := 0; i < 2000 && werr == nil; i++ {
		e := sample(i)
		werr = w.Event(&e)
		if werr == nil && i%100 == 99 {
			werr = w.Flush()
		}
	}
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("write error %v, want ENOSPC", werr)
	}
	_, evs, _, err := readAll(disk.buf.Bytes())
	if !errors.Is(err, ErrTruncated) || len(evs) == 0 || len(evs)%100 != 0 {
		t.Errorf("after a full disk: %d events, %v; want the flushed blocks, then a truncation", len(evs), err)
	}
	if w.Stored() != uint64(len(evs)) || w.Events() <= w.Stored() {
		t.Errorf("the writer says %d events stored (of %d taken), a reader finds %d", w.Stored(), w.Events(), len(evs))
	}
}

func FuzzReader(f *testing.F) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, Header{Start: t0})
	for i := 0; i < 5; i++ {
		e := sample(i)
		w.Event(&e)
	}
	w.Close(Trailer{})
	f.Add(buf.Bytes())
	f.Add(ctCapture(f, &ConntrackRound{Time: t0, Tables: []nat.Table{ctTable(7, 3), {Netns: 8}}}))
	f.Add([]byte(magic + "\x01"))
	var v5 bytes.Buffer // zstd blocks
	w, _ = newWriter(&v5, Header{Start: t0}, 5)
	e := sample(1)
	w.Event(&e)
	w.Close(Trailer{})
	f.Add(v5.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		var ev event.Event
		for i := 0; i < 1<<16; i++ {
			if _, err := r.Next(&ev); err != nil {
				return
			}
		}
	})
}

// TestRoundChunks: a round too big for one block is split, and read back
// whole, empty tables included.
func TestRoundChunks(t *testing.T) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, Header{Start: t0})
	big := make([]event.Socket, 40000)
	for i := range big {
		big[i] = event.Socket{Src: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(i)), Cookie: uint64(i)}
	}
	round := Round{Time: t0, Netns: []netns.Settings{{Inode: 1}, {Inode: 2}, {Inode: 3}},
		Tables: []event.SocketTable{{Netns: 1, Sockets: big[:1000]}, {Netns: 2}, {Netns: 3, Sockets: big}}}
	if err := w.SyncBegin(); err != nil {
		t.Fatal(err)
	}
	if err := w.Round(round); err != nil {
		t.Fatal(err)
	}
	w.Close(Trailer{})
	r, err := NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var ev event.Event
	if rec, err := r.Next(&ev); err != nil || !rec.SyncBegin {
		t.Fatalf("first record %+v %v, want the sync marker", rec, err)
	}
	rec, err := r.Next(&ev)
	if err != nil || rec.Round == nil {
		t.Fatalf("%+v %v", rec, err)
	}
	got := map[uint32]int{}
	for _, tb := range rec.Round.Tables {
		got[tb.Netns] += len(tb.Sockets)
	}
	if len(rec.Round.Netns) != 3 || got[1] != 1000 || got[3] != 40000 || len(got) != 3 {
		t.Errorf("round read back: %d namespaces, sockets %v", len(rec.Round.Netns), got)
	}
	if r.index != 5 { // header, marker, 3 chunks
		t.Errorf("%d blocks read, want 5", r.index)
	}
}

// TestTrailingData: bytes after the trailer (two captures concatenated)
// are reported where they start, not ignored silently (issue 21).
func TestTrailingData(t *testing.T) {
	one := write(t, 10, true)
	for _, extra := range [][]byte{write(t, 10, true), {0}, []byte("garbage")} {
		r, evs, _, err := readAll(append(bytes.Clone(one), extra...))
		var be *BlockError
		if !errors.As(err, &be) || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "data after the trailer") ||
			be.Offset != int64(len(one)) || len(evs) != 10 || r.Trailer == nil {
			t.Errorf("%d bytes after the trailer: %v (%d events, trailer %v)", len(extra), err, len(evs), r.Trailer)
		}
	}
	if _, _, _, err := readAll(one); err != nil {
		t.Errorf("no trailing data: %v", err)
	}
}

// blocks are the offsets of a capture's blocks (the header's first).
func blocks(t *testing.T, data []byte) []int {
	t.Helper()
	var out []int
	for off := len(magic) + 1; off < len(data); {
		out = append(out, off)
		off += blockHeaderLen + int(binary.LittleEndian.Uint32(data[off+5:]))
	}
	return out
}

// TestWrongChecksumValidFrame: a block whose CRC is wrong while its
// compressed bytes are intact (it decodes to its length) is refused where it is,
// whichever bit of the CRC is off: the frame's own integrity is no
// substitute for the block's checksum. No event after it is read.
func TestWrongChecksumValidFrame(t *testing.T) {
	data := write(t, 300, true)
	offs := blocks(t, data)
	if len(offs) < 4 {
		t.Fatalf("%d blocks, want a header, events and more", len(offs))
	}
	dec, err := newDecompressor(Version)
	if err != nil {
		t.Fatal(err)
	}
	_, all, _, err := readAll(data)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(offs); i++ {
		off := offs[i]
		stored := data[off+blockHeaderLen : off+blockHeaderLen+int(binary.LittleEndian.Uint32(data[off+5:]))]
		if _, err := dec(nil, stored, int(binary.LittleEndian.Uint32(data[off+1:]))); err != nil {
			t.Fatalf("block %d: the frame itself does not decode (%v): the test's premise", i, err)
		}
		for _, bit := range []int{0, 13, 31} {
			bad := bytes.Clone(data)
			bad[off+9+bit/8] ^= 1 << (bit % 8)
			_, evs, _, err := readAll(bad)
			var be *BlockError
			if !errors.As(err, &be) || !errors.Is(err, ErrCorrupt) || be.Index != i || be.Offset != int64(off) {
				t.Fatalf("block %d, CRC bit %d flipped: %v, want it corrupt at block %d, byte %d", i, bit, err, i, off)
			}
			if i < len(offs)-1 && len(evs) >= len(all) { // the last is the trailer
				t.Errorf("block %d: all %d events read past a bad block", i, len(evs))
			}
		}
	}
}
