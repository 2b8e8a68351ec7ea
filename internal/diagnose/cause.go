package diagnose

import (
	"fmt"
	"strings"
	"time"

	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/summary"
)

// Cause is what holds a space's ports, which decides the finding and the
// fixes that can work (docs/port-model.md's rule table).
type Cause string

const (
	// Churn: short connections closed by this side, their ports in
	// TIME_WAIT (or open sockets of a healthy pool): capacity advice.
	Churn Cause = "time_wait"
	// Orphans: time-wait sockets in the FIN_WAIT2 substate; the peer
	// never closes. Only the peer or tcp_fin_timeout helps.
	Orphans Cause = "fin_wait2_orphans"
	// CloseWait: the peer closed, the process never calls close().
	CloseWait Cause = "close_wait_leak"
	// EstablishedLeak: open connections that grow and never close.
	EstablishedLeak Cause = "established_leak"
	// SynSent: attempts the upstream does not answer hold their ports for
	// the SYN retries.
	SynSent Cause = "syn_sent"
	// HalfClosed: sockets shut down for writing whose process keeps them
	// open (FIN_WAIT1/2 with a descriptor): no timer frees them.
	HalfClosed Cause = "half_closed"
)

// holding counts the space's used ports by what holds them.
func holding(s *summary.SpaceSummary) map[Cause]int {
	st := s.States
	return map[Cause]int{
		Churn:           max(s.TimeWait-s.Reusable, 0),
		Orphans:         s.FinWait2,
		CloseWait:       st["CLOSE_WAIT"] + st["LAST_ACK"],
		EstablishedLeak: st["ESTABLISHED"],
		SynSent:         st["SYN_SENT"],
		HalfClosed:      st["FIN_WAIT1"] + st["FIN_WAIT2"] + st["CLOSING"],
	}
}

// cause is what holds most of the space's ports. Open connections that
// keep closing and reopening are a pool, and churn: capacity helps them.
// With nothing known about open sockets (no socket table yet), TIME_WAIT.
func (c *check) cause() Cause {
	s := c.s
	h := holding(s)
	best, n := Churn, h[Churn]
	for _, k := range []Cause{Orphans, CloseWait, EstablishedLeak, SynSent, HalfClosed} {
		if h[k] > n {
			best, n = k, h[k]
		}
	}
	if best == EstablishedLeak && s.Closed60*leakCloses >= uint64(n) {
		return Churn // they close as fast as they hold: a pool, not a leak
	}
	return best
}

// leakCloses: established connections are a leak when fewer than one in
// this many closed in the last minute.
const leakCloses = 10

