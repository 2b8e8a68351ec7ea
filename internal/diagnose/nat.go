package diagnose

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/summary"
)

// Thresholds of the NAT rules.
const (
	// A NAT space is under pressure when this share of its ports is held,
	// or when new flows failed (insert_failed rose) while half of it was.
	natPressure = 0.9
)

// NAT returns the findings about source NAT: each NAT space under
// pressure with the fixes its evidence supports, a rise of insert_failed
// that no full space explains (port-pick collisions), and each conntrack
// table that is full (its own finding: not a port shortage). host, the
// summary of the hosts' own spaces (nil is fine), ties the clients'
// failed attempts toward a space's destination to it.
func NAT(n *nat.Summary, host *summary.Summary) []Finding {
	out := []Finding{}
	if n == nil {
		return out
	}
	explained := map[uint32]bool{}
	nets := map[uint32][]netip.Prefix{}
	for _, c := range n.Tables {
		nets[c.Netns] = c.Nets
	}
	for i := range n.Spaces {
		s := &n.Spaces[i]
		if !natUnderPressure(s) {
			continue
		}
		explained[s.Netns] = explained[s.Netns] || s.Full()
		situation := natSituation(s, host, nets[s.Netns])
		for _, rule := range natRules {
			if f, ok := rule(s); ok {
				f.Space, f.Situation = NATWhere(s), situation
				f.Netns, f.Src, f.Dst, f.DPort = s.Netns, s.Addr.String(), s.Dst.Addr().String(), s.Dst.Port()
				out = append(out, f)
			}
		}
	}
	for i := range n.Tables {
		c := &n.Tables[i]
		if f, ok := tableFull(c); ok {
			out = append(out, f)
		} else if f, ok := collisions(c, explained[c.Netns], n.Spaces); ok {
			out = append(out, f)
		}
	}
	return out
}

func natUnderPressure(s *nat.Space) bool {
	return float64(s.Used) >= natPressure*float64(s.Ports) || s.InsertFailed > 0 && 2*s.Used >= s.Ports
}

// The rules about a namespace's conntrack table as a whole rather than
// one NAT space.
const (
	RuleTableFull  = "conntrack-table-full"
	RuleCollisions = "nat-port-collisions"
)

// NATWhere names a NAT space as its findings' Space does.
func NATWhere(s *nat.Space) string {
	return fmt.Sprintf("NAT %s %s->%s (netns %d)", s.Proto, s.Addr, s.Dst, s.Netns)
}

// natSituation: the space's fill, its rule, its failures, its clients and
// what they saw.
func natSituation(s *nat.Space, host *summary.Summary, nets []netip.Prefix) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d NAT ports held", s.Used, s.Ports)
	if s.Rule != "" {
		fmt.Fprintf(&b, " (rule %s)", s.Rule)
	} else {
		b.WriteString(" (no rule read covers them: nf_nat's default range assumed)")
	}
	if s.InsertFailed > 0 {
		fmt.Fprintf(&b, "; conntrack insert_failed +%d, drop +%d in the namespace", s.InsertFailed, s.Drop)
	}
	var cl []string
	for _, c := range s.Clients {
		cl = append(cl, fmt.Sprintf("%s %d (%d%%)", clientName(c), c.Used, 100*c.Used/max(s.Used, 1)))
	}
	if len(cl) > 0 {
		fmt.Fprintf(&b, "; held by %s", strings.Join(cl, ", "))
	}
	if f := clientFailures(s, host, nets); f != "" {
		fmt.Fprintf(&b, "; the clients' %s toward %s are this NAT space refusing them", f, s.Dst)
	}
	return b.String()
}

