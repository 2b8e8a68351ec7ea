package nat

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/event"
)

var (
	node     = netip.MustParseAddr("10.78.0.1")
	upstream = netip.MustParseAddrPort("10.78.0.2:8080")
	masq     = Rule{Family: "ip", Table: "nat", Chain: "POSTROUTING", Handle: 2, Kind: "masquerade", Via: "iptables", PortMin: 41000, PortMax: 41019, Proto: 6}
)

func flow(pod, sport int, natPort uint16, state string) Entry {
	return Entry{Proto: 6, Src: netip.AddrPortFrom(netip.MustParseAddr(fmt.Sprintf("10.77.%d.2", pod)), uint16(sport)), Dst: upstream, NATSrc: netip.AddrPortFrom(node, natPort), State: state}
}

func table(ns uint32, at int, rules []Rule, entries ...Entry) Table {
	return Table{Netns: ns, Time: time.Unix(int64(1000+at), 0), Rules: rules, Entries: entries, Count: len(entries), Max: 262144}
}

// A NAT port is held by an entry in any state but TIME_WAIT and CLOSE
// where the kernel takes those over (in any state before 6.5), once per
// port, only inside the rule's range: Used never exceeds Ports.
func TestSpaceCountsWhatTheKernelRefuses(t *testing.T) {
	var es []Entry
	for i := range 12 {
		es = append(es, flow(1+i%3, 50000+i, uint16(41000+i), "ESTABLISHED"))
	}
	es = append(es,
		flow(1, 51000, 41012, "SYN_SENT"),
		flow(1, 51001, 41013, "TIME_WAIT"), // taken over by the next flow
		flow(1, 51002, 41014, "CLOSE"),
		flow(2, 51003, 40999, "ESTABLISHED"), // outside the rule's range
		flow(2, 51004, 41000, "ESTABLISHED"), // the same port toward the same space: once
	)
	tb := table(7, 0, []Rule{masq}, es...)
	tb.TakesOverClosing = true
	sp := Spaces(&tb, nil, nil)
	if len(sp) != 1 {
		t.Fatalf("%d spaces", len(sp))
	}
	tb.TakesOverClosing = false
	if old := Spaces(&tb, nil, nil)[0]; old.Used != 15 || old.Lingering != 0 || old.ByState["TIME_WAIT"] != 1 {
		t.Errorf("before 6.5: used %d, lingering %d, by state %v; want 15, 0, one TIME_WAIT", old.Used, old.Lingering, old.ByState)
	}
	s := sp[0]
	if s.Ports != 20 || s.Used != 13 || s.Lingering != 2 || s.ByState["SYN_SENT"] != 1 || s.ByState["ESTABLISHED"] != 12 {
		t.Errorf("used %d of %d, lingering %d, by state %v; want 13 of 20, 2 lingering", s.Used, s.Ports, s.Lingering, s.ByState)
	}
	if s.Clients[0].Addr != netip.MustParseAddr("10.77.1.2") || s.Clients[0].Used != 5 {
		t.Errorf("top client %+v, want 10.77.1.2 with 5", s.Clients[0])
	}
	if s.Full() {
		t.Error("13 of 20 is not full")
	}
}

