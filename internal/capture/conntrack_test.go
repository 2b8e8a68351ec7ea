package capture

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/nat"
)

// ctTable is a node's conntrack table with n translated entries.
func ctTable(ns uint32, n int) nat.Table {
	t := nat.Table{Netns: ns, Time: t0, Count: n + 3, Max: 262144,
		Stats: nat.Stats{InsertFailed: 20, Drop: 21, EarlyDrop: 2},
		Rules: []nat.Rule{{Family: "ip", Table: "nat", Chain: "POSTROUTING", Handle: 4, Kind: "masquerade", Via: "iptables",
			PortMin: 41000, PortMax: 41019, Oif: "up0", Other: []string{"(a match porttrace does not read)"}}},
		Addrs: []netip.Prefix{netip.MustParsePrefix("10.78.0.1/24")}}
	for i := range n {
		t.Entries = append(t.Entries, nat.Entry{Proto: 6, State: "ESTABLISHED",
			Src:    netip.AddrPortFrom(netip.MustParseAddr("10.77.1.2"), uint16(30000+i%30000)),
			Dst:    netip.MustParseAddrPort("10.78.0.2:8080"),
			NATSrc: netip.AddrPortFrom(netip.MustParseAddr("10.78.0.1"), uint16(1024+i%60000))})
	}
	return t
}

// ctCapture writes a capture whose one round carries ct.
func ctCapture(t testing.TB, ct *ConntrackRound) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, Header{Start: t0})
	w.SyncBegin()
	if err := w.Round(Round{Time: t0, Tables: []event.SocketTable{{Netns: 1}}, Conntrack: ct}); err != nil {
		t.Fatal(err)
	}
	e := sample(1)
	w.Event(&e)
	w.Close(Trailer{})
	return buf.Bytes()
}

// readCT reads a capture's conntrack rounds, and the error that ended it.
func readCT(data []byte, maxEntries int) (*Reader, []*ConntrackRound, error) {
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, nil, err
	}
	r.MaxRoundEntries = maxEntries
	var out []*ConntrackRound
	var ev event.Event
	for {
		rec, err := r.Next(&ev)
		if err != nil {
			return r, out, err
		}
		if rec.Conntrack != nil {
			out = append(out, rec.Conntrack)
		}
	}
}

// TestConntrackRound: a round of conntrack tables is read back as written,
// a table too big for one block split over chunks and joined again, empty
// tables kept, and the round comes after its socket tables.
func TestConntrackRound(t *testing.T) {
	ct := &ConntrackRound{Time: t0, Tables: []nat.Table{ctTable(7, 20), {Netns: 8, Time: t0}, ctTable(9, 20000), ctTable(10, 3)}}
	data := ctCapture(t, ct)
	r, rounds, err := readCT(data, 0)
	if err.Error() != "EOF" || len(rounds) != 1 {
		t.Fatalf("%d rounds, %v", len(rounds), err)
	}
	got := rounds[0]
	want, _ := json.Marshal(ct)
	have, _ := json.Marshal(got)
	if !bytes.Equal(want, have) {
		t.Errorf("read back differs:\n got %.300s\nwant %.300s", have, want)
	}
	if r.index < 7 { // header, marker, round, 3 conntrack chunks at least, events
		t.Errorf("%d blocks: the 20,000 entries were not split", r.index)
	}
	if r.DroppedEntries != 0 {
		t.Errorf("%d entries dropped", r.DroppedEntries)
	}
}

// TestConntrackRoundBound: past MaxRoundEntries, entries are dropped and
// counted, in the reader and in their table.
func TestConntrackRoundBound(t *testing.T) {
	data := ctCapture(t, &ConntrackRound{Time: t0, Tables: []nat.Table{ctTable(7, 100), ctTable(9, 20000)}})
	r, rounds, _ := readCT(data, 5000)
	if len(rounds) != 1 {
		t.Fatalf("%d rounds", len(rounds))
	}
	tb := rounds[0].Tables
	if len(tb) != 2 || len(tb[0].Entries) != 100 || len(tb[1].Entries) != 4900 || tb[1].Dropped != 15100 || r.DroppedEntries != 15100 {
		t.Errorf("kept %d and %d entries (dropped %d), reader dropped %d; want 100, 4900, 15100", len(tb[0].Entries), len(tb[1].Entries), tb[1].Dropped, r.DroppedEntries)
	}
}

