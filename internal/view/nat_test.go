package view

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"

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
