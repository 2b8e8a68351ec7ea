package view

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/frame"
	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/summary"
)

// NAT spaces print as rows of their own, marked NAT, with their clients,
// failures, fill and rule, then the conntrack tables; no NAT, no table.
func TestNATRows(t *testing.T) {
	f := frame.Frame{Summary: &summary.Summary{}}
	if strings.Contains(Text(&f, Info{}, Options{}), "NAT SPACE") {
		t.Error("a NAT table with no NAT")
	}
	f.NAT = &nat.Summary{
		Spaces: []nat.Space{{Netns: 7, Proto: "tcp", Addr: netip.MustParseAddr("10.78.0.1"), Dst: netip.MustParseAddrPort("10.78.0.2:8080"), Ports: 20, Used: 20, InsertFailed: 30, Drop: 30,
			Rule:    "ip nat POSTROUTING handle 2: masquerade to :41000-41019",
			Clients: []nat.Client{{Addr: netip.MustParseAddr("10.77.1.2"), Used: 10, Names: []string{"pod default/web-1"}}, {Addr: netip.MustParseAddr("10.77.2.2"), Used: 10}}}},
		Tables: []nat.Conntrack{{Netns: 7, Count: 20, Max: 262144, Rise: nat.Stats{InsertFailed: 30, Drop: 30}, Seconds: 60}},
	}
	probed := *f.NAT
	probed.Spaces = []nat.Space{f.NAT.Spaces[0]}
	sp := &probed.Spaces[0]
	sp.Flows, sp.Failures, sp.AllocLatency = 50, 30, summary.Durations{Count: 50, P50: 12 * time.Microsecond, P99: 2100 * time.Microsecond}
	sp.Clients = append([]nat.Client{{Addr: netip.MustParseAddr("10.77.3.2"), Failures: 30}}, sp.Clients...)
	g := f
	g.NAT = &probed
	if out := Text(&g, Info{}, Options{}); !strings.Contains(out, "100.0%  30       12us/2.1ms      masquerade") || !strings.Contains(out, "10.77.3.2 0 (30 failed)") {
		t.Errorf("the NAT probe's figures are missing:\n%s", out)
	}
	v := ansi.Strip(sized(NewModel(&fixed{f}, Info{}, 1), 120, 40).View())
	if !strings.Contains(v, "NAT tcp 10.78.0.1->10.78.0.2:8080") {
		t.Errorf("the live view lacks the NAT row:\n%s", v)
	}
	out := Text(&f, Info{}, Options{})
	for _, want := range []string{NATHeader, "NAT tcp 10.78.0.1->10.78.0.2:8080", "pod default/web-1 10, 10.77.2.2 10", " 30       30       20/20        100.0%  -        -               masquerade to :41000-41019", "CONNTRACK netns 7           20/262,144 entries; insert_failed +30, drop +30"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
}

// TestSelectNAT: --netns keeps the NAT spaces that translate there or have
// a client there, and their tables and findings; --dport those toward it;
// --pid those with a client in a kept space's namespace; nothing else.
func TestSelectNAT(t *testing.T) {
	space := func(netns uint32, dst string, client uint32) nat.Space {
		return nat.Space{Netns: netns, Proto: "tcp", Addr: netip.MustParseAddr("10.78.0.1"), Dst: netip.MustParseAddrPort(dst), Ports: 20, Used: 20,
			Clients: []nat.Client{{Addr: netip.MustParseAddr("10.77.1.2"), Used: 20, Netns: client}}}
	}
	n := &nat.Summary{
		Spaces: []nat.Space{space(7, "10.78.0.2:8080", 70), space(8, "10.88.0.2:9090", 80)},
		Tables: []nat.Conntrack{{Netns: 7}, {Netns: 8}},
	}
	host := &summary.Summary{Spaces: []summary.SpaceSummary{
		{Key: summary.SpaceKey{Netns: 80}, Netns: 80, Name: "pod-b", Processes: []summary.ProcRef{{PID: 42}}},
	}}
	var all []diagnose.Finding
	for i := range n.Spaces {
		all = append(all, diagnose.Finding{Rule: "nat-full", Space: diagnose.NATWhere(&n.Spaces[i]), Netns: n.Spaces[i].Netns})
	}
	all = append(all, diagnose.Finding{Rule: diagnose.RuleTableFull, Space: "conntrack table (netns 8)", Netns: 8})
	for _, c := range []struct {
		name     string
		sel      Select
		netns    []uint32 // of the NAT spaces kept
		findings int
	}{
		{"everything", Select{}, []uint32{7, 8}, 3},
		{"the translating namespace", Select{Netns: 7}, []uint32{7}, 1},
		{"a client's namespace", Select{Netns: 80}, []uint32{8}, 2},
		{"the destination port", Select{DPort: 9090}, []uint32{8}, 2},
		{"another namespace", Select{Netns: 99}, nil, 0},
		{"a process whose space is in a client's namespace", Select{PIDs: []uint32{42}}, []uint32{8}, 2},
		{"a process nowhere", Select{PIDs: []uint32{43}}, nil, 0},
	} {
		f := c.sel.Apply(frame.Frame{Summary: host, NAT: n, Findings: all})
		var got []uint32
		for _, sp := range f.NAT.Spaces {
			got = append(got, sp.Netns)
		}
		tables := 0
		for _, tb := range f.NAT.Tables {
			if !slices.Contains(got, tb.Netns) {
				t.Errorf("%s: the table of netns %d kept without its spaces", c.name, tb.Netns)
			}
			tables++
		}
		if !slices.Equal(got, c.netns) || len(f.Findings) != c.findings || tables != len(c.netns) {
			t.Errorf("%s: NAT spaces of netns %v, %d tables, %d findings; want %v, %d, %d", c.name, got, tables, len(f.Findings), c.netns, len(c.netns), c.findings)
		}
	}
}