// clientName names a client by its address and, where known, its
// namespace's name (a pod) and the process behind its flows.
func clientName(c nat.Client) string {
	name := c.Addr.String()
	var who []string
	if len(c.Names) > 0 {
		who = append(who, c.Names[0])
	} else if c.Netns != 0 {
		who = append(who, fmt.Sprintf("netns %d", c.Netns))
	}
	if c.PID != 0 {
		who = append(who, fmt.Sprintf("%s[%d]", c.Comm, c.PID))
	}
	if len(who) > 0 {
		name += " (" + strings.Join(who, " ") + ")"
	}
	return name
}

// clientFailures sums, over the clients' own port spaces toward the NAT
// space's destination, the failures of the last minute by errno: a flow
// the NAT dropped times out or is abandoned in the pod, with no errno
// that names the NAT. A client is a namespace with flows in the space, or
// one whose source address is on a network the translating namespace is
// attached to (nets): a pod that got no NAT port at all is the one that
// fails.
func clientFailures(s *nat.Space, host *summary.Summary, nets []netip.Prefix) string {
	if host == nil {
		return ""
	}
	clients := map[uint32]bool{}
	for _, c := range s.Clients {
		if c.Netns != 0 {
			clients[c.Netns] = true
		}
	}
	behind := func(hs *summary.SpaceSummary) bool {
		if hs.Netns == s.Netns || hs.Key.Src == s.Addr {
			return false
		}
		return clients[hs.Netns] || slices.ContainsFunc(nets, func(p netip.Prefix) bool { return p.Contains(hs.Key.Src) })
	}
	byErrno := map[string]uint64{}
	var order []string
	for i := range host.Spaces {
		hs := &host.Spaces[i]
		if hs.Key.Dst != s.Dst || !behind(hs) {
			continue
		}
		for _, f := range hs.Failures {
			if f.Last == 0 {
				continue
			}
			if _, ok := byErrno[f.Errno]; !ok {
				order = append(order, f.Errno)
			}
			byErrno[f.Errno] += f.Last
		}
	}
	var parts []string
	for _, e := range order {
		parts = append(parts, fmt.Sprintf("%d %s", byErrno[e], e))
	}
	if len(parts) == 0 {
		return ""
	}
	return "failed connects in the last minute (" + strings.Join(parts, ", ") + ")"
}

var natRules = []func(*nat.Space) (Finding, bool){natReuse, natAddresses, natExempt, natWiderRange}

// natReuse: every held port is a concurrent flow; fewer, reused
// connections per client need fewer ports.
func natReuse(s *nat.Space) (Finding, bool) {
	if len(s.Clients) == 0 {
		return Finding{}, false
	}
	per := s.Ports / max(len(s.Clients), 1)
	return Finding{
		Rule:     "nat-reuse-connections",
		Evidence: fmt.Sprintf("%d flows from %d clients hold the space's %d ports at once", s.Used, len(s.Clients), s.Ports),
		Fix: fmt.Sprintf("reuse connections in the clients (HTTP keep-alive, a bounded connection pool): %d ports shared by %d clients fit at most %d concurrent connections each toward %s",
			s.Ports, len(s.Clients), per, s.Dst),
	}, true
}

// natAddresses: more SNAT addresses add a space each, but nf_nat hashes
// each (client, destination) to one address, so they help only when
// several clients share the space.
func natAddresses(s *nat.Space) (Finding, bool) {
	if len(s.Clients) < 2 {
		return Finding{}, false
	}
	top := s.Clients[0]
	fix := fmt.Sprintf("give the rule more source addresses (SNAT --to-source A1-A2, nft snat to A1-A2): each address is a space of %d ports toward %s, and nf_nat puts each client on one of them by a hash of its and the destination's address, so %d addresses take about %d of them each; a single client (the top one, %s, holds %d) gains nothing",
		s.Ports, s.Dst, 2*s.Addrs, (len(s.Clients)+2*s.Addrs-1)/(2*s.Addrs), top.Addr, top.Used)
	return Finding{
		Rule:     "nat-more-addresses",
		Evidence: fmt.Sprintf("%d clients share one translated address (%s)", len(s.Clients), s.Addr),
		Fix:      fix,
	}, true
}

