package diagnose

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/summary"
)

func natSpace(used, ports int, clients ...int) nat.Space {
	s := nat.Space{Netns: 7, Proto: "tcp", Addr: netip.MustParseAddr("10.78.0.1"), Dst: netip.MustParseAddrPort("10.78.0.2:8080"),
		Rule: "ip nat POSTROUTING handle 2: masquerade to :41000-41019", Ports: ports, Used: used, Addrs: 1, PortMin: 41000, PortMax: 41019}
	for i, n := range clients {
		s.Clients = append(s.Clients, nat.Client{Addr: netip.AddrFrom4([4]byte{10, 77, byte(i + 1), 2}), Used: n, Netns: uint32(100 + i)})
	}
	return s
}

func rulesOf(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Rule)
	}
	return out
}

// A full NAT space gets its fixes with their arithmetic, and the pods'
// failed connects toward its destination are named as its refusals.
func TestNATExhausted(t *testing.T) {
	s := natSpace(20, 20, 10, 9, 1)
	s.InsertFailed, s.Drop = 30, 30
	host := &summary.Summary{Spaces: []summary.SpaceSummary{
		{Key: summary.SpaceKey{Netns: 100, Dst: s.Dst}, Netns: 100, Failures: []summary.Failure{{Errno: "ECANCELED", Last: 4}}},
		{Key: summary.SpaceKey{Netns: 101, Dst: s.Dst}, Netns: 101, Failures: []summary.Failure{{Errno: "ECANCELED", Last: 3}}},
		// A pod on the node's network that got no NAT port at all.
		{Key: summary.SpaceKey{Netns: 102, Src: netip.MustParseAddr("10.77.9.2"), Dst: s.Dst}, Netns: 102, Failures: []summary.Failure{{Errno: "ETIMEDOUT", Last: 5}}},
		// Not behind the NAT: another network, or the node itself.
		{Key: summary.SpaceKey{Netns: 555, Src: netip.MustParseAddr("192.168.1.5"), Dst: s.Dst}, Netns: 555, Failures: []summary.Failure{{Errno: "ECANCELED", Last: 50}}},
		{Key: summary.SpaceKey{Netns: 7, Src: netip.MustParseAddr("10.77.9.1"), Dst: s.Dst}, Netns: 7, Failures: []summary.Failure{{Errno: "ECANCELED", Last: 60}}},
	}}
	node := nat.Conntrack{Netns: 7, Nets: []netip.Prefix{netip.MustParsePrefix("10.77.9.0/24"), netip.MustParsePrefix("10.78.0.0/24")}}
	fs := NAT(&nat.Summary{Spaces: []nat.Space{s}, Tables: []nat.Conntrack{node}}, host)
	got := strings.Join(rulesOf(fs), " ")
	if got != "nat-reuse-connections nat-more-addresses nat-exempt-destination nat-wider-range" {
		t.Fatalf("rules %q", got)
	}
	sit := fs[0].Situation
	for _, want := range []string{"20 of 20 NAT ports held", "insert_failed +30", "10.77.1.2 (netns 100) 10 (50%)", "failed connects in the last minute (7 ECANCELED, 5 ETIMEDOUT)", "masquerade to :41000-41019"} {
		if !strings.Contains(sit, want) {
			t.Errorf("situation %q lacks %q", sit, want)
		}
	}
	for _, f := range fs {
		t.Log(f.Advice())
	}
	if !strings.Contains(fs[0].Fix, "at most 6 concurrent connections each") || !strings.Contains(fs[3].Fix, "64,512 ports") || !strings.Contains(fs[3].Fix, "3226x") {
		t.Errorf("arithmetic: %q / %q", fs[0].Fix, fs[3].Fix)
	}
}

// No pressure, no advice; one client gains nothing from more addresses;
// a rule naming no ports is not narrow.
func TestNATQuiet(t *testing.T) {
	if fs := NAT(&nat.Summary{Spaces: []nat.Space{natSpace(17, 20, 9, 8)}}, nil); len(fs) != 0 {
		t.Errorf("17 of 20 with no failure: %v", rulesOf(fs))
	}
	one := natSpace(20, 20, 20)
	one.Rule = "ip nat POSTROUTING handle 2: masquerade"
	one.PortMin, one.PortMax = 0, 0
	for _, r := range rulesOf(NAT(&nat.Summary{Spaces: []nat.Space{one}}, nil)) {
		if r == "nat-more-addresses" || r == "nat-wider-range" {
			t.Errorf("%s for one client behind a rule that names no ports", r)
		}
	}
}

// A full conntrack table is its own finding; insert_failed without a full
// space is a collision, unless the rule already picks fully at random.
func TestConntrackFindings(t *testing.T) {
	full := nat.Conntrack{Netns: 7, Count: 100, Max: 100, Rise: nat.Stats{EarlyDrop: 5, Drop: 5}, Seconds: 60}
	fs := NAT(&nat.Summary{Tables: []nat.Conntrack{full}}, nil)
	if len(fs) != 1 || fs[0].Rule != "conntrack-table-full" || !strings.Contains(fs[0].Situation, "100 of 100") {
		t.Errorf("full table: %+v", fs)
	}
	ct := nat.Conntrack{Netns: 7, Count: 10, Max: 100, Rise: nat.Stats{InsertFailed: 4, Drop: 4}, Seconds: 60}
	half := natSpace(5, 20, 5)
	fs = NAT(&nat.Summary{Tables: []nat.Conntrack{ct}, Spaces: []nat.Space{half}}, nil)
	if got := rulesOf(fs); len(got) != 1 || got[0] != "nat-port-collisions" {
		t.Errorf("collisions: %v", got)
	}
	half.FullyRandom = true
	if fs := NAT(&nat.Summary{Tables: []nat.Conntrack{ct}, Spaces: []nat.Space{half}}, nil); len(fs) != 0 {
		t.Errorf("fully random already: %v", rulesOf(fs))
	}
	exhausted := natSpace(20, 20, 20)
	exhausted.InsertFailed = 4
	for _, r := range rulesOf(NAT(&nat.Summary{Tables: []nat.Conntrack{ct}, Spaces: []nat.Space{exhausted}}, nil)) {
		if r == "nat-port-collisions" || r == "conntrack-table-full" {
			t.Errorf("%s where the space is full", r)
		}
	}
}
