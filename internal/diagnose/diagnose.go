// Package diagnose turns an aggregate report into the fixes the evidence
// supports (DESIGN.md: keepalive, tcp_tw_reuse, a wider range, more
// destination or source addresses, Unix sockets), each with the numbers that
// justify it. A rule that has no evidence says nothing, so advice disappears
// as soon as what justified it is gone.
package diagnose

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/porttrace/porttrace/internal/aggregate"
	"github.com/porttrace/porttrace/internal/netns"
)

// Finding is one piece of advice about one port space.
type Finding struct {
	Rule  string `json:"rule"`
	Space string `json:"port_space"`
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
// report's order (most urgent first).
func Diagnose(r *aggregate.Report) []Finding {
	settings := map[uint32]netns.Settings{}
	for _, ns := range r.Netns {
		settings[ns.Inode] = ns.Settings
	}
	var out []Finding
	for i := range r.Spaces {
		s := &r.Spaces[i]
		ns, known := settings[s.Netns]
		if s.Other || !known || s.Usable == 0 {
			continue
		}
		c := check{s: s, ns: ns}
		for _, rule := range rules {
			if f, ok := rule(&c); ok {
				f.Space, f.Situation = s.Where(), c.situation()
				out = append(out, f)
			}
		}
	}
	return out
}

type check struct {
	s  *aggregate.SpaceReport
	ns netns.Settings
}

var rules = []func(*check) (Finding, bool){
	keepalive, twReuse, moreDestinations, unixSocket, portRange, sourceAddresses, bindNoPort, slowPortSearch,
}

func (c *check) pressure() bool {
	s := c.s
	return s.UsedPct >= pressurePct || s.Errno(s.ExhaustionErrno()) > 0 ||
		s.ETA != nil && *s.ETA <= pressureETA.Seconds()
}

// perSecond is what a space of n ports sustains without reuse.
func perSecond(n int) float64 { return float64(n) / aggregate.TimeWaitLen }

func perSecondText(n int) string {
	if f := perSecond(n); f < 10 {
		return fmt.Sprintf("%.1f", f)
	}
	return num(int(perSecond(n)))
}

func (c *check) loopback() bool {
	return c.s.Key.Dst.Addr().IsLoopback()
}

// situation is the evidence common to most findings.
func (c *check) situation() string {
	s := c.s
	parts := []string{fmt.Sprintf("%s of %s ports in use (%s in TIME_WAIT)", num(s.Used), num(s.Usable), num(s.TimeWait))}
	if n := s.Errno(s.ExhaustionErrno()); n > 0 {
		parts = append(parts, fmt.Sprintf("%s %s in the last minute", num(int(n)), s.ExhaustionErrno()))
	} else if s.ETA != nil {
		parts = append(parts, fmt.Sprintf("full in %s at the current rate", time.Duration(*s.ETA*float64(time.Second)).Round(time.Second)))
	}
	return strings.Join(parts, ", ")
}

func keepalive(c *check) (Finding, bool) {
	s := c.s
	churn := s.Conns.S10 * aggregate.TimeWaitLen
	// Connections still open are being reused: only closed ones, mostly
	// short, show that reuse is missing.
	if s.Key.IsBindPool() || !c.pressure() || churn < churnShare*float64(s.Usable) || s.Closed60 < minClosed || s.ShortPct < shortPct {
		return Finding{}, false
	}
	who := processes(s.Processes)
	ev := fmt.Sprintf("%s opened %s connections/s to %s, %.0f%% of those closed lived under 1 s; %s ports sustain %s connections/s without reuse",
		who, num(int(s.Conns.S10+0.5)), s.Dst, s.ShortPct, num(s.Usable), perSecondText(s.Usable))
	fix := fmt.Sprintf("reuse connections to %s (HTTP keep-alive or a connection pool)", s.Dst)
	if slices.ContainsFunc(s.Processes, func(p aggregate.ProcRef) bool { return p.Comm == "nginx" }) {
		fix = `enable upstream keepalive: "keepalive 32;" in the upstream block, and "proxy_http_version 1.1;" and "proxy_set_header Connection "";" where it is proxied ` +
			`(where it is already on, raise keepalive_requests, 1000 by default: each connection closes after that many requests)`
	}
	return Finding{Rule: "keepalive", Evidence: ev, Fix: fix}, true
}

func twReuse(c *check) (Finding, bool) {
	s := c.s
	reuseOn := c.ns.TWReuse == 1 || c.ns.TWReuse == 2 && c.loopback()
	if s.Key.IsBindPool() || reuseOn || !c.pressure() || float64(s.TimeWait) < timeWaitShare*float64(s.Used) {
		return Finding{}, false
	}
	return Finding{
		Rule:     "tcp_tw_reuse",
		Evidence: fmt.Sprintf("tcp_tw_reuse is %d in netns %d", c.ns.TWReuse, c.ns.Inode),
		Fix: fmt.Sprintf("set net.ipv4.tcp_tw_reuse=1 in that namespace: connect() may then take a TIME_WAIT port after 1 s "+
			"(with TCP timestamps), which frees up to the %s ports now in TIME_WAIT", num(s.TimeWait)),
	}, true
}

func moreDestinations(c *check) (Finding, bool) {
	s := c.s
	if s.Key.IsBindPool() || !c.pressure() {
		return Finding{}, false
	}
	ev := fmt.Sprintf("one destination address and port is one space of %s ports, %s connections/s",
		num(s.Usable), perSecondText(s.Usable))
	dst := s.Key.Dst
	if c.loopback() && dst.Addr().Is4() {
		a2, a3 := dst.Addr().Next(), dst.Addr().Next().Next()
		return Finding{Rule: "more_destinations", Evidence: ev, Fix: fmt.Sprintf(
			"adding %s and %s as upstream addresses (any 127.0.0.0/8 address reaches the same listener) triples this port space to %s ports, %s connections/s",
			netip.AddrPortFrom(a2, dst.Port()), netip.AddrPortFrom(a3, dst.Port()), num(3*s.Usable), perSecondText(3*s.Usable))}, true
	}
	return Finding{Rule: "more_destinations", Evidence: ev, Fix: fmt.Sprintf(
		"each more upstream address or port is another %s ports: spread the load over several", num(s.Usable))}, true
}

func unixSocket(c *check) (Finding, bool) {
	if c.s.Key.IsBindPool() || !c.loopback() || !c.pressure() {
		return Finding{}, false
	}
	return Finding{Rule: "unix_socket", Evidence: fmt.Sprintf("the upstream %s is on this host", c.s.Dst),
		Fix: "serve it on a Unix domain socket (nginx: server unix:/run/app.sock), which takes no ports at all"}, true
}

func portRange(c *check) (Finding, bool) {
	cur := c.ns.PortHigh - c.ns.PortLow + 1
	if !c.pressure() || cur >= widestHigh-widestLow+1 {
		return Finding{}, false
	}
	wide := netns.Settings{PortLow: widestLow, PortHigh: widestHigh, Reserved: c.ns.Reserved}.Usable()
	return Finding{
		Rule: "port_range",
		Evidence: fmt.Sprintf("ip_local_port_range is %d-%d in netns %d: %s usable ports, %s connections/s per destination",
			c.ns.PortLow, c.ns.PortHigh, c.ns.Inode, num(c.s.Usable), perSecondText(c.s.Usable)),
		Fix: fmt.Sprintf(`widen it: sysctl -w net.ipv4.ip_local_port_range="%d %d" gives %s ports, %s connections/s (list listening ports in that range in ip_local_reserved_ports)`,
			widestLow, widestHigh, num(wide), perSecondText(wide)),
	}, true
}

func sourceAddresses(c *check) (Finding, bool) {
	if c.s.Key.IsBindPool() || c.loopback() || !c.pressure() {
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
		Evidence: fmt.Sprintf("%s made %s bind()s/s", processes(s.Processes), num(int(s.Conns.S10+0.5))),
		Fix: fmt.Sprintf("bind() before connect() takes its port from one pool per source address (%s) shared by every destination: "+
			"set IP_BIND_ADDRESS_NO_PORT before bind() so that connect() picks the port per destination", s.Src)}, true
}

func slowPortSearch(c *check) (Finding, bool) {
	l := c.s.AllocLatency
	if l.Count < slowSearchMin || l.P99 < slowSearch {
		return Finding{}, false
	}
	return Finding{Rule: "slow_port_search", Evidence: fmt.Sprintf(
		"port search took %s at p99 (p50 %s, max %s) over %s searches: the kernel scans past taken ports, the early sign of exhaustion",
		l.P99.Round(time.Microsecond), l.P50.Round(time.Microsecond), l.Max.Round(time.Microsecond), num(int(l.Count)))}, true
}

// maxPids is how many pids a finding names per process name.
const maxPids = 4

// processes names the processes behind a space as "nginx (pids 812, 813)".
func processes(refs []aggregate.ProcRef) string {
	if len(refs) == 0 {
		return "processes started before porttrace"
	}
	byComm := map[string][]string{}
	var order []string
	for _, p := range refs {
		if byComm[p.Comm] == nil {
			order = append(order, p.Comm)
		}
		byComm[p.Comm] = append(byComm[p.Comm], fmt.Sprint(p.PID))
	}
	var out []string
	for _, comm := range order {
		pids := byComm[comm]
		word := "pid"
		if len(pids) > 1 {
			word = "pids"
		}
		if len(pids) > maxPids {
			pids = append(pids[:maxPids:maxPids], fmt.Sprintf("and %d more", len(pids)-maxPids))
		}
		out = append(out, fmt.Sprintf("%s (%s %s)", comm, word, strings.Join(pids, ", ")))
	}
	return strings.Join(out, " and ")
}

// num writes n with thousands separators, as operators read them.
func num(n int) string { return humanize.Comma(int64(n)) }
