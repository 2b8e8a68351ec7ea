package nat

import (
	"net/netip"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/event"
)

// natEvent is the NAT probe's event for a flow from pod's sport toward
// upstream, translated to node's natPort, refused or not, at second at.
func natEvent(pod, sport int, natPort uint16, refused bool, at int, latency time.Duration) *event.Event {
	e := flow(pod, sport, natPort, "")
	ev := &event.Event{Kind: event.NAT, Time: time.Unix(int64(1000+at), 0), Netns: 7, Proto: 6,
		Src: e.Src, Dst: e.Dst, NATSrc: e.NATSrc, Latency: latency}
	if refused {
		ev.Flags = event.InsertFailed
	}
	return ev
}

// The NAT probe's events count per space and per client over the last
// minute: every refused packet (a client's SYN retransmissions each),
// the distinct tuples among them (the attempts that got no port), the
// search's latency per flow; a pod that holds no port is listed by its
// refusals, named by the namespace that has its address; events of
// another namespace, another destination or a minute old count nowhere.
func TestFlowsFromEvents(t *testing.T) {
	pods := table(11, 0, nil)
	pods.Addrs = []netip.Prefix{netip.MustParsePrefix("10.77.3.2/24")}
	var es []Entry
	tr := NewTracker(Window)
	for i := range 20 {
		es = append(es, flow(1+i%2, 50000+i, uint16(41000+i), "ESTABLISHED"))
		tr.Observe(natEvent(1+i%2, 50000+i, uint16(41000+i), false, 1, time.Duration(10+i)*time.Microsecond))
	}
	// Pod 3 gets no port: 4 attempts, each sent 3 SYNs; pod 1 one attempt, 2 SYNs.
	for a := range 4 {
		for syn := range 3 {
			tr.Observe(natEvent(3, 52000+a, uint16(41000+a+syn), true, 2+syn, 80*time.Microsecond))
		}
	}
	tr.Observe(natEvent(1, 53000, 41005, true, 2, 70*time.Microsecond))
	tr.Observe(natEvent(1, 53000, 41006, true, 3, 70*time.Microsecond))
	old := natEvent(2, 54000, 41007, true, -100, 0) // a minute old by the reading
	tr.Observe(old)
	elsewhere := natEvent(2, 54001, 41008, true, 3, 0)
	elsewhere.Netns = 8
	tr.Observe(elsewhere)
	other := natEvent(2, 54002, 41009, true, 3, 0)
	other.Dst = netip.MustParseAddrPort("10.78.0.3:8080")
	tr.Observe(other)
	tr.Observe(&event.Event{Kind: event.State, Time: time.Unix(1003, 0), Netns: 7}) // not NAT's

	tr.Add([]Table{table(7, 4, []Rule{masq}, es...), pods})
	var sp *Space
	for _, s := range tr.Summary(nil).Spaces {
		if s.Netns == 7 && s.Dst == upstream {
			sp = &s
		}
	}
	if sp == nil || sp.Used != 20 {
		t.Fatalf("space %+v", sp)
	}
	if sp.Flows != 20+12+2 || sp.Failures != 14 || sp.FailedFlows != 5 || sp.AllocLatency.Count != 34 || sp.AllocLatency.Max != 80*time.Microsecond {
		t.Errorf("flows %d, refused %d (%d distinct), search %+v; want 34, 14 (5), 34 timed, max 80µs", sp.Flows, sp.Failures, sp.FailedFlows, sp.AllocLatency)
	}
	want := map[netip.Addr][2]uint64{ // used, refused
		netip.MustParseAddr("10.77.1.2"): {10, 2},
		netip.MustParseAddr("10.77.2.2"): {10, 0},
		netip.MustParseAddr("10.77.3.2"): {0, 12},
	}
	for _, c := range sp.Clients {
		if w := want[c.Addr]; uint64(c.Used) != w[0] || c.Failures != w[1] {
			t.Errorf("client %s: %d used, %d refused; want %v", c.Addr, c.Used, c.Failures, w)
		}
		delete(want, c.Addr)
		if c.Addr == netip.MustParseAddr("10.77.3.2") && c.Netns != 11 {
			t.Errorf("pod 3's client in netns %d, want 11", c.Netns)
		}
	}
	if len(want) != 0 {
		t.Errorf("clients missing: %v", want)
	}
	// The other destination's refusals are a space of their own, sized by
	// the rule, holding nothing read yet.
	var toOther *Space
	for _, s := range tr.Summary(nil).Spaces {
		if s.Netns == 7 && s.Dst == other.Dst {
			toOther = &s
		}
	}
	if toOther == nil || toOther.Failures != 1 || toOther.Used != 0 || toOther.Ports != 20 {
		t.Errorf("space toward %s: %+v", other.Dst, toOther)
	}
}

// The flows kept are bounded whatever the events: spaces, clients,
// refused tuples.
func TestFlowsBounded(t *testing.T) {
	tr := NewTracker(Window)
	for i := range maxFlowSpaces + 10 {
		e := natEvent(1, 50000, 41000, true, 1, 0)
		e.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 79, byte(i >> 8), byte(i)}), 80)
		tr.Observe(e)
	}
	if len(tr.flows) != maxFlowSpaces || tr.DroppedFlows != 10 {
		t.Errorf("%d spaces kept, %d dropped", len(tr.flows), tr.DroppedFlows)
	}
	tr = NewTracker(Window)
	for i := range maxFailedFlows + 300 {
		e := natEvent(1, 1+i%65000, 41000, true, 1, 0)
		e.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 77, byte(i >> 8), byte(i)}), uint16(1+i))
		tr.Observe(e)
	}
	for _, f := range tr.flows {
		if len(f.clients) != maxFlowClients || len(f.failed) != maxFailedFlows || f.failures.Total != maxFailedFlows+300 {
			t.Errorf("%d clients, %d tuples, %d refused", len(f.clients), len(f.failed), f.failures.Total)
		}
	}
}
