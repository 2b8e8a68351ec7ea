package live

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/aggregate"
	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/netns"
)

// A monitor that tracks NAT reads a round at each sync, counts the rise
// between rounds, names namespaces, and diagnoses a full NAT space.
func TestTrackNAT(t *testing.T) {
	m, err := New(&source{}, oneTable, aggregate.DefaultLimits, cgroup.NewResolver())
	if err != nil {
		t.Fatal(err)
	}
	if f := m.Frame(); f.NAT != nil {
		t.Fatalf("NAT without TrackNAT: %+v", f.NAT)
	}
	failed := uint64(0)
	read := func(all []netns.Settings) ([]nat.Table, error) {
		node := nat.Table{Netns: 1, Time: time.Now(), Count: 20, Max: 100, Stats: nat.Stats{InsertFailed: failed},
			Rules: []nat.Rule{{Kind: "masquerade", PortMin: 41000, PortMax: 41019}}}
		for i := range 20 {
			node.Entries = append(node.Entries, nat.Entry{Proto: 6, State: "ESTABLISHED",
				Src:    netip.AddrPortFrom(netip.MustParseAddr("10.77.1.2"), uint16(50000+i)),
				Dst:    netip.MustParseAddrPort("10.78.0.2:8080"),
				NATSrc: netip.AddrPortFrom(netip.MustParseAddr("10.78.0.1"), uint16(41000+i))})
		}
		failed += 15
		return []nat.Table{node}, nil
	}
	m.nat = &natState{read: read, tr: nat.NewTracker(NATWindow)} // TrackNAT without its first read in the background
	m.sync()
	m.sync()
	// A sync that could not list the namespaces is no round: the spaces
	// stay.
	m.tables = func(map[uint32]bool) ([]netns.Settings, []event.SocketTable, error) {
		return nil, nil, errors.New("netns gone meanwhile")
	}
	m.sync()
	f := m.Frame()
	if f.NAT == nil || len(f.NAT.Spaces) != 1 {
		t.Fatalf("NAT %+v", f.NAT)
	}
	sp := f.NAT.Spaces[0]
	if sp.Used != 20 || sp.Ports != 20 || sp.InsertFailed != 15 {
		t.Errorf("space %+v", sp)
	}
	var rules []string
	for _, x := range f.Findings {
		if strings.HasPrefix(x.Space, "NAT ") {
			rules = append(rules, x.Rule)
		}
	}
	if len(rules) == 0 || rules[0] != "nat-reuse-connections" {
		t.Errorf("findings %v", rules)
	}
}
