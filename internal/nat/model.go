package nat

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/summary"
	"github.com/porttrace/porttrace/internal/window"
)

// Space is one NAT port space: the ports one translating namespace can
// give flows from one translated address toward one destination, and
// what holds them.
type Space struct {
	Netns uint32   `json:"netns"` // the namespace that translates (the node)
	Names []string `json:"names,omitempty"`
	Proto string   `json:"proto"`
	// Addr is the translated source address; Dst the destination.
	Addr netip.Addr     `json:"nat_addr"`
	Dst  netip.AddrPort `json:"dst"`
	// Rule is the NAT rule the space's entries came from (its String);
	// "" when no rule read covers them, and Ports is then nf_nat's
	// default range.
	Rule string `json:"rule"`
	// Ports is how many ports the rule gives this address toward Dst;
	// Used how many of them conntrack entries hold: entries in any state,
	// but TCP's TIME_WAIT and CLOSE where the kernel takes their port
	// over for a new flow (Table.TakesOverClosing: 6.5 on, where churn
	// alone does not exhaust a NAT range). Only ports inside the rule's
	// range count, so Used never exceeds Ports.
	Ports int `json:"ports"`
	Used  int `json:"used"`
	// PortMin..PortMax is the range the rule names; 0 when it names none.
	PortMin uint16 `json:"port_min,omitempty"`
	PortMax uint16 `json:"port_max,omitempty"`
	// ByState counts the entries that hold a port by conntrack state;
	// Lingering those in TIME_WAIT or CLOSE where they hold none.
	ByState   map[string]int `json:"by_state"`
	Lingering int            `json:"lingering"`
	// Addrs is how many addresses the rule names (a --to-source range);
	// nf_nat picks one per client and destination by a hash
	// (find_best_ips_proto), so each is its own space.
	Addrs       int  `json:"rule_addrs"`
	FullyRandom bool `json:"fully_random,omitempty"`
	// Clients are the original sources holding the space's ports, most
	// first, at most MaxClients.
	Clients []Client `json:"clients"`
	// InsertFailed and Drop are the translating namespace's conntrack
	// counters' rise over the tracker's window: new flows that found no
	// unique tuple (insert_failed) and the packets dropped (drop). They
	// are the namespace's, not the space's alone.
	InsertFailed uint64 `json:"insert_failed"`
	Drop         uint64 `json:"drop"`
	// Per flow, over the last minute, from the fentry and kprobe
	// backends' NAT probe (zero elsewhere): Flows is the flows translated
	// into this space that conntrack confirmed or refused; Failures those
	// it refused (insert_failed: the NAT's port search found no free
	// port), one per packet that tried, so a TCP client's SYN
	// retransmissions each count; FailedFlows the distinct original
	// tuples (client address and port) among them: the connection
	// attempts that got no port. AllocLatency is the NAT's port search
	// (nf_nat_setup_info's time), as the host spaces' alloc_latency.
	Flows        uint64            `json:"flows,omitempty"`
	Failures     uint64            `json:"failures,omitempty"`
	FailedFlows  int               `json:"failed_flows,omitempty"`
	AllocLatency summary.Durations `json:"alloc_latency"`
	proto        uint8
}

// Full says whether every port of the space is held.
func (s *Space) Full() bool { return s.Used >= s.Ports }

// Client is one original source address behind a NAT space.
type Client struct {
	Addr netip.Addr `json:"addr"`
	Used int        `json:"used"` // ports of the space its flows hold
	// Netns is the namespace that owns Addr (0 when none or several do);
	// Names how to find it (the caller fills them: a pod, a netns name).
	Netns uint32   `json:"netns,omitempty"`
	Names []string `json:"names,omitempty"`
	// PID and Comm own the most of its flows' sockets, where a socket
	// table of the client's namespace shows them.
	PID  uint32 `json:"pid,omitempty"`
	Comm string `json:"comm,omitempty"`
	// Failures is its flows that the space refused over the last minute
	// (the NAT probe's; see Space.Failures).
	Failures uint64 `json:"failures,omitempty"`
}

