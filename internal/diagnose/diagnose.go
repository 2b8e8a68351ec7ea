// Package diagnose turns an aggregator summary into the fixes the evidence
// supports (keepalive, tcp_tw_reuse, a wider range, more destination or
// source addresses, Unix sockets, IP_BIND_ADDRESS_NO_PORT, reserved ports;
// the README's rule table), each with the numbers that justify it. A rule that has no evidence says nothing, so advice disappears
// as soon as what justified it is gone.
package diagnose

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/summary"
)

// Finding is one piece of advice about one port space, or about a whole
// namespace (Dst empty: its listeners, its bind() conflicts).
type Finding struct {
	Rule  string `json:"rule"`
	Space string `json:"port_space"`
	// The space as fields: its namespace's inode, source address, and
	// destination (empty for a bind() pool or a namespace's finding).
	Netns uint32 `json:"netns"`
	Src   string `json:"src,omitempty"`
	Dst   string `json:"dst,omitempty"`
	DPort uint16 `json:"dport,omitempty"`
	// Situation is the space's state, common to its findings; Evidence
	// is what this rule saw in particular.
	Situation string `json:"situation"`
	Evidence  string `json:"evidence"`
	Fix       string `json:"fix"`
}

// Advice is the rule's own evidence and fix, without the situation.
func (f Finding) Advice() string {
	if f.Fix == "" {
		return f.Evidence + "."
	}
	return f.Evidence + ": " + f.Fix + "."
}

// Paragraphs lays findings out for reading: each port space's situation
// once, then its fixes numbered under it.
func Paragraphs(fs []Finding) []string {
	var out []string
	space, n := "", 0
	for _, f := range fs {
		if f.Space != space {
			space, n = f.Space, 0
			out = append(out, f.Space+": "+f.Situation)
		}
		n++
		out = append(out, fmt.Sprintf("  %d. %s", n, f.Advice()))
	}
	return out
}

func (f Finding) String() string {
	return fmt.Sprintf("%s: %s; %s", f.Space, f.Situation, f.Advice())
}

// Thresholds, each chosen to stay quiet on a healthy machine.
const (
	// A space is under pressure when it is this full, ...
	pressurePct = 50.0
	// ... will be full within this, ...
	pressureETA = 5 * time.Minute
	// ... or connect() failed for want of a port in the last minute.

	// Churn that would fill this share of the space within one TIME_WAIT
	// period, mostly from short connections, is missing connection reuse.
	churnShare = 0.5
	shortPct   = 50.0
	minClosed  = 10 // connections closed in the last minute
	// TIME_WAIT is what holds the ports when it is this share of them.
	timeWaitShare = 0.5
	// Port search slower than this at p99 means long scans past taken ports.
	slowSearch    = 500 * time.Microsecond
	slowSearchMin = 10 // searches, for a p99 worth quoting
)

// The widest range Linux allows without taking the privileged ports.
const widestLow, widestHigh = 1024, 65535

// Diagnose returns the findings for every port space under pressure, in the
// summary's order (most urgent first), then each namespace's own.
func Diagnose(r *summary.Summary) []Finding {
	settings := map[uint32]*summary.NetnsSummary{}
	for i := range r.Netns {
		settings[r.Netns[i].Inode] = &r.Netns[i]
	}
	out := []Finding{}
	for i := range r.Spaces {
		s := &r.Spaces[i]
		ns, known := settings[s.Netns]
		if s.Other || !known {
			continue
		}
		c := check{s: s, ns: ns.Settings, nr: ns, used: usedDestinations(r.Spaces, s)}
		for _, rule := range rules {
			if f, ok := rule(&c); ok {
				f.Space, f.Situation = s.Where(), c.situation()
				f.Netns, f.Src, f.Dst = s.Netns, s.Src, s.Dst
				if s.Key.Dst.IsValid() {
					f.DPort = s.Key.Dst.Port()
				}
				out = append(out, f)
			}
		}
	}
	widen := map[uint32]bool{}
	for _, f := range out {
		if f.Rule == "port_range" {
			widen[f.Netns] = true
		}
	}
	for i := range r.Netns {
		out = append(out, namespaceFindings(&r.Netns[i], widen[r.Netns[i].Inode])...)
	}
	return out
}