// The space's capacity comes from the rule that applies to the flow and
// covers its translated source; a rule that names no ports gives nf_nat's
// default range; a rule exempting a destination is never the space's.
func TestRuleForSpace(t *testing.T) {
	exempt := Rule{Kind: "return", Dst: Match{Prefix: netip.MustParsePrefix("10.78.0.0/24")}}
	other := Rule{Kind: "snat", AddrMin: netip.MustParseAddr("10.99.0.1"), AddrMax: netip.MustParseAddr("10.99.0.2"), PortMin: 1, PortMax: 2}
	notUp := Rule{Kind: "masquerade", PortMin: 30000, PortMax: 30009, Dst: Match{Prefix: netip.MustParsePrefix("10.78.0.2/32"), Not: true}}
	wide := Rule{Kind: "masquerade"}
	for _, c := range []struct {
		rules []Rule
		port  uint16
		ports int
		rule  string
	}{
		{[]Rule{exempt, masq}, 41003, 20, "masquerade to :41000-41019"},
		{[]Rule{other, notUp, wide}, 50001, 64512, "masquerade"},
		{[]Rule{other}, 50001, 64512, ""},
		{[]Rule{{Kind: "snat", AddrMin: node, AddrMax: netip.MustParseAddr("10.78.0.9"), PortMin: 41000, PortMax: 41009}}, 41001, 10, "snat to 10.78.0.1-10.78.0.9:41000-41009"},
	} {
		tb := table(7, 0, c.rules, flow(1, 50001, c.port, "ESTABLISHED"))
		s := Spaces(&tb, nil, nil)[0]
		if s.Ports != c.ports || c.rule != "" && !contains(s.Rule, c.rule) || c.rule == "" && s.Rule != "" {
			t.Errorf("rules %v: space of %d ports from %q, want %d from %q", c.rules, s.Ports, s.Rule, c.ports, c.rule)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// Each translated address is its own space: nf_nat picks one address of
// a --to-source range per client and destination.
func TestSpacePerAddress(t *testing.T) {
	r := Rule{Kind: "snat", AddrMin: node, AddrMax: netip.MustParseAddr("10.78.0.4"), PortMin: 41000, PortMax: 41009}
	other := flow(2, 50002, 41000, "ESTABLISHED")
	other.NATSrc = netip.AddrPortFrom(netip.MustParseAddr("10.78.0.4"), 41000)
	tb := table(7, 0, []Rule{r}, flow(1, 50001, 41000, "ESTABLISHED"), other)
	sp := Spaces(&tb, nil, nil)
	if len(sp) != 2 || sp[0].Used != 1 || sp[1].Used != 1 || sp[0].Addrs != 4 || sp[0].Ports != 10 {
		t.Errorf("spaces %+v, want two of 10 ports, one used each, rule of 4 addresses", sp)
	}
}

// The tracker's counters rise over its window; a namespace absent from
// a round is gone; clients are traced to the namespace that has their
// address (not a shared one) and to the socket's owner.
func TestTrackerRiseAndClients(t *testing.T) {
	tr := NewTracker(time.Minute)
	pod := Table{Netns: 11, Addrs: []netip.Prefix{netip.MustParsePrefix("10.77.1.2/24"), netip.MustParsePrefix("127.0.0.1/8")}}
	twin1 := Table{Netns: 12, Addrs: []netip.Prefix{netip.MustParsePrefix("10.77.2.2/24")}}
	twin2 := Table{Netns: 13, Addrs: []netip.Prefix{netip.MustParsePrefix("10.77.2.2/24")}}
	n0 := table(7, 0, []Rule{masq})
	n0.Stats = Stats{InsertFailed: 100, Drop: 100}
	tr.Add([]Table{n0, pod, twin1, twin2})
	n1 := table(7, 30, []Rule{masq}, flow(1, 50001, 41000, "ESTABLISHED"), flow(2, 50002, 41001, "ESTABLISHED"))
	n1.Stats = Stats{InsertFailed: 105, Drop: 104}
	tr.Add([]Table{n1, pod, twin1, twin2})
	n2 := n1
	n2.Time = n2.Time.Add(40 * time.Second)
	n2.Stats = Stats{InsertFailed: 120, Drop: 119}
	tr.Add([]Table{n2, pod, twin1, twin2})
	socks := []event.SocketTable{{Netns: 11, Sockets: []event.Socket{{Src: flow(1, 50001, 0, "").Src, Dst: upstream, PID: 42, Comm: "curl"}}}}
	s := tr.Summary(socks)
	if len(s.Spaces) != 1 || len(s.Tables) != 1 {
		t.Fatalf("summary %+v", s)
	}
	sp := s.Spaces[0]
	// The window holds the readings at 30 s and 70 s: 120-105, 119-104.
	if sp.InsertFailed != 15 || sp.Drop != 15 || s.Tables[0].Seconds != 40 {
		t.Errorf("rise insert_failed %d drop %d over %v s, want 15, 15 over 40", sp.InsertFailed, sp.Drop, s.Tables[0].Seconds)
	}
	c1, c2 := sp.Clients[0], sp.Clients[1]
	if c1.Netns != 11 || c1.PID != 42 || c1.Comm != "curl" || c2.Netns != 0 || c2.PID != 0 {
		t.Errorf("clients %+v %+v: want the first traced to netns 11 and curl[42], the second (a shared address) to none", c1, c2)
	}
	tr.Add([]Table{pod})
	if s := tr.Summary(nil); len(s.Spaces) != 0 {
		t.Errorf("the node went, its spaces stay: %+v", s.Spaces)
	}
}

// A full conntrack table is the table's, not a space's.
func TestTableFull(t *testing.T) {
	c := Conntrack{Count: 100, Max: 100}
	if !c.TableFull() {
		t.Error("100 of 100 is full")
	}
	c = Conntrack{Count: 10, Max: 100, Rise: Stats{EarlyDrop: 3}}
	if !c.TableFull() {
		t.Error("early_drop rose: the table was full")
	}
	if (&Conntrack{Count: 99, Max: 100, Rise: Stats{Drop: 5, InsertFailed: 5}}).TableFull() {
		t.Error("drops from insert_failed are not a full table")
	}
}

func TestClientsBounded(t *testing.T) {
	var es []Entry
	for i := range 30 {
		es = append(es, flow(i, 50000, uint16(41000+i%20), "ESTABLISHED"))
	}
	tb := table(7, 0, nil, es...)
	if s := Spaces(&tb, nil, nil)[0]; len(s.Clients) != MaxClients || s.Used != 20 {
		t.Errorf("%d clients, %d used", len(s.Clients), s.Used)
	}
}

// A table of 65,536 entries toward as many destinations (a gateway, or a
// forged capture) gives MaxSpaces spaces, the busiest first, the rest
// counted, within a heap bound: unbounded it took 160 MiB.
func TestSpacesBounded(t *testing.T) {
	tb := Table{Netns: 1, Time: time.Unix(1000, 0), Rules: []Rule{masq}}
	for i := range 1 << 16 {
		tb.Entries = append(tb.Entries, Entry{Proto: 6, State: "ESTABLISHED",
			Src:    netip.AddrPortFrom(netip.MustParseAddr("10.77.1.2"), uint16(i)),
			Dst:    netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), 80),
			NATSrc: netip.AddrPortFrom(netip.MustParseAddr("10.78.0.1"), uint16(41000+i%20))})
	}
	busy := netip.MustParseAddrPort("10.9.200.1:443")
	for i := range 15 {
		tb.Entries = append(tb.Entries, flow(1, 30000+i, uint16(41000+i), "ESTABLISHED"))
		tb.Entries[len(tb.Entries)-1].Dst = busy
	}
	tr := NewTracker(time.Minute)
	tr.Add([]Table{tb})
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	s := tr.Summary(nil)
	runtime.ReadMemStats(&m1)
	alloc := (m1.TotalAlloc - m0.TotalAlloc) >> 20
	t.Logf("%d spaces, %d dropped, %d MiB allocated", len(s.Spaces), s.Tables[0].DroppedSpaces, alloc)
	if len(s.Spaces) != MaxSpaces || s.Tables[0].DroppedSpaces != 1<<16+1-MaxSpaces || s.Spaces[0].Dst != busy || s.Spaces[0].Used != 15 {
		t.Errorf("%d spaces (dropped %d), first %s with %d", len(s.Spaces), s.Tables[0].DroppedSpaces, s.Spaces[0].Dst, s.Spaces[0].Used)
	}
	if alloc > 48 {
		t.Errorf("%d MiB allocated for one summary", alloc)
	}
}
