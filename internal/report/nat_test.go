package report

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/capture"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/netns"
)

// natNode is a node's conntrack table holding used of its rule's 20
// ports for pod 10.77.1.2, with insert_failed at failed.
func natNode(at time.Time, used int, failed uint64) nat.Table {
	t := nat.Table{Netns: 9, Time: at, Count: used, Max: 1000, Stats: nat.Stats{InsertFailed: failed, Drop: failed},
		Rules: []nat.Rule{{Family: "ip", Table: "nat", Chain: "POSTROUTING", Kind: "masquerade", Via: "iptables", PortMin: 41000, PortMax: 41019}},
		Addrs: []netip.Prefix{netip.MustParsePrefix("10.77.1.1/24"), netip.MustParsePrefix("10.78.0.1/24")}}
	for i := range used {
		t.Entries = append(t.Entries, nat.Entry{Proto: 6, State: "ESTABLISHED",
			Src:    netip.AddrPortFrom(netip.MustParseAddr("10.77.1.2"), uint16(50000+i)),
			Dst:    netip.MustParseAddrPort("10.78.0.2:8080"),
			NATSrc: netip.AddrPortFrom(netip.MustParseAddr("10.78.0.1"), uint16(41000+i))})
	}
	return t
}

// natCapture records three rounds: before (5 held), during (20 held,
// insert_failed +12) and after the pods let go (2 held).
func natCapture(t *testing.T) []byte {
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf, capture.Header{Start: t0, Netns: []netns.Settings{{Inode: 9}, {Inode: 11}}})
	if err != nil {
		t.Fatal(err)
	}
	pod := nat.Table{Netns: 11, Time: t0, Addrs: []netip.Prefix{netip.MustParsePrefix("10.77.1.2/24")}}
	for i, n := range []struct {
		used   int
		failed uint64
	}{{5, 3}, {20, 15}, {2, 15}} {
		at := t0.Add(time.Duration(i) * 5 * time.Second)
		w.SyncBegin()
		w.Round(capture.Round{Time: at, Netns: []netns.Settings{{Inode: 9, Names: []string{"node"}}, {Inode: 11, Names: []string{"pod-a"}}},
			Tables: []event.SocketTable{{Netns: 9, Time: at}, {Netns: 11, Time: at, Sockets: []event.Socket{{
				Src: netip.MustParseAddrPort("10.77.1.2:50001"), Dst: netip.MustParseAddrPort("10.78.0.2:8080"), PID: 4242, Comm: "client", Cookie: 1}}}},
			Conntrack: &capture.ConntrackRound{Time: at, Tables: []nat.Table{natNode(at, n.used, n.failed), pod}}})
	}
	w.Close(capture.Trailer{End: t0.Add(12 * time.Second), Reason: "duration"})
	return buf.Bytes()
}

// TestReportNAT: a report shows the NAT space at the capture's fullest
// conntrack round, its insert_failed rise over the rounds before, the pod
// and its process, and the NAT findings; the replay shows the NAT space
// as of the round played.
func TestReportNAT(t *testing.T) {
	r, err := Build(bytes.NewReader(natCapture(t)))
	if err != nil {
		t.Fatal(err)
	}
	if r.NAT == nil || len(r.NAT.Spaces) != 1 {
		t.Fatalf("NAT %+v", r.NAT)
	}
	sp := r.NAT.Spaces[0]
	c := sp.Clients[0]
	if sp.Used != 20 || sp.Ports != 20 || sp.InsertFailed != 12 || sp.Drop != 12 || !r.NAT.Time.Equal(t0.Add(5*time.Second)) {
		t.Errorf("space %d/%d, insert_failed +%d drop +%d at %v; want 20/20, +12, +12 at the second round", sp.Used, sp.Ports, sp.InsertFailed, sp.Drop, r.NAT.Time)
	}
	if c.Netns != 11 || c.Used != 20 || c.PID != 4242 || len(c.Names) == 0 || c.Names[0] != "pod-a" || len(sp.Names) == 0 || sp.Names[0] != "node" {
		t.Errorf("client %+v, space named %v", c, sp.Names)
	}
	var rules []string
	for _, f := range r.Findings {
		if strings.HasPrefix(f.Space, "NAT ") {
			rules = append(rules, f.Rule)
		}
	}
	if len(rules) == 0 || rules[0] != "nat-reuse-connections" {
		t.Errorf("NAT findings %v", rules)
	}
	if txt := r.Text(); !strings.Contains(txt, "SOURCE NAT") || !strings.Contains(txt, "20/20") {
		t.Errorf("text has no NAT space:\n%s", txt)
	}
	now := t0
	p, err := NewPlayer(bytes.NewReader(natCapture(t)), 1, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []int{5, 20, 2} {
		f := p.Frame()
		if f.NAT == nil || len(f.NAT.Spaces) != 1 || f.NAT.Spaces[0].Used != want {
			t.Errorf("replay at %v: NAT %+v, want %d used", now.Sub(t0), f.NAT, want)
		}
		now = now.Add(5 * time.Second)
	}
}

// TestReportWithoutConntrack: a capture with no conntrack rounds (a kernel
// without conntrack; format 2 has none either: capture's TestVersion2) has
// no NAT section and no NAT findings.
func TestReportWithoutConntrack(t *testing.T) {
	data := incident(t, true)
	r, err := Build(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if r.NAT != nil || strings.Contains(r.Text(), "SOURCE NAT") {
		t.Errorf("NAT from a capture without conntrack rounds: %+v", r.NAT)
	}
}