// MaxClients bounds the clients listed per space.
const MaxClients = 10

// Conntrack is one namespace's conntrack table and its counters.
type Conntrack struct {
	Netns uint32   `json:"netns"`
	Names []string `json:"names,omitempty"`
	Count int      `json:"count"` // nf_conntrack_count
	Max   int      `json:"max"`   // nf_conntrack_max
	Stats Stats    `json:"stats"` // since the namespace was made
	// Rise is the counters' rise over Seconds, the tracker's window.
	Rise    Stats   `json:"rise"`
	Seconds float64 `json:"seconds"`
	Rules   []Rule  `json:"rules,omitempty"`
	// Nets are the networks the namespace is attached to (its
	// addresses' prefixes): a client on one of them that reaches a NAT
	// space's destination goes through the NAT.
	Nets []netip.Prefix `json:"nets,omitempty"`
	// Dropped is the translated entries not listed, past a reading's or
	// a capture's bound: the spaces do not count them.
	Dropped int `json:"dropped_entries,omitempty"`
	// DroppedSpaces is the NAT spaces past MaxSpaces, not computed.
	DroppedSpaces int    `json:"dropped_spaces,omitempty"`
	Err           string `json:"error,omitempty"`
}

// TableFull says whether the table is at its limit, or its limit evicted
// or dropped new entries during the window: then flows fail for want of
// an entry, whatever ports are free.
func (c *Conntrack) TableFull() bool {
	return c.Max > 0 && c.Count >= c.Max || c.Rise.EarlyDrop > 0
}

// Summary is every NAT space and every translating namespace's table.
type Summary struct {
	// Time is when the latest reading was made.
	Time   time.Time   `json:"time"`
	Spaces []Space     `json:"spaces"`
	Tables []Conntrack `json:"conntrack"`
}

// Named is a copy of s with every namespace named by name (a pod, a
// netns's names): the spaces', their clients' and the tables'.
func (s *Summary) Named(name func(netns uint32) []string) *Summary {
	out := &Summary{Time: s.Time, Spaces: slices.Clone(s.Spaces), Tables: slices.Clone(s.Tables)}
	for i := range out.Spaces {
		sp := &out.Spaces[i]
		sp.Names = name(sp.Netns)
		sp.Clients = slices.Clone(sp.Clients)
		for j := range sp.Clients {
			if sp.Clients[j].Netns != 0 {
				sp.Clients[j].Names = name(sp.Clients[j].Netns)
			}
		}
	}
	for i := range out.Tables {
		out.Tables[i].Names = name(out.Tables[i].Netns)
	}
	return out
}

// Window is how far back the live view and a report count a namespace's
// insert_failed and drop rise.
const Window = time.Minute

// Tracker keeps the latest conntrack reading of each namespace and its
// counters over a window, to tell a count that rises from one that
// rose long ago.
type Tracker struct {
	Window time.Duration
	last   map[uint32]Table
	hist   map[uint32][]stamp
	// flows are the NAT probe's per-flow figures (Observe); flowSec the
	// latest event's second. DroppedFlows counts events past the bound
	// of spaces kept.
	flows        map[flowKey]*flowSpace
	flowSec      int64
	DroppedFlows uint64
}

type stamp struct {
	t time.Time
	s Stats
}

// maxStamps bounds a namespace's history of counters.
const maxStamps = 256

// NewTracker returns a tracker whose counters rise over window.
func NewTracker(window time.Duration) *Tracker {
	return &Tracker{Window: window, last: map[uint32]Table{}, hist: map[uint32][]stamp{}, flows: map[flowKey]*flowSpace{}}
}

// Add takes one round of readings (every namespace read at one time);
// namespaces absent from it are gone.
func (tr *Tracker) Add(round []Table) {
	seen := map[uint32]bool{}
	for _, t := range round {
		seen[t.Netns] = true
		tr.last[t.Netns] = t
		h := append(tr.hist[t.Netns], stamp{t.Time, t.Stats})
		for len(h) > 2 && (t.Time.Sub(h[0].t) > tr.Window || len(h) > maxStamps) {
			h = h[1:]
		}
		tr.hist[t.Netns] = h
	}
	for ns := range tr.last {
		if !seen[ns] {
			delete(tr.last, ns)
			delete(tr.hist, ns)
		}
	}
}