type check struct {
	s  *summary.SpaceSummary
	ns netns.Settings
	nr *summary.NetnsSummary
	// used are the destinations that the space's processes already
	// connect to from its namespace.
	used map[netip.AddrPort]bool
}

// usedDestinations are the destinations of every space of s's namespace
// that shares a process with s.
func usedDestinations(all []summary.SpaceSummary, s *summary.SpaceSummary) map[netip.AddrPort]bool {
	pids := map[uint32]bool{}
	for _, p := range s.Processes {
		pids[p.PID] = true
	}
	out := map[netip.AddrPort]bool{}
	for _, o := range all {
		if o.Netns == s.Netns && o.Key.Dst.IsValid() && slices.ContainsFunc(o.Processes, func(p summary.ProcRef) bool { return pids[p.PID] }) {
			out[o.Key.Dst] = true
		}
	}
	return out
}

// freshDestinations are the next n loopback addresses after dst's, on its
// port, that the space's processes do not already use.
func (c *check) freshDestinations(dst netip.AddrPort, n int) []netip.Addr {
	var out []netip.Addr
	for a := dst.Addr().Next(); a.IsLoopback() && len(out) < n; a = a.Next() {
		if !c.used[netip.AddrPortFrom(a, dst.Port())] {
			out = append(out, a)
		}
	}
	return out
}

var rules = []func(*check) (Finding, bool){
	noSourceAddress, socketPortRange, notExhaustion, orphans, closeWaitLeak, establishedLeak, synSentPileUp, halfClosed, keepalive, idlePool, twReuse, moreDestinations, unixSocket, portRange, sourceAddresses, bindNoPort, slowPortSearch,
}

func (c *check) pressure() bool { return UnderPressure(c.s) }

// UnderPressure tells whether a space is under pressure: at least
// pressurePct used, full within pressureETA, or a call that failed for
// want of a port in the last minute. Only such spaces get findings.
func UnderPressure(s *summary.SpaceSummary) bool {
	return s.Usable > 0 && (s.UsedPct >= pressurePct || s.Exhaustion60() > 0 ||
		s.ETA != nil && *s.ETA <= pressureETA.Seconds())
}

// boundShare is the share of attempts, above which a connect space's ports
// come from bind() (source-IP sharding, Envoy's upstream bind): its
// advice is its bind() pool's.
const boundShare = 50.0

// viaBind tells a connect space whose sockets bind() before connect(): its
// ports come from the address's bind() pool, shared by every destination,
// which carries the advice.
func (c *check) viaBind() bool { return !c.s.Key.IsBindPool() && c.s.BoundPct >= boundShare }

// connectAdvice tells whether the connect-side capacity rules apply: a
// connect space under pressure whose ports connect() itself picks, held
// by churn (a leak, orphans or unanswered attempts have rules of their
// own, and capacity only delays them).
func (c *check) connectAdvice() bool {
	return !c.s.Key.IsBindPool() && !c.viaBind() && c.pressure() && c.cause() == Churn
}

// perSecond is what a space of n ports sustains without reuse.
func perSecond(n int) float64 { return float64(n) / summary.TimeWaitLen }

func perSecondText(n int) string {
	if f := perSecond(n); f < 10 {
		return fmt.Sprintf("%.1f", f)
	}
	return num(int(perSecond(n)))
}

func (c *check) loopback() bool {
	return c.s.Key.Dst.Addr().IsLoopback()
}

