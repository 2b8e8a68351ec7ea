//go:build linux

package conntrack

import (
	"testing"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// TestIPv6Targets: ip6tables-nft's MASQUERADE (nf_nat_range) and SNAT
// (nf_nat_range2), which the nftables library leaves undecoded for IPv6,
// give their port range; an undecodable one is no rule, and IPv4's are
// read as before.
func TestIPv6Targets(t *testing.T) {
	raw := func(rev uint32, info xt.InfoAny) *xt.Unknown {
		b, err := xt.Marshal(xt.TableFamily(unix.NFPROTO_IPV6), rev, info)
		if err != nil {
			t.Fatal(err)
		}
		u := xt.Unknown(b)
		return &u
	}
	ports := xt.NatRange{Flags: uint(xt.NatRangeProtoSpecified), MinPort: 41000, MaxPort: 41009}
	for _, c := range []struct {
		name     string
		family   string
		target   *expr.Target
		min, max uint16
	}{
		{"ip6tables MASQUERADE", "ip6", &expr.Target{Name: "MASQUERADE", Info: raw(1, &ports)}, 41000, 41009},
		{"ip6tables SNAT rev 2", "ip6", &expr.Target{Name: "SNAT", Rev: 2, Info: raw(2, &xt.NatRange2{NatRange: ports})}, 41000, 41009},
		{"short", "ip6", &expr.Target{Name: "MASQUERADE", Info: &xt.Unknown{1, 2}}, 0, 0},
		{"iptables MASQUERADE", "ip", &expr.Target{Name: "MASQUERADE", Info: &xt.NatIPv4MultiRangeCompat{{Flags: uint(xt.NatRangeProtoSpecified), MinPort: 42000, MaxPort: 42009}}}, 42000, 42009},
	} {
		r, ok := parseRule(c.family, []expr.Any{c.target})
		if want := c.min != 0; ok != want || r.PortMin != c.min || r.PortMax != c.max {
			t.Errorf("%s: rule %+v (%v), want ports %d-%d", c.name, r, ok, c.min, c.max)
		}
	}
}
