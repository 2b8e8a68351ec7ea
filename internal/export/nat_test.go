package export

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/porttrace/porttrace/internal/aggregate"
	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/summary"
)

// NAT spaces and conntrack tables are exported as read, at most
// MaxNATSpaces and MaxNATTables of them.
func TestExportNAT(t *testing.T) {
	reg := prometheus.NewRegistry()
	x, err := New(t.Context(), Options{Prometheus: reg, NoOTLP: true, Spaces: aggregate.DefaultLimits.Spaces}, func() *summary.Summary { return &summary.Summary{} })
	if err != nil {
		t.Fatal(err)
	}
	defer x.Shutdown(t.Context())
	s := &nat.Summary{}
	for i := range MaxNATSpaces + 5 {
		s.Spaces = append(s.Spaces, nat.Space{Netns: 7, Proto: "tcp", Addr: netip.MustParseAddr("10.78.0.1"),
			Dst: netip.AddrPortFrom(netip.MustParseAddr("10.78.0.2"), uint16(1000+i)), Ports: 20, Used: 20 - i%20})
	}
	for i := range MaxNATTables + 5 {
		s.Tables = append(s.Tables, nat.Conntrack{Netns: uint32(100 + i), Count: 20, Max: 262144, Stats: nat.Stats{InsertFailed: 30, Drop: 31, EarlyDrop: 2}})
	}
	if err := x.ExportNAT(func() *nat.Summary { return s }); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]int{}
	var first string
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "porttrace_nat") && !strings.HasPrefix(f.GetName(), "porttrace_conntrack") {
			continue
		}
		series[f.GetName()] = len(f.GetMetric())
		if strings.HasPrefix(f.GetName(), "porttrace_nat_ports_used") {
			for _, m := range f.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["server_port"] == "1000" {
					first = fmt.Sprintf("%v %v", labels, m.GetGauge().GetValue())
				}
			}
		}
	}
	t.Log(series)
	for name, n := range series {
		want := MaxNATTables
		if strings.HasPrefix(name, "porttrace_nat") {
			want = MaxNATSpaces
		}
		if n != want {
			t.Errorf("%s: %d series, want %d", name, n, want)
		}
	}
	if len(series) != 7 {
		t.Errorf("%d NAT families, want 7: %v", len(series), series)
	}
	for _, want := range []string{"porttrace_port_space_kind:nat", "network_local_address:10.78.0.1", "server_address:10.78.0.2", "porttrace_netns:7", "network_transport:tcp", "] 20"} {
		if !strings.Contains(first, want) {
			t.Errorf("the first space %q lacks %q", first, want)
		}
	}
}