// situation is the evidence common to most findings: how full the space
// is, what holds its ports, and its failures or when it runs out.
func (c *check) situation() string {
	s := c.s
	held := []string{fmt.Sprintf("%s in TIME_WAIT", num(s.TimeWait))}
	if s.Reusable > 0 {
		held[0] += fmt.Sprintf(", %s of them reusable and not counted", num(s.Reusable))
	}
	if s.FinWait2 > 0 {
		held = append(held, fmt.Sprintf("%s orphaned in FIN_WAIT2", num(s.FinWait2)))
	}
	for _, st := range []string{"ESTABLISHED", "CLOSE_WAIT", "SYN_SENT", "FIN_WAIT1", "FIN_WAIT2", "LAST_ACK", "CLOSING"} {
		if n := s.States[st]; n > 0 {
			held = append(held, fmt.Sprintf("%s open in %s", num(n), st))
		}
	}
	if s.Bound > 0 {
		held = append(held, fmt.Sprintf("%s bound by bind() in the namespace", num(s.Bound)))
	}
	parts := []string{fmt.Sprintf("%s of %s ports in use (%s)", num(s.Used), num(s.Usable), strings.Join(held, ", "))}
	if s.Gone {
		// Its ports went with it: what it held is the last minute's peak.
		parts = []string{fmt.Sprintf("namespace gone; up to %s of %s ports were in use in the last minute", num(s.UsedMax60), num(s.Usable))}
	}
	switch n := s.Exhaustion60(); {
	case n > 0:
		parts = append(parts, fmt.Sprintf("%s %s in the last minute", num(int(n)), s.ExhaustionErrno())+heldThen(s))
	case s.Key.IsBindPool() && s.Used >= s.Usable && !s.Exhausted && c.ns.AutobindReuse != 0:
		parts = append(parts, "every port held, but bind() hands out those in TIME_WAIT (ip_autobind_reuse=1, SO_REUSEADDR) and no call has failed")
	case s.ETA != nil && *s.ETA <= 0:
		parts = append(parts, "no port left for a new connection, no call has failed yet")
	case s.ETA != nil:
		parts = append(parts, fmt.Sprintf("full in %s at the current rate", time.Duration(*s.ETA*float64(time.Second)).Round(time.Second)))
	case s.TWCapped:
		parts = append(parts, "TIME_WAIT is capped by tcp_max_tw_buckets")
	}
	return strings.Join(parts, ", ")
}

// heldThen says what was taken when the last call failed for want of a
// port, where ports were freed since: the failures and the figures now
// are of different moments.
func heldThen(s *summary.SpaceSummary) string {
	if s.LastExhaustion == nil || s.UsedAtExhaustion <= s.Used {
		return ""
	}
	return fmt.Sprintf(", the last %s ago, when %s of %s ports were in use", time.Duration(*s.LastExhaustion)*time.Second, num(s.UsedAtExhaustion), num(s.Usable))
}

// noSourceAddress: EADDRNOTAVAIL with no port search at all. Not
// exhaustion: nothing about ports helps.
func noSourceAddress(c *check) (Finding, bool) {
	n := c.s.NoAddress60()
	if n == 0 {
		return Finding{}, false
	}
	return Finding{Rule: "no_source_address",
		Evidence: fmt.Sprintf("%s connect() or bind() calls toward %s failed with EADDRNOTAVAIL in the last minute before any port search: "+
			"the host had no usable source address for them, not a lack of ports", num(int(n)), cmp.Or(c.s.Dst, c.s.Src)),
		Fix: "give the host an address of that family on the route to the destination (IPv6 without a global or loopback address is the usual case), " +
			"or bind() only to an address the host has (ip_nonlocal_bind=1 allows one it does not have yet)"}, true
}

// churning reports whether the space opens, without reuse, enough new
// connections to fill half of it within one TIME_WAIT period, and closed
// enough of them in the last minute to judge their lifetimes.
func (c *check) churning() bool {
	s := c.s
	return s.Conns.S10*summary.TimeWaitLen >= churnShare*float64(s.Usable) && s.Closed60 >= minClosed
}

func keepalive(c *check) (Finding, bool) {
	s := c.s
	// Connections still open are being reused: only closed ones, mostly
	// short, show that reuse is missing.
	if !c.connectAdvice() || !c.churning() || s.ShortPct < shortPct {
		return Finding{}, false
	}
	ev := fmt.Sprintf("%s; %.0f%% of the %s closed in the last minute lived under 1 s; %s ports sustain %s connections/s without reuse",
		c.whoMade("connection attempts/s to "+s.Dst), s.ShortPct, num(int(s.Closed60)), num(s.Usable), perSecondText(s.Usable))
	fix := fmt.Sprintf("reuse connections to %s (HTTP keep-alive or a connection pool)", s.Dst)
	if slices.ContainsFunc(s.Processes, func(p summary.ProcRef) bool { return p.Comm == "nginx" }) {
		fix = `enable upstream keepalive: "keepalive 32;" in the upstream block, and "proxy_http_version 1.1;" and "proxy_set_header Connection "";" where it is proxied ` +
			`(where it is already on, raise keepalive_requests, 1000 by default: each connection closes after that many requests)`
	}
	return Finding{Rule: "keepalive", Evidence: ev, Fix: fix}, true
}