// holdersIn names the processes holding the space's sockets in state, as
// "app (pid 4242) holds 20 sockets in CLOSE_WAIT, the oldest open for
// 2m0s", and returns how many and the oldest age seen.
func holdersIn(s *summary.SpaceSummary, states ...string) (text string, n int, oldest float64) {
	var parts []string
	for _, h := range s.Holders {
		if !contains(states, h.State) {
			continue
		}
		n += h.Sockets
		oldest = max(oldest, h.Oldest)
		who := "processes porttrace could not name"
		if h.PID != 0 {
			who = fmt.Sprintf("%s (pid %d)", h.Comm, h.PID)
		}
		p := fmt.Sprintf("%s holds %s in %s", who, plural(h.Sockets, "socket"), h.State)
		if h.Oldest > 0 {
			p += fmt.Sprintf(", the oldest open for %s", seconds(h.Oldest))
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; "), n, oldest
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if strings.HasSuffix(word, "s") {
		return num(n) + " " + word + "es"
	}
	return num(n) + " " + word + "s"
}

func seconds(f float64) string {
	return time.Duration(f * float64(time.Second)).Round(time.Second).String()
}

// leakRate is how fast a leak takes ports, per second: the space's fill
// rate, else what is held over the age of the oldest; 0 if unknown.
func leakRate(s *summary.SpaceSummary, held int, oldest float64) float64 {
	if s.FillRate > 0 {
		return s.FillRate
	}
	if oldest >= 1 {
		return float64(held) / oldest
	}
	return 0
}

// widening is what a wider range buys against a leak: the extra ports,
// and how long they last at rate.
func (c *check) widening(rate float64) string {
	cur := c.s.Usable
	wide := netns.Settings{PortLow: widestLow, PortHigh: widestHigh, Reserved: c.ns.Reserved}.Usable()
	extra := wide - cur
	if extra <= 0 {
		return "the range cannot be widened further"
	}
	if rate <= 0 {
		return fmt.Sprintf("widening ip_local_port_range to %d-%d adds %s ports, which the leak fills in turn", widestLow, widestHigh, num(extra))
	}
	return fmt.Sprintf("widening ip_local_port_range to %d-%d adds %s ports, which at the leak's %s ports/s delays the failure by %s, no more",
		widestLow, widestHigh, num(extra), rate3(rate), seconds(float64(extra)/rate))
}

func rate3(f float64) string {
	if f < 10 {
		return fmt.Sprintf("%.2g", f)
	}
	return num(int(f + 0.5))
}

// orphans: the client closed, the peer never does; the kernel keeps each
// port for tcp_fin_timeout whatever tcp_tw_reuse says.
func orphans(c *check) (Finding, bool) {
	s := c.s
	if !c.pressure() || c.cause() != Orphans {
		return Finding{}, false
	}
	fin := c.ns.FinTimeout
	ev := fmt.Sprintf("%s of the %s ports are held by orphaned sockets in FIN_WAIT2: %s closed its connections to %s and the peer never closed its side",
		num(s.FinWait2), num(s.Usable), processes(s.Processes), s.Dst)
	if p := c.peer(); p != "" {
		ev += fmt.Sprintf(" (%s", p)
		if s.PeerCloseWait > 0 {
			ev += fmt.Sprintf(" holds %s in CLOSE_WAIT", plural(s.PeerCloseWait, "connection"))
		}
		ev += ")"
	}
	if fin > 0 {
		ev += fmt.Sprintf("; each port comes back only after tcp_fin_timeout (%d s): %s ports sustain %s connections/s; tcp_tw_reuse does not take them over",
			fin, num(s.Usable), perSecondOver(s.Usable, fin))
	}
	fix := fmt.Sprintf("make the peer at %s close its side when the client closes (it leaves them in CLOSE_WAIT)", s.Dst)
	if fin > 10 {
		fix += fmt.Sprintf(`, or lower the wait: sysctl -w net.ipv4.tcp_fin_timeout=10 in netns %d brings each port back after 10 s instead of %d, %s connections/s`,
			c.ns.Inode, fin, perSecondOver(s.Usable, 10))
	}
	return Finding{Rule: string(Orphans), Evidence: ev, Fix: fix}, true
}

// peer names the listener at the space's destination, if it is in the
// namespace.
func (c *check) peer() string {
	dst := c.s.Key.Dst
	for _, l := range c.listenersOn(dst.Port()) {
		if a := l.Addr.Addr().Unmap(); a == dst.Addr() || a.IsUnspecified() {
			return "the peer is " + listenerText(l)
		}
	}
	return ""
}

func perSecondOver(n, secs int) string {
	f := float64(n) / float64(secs)
	if f < 10 {
		return fmt.Sprintf("%.1f", f)
	}
	return num(int(f))
}

// closeWaitLeak: the peer closed and the process never calls close().
func closeWaitLeak(c *check) (Finding, bool) {
	if !c.pressure() || c.cause() != CloseWait {
		return Finding{}, false
	}
	who, n, oldest := holdersIn(c.s, "CLOSE_WAIT", "LAST_ACK")
	ev := fmt.Sprintf("%s of the %s ports are held by connections to %s that the peer closed and the process never did: %s",
		num(n), num(c.s.Usable), c.s.Dst, who)
	return Finding{Rule: string(CloseWait), Evidence: ev,
		Fix: "close() each socket when a read returns end of file (0 bytes): the process leaks them; restarting it frees the ports now; " +
			c.widening(leakRate(c.s, n, oldest))}, true
}

// establishedLeak: connections that stay open and never close.
func establishedLeak(c *check) (Finding, bool) {
	if !c.pressure() || c.cause() != EstablishedLeak {
		return Finding{}, false
	}
	who, n, oldest := holdersIn(c.s, "ESTABLISHED")
	ev := fmt.Sprintf("%s of the %s ports are held by open connections to %s that are not closed (%s in the last minute): %s",
		num(n), num(c.s.Usable), c.s.Dst, num(int(c.s.Closed60)), who)
	return Finding{Rule: string(EstablishedLeak), Evidence: ev,
		Fix: "bound the connection pool and close idle connections (or find the leak: connections opened per request and never closed); " +
			c.widening(leakRate(c.s, n, oldest))}, true
}

// synSentPileUp: the upstream does not answer; each attempt holds its
// port for the SYN retries.
func synSentPileUp(c *check) (Finding, bool) {
	if !c.pressure() || c.cause() != SynSent {
		return Finding{}, false
	}
	who, n, _ := holdersIn(c.s, "SYN_SENT")
	ev := fmt.Sprintf("%s of the %s ports are held by connection attempts to %s still in SYN_SENT: the upstream does not answer (%s)",
		num(n), num(c.s.Usable), c.s.Dst, who)
	if t := c.s.Errno("ETIMEDOUT"); t > 0 {
		ev += fmt.Sprintf("; %s attempts timed out in the last minute", num(int(t)))
	}
	return Finding{Rule: string(SynSent), Evidence: ev,
		Fix: "fix the upstream or the route to it (a firewall dropping SYNs, a blackholed route, a full accept backlog); " +
			"meanwhile a shorter connect timeout in the client, or a lower net.ipv4.tcp_syn_retries (6 by default: about 127 s per attempt), frees each port sooner. More ports only hold more waiting attempts"}, true
}

// halfClosed: sockets shut down for writing, never closed: no timer ends
// a FIN_WAIT2 whose process still holds it.
func halfClosed(c *check) (Finding, bool) {
	if !c.pressure() || c.cause() != HalfClosed {
		return Finding{}, false
	}
	who, n, oldest := holdersIn(c.s, "FIN_WAIT1", "FIN_WAIT2", "CLOSING")
	ev := fmt.Sprintf("%s of the %s ports are held by half-closed connections to %s (shutdown() for writing, the descriptor still open, the peer not closing): %s; "+
		"tcp_fin_timeout applies only to closed sockets", num(n), num(c.s.Usable), c.s.Dst, who)
	return Finding{Rule: string(HalfClosed), Evidence: ev,
		Fix: "close() the socket after shutdown() (or with a deadline when the peer does not answer with its own close); " + c.widening(leakRate(c.s, n, oldest))}, true
}

// timeoutErrnos are failures that say the path or the upstream did not
// answer, not that a port was missing.
var timeoutErrnos = []string{"ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH"}

// notExhaustion: attempts time out while ports are free: a middlebox, a
// full conntrack table on the path, an upstream down. Nothing about ports
// helps, and porttrace says so rather than offer capacity.
func notExhaustion(c *check) (Finding, bool) {
	s := c.s
	if c.pressure() || s.Exhaustion60() > 0 {
		return Finding{}, false
	}
	var parts []string
	total := 0
	for _, e := range timeoutErrnos {
		if n := s.Errno(e); n > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", num(int(n)), e))
			total += int(n)
		}
	}
	if total == 0 {
		return Finding{}, false
	}
	return Finding{Rule: "not_port_exhaustion",
		Evidence: fmt.Sprintf("%s in the last minute toward %s with %s of %s ports in use: not port exhaustion, the connections did not get through",
			strings.Join(parts, ", "), orElse(s.Dst, s.Src), num(s.Used), num(s.Usable)),
		Fix: "look at the path and the upstream (a firewall or middlebox dropping packets, a full conntrack table on the way: conntrack -S insert_failed/drop, the upstream's backlog); more ports would not help"}, true
}

func orElse(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
