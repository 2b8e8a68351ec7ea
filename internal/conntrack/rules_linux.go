//go:build linux

package conntrack

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"

	"github.com/porttrace/porttrace/internal/nat"
)

// maxRules bounds the rules kept of one namespace.
const maxRules = 4096

// readRules lists the source NAT rules, and the rules that return or
// accept before them, of every table with a NAT chain at the postrouting
// hook: that chain first, ordered by priority, then the chains it may
// jump to (kube-proxy's KUBE-POSTROUTING), in the calling thread's network
// namespace.
func readRules() ([]nat.Rule, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, noNetfilter(err)
	}
	chains, err := c.ListChains()
	if err != nil {
		return nil, noNetfilter(err) // the library dials on first use
	}
	natTables := map[string]bool{}
	base := func(ch *nftables.Chain) bool {
		return ch.Type == nftables.ChainTypeNAT && ch.Hooknum != nil && *ch.Hooknum == *nftables.ChainHookPostrouting
	}
	for _, ch := range chains {
		if base(ch) {
			natTables[tableKey(ch.Table)] = true
		}
	}
	prio := func(ch *nftables.Chain) int {
		if !base(ch) {
			return 1 << 40 // regular chains after the base chains
		}
		if ch.Priority == nil {
			return 0
		}
		return int(*ch.Priority)
	}
	slices.SortStableFunc(chains, func(a, b *nftables.Chain) int { return cmp.Compare(prio(a), prio(b)) })
	var out []nat.Rule
	for _, ch := range chains {
		if !natTables[tableKey(ch.Table)] || (ch.Hooknum != nil && !base(ch)) {
			continue
		}
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			return out, fmt.Errorf("rules of %s %s: %w", ch.Table.Name, ch.Name, err)
		}
		for _, r := range rules {
			if p, ok := parseRule(family(ch.Table.Family), r.Exprs); ok && len(out) < maxRules {
				p.Table, p.Chain, p.Handle = ch.Table.Name, ch.Name, r.Handle
				out = append(out, p)
			}
		}
	}
	return out, nil
}

func tableKey(t *nftables.Table) string { return fmt.Sprint(t.Family, " ", t.Name) }

func family(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	}
	return fmt.Sprint(uint8(f))
}

// loaded is what a register holds: a field of the packet, masked.
type loaded struct {
	what string // "saddr", "daddr", "oifname", "l4proto", "" for other
	mask []byte
	size int
	data []byte // an immediate value
}

// parseRule reads a rule's expressions as the kernel runs them: loads into
// registers, comparisons, and the NAT expression or verdict at its end.
// A rule that neither translates nor returns/accepts is not NAT's.
func parseRule(fam string, exprs []expr.Any) (nat.Rule, bool) {
	r := nat.Rule{Family: fam}
	regs := map[uint32]loaded{}
	v6 := fam == "ip6"
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Payload:
			l := loaded{size: int(e.Len)}
			if e.Base == expr.PayloadBaseNetworkHeader {
				switch {
				case !v6 && e.Offset == 12, v6 && e.Offset == 8:
					l.what = "saddr"
				case !v6 && e.Offset == 16, v6 && e.Offset == 24:
					l.what = "daddr"
				}
			}
			regs[e.DestRegister] = l
		case *expr.Meta:
			if e.SourceRegister {
				continue
			}
			l := loaded{}
			switch e.Key {
			case expr.MetaKeyOIFNAME:
				l.what = "oifname"
			case expr.MetaKeyL4PROTO:
				l.what = "l4proto"
			}
			regs[e.Register] = l
		case *expr.Bitwise:
			l := regs[e.SourceRegister]
			l.mask = e.Mask
			regs[e.DestRegister] = l
		case *expr.Immediate:
			regs[e.Register] = loaded{data: e.Data}
		case *expr.Cmp:
			if !applyCmp(&r, regs[e.Register], e, v6) {
				r.Other = append(r.Other, "(a match porttrace does not read)")
			}
		case *expr.Counter, *expr.Verdict, *expr.Masq, *expr.NAT, *expr.Target:
		default:
			r.Other = append(r.Other, fmt.Sprintf("(%T)", e))
		}
		switch e := e.(type) {
		case *expr.Verdict:
			switch e.Kind {
			case expr.VerdictReturn:
				r.Kind = "return"
			case expr.VerdictAccept:
				r.Kind = "accept"
			}
		case *expr.Masq:
			r.Kind, r.Via = "masquerade", "nft"
			r.Random, r.FullyRandom, r.Persistent = e.Random, e.FullyRandom, e.Persistent
			if e.ToPorts || e.RegProtoMin != 0 {
				r.PortMin, r.PortMax = port(regs[e.RegProtoMin].data), port(regs[e.RegProtoMax].data)
				if e.RegProtoMax == 0 {
					r.PortMax = r.PortMin
				}
			}
		case *expr.NAT:
			if e.Type != expr.NATTypeSourceNAT {
				continue
			}
			r.Kind, r.Via = "snat", "nft"
			r.Random, r.FullyRandom, r.Persistent = e.Random, e.FullyRandom, e.Persistent
			if e.RegAddrMin != 0 {
				r.AddrMin = addr(regs[e.RegAddrMin].data)
				r.AddrMax = r.AddrMin
				if e.RegAddrMax != 0 {
					r.AddrMax = addr(regs[e.RegAddrMax].data)
				}
			}
			if e.RegProtoMin != 0 {
				r.PortMin = port(regs[e.RegProtoMin].data)
				r.PortMax = r.PortMin
				if e.RegProtoMax != 0 {
					r.PortMax = port(regs[e.RegProtoMax].data)
				}
			}
		case *expr.Target:
			applyTarget(&r, e)
		}
	}
	r.Other = slices.Compact(r.Other)
	return r, r.Kind != ""
}