// idlePool: connections that live long (they are reused) yet churn: the
// client keeps too few idle connections and opens new ones under load.
func idlePool(c *check) (Finding, bool) {
	s := c.s
	if !c.connectAdvice() || !c.churning() || s.ShortPct >= shortPct || s.Lifetime.P50 < time.Second {
		return Finding{}, false
	}
	return Finding{Rule: "idle_pool",
		Evidence: fmt.Sprintf("%s already reuses connections to %s (median lifetime %s) but opens %s new ones/s",
			processes(s.Processes), s.Dst, s.Lifetime.P50.Round(time.Second), rate(s.Conns.S10)),
		Fix: "keep more idle connections: the pool closes what it cannot keep idle and opens them again at the next burst " +
			"(Go: Transport.MaxIdleConnsPerHost, 2 by default; nginx: the number in \"keepalive N;\"; a longer idle timeout)"}, true
}

func twReuse(c *check) (Finding, bool) {
	s := c.s
	reuseOn := c.ns.TWReuse == 1 || c.ns.TWReuse == 2 && c.loopback()
	if !c.connectAdvice() || reuseOn || s.TimeWait == 0 || float64(s.TimeWait) < timeWaitShare*float64(s.Used) {
		return Finding{}, false
	}
	return Finding{
		Rule:     "tcp_tw_reuse",
		Evidence: fmt.Sprintf("tcp_tw_reuse is %d in netns %d", c.ns.TWReuse, c.ns.Inode),
		Fix: fmt.Sprintf("set net.ipv4.tcp_tw_reuse=1 in that namespace: connect() may then take a TIME_WAIT port after 1 s "+
			"(with TCP timestamps), which frees up to the %s ports now in TIME_WAIT", num(s.TimeWait)),
	}, true
}

// listenersOn are the namespace's listeners on port.
func (c *check) listenersOn(port uint16) []summary.Listener {
	var out []summary.Listener
	for _, l := range c.nr.Listeners {
		if l.Addr.Port() == port {
			out = append(out, l)
		}
	}
	return out
}

func moreDestinations(c *check) (Finding, bool) {
	s := c.s
	if !c.connectAdvice() {
		return Finding{}, false
	}
	ev := fmt.Sprintf("one destination address and port is one space of %s ports, %s connections/s",
		num(s.Usable), perSecondText(s.Usable))
	dst := s.Key.Dst
	if !c.loopback() || !dst.Addr().Is4() {
		return Finding{Rule: "more_destinations", Evidence: ev, Fix: fmt.Sprintf(
			"if the upstream also listens on other addresses or ports, each one added to the pool is another %s ports: spread the load over them", num(s.Usable))}, true
	}
	fresh := c.freshDestinations(dst, 2)
	if len(fresh) < 2 {
		return Finding{}, false
	}
	a2, a3 := fresh[0], fresh[1]
	more := fmt.Sprintf("adding %s and %s as upstream addresses triples this port space to %s ports, %s connections/s",
		netip.AddrPortFrom(a2, dst.Port()), netip.AddrPortFrom(a3, dst.Port()), num(3*s.Usable), perSecondText(3*s.Usable))
	ls := c.listenersOn(dst.Port())
	if slices.ContainsFunc(ls, func(l summary.Listener) bool { return l.Addr.Addr().IsUnspecified() }) {
		return Finding{Rule: "more_destinations", Evidence: ev,
			Fix: more + fmt.Sprintf(" (the listener on %s accepts on every address)", listenerText(ls[0]))}, true
	}
	if len(ls) > 0 {
		return Finding{Rule: "more_destinations", Evidence: ev, Fix: fmt.Sprintf(
			"the listener %s accepts only on %s: make it listen on 0.0.0.0 (or also on %s and %s); then %s",
			listenerText(ls[0]), ls[0].Addr.Addr(), a2, a3, more)}, true
	}
	return Finding{Rule: "more_destinations", Evidence: ev, Fix: fmt.Sprintf(
		"if the upstream listens on 0.0.0.0 or on those addresses too (its listener is not in this namespace's table), %s", more)}, true
}