// Summary computes the NAT spaces from the latest readings. sockets, the
// namespaces' socket tables, name the processes behind client flows;
// nil is fine.
func (tr *Tracker) Summary(sockets []event.SocketTable) *Summary {
	out := &Summary{Spaces: []Space{}, Tables: []Conntrack{}}
	owner := addrOwners(tr.last)
	procs := socketOwners(sockets)
	var readAt time.Time
	for _, t := range tr.last {
		if t.Time.After(readAt) {
			readAt = t.Time
		}
	}
	now := tr.flowNow(readAt)
	tr.expireFlows(now)
	var inodes []uint32
	for ns := range tr.last {
		inodes = append(inodes, ns)
	}
	slices.Sort(inodes)
	for _, ns := range inodes {
		t := tr.last[ns]
		if t.Time.After(out.Time) {
			out.Time = t.Time
		}
		if !t.Translates() && t.Count == 0 {
			continue
		}
		c := Conntrack{Netns: ns, Count: t.Count, Max: t.Max, Stats: t.Stats, Rules: t.Rules, Dropped: t.Dropped, Err: t.Err}
		for _, p := range t.Addrs {
			if !p.Addr().IsLoopback() && !p.Addr().IsLinkLocalUnicast() {
				c.Nets = append(c.Nets, p.Masked())
			}
		}
		if h := tr.hist[ns]; len(h) > 1 {
			c.Rise = h[len(h)-1].s.Sub(h[0].s)
			c.Seconds = h[len(h)-1].t.Sub(h[0].t).Seconds()
		}
		out.Tables = append(out.Tables, c)
		sp, dropped := spaces(&t, owner, procs)
		out.Tables[len(out.Tables)-1].DroppedSpaces = dropped
		for _, s := range tr.withFlows(&t, sp, owner, now) {
			s.InsertFailed, s.Drop = c.Rise.InsertFailed, c.Rise.Drop
			out.Spaces = append(out.Spaces, s)
		}
	}
	slices.SortStableFunc(out.Spaces, func(a, b Space) int {
		return cmp.Compare(float64(b.Used)/float64(max(b.Ports, 1)), float64(a.Used)/float64(max(a.Ports, 1)))
	})
	return out
}

// withFlows adds to one namespace's spaces their per-flow figures, and
// the spaces that refused flows but hold no entry in t (read before
// them): sized by the rule that matches, with nothing used.
func (tr *Tracker) withFlows(t *Table, sp []Space, owner map[netip.Addr]uint32, now int64) []Space {
	if len(tr.flows) == 0 {
		return sp
	}
	seen := map[spaceKey]bool{}
	for i := range sp {
		s := &sp[i]
		k := spaceKey{s.proto, s.Addr, s.Dst}
		seen[k] = true
		if f := tr.flows[flowKey{t.Netns, k}]; f != nil {
			f.fill(s, now, owner)
			sortClients(s)
		}
	}
	for k, f := range tr.flows {
		if k.netns != t.Netns || seen[k.space] || f.failures.Recent(now, window.Span) == 0 || len(sp) >= MaxSpaces {
			continue
		}
		e := Entry{Proto: k.space.proto, Dst: k.space.dst, NATSrc: netip.AddrPortFrom(k.space.addr, 0)}
		s := Space{Netns: t.Netns, Proto: ProtoName(e.Proto), proto: e.Proto, Addr: e.NATSrc.Addr(), Dst: e.Dst, ByState: map[string]int{}, Addrs: 1, Ports: DefaultPorts(1024)}
		if r := ruleForAddr(t.Rules, e); r != nil {
			s.Rule, s.Ports, s.Addrs, s.FullyRandom, s.PortMin, s.PortMax = r.String(), r.Ports(1024), r.Addrs(), r.FullyRandom, r.PortMin, r.PortMax
		}
		f.fill(&s, now, owner)
		sortClients(&s)
		sp = append(sp, s)
	}
	return sp
}