// applyTarget reads iptables-nft's MASQUERADE and SNAT (xtables targets
// run by nft_compat), whose ranges are nf_nat_ipv4_multi_range_compat
// (rev 0) or nf_nat_range/nf_nat_range2 (rev 1, 2).
func applyTarget(r *nat.Rule, e *expr.Target) {
	var flags xt.NatRangeFlags
	var minIP, maxIP []byte
	var minPort, maxPort uint16
	info := e.Info
	if raw, ok := info.(*xt.Unknown); ok && r.Family == "ip6" {
		info = ip6Range(e.Name, e.Rev, *raw)
	}
	switch info := info.(type) {
	case *xt.NatIPv4MultiRangeCompat:
		if len(*info) == 0 {
			return
		}
		x := (*info)[0]
		flags, minIP, maxIP, minPort, maxPort = xt.NatRangeFlags(x.Flags), x.MinIP, x.MaxIP, x.MinPort, x.MaxPort
	case *xt.NatRange:
		flags, minIP, maxIP, minPort, maxPort = xt.NatRangeFlags(info.Flags), info.MinIP, info.MaxIP, info.MinPort, info.MaxPort
	case *xt.NatRange2:
		flags, minIP, maxIP, minPort, maxPort = xt.NatRangeFlags(info.Flags), info.MinIP, info.MaxIP, info.MinPort, info.MaxPort
	default:
		return
	}
	switch e.Name {
	case "MASQUERADE":
		r.Kind = "masquerade"
	case "SNAT":
		r.Kind = "snat"
	default:
		return
	}
	r.Via = "iptables"
	r.Random = flags&xt.NatRangeProtoRandom != 0
	r.FullyRandom = flags&xt.NatRangeProtoRandomFully != 0
	r.Persistent = flags&xt.NatRangePersistent != 0
	if flags&xt.NatRangeMapIPs != 0 {
		if r.Family == "ip" && len(minIP) >= 4 && len(maxIP) >= 4 {
			minIP, maxIP = minIP[:4], maxIP[:4] // an nf_inet_addr holds IPv4 in its first bytes
		}
		r.AddrMin, r.AddrMax = addr(minIP), addr(maxIP)
	}
	if flags&xt.NatRangeProtoSpecified != 0 {
		r.PortMin, r.PortMax = minPort, maxPort
	}
}

// ip6Range decodes the range of ip6tables-nft's MASQUERADE or SNAT,
// which the nftables library leaves raw for IPv6: nf_nat_range
// (MASQUERADE, SNAT revision 1) or nf_nat_range2 (SNAT revision 2), the
// layouts it decodes for IPv6 DNAT. nil for any other target or a range
// that does not decode.
func ip6Range(name string, rev uint32, raw []byte) xt.InfoAny {
	switch {
	case name == "MASQUERADE":
		rev = 1
	case name != "SNAT":
		return nil
	}
	info, err := xt.Unmarshal("DNAT", xt.TableFamily(unix.NFPROTO_IPV6), rev, raw)
	if err != nil {
		return nil
	}
	return info
}

// applyCmp turns a comparison of a loaded field into the rule's
// condition; false for one it does not read.
func applyCmp(r *nat.Rule, l loaded, e *expr.Cmp, v6 bool) bool {
	if e.Op != expr.CmpOpEq && e.Op != expr.CmpOpNeq {
		return false
	}
	not := e.Op == expr.CmpOpNeq
	switch l.what {
	case "l4proto":
		if not || len(e.Data) != 1 {
			return false
		}
		r.Proto = e.Data[0]
	case "oifname":
		if not {
			return false
		}
		r.Oif = string(trimNul(e.Data))
	case "saddr", "daddr":
		p, ok := prefix(e.Data, l, v6)
		if !ok {
			return false
		}
		m := nat.Match{Prefix: p, Not: not}
		if l.what == "saddr" {
			r.Src = m
		} else {
			r.Dst = m
		}
	default:
		return false
	}
	return true
}

// prefix reads an address comparison: a load of the first bytes of the
// address (a byte-aligned prefix) or of all of it under a mask.
func prefix(data []byte, l loaded, v6 bool) (netip.Prefix, bool) {
	full := 4
	if v6 {
		full = 16
	}
	if len(data) > full || l.size > full {
		return netip.Prefix{}, false
	}
	b := make([]byte, full)
	copy(b, data)
	a, _ := netip.AddrFromSlice(b)
	bits := 8 * len(data)
	if l.mask != nil {
		bits = 0
		for _, m := range l.mask {
			for i := 7; i >= 0 && m&(1<<i) != 0; i-- {
				bits++
			}
			if m != 0xff {
				break
			}
		}
	}
	return netip.PrefixFrom(a, bits).Masked(), true
}

func trimNul(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

func port(b []byte) uint16 {
	if len(b) < 2 {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

func addr(b []byte) netip.Addr {
	switch {
	case len(b) >= 16:
		a, _ := netip.AddrFromSlice(b[:16])
		return a.Unmap()
	case len(b) >= 4:
		a, _ := netip.AddrFromSlice(b[:4])
		return a
	}
	return netip.Addr{}
}