func listenerText(l summary.Listener) string {
	if l.PID == 0 {
		return l.Addr.String()
	}
	return fmt.Sprintf("%s (%s, pid %d)", l.Addr, l.Comm, l.PID)
}

func unixSocket(c *check) (Finding, bool) {
	if !c.connectAdvice() || !c.loopback() {
		return Finding{}, false
	}
	return Finding{Rule: "unix_socket", Evidence: fmt.Sprintf("the upstream %s is on this host", c.s.Dst),
		Fix: "serve it on a Unix domain socket (nginx: server unix:/run/app.sock), which takes no ports at all"}, true
}

func portRange(c *check) (Finding, bool) {
	cur := c.ns.PortHigh - c.ns.PortLow + 1
	// Sockets with their own IP_LOCAL_PORT_RANGE search their window,
	// whatever the namespace's range: socketPortRange says so.
	if !c.pressure() || c.viaBind() || cur >= widestHigh-widestLow+1 || c.cause() != Churn || c.s.SocketRange != nil {
		return Finding{}, false
	}
	wide := netns.Settings{PortLow: widestLow, PortHigh: widestHigh, Reserved: c.ns.Reserved}.Usable()
	fix := fmt.Sprintf(`widen it: sysctl -w net.ipv4.ip_local_port_range="%d %d" gives %s ports, %s connections/s`,
		widestLow, widestHigh, num(wide), perSecondText(wide))
	if ports := c.listenersInto(widestLow, widestHigh); len(ports) > 0 {
		fix += fmt.Sprintf(`; the listening ports %s would fall inside it: keep them out of it first with sysctl -w net.ipv4.ip_local_reserved_ports="%s"`,
			joinPorts(ports), reservedWith(c.ns.Reserved, toReserve(c.nr, true)))
	}
	return Finding{
		Rule: "port_range",
		Evidence: fmt.Sprintf("ip_local_port_range is %d-%d in netns %d: %s usable ports, %s connections/s per destination",
			c.ns.PortLow, c.ns.PortHigh, c.ns.Inode, num(c.s.Usable), perSecondText(c.s.Usable)),
		Fix: fix,
	}, true
}

// socketPortRange: the space's sockets set IP_LOCAL_PORT_RANGE, which
// narrows the search to a window of the namespace's range. The fix is in
// the process, never the sysctl: the option keeps these sockets inside
// its window however wide the namespace's range is.
func socketPortRange(c *check) (Finding, bool) {
	r := c.s.SocketRange
	if r == nil || !c.pressure() {
		return Finding{}, false
	}
	nsUsable := c.ns.Usable()
	return Finding{Rule: "socket_port_range",
		Evidence: fmt.Sprintf("%s[%d] sets IP_LOCAL_PORT_RANGE %d-%d on its sockets: connect() searches %d-%d only, %s usable ports (%s connections/s per destination) of the namespace's %s",
			r.By.Comm, r.By.PID, r.Low, r.High, r.SearchLow, r.SearchHigh, num(c.s.Usable), perSecondText(c.s.Usable), num(nsUsable)),
		Fix: fmt.Sprintf("widen or drop that option in %s (setsockopt IPPROTO_IP, IP_LOCAL_PORT_RANGE): without it, its sockets get the namespace's %d-%d, %s usable ports, %s connections/s per destination",
			r.By.Comm, c.ns.PortLow, c.ns.PortHigh, num(nsUsable), perSecondText(nsUsable)),
	}, true
}

// listenersInto are the listening ports in [lo, hi] that are neither in
// the current range nor reserved: a wider range would hand them out.
func (c *check) listenersInto(lo, hi int) []int {
	reserved := netns.ParseRanges(c.ns.Reserved)
	seen := map[int]bool{}
	var out []int
	for _, l := range c.nr.Listeners {
		p := int(l.Addr.Port())
		if p < lo || p > hi || p >= c.ns.PortLow && p <= c.ns.PortHigh || seen[p] || inRanges(p, reserved) {
			continue
		}
		seen[p] = true
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func inRanges(p int, rs [][2]int) bool {
	return slices.ContainsFunc(rs, func(r [2]int) bool { return p >= r[0] && p <= r[1] })
}

func joinPorts(ps []int) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ", ")
}