// ruleForAddr is the first NAT rule that could have translated flows
// toward e.Dst to e.NATSrc's address, whatever their source.
func ruleForAddr(rules []Rule, e Entry) *Rule {
	for i := range rules {
		r := &rules[i]
		if r.NAT() && (r.Proto == 0 || r.Proto == e.Proto) && r.Dst.ok(e.Dst.Addr()) && r.Covers(netip.AddrPortFrom(e.NATSrc.Addr(), max(r.PortMin, 1))) {
			return r
		}
	}
	return nil
}

// sortClients orders a space's clients by the ports they hold, then the
// flows refused, and keeps MaxClients.
func sortClients(s *Space) {
	slices.SortFunc(s.Clients, func(x, y Client) int {
		return cmp.Or(cmp.Compare(y.Used, x.Used), cmp.Compare(y.Failures, x.Failures), x.Addr.Compare(y.Addr))
	})
	if len(s.Clients) > MaxClients {
		s.Clients = s.Clients[:MaxClients]
	}
}

// MaxSpaces bounds the NAT spaces of one namespace that are computed:
// those with the most entries holding a port. A space costs a few maps, so
// a table of 65,536 entries toward as many destinations (a gateway, or a
// forged capture) made 65,536 spaces and 160 MiB of heap; the rest are
// counted in Conntrack.DroppedSpaces.
const MaxSpaces = 1024

type spaceKey struct {
	proto uint8
	addr  netip.Addr
	dst   netip.AddrPort
}

// closing says whether e is a TCP entry in TIME_WAIT or CLOSE whose port
// t's kernel takes over, holding none.
func closing(t *Table, e *Entry) bool {
	return t.TakesOverClosing && e.Proto == 6 && (e.State == "TIME_WAIT" || e.State == "CLOSE")
}

// busiest are the MaxSpaces spaces of t with the most entries holding a
// port (all of them if there are no more), and how many others there are.
func busiest(t *Table) (map[spaceKey]bool, int) {
	held := map[spaceKey]int{}
	for i := range t.Entries {
		e := &t.Entries[i]
		k := spaceKey{e.Proto, e.NATSrc.Addr(), e.Dst}
		n := held[k]
		if !closing(t, e) {
			n++
		}
		held[k] = n
	}
	keys := make([]spaceKey, 0, len(held))
	for k := range held {
		keys = append(keys, k)
	}
	if len(keys) > MaxSpaces {
		slices.SortFunc(keys, func(a, b spaceKey) int {
			return cmp.Or(cmp.Compare(held[b], held[a]), a.addr.Compare(b.addr), a.dst.Compare(b.dst), cmp.Compare(a.proto, b.proto))
		})
	}
	keep := map[spaceKey]bool{}
	for _, k := range keys[:min(len(keys), MaxSpaces)] {
		keep[k] = true
	}
	return keep, len(keys) - len(keep)
}

// Spaces groups one namespace's translated entries into NAT spaces, at
// most MaxSpaces of them (the busiest). owner maps a client address to
// the namespace that has it; procs a client flow (source, destination) to
// the socket's owner.
func Spaces(t *Table, owner map[netip.Addr]uint32, procs map[[2]netip.AddrPort]proc) []Space {
	sp, _ := spaces(t, owner, procs)
	return sp
}