// TestConntrackForged: chunks over the bounds, cut short or not JSON are
// refused where they are, never read without end.
func TestConntrackForged(t *testing.T) {
	many := ctTable(1, 0)
	for i := range maxCTRules + 1 {
		many.Rules = append(many.Rules, nat.Rule{Kind: "snat", Handle: uint64(i)})
	}
	heavy := ctTable(1, chunkWeight+1)
	chunk := func(last bool, tables ...nat.Table) []byte {
		b, _ := json.Marshal(ctChunk{Time: t0, Tables: tables, Last: last})
		return b
	}
	repeat := func(n int, b []byte) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = b
		}
		return out
	}
	for name, c := range map[string]struct {
		blocks [][]byte
		want   string
	}{
		"too many rules":  {[][]byte{chunk(true, many)}, "rules"},
		"chunk too heavy": {[][]byte{chunk(true, heavy)}, "chunks of"},
		"too many chunks": {repeat(maxCTChunks+1, chunk(false, ctTable(1, 1))), "chunks of"},
		"cut short":       {[][]byte{chunk(false, ctTable(1, 1)), nil}, "cut short"},
		"not JSON":        {[][]byte{[]byte("{")}, "conntrack tables"},
		"too many tables": {tablesOver(), "namespaces"},
	} {
		var buf bytes.Buffer
		w, _ := NewWriter(&buf, Header{Start: t0})
		for i, b := range c.blocks {
			kind := byte(kindConntrack)
			if b == nil && i > 0 {
				kind = kindSyncBegin
			}
			if err := w.block(kind, b); err != nil {
				t.Fatal(err)
			}
		}
		_, _, err := readCT(buf.Bytes(), 0)
		var be *BlockError
		if !errors.As(err, &be) || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a corrupt block saying %q", name, err, c.want)
		}
	}
}

// tablesOver is chunks that name one namespace more than a round holds.
func tablesOver() [][]byte {
	var out [][]byte
	var tables []nat.Table
	for i := range maxCTTables + 1 {
		tables = append(tables, nat.Table{Netns: uint32(i + 1)})
		if len(tables) == 1000 || i == maxCTTables {
			b, _ := json.Marshal(ctChunk{Time: t0, Tables: tables, Last: i == maxCTTables})
			out, tables = append(out, b), nil
		}
	}
	return out
}

// TestVersion2: captures from before conntrack rounds (format version 2),
// before events carried a port range (3) and before NAT events carried
// their translated source (4) still read, their events whole but for
// what the version lacks; a newer version than this porttrace's is
// refused in one line naming both.
func TestVersion2(t *testing.T) {
	for _, v := range []byte{2, 3, 4, 5, Version} {
		_, evs, rounds, err := readAll(writeVersion(t, 50, true, v))
		if err != nil || len(evs) != 50 || rounds != 1 {
			t.Fatalf("version %d: %d events, %d rounds, %v", v, len(evs), rounds, err)
		}
		for _, i := range []int{13, 23} { // a port range; a NAT event
			want := sample(i)
			if v < 4 {
				want.PortRange = [2]uint16{}
			}
			if v < 5 {
				want.NATSrc, want.Proto = netip.AddrPort{}, 0
			}
			if evs[i] != want {
				t.Errorf("version %d: event %+v, want %+v", v, evs[i], want)
			}
		}
	}
	data := write(t, 50, true)
	data[len(magic)] = Version + 1
	if _, err := NewReader(bytes.NewReader(data)); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("version %d", Version+1)) {
		t.Errorf("version %d: %v", Version+1, err)
	}
}

// TestConntrackText: what a forged conntrack round says is made safe to
// print.
func TestConntrackText(t *testing.T) {
	tb := ctTable(1, 1)
	tb.Rules[0].Chain, tb.Entries[0].State, tb.Err = "POST\x1b[2J", "EST\u202e", strings.Repeat("e", 10000)
	tb.Rules[0].Other = []string{strings.Repeat("x", 1000)}
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, Header{Start: t0})
	b, _ := json.Marshal(ctChunk{Time: t0, Tables: []nat.Table{tb}, Last: true})
	w.block(kindConntrack, b)
	_, rounds, _ := readCT(buf.Bytes(), 0)
	if len(rounds) != 1 {
		t.Fatal("no round")
	}
	got := rounds[0].Tables[0]
	for _, s := range []string{got.Rules[0].Chain, got.Entries[0].State, got.Err, got.Rules[0].Other[0]} {
		if strings.ContainsAny(s, "\x1b\u202e") || len(s) > 4096+16 {
			t.Errorf("unsafe text read back: %.80q (%d bytes)", s, len(s))
		}
	}
	if len(got.Rules[0].Other[0]) > maxOtherLen+16 {
		t.Errorf("a rule's match of %d bytes", len(got.Rules[0].Other[0]))
	}
}