// reservedWith is ip_local_reserved_ports with ports added: the whole
// list, since a write replaces it. Ports already in it, or repeated, are
// added once.
func reservedWith(cur string, ports []int) string {
	parts := []string{}
	if cur = strings.TrimSpace(cur); cur != "" {
		parts = append(parts, cur)
	}
	have := netns.ParseRanges(cur)
	ports = slices.Clone(ports)
	slices.Sort(ports)
	for _, p := range slices.Compact(ports) {
		if !inRanges(p, have) {
			parts = append(parts, fmt.Sprint(p))
		}
	}
	return strings.Join(parts, ",")
}

// toReserve is every port a namespace's findings ask to reserve, none
// reserved yet: the named ports bind() could not take inside the range,
// and the listeners inside it, or, when a finding advises the widest
// range (widen), inside that. Each reserved-ports line offers all of
// them, so that no line undoes another.
func toReserve(n *summary.NetnsSummary, widen bool) []int {
	reserved := netns.ParseRanges(n.Reserved)
	var out []int
	add := func(p, lo, hi int) {
		if p >= lo && p <= hi && !inRanges(p, reserved) && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	for _, c := range n.Conflicts {
		add(int(c.Port), n.PortLow, n.PortHigh)
	}
	for _, l := range n.Listeners {
		if widen {
			add(int(l.Addr.Port()), widestLow, widestHigh)
		} else {
			add(int(l.Addr.Port()), n.PortLow, n.PortHigh)
		}
	}
	slices.Sort(out)
	return out
}

func sourceAddresses(c *check) (Finding, bool) {
	if !c.connectAdvice() || c.loopback() {
		return Finding{}, false
	}
	return Finding{Rule: "source_addresses", Evidence: fmt.Sprintf("every connection comes from source address %s", c.s.Src),
		Fix: fmt.Sprintf("each more local source address is another %s ports toward %s (nginx: proxy_bind with split_clients)", num(c.s.Usable), c.s.Dst)}, true
}

func bindNoPort(c *check) (Finding, bool) {
	s := c.s
	if !s.Key.IsBindPool() || !c.pressure() {
		return Finding{}, false
	}
	return Finding{Rule: "bind_no_port",
		Evidence: c.whoMade("bind-then-connect attempts/s from " + s.Src),
		Fix: fmt.Sprintf("bind() before connect() takes its port from one pool per source address (%s) shared by every destination, "+
			"so more upstreams do not help: set IP_BIND_ADDRESS_NO_PORT before bind() so that connect() picks the port per destination "+
			"(nginx: proxy_bind ... transparent is not needed for this; Envoy: it sets the option itself), or drop the bind()", s.Src)}, true
}

func slowPortSearch(c *check) (Finding, bool) {
	l := c.s.AllocLatency
	if c.s.Key.IsBindPool() || l.Count < slowSearchMin || l.P99 < slowSearch {
		return Finding{}, false
	}
	return Finding{Rule: "slow_port_search", Evidence: fmt.Sprintf(
		"port search took %s at p99 (p50 %s, max %s) over %s searches: the kernel scans past taken ports, the early sign of exhaustion",
		l.P99.Round(time.Microsecond), l.P50.Round(time.Microsecond), l.Max.Round(time.Microsecond), num(int(l.Count)))}, true
}

// whoMade says who made the space's attempts at its rate: "nginx (pids
// 812, 813) made 1,950 <what>" where the rate is theirs alone (one task
// name, every process listed); otherwise the space's rate, then each task
// name with its own count, and how many processes are not listed.
func (c *check) whoMade(what string) string {
	s := c.s
	cmds := summary.Commands(s.Processes)
	if len(cmds) == 1 && s.ProcessCount <= len(s.Processes) {
		return fmt.Sprintf("%s made %s %s", processes(s.Processes), rate(s.Conns.S10), what)
	}
	var parts []string
	for _, cmd := range cmds {
		var n uint64
		for _, p := range s.Processes {
			if p.Comm == cmd.Comm {
				n += p.Conns60
			}
		}
		parts = append(parts, fmt.Sprintf("%s %s in the last minute", processes(refsOf(s.Processes, cmd.Comm)), num(int(n))))
	}
	if more := s.ProcessCount - len(s.Processes); more > 0 {
		parts = append(parts, fmt.Sprintf("%s more not listed", plural(more, "process")))
	}
	return fmt.Sprintf("%s %s were made: %s", rate(s.Conns.S10), what, strings.Join(parts, ", "))
}

func refsOf(refs []summary.ProcRef, comm string) []summary.ProcRef {
	var out []summary.ProcRef
	for _, p := range refs {
		if p.Comm == comm {
			out = append(out, p)
		}
	}
	return out
}

// maxPids is how many pids a finding names per process name.
const maxPids = 4

// processes names the processes behind a space as "nginx (pids 812, 813)".
func processes(refs []summary.ProcRef) string {
	if len(refs) == 0 {
		return "processes started before porttrace"
	}
	var out []string
	for _, c := range summary.Commands(refs) {
		var pids []string
		for _, pid := range c.PIDs {
			pids = append(pids, fmt.Sprint(pid))
		}
		word := "pid"
		if len(pids) > 1 {
			word = "pids"
		}
		if len(pids) > maxPids {
			pids = append(pids[:maxPids:maxPids], fmt.Sprintf("and %d more", len(pids)-maxPids))
		}
		out = append(out, fmt.Sprintf("%s (%s %s)", c.Comm, word, strings.Join(pids, ", ")))
	}
	return strings.Join(out, " and ")
}

// num writes n with thousands separators, as operators read them.
func num(n int) string { return humanize.Comma(int64(n)) }

// rate writes a per-second rate: one decimal below 10.
func rate(f float64) string {
	if f < 10 {
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return num(int(f + 0.5))
}

// namespaceFindings are a namespace's own: ports that services listen on
// or bind() to inside the ephemeral range.
func namespaceFindings(n *summary.NetnsSummary, widen bool) []Finding {
	var out []Finding
	where := fmt.Sprintf("netns %d", n.Inode)
	rng := fmt.Sprintf("ip_local_port_range %d-%d", n.PortLow, n.PortHigh)
	reserved := netns.ParseRanges(n.Reserved)
	for _, c := range n.Conflicts {
		who := "an outgoing connection"
		if c.Holder != nil {
			who = fmt.Sprintf("an outgoing connection of %s (pid %d)", c.Holder.Comm, c.Holder.PID)
		}
		ev := fmt.Sprintf("bind() to %s by %s (pid %d) failed with EADDRINUSE %s times", c.Addr, c.By.Comm, c.By.PID, num(int(c.Total)))
		f := Finding{Rule: "bind_conflict", Space: where, Netns: n.Inode, Situation: "a named port was taken", Evidence: ev}
		if p := int(c.Port); p >= n.PortLow && p <= n.PortHigh && !inRanges(p, reserved) {
			f.Evidence += fmt.Sprintf(": port %d is inside %s and %s may hold it", p, rng, who)
			f.Fix = fmt.Sprintf(`keep it out of the ephemeral range: sysctl -w net.ipv4.ip_local_reserved_ports="%s"`, reservedWith(n.Reserved, toReserve(n, widen)))
		}
		out = append(out, f)
	}
	seen := map[uint16]bool{}
	for _, l := range n.Listeners {
		p := int(l.Addr.Port())
		if p < n.PortLow || p > n.PortHigh || inRanges(p, reserved) || seen[l.Addr.Port()] {
			continue
		}
		seen[l.Addr.Port()] = true
		out = append(out, Finding{Rule: "listener_in_range", Space: where, Netns: n.Inode, Situation: "a listening port is ephemeral",
			Evidence: fmt.Sprintf("%s listens inside %s: connect() skips the port while it listens, and an outgoing connection can take it while it does not (a restart then fails with EADDRINUSE)",
				listenerText(l), rng),
			Fix: fmt.Sprintf(`reserve it: sysctl -w net.ipv4.ip_local_reserved_ports="%s"`, reservedWith(n.Reserved, toReserve(n, widen)))})
	}
	return out
}
