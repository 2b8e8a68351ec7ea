// Package nat models the port spaces of source NAT: a namespace that
// masquerades or SNATs traffic hands each flow a translated source port,
// and for one (translating namespace, translated source address, protocol,
// destination address, destination port) those ports run out exactly as a
// host's ephemeral ports do. Its inputs are plain values that
// internal/conntrack reads from the kernel (conntrack entries, per-CPU
// statistics, nftables rules); the model knows no kernel, so it is tested
// from values and can read them from a capture.
package nat

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Entry is one translated conntrack entry, as ctnetlink dumps it.
type Entry struct {
	Proto uint8 `json:"proto"` // IPPROTO_TCP (6), IPPROTO_UDP (17), ...
	// Src and Dst are the original tuple: the client (a pod) and the
	// destination it asked for.
	Src netip.AddrPort `json:"src"`
	Dst netip.AddrPort `json:"dst"`
	// NATSrc is the source the NAT gave the flow: the reply tuple's
	// destination address and port.
	NATSrc netip.AddrPort `json:"nat_src"`
	// State is conntrack's TCP state (TCPStates' names), "" for other
	// protocols.
	State string `json:"state,omitempty"`
}

// TCPStates are conntrack's TCP states by number
// (include/uapi/linux/netfilter/nf_conntrack_tcp.h), as conntrack -L names
// them.
var TCPStates = []string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

// Stats are conntrack's statistics of one namespace, summed over its CPUs
// (ctnetlink's IPCTNL_MSG_CT_GET_STATS_CPU, what conntrack -S prints per
// CPU). They count since the namespace was made.
type Stats struct {
	Found         uint64 `json:"found"`
	Invalid       uint64 `json:"invalid"`
	Insert        uint64 `json:"insert"`
	InsertFailed  uint64 `json:"insert_failed"` // a new flow's tuple clashed at confirmation: no unique NAT tuple was found
	Drop          uint64 `json:"drop"`          // packets dropped for it
	EarlyDrop     uint64 `json:"early_drop"`    // entries evicted because the table was full
	Error         uint64 `json:"error"`
	SearchRestart uint64 `json:"search_restart"`
}

// Sub is s minus an earlier reading, field by field; a counter that went
// down (the namespace was made anew) counts from zero.
func (s Stats) Sub(old Stats) Stats {
	d := func(a, b uint64) uint64 {
		if a < b {
			return a
		}
		return a - b
	}
	return Stats{d(s.Found, old.Found), d(s.Invalid, old.Invalid), d(s.Insert, old.Insert), d(s.InsertFailed, old.InsertFailed), d(s.Drop, old.Drop), d(s.EarlyDrop, old.EarlyDrop), d(s.Error, old.Error), d(s.SearchRestart, old.SearchRestart)}
}

// Table is one reading of one namespace's conntrack: its size, its
// statistics, its NAT rules and its translated entries. internal/conntrack
// reads it; a capture stores it.
type Table struct {
	Netns uint32    `json:"netns"`
	Time  time.Time `json:"time"`
	// Count and Max are nf_conntrack_count and nf_conntrack_max.
	Count int   `json:"count"`
	Max   int   `json:"max"`
	Stats Stats `json:"stats"`
	// Rules are the namespace's source NAT rules and the rules that skip
	// them, in the order the kernel evaluates them.
	Rules []Rule `json:"rules,omitempty"`
	// Entries are the source-translated entries, at most MaxEntries;
	// Dropped counts those past the bound.
	Entries []Entry `json:"entries,omitempty"`
	Dropped int     `json:"dropped,omitempty"`
	// Addrs are the addresses of the namespace's interfaces with their
	// prefix lengths (10.77.1.1/24): how a client address is traced to
	// the namespace (the pod) it came from, and which networks a
	// translating namespace serves.
	Addrs []netip.Prefix `json:"addrs,omitempty"`
	// Err says what could not be read (the rules, the entries).
	Err string `json:"error,omitempty"`
	// TakesOverClosing says whether this kernel's nf_nat evicts a TCP
	// entry in TIME_WAIT or CLOSE whose port a new flow needs (Linux 6.5
	// on: "snat: evict closing tcp entries on reply tuple collision",
	// nf_nat_used_tuple_harder). Where it does, such an entry holds no
	// port; on older kernels it holds its port until it expires
	// (measured: 6.1 refused 28 of 48 short flows through 20 ports, 6.18
	// none).
	TakesOverClosing bool `json:"takes_over_closing,omitempty"`
}

// MaxEntries bounds the translated entries kept of one namespace's
// reading, and so a reading's memory.
const MaxEntries = 65536

// Translates says whether the namespace has a source NAT rule or entry.
func (t *Table) Translates() bool {
	if len(t.Entries) > 0 {
		return true
	}
	for _, r := range t.Rules {
		if r.NAT() {
			return true
		}
	}
	return false
}