// spaces is Spaces, with the number of spaces past MaxSpaces.
func spaces(t *Table, owner map[netip.Addr]uint32, procs map[[2]netip.AddrPort]proc) ([]Space, int) {
	type key = spaceKey
	keep, dropped := busiest(t)
	type acc struct {
		s       Space
		rule    *Rule
		ports   map[uint16]bool
		clients map[netip.Addr]*clientAcc
	}
	byKey := map[key]*acc{}
	var order []key
	for _, e := range t.Entries {
		k := key{e.Proto, e.NATSrc.Addr(), e.Dst}
		if !keep[k] {
			continue
		}
		a := byKey[k]
		if a == nil {
			a = &acc{s: Space{Netns: t.Netns, Proto: ProtoName(e.Proto), proto: e.Proto, Addr: k.addr, Dst: e.Dst, ByState: map[string]int{}, Addrs: 1}, ports: map[uint16]bool{}, clients: map[netip.Addr]*clientAcc{}}
			a.rule = ruleFor(t.Rules, e)
			a.s.Ports = DefaultPorts(e.Src.Port())
			if a.rule != nil {
				a.s.Rule, a.s.Ports, a.s.Addrs, a.s.FullyRandom = a.rule.String(), a.rule.Ports(e.Src.Port()), a.rule.Addrs(), a.rule.FullyRandom
				a.s.PortMin, a.s.PortMax = a.rule.PortMin, a.rule.PortMax
			}
			byKey[k] = a
			order = append(order, k)
		}
		if closing(t, &e) {
			a.s.Lingering++
			continue
		}
		if a.rule != nil && !a.rule.Covers(e.NATSrc) || a.ports[e.NATSrc.Port()] {
			continue // outside the rule's range, or counted
		}
		a.ports[e.NATSrc.Port()] = true
		a.s.ByState[e.State]++
		c := a.clients[e.Src.Addr()]
		if c == nil {
			c = &clientAcc{Client: Client{Addr: e.Src.Addr(), Netns: owner[e.Src.Addr()]}, procs: map[proc]int{}}
			a.clients[e.Src.Addr()] = c
		}
		c.Used++
		if p, ok := procs[[2]netip.AddrPort{e.Src, e.Dst}]; ok {
			c.procs[p]++
		}
	}
	out := make([]Space, 0, len(order))
	for _, k := range order {
		a := byKey[k]
		a.s.Used = min(len(a.ports), a.s.Ports)
		for _, c := range a.clients {
			a.s.Clients = append(a.s.Clients, c.named())
		}
		sortClients(&a.s)
		out = append(out, a.s)
	}
	return out, dropped
}

// ruleFor is the first NAT rule that applies to the entry's original
// tuple and could have given its translated source.
func ruleFor(rules []Rule, e Entry) *Rule {
	for i := range rules {
		r := &rules[i]
		if r.NAT() && r.Matches(e.Proto, e.Src.Addr(), e.Dst.Addr()) && r.Covers(e.NATSrc) {
			return r
		}
	}
	return nil
}

type proc struct {
	netns uint32
	pid   uint32
	comm  string
}

type clientAcc struct {
	Client
	procs map[proc]int
}

func (c *clientAcc) named() Client {
	best, n := proc{}, 0
	for p, k := range c.procs {
		if k > n || k == n && p.pid < best.pid {
			best, n = p, k
		}
	}
	out := c.Client
	if n > 0 {
		out.PID, out.Comm = best.pid, best.comm
		if out.Netns == 0 {
			out.Netns = best.netns
		}
	}
	return out
}

// addrOwners maps each address to the one namespace that has it;
// loopback and addresses that several namespaces share map to none.
func addrOwners(tables map[uint32]Table) map[netip.Addr]uint32 {
	out := map[netip.Addr]uint32{}
	shared := map[netip.Addr]bool{}
	for ns, t := range tables {
		for _, p := range t.Addrs {
			a := p.Addr()
			if a.IsLoopback() || a.IsLinkLocalUnicast() {
				continue
			}
			if o, ok := out[a]; ok && o != ns {
				shared[a] = true
			}
			out[a] = ns
		}
	}
	for a := range shared {
		delete(out, a)
	}
	return out
}

// socketOwners maps a flow (source, destination) to the process that owns
// its socket, from every namespace's socket table.
func socketOwners(tables []event.SocketTable) map[[2]netip.AddrPort]proc {
	out := map[[2]netip.AddrPort]proc{}
	for _, t := range tables {
		for _, s := range t.Sockets {
			if s.PID != 0 {
				out[[2]netip.AddrPort{s.Src, s.Dst}] = proc{t.Netns, s.PID, s.Comm}
			}
		}
	}
	return out
}