// natExempt: a destination that needs no translation should not use the
// NAT's ports.
func natExempt(s *nat.Space) (Finding, bool) {
	dst := s.Dst.Addr()
	cidr := netip.PrefixFrom(dst, dst.BitLen())
	return Finding{
		Rule:     "nat-exempt-destination",
		Evidence: fmt.Sprintf("every flow to %s is translated", s.Dst),
		Fix: fmt.Sprintf("if %s is reachable without translation (in-cluster, a peer network that routes back to the clients), exempt it: `iptables -t nat -I POSTROUTING -d %s -j RETURN` (ip-masq-agent: nonMasqueradeCIDRs); each client then uses its own ephemeral ports toward it (28,232 each by default) instead of sharing %d",
			dst, cidr, s.Ports),
	}, true
}

// natWiderRange: a rule that names a narrow port range.
func natWiderRange(s *nat.Space) (Finding, bool) {
	wide := nat.DefaultPorts(1024)
	if s.PortMin == 0 || s.Ports >= wide {
		return Finding{}, false
	}
	return Finding{
		Rule:     "nat-wider-range",
		Evidence: fmt.Sprintf("the rule gives ports %d-%d, %d of them", s.PortMin, s.PortMax, s.Ports),
		Fix: fmt.Sprintf("widen its port range (--to-ports 1024-65535, nft \"to :1024-65535\", or name none): %s ports toward %s, %.0fx as many",
			humanize.Comma(int64(wide)), s.Dst, float64(wide)/float64(s.Ports)),
	}, true
}

// tableFull: conntrack's table at its limit drops new flows whatever
// ports are free.
func tableFull(c *nat.Conntrack) (Finding, bool) {
	if !c.TableFull() {
		return Finding{}, false
	}
	return Finding{
		Rule:      RuleTableFull,
		Space:     fmt.Sprintf("conntrack table (netns %d)", c.Netns),
		Netns:     c.Netns,
		Situation: fmt.Sprintf("%s of %s entries (nf_conntrack_count of nf_conntrack_max); early_drop +%d, drop +%d in %.0f s", humanize.Comma(int64(c.Count)), humanize.Comma(int64(c.Max)), c.Rise.EarlyDrop, c.Rise.Drop, c.Seconds),
		Evidence:  "the table is full: new flows are dropped for want of an entry (\"nf_conntrack: table full, dropping packet\"), not for want of a NAT port",
		Fix:       fmt.Sprintf("raise net.netfilter.nf_conntrack_max from %s (set on the host: a child namespace inherits it and cannot write it), or shorten how long finished flows keep entries (nf_conntrack_tcp_timeout_time_wait, 120 s by default)", humanize.Comma(int64(c.Max))),
	}, true
}

// collisions: insert_failed rose while no NAT space of the namespace was
// full: new flows lost the race for a port nf_nat had picked for another.
func collisions(c *nat.Conntrack, full bool, spaces []nat.Space) (Finding, bool) {
	if full || c.Rise.InsertFailed == 0 {
		return Finding{}, false
	}
	translates, random := false, true
	for _, s := range spaces {
		if s.Netns == c.Netns {
			translates = true
			random = random && s.FullyRandom
		}
	}
	if !translates || random {
		return Finding{}, false
	}
	return Finding{
		Rule:      RuleCollisions,
		Space:     fmt.Sprintf("NAT (netns %d)", c.Netns),
		Netns:     c.Netns,
		Situation: fmt.Sprintf("conntrack insert_failed +%d, drop +%d in %.0f s with no NAT space full", c.Rise.InsertFailed, c.Rise.Drop, c.Seconds),
		Evidence:  "new flows clashed on a tuple at confirmation although ports were free: two flows were given the same port at once",
		Fix:       "add --random-fully to the MASQUERADE/SNAT rule (nft: fully-random): each flow's port is then picked at random over the whole range, so concurrent picks rarely meet",
	}, true
}