// Rule is one nftables rule of a NAT chain at the postrouting hook, as
// nft or iptables-nft wrote it: a source NAT (masquerade, snat) or a
// rule that returns or accepts before one (a destination exempt from NAT).
type Rule struct {
	Family string `json:"family"` // nftables table family: ip, ip6, inet
	Table  string `json:"table"`
	Chain  string `json:"chain"`
	Handle uint64 `json:"handle"`
	// Kind is "masquerade", "snat", or the verdict of a rule that skips
	// NAT: "return", "accept".
	Kind string `json:"kind"`
	// Via is "iptables" for an xtables target (iptables-nft's MASQUERADE
	// and SNAT), "nft" for nftables' own expression.
	Via string `json:"via"`
	// AddrMin..AddrMax are snat's addresses (invalid for masquerade: the
	// outgoing interface's address).
	AddrMin netip.Addr `json:"addr_min,omitzero"`
	AddrMax netip.Addr `json:"addr_max,omitzero"`
	// PortMin..PortMax are the ports the rule names (--to-ports, "to
	// :a-b"); 0 when it names none and nf_nat's defaults apply.
	PortMin     uint16 `json:"port_min,omitempty"`
	PortMax     uint16 `json:"port_max,omitempty"`
	Random      bool   `json:"random,omitempty"`
	FullyRandom bool   `json:"fully_random,omitempty"`
	Persistent  bool   `json:"persistent,omitempty"`
	// What the rule matches on; what it matches on beyond these (marks,
	// sets) is in Other, and the rule is then taken to match.
	Src   Match    `json:"src,omitzero"`
	Dst   Match    `json:"dst,omitzero"`
	Proto uint8    `json:"proto,omitempty"`
	Oif   string   `json:"oifname,omitempty"`
	Other []string `json:"other,omitempty"`
}

// Match is a condition on an address: in the prefix, or with Not outside it.
type Match struct {
	Prefix netip.Prefix `json:"prefix"`
	Not    bool         `json:"not,omitempty"`
}

func (m Match) ok(a netip.Addr) bool {
	return !m.Prefix.IsValid() || m.Prefix.Contains(a) != m.Not
}

func (m Match) String() string {
	p := m.Prefix.String()
	if m.Prefix.IsSingleIP() {
		p = m.Prefix.Addr().String()
	}
	if m.Not {
		return "!= " + p
	}
	return p
}

// NAT says whether the rule translates.
func (r Rule) NAT() bool { return r.Kind == "masquerade" || r.Kind == "snat" }

// Matches says whether the rule applies to a flow from src to dst over
// proto, as far as its conditions can be judged without the packet (the
// outgoing interface is taken to match).
func (r Rule) Matches(proto uint8, src, dst netip.Addr) bool {
	return (r.Proto == 0 || r.Proto == proto) && r.Src.ok(src) && r.Dst.ok(dst)
}

// Covers says whether a translated source could have come from the rule:
// its address among snat's and its port in the rule's range.
func (r Rule) Covers(a netip.AddrPort) bool {
	if r.Kind == "snat" && r.AddrMin.IsValid() && (a.Addr().Less(r.AddrMin) || r.AddrMax.Less(a.Addr())) {
		return false
	}
	return r.PortMin == 0 || a.Port() >= r.PortMin && a.Port() <= r.PortMax
}

// Ports is the number of ports the rule lets one translated address use
// toward one destination for a flow whose original source port is sport:
// its range, or nf_nat's default when it names none (nf_nat_core.c,
// nf_nat_l4proto_unique_tuple: 1-511, 600-1023 or 1024-65535 by the
// original port). --random and --random-fully change the pick, not the
// count.
func (r Rule) Ports(sport uint16) int {
	if r.PortMin != 0 {
		return int(r.PortMax) - int(r.PortMin) + 1
	}
	return DefaultPorts(sport)
}

// DefaultPorts is nf_nat's port range size for a rule that names none.
func DefaultPorts(sport uint16) int {
	switch {
	case sport < 512:
		return 511
	case sport < 1024:
		return 1023 - 600 + 1
	}
	return 65535 - 1024 + 1
}

// Addrs is the number of addresses a snat rule names (1 for masquerade).
func (r Rule) Addrs() int {
	if r.Kind != "snat" || !r.AddrMin.IsValid() || !r.AddrMax.IsValid() || !r.AddrMin.Is4() {
		return 1
	}
	a, b := r.AddrMin.As4(), r.AddrMax.As4()
	lo := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	hi := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	return int(hi-lo) + 1
}

// String writes the rule as nft list ruleset does, after where it is.
func (r Rule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s handle %d:", r.Family, r.Table, r.Chain, r.Handle)
	if r.Oif != "" {
		fmt.Fprintf(&b, " oifname %q", r.Oif)
	}
	if r.Proto != 0 {
		fmt.Fprintf(&b, " meta l4proto %s", ProtoName(r.Proto))
	}
	if r.Src.Prefix.IsValid() {
		fmt.Fprintf(&b, " saddr %s", r.Src)
	}
	if r.Dst.Prefix.IsValid() {
		fmt.Fprintf(&b, " daddr %s", r.Dst)
	}
	for _, o := range r.Other {
		b.WriteString(" " + o)
	}
	b.WriteString(" " + r.Kind)
	if r.NAT() {
		to := ""
		if r.AddrMin.IsValid() {
			to = r.AddrMin.String()
			if r.AddrMax != r.AddrMin {
				to += "-" + r.AddrMax.String()
			}
		}
		if r.PortMin != 0 {
			to += fmt.Sprintf(":%d-%d", r.PortMin, r.PortMax)
		}
		if to != "" {
			b.WriteString(" to " + to)
		}
		for _, f := range []struct {
			on   bool
			name string
		}{{r.Random, "random"}, {r.FullyRandom, "fully-random"}, {r.Persistent, "persistent"}} {
			if f.on {
				b.WriteString(" " + f.name)
			}
		}
	}
	if r.Via == "iptables" {
		b.WriteString(" (iptables-nft)")
	}
	return b.String()
}

// ProtoName names an IP protocol number as conntrack does.
func ProtoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 132:
		return "sctp"
	case 33:
		return "dccp"
	case 1:
		return "icmp"
	}
	return fmt.Sprint(p)
}
