package aggregate

import (
	"time"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/summary"
)

// Add accounts for one event.
func (a *Aggregator) Add(e *event.Event) {
	a.events++
	sec := a.clock.advance(e.Time)
	if e.Kind == event.NAT {
		return // a NAT's port, not a socket's: internal/nat counts it
	}
	n := a.namespaces.of(e.Netns, e.NetnsCookie)
	if n == nil {
		return
	}
	if a.addFollowed(e, sec, n) {
		return
	}
	k := summary.SpaceOf(e)
	switch e.Kind {
	case event.State:
		a.state(e, sec, a.space(k, sec), n)
	case event.Alloc:
		a.alloc(e, sec, a.space(k, sec))
	case event.Connect:
		a.connectFailed(e, sec, k)
	case event.Bind:
		a.bindEvent(e, sec, k, procOf(e), n)
	case event.TimeWait:
		a.timeWait(e, sec, a.space(k, sec), n)
	}
}

// addFollowed accounts for an event of a followed socket, whose space is
// known: most events need no lookup. It reports whether it did.
func (a *Aggregator) addFollowed(e *event.Event, sec int64, n *nsState) bool {
	o, followed := a.follower.socks[e.Cookie]
	if !followed || e.Kind == event.Bind || e.NewState == event.SynSent {
		return false
	}
	o.space.active = sec
	switch e.Kind {
	case event.Alloc:
		a.alloc(e, sec, o.space)
	case event.TimeWait:
		a.timeWait(e, sec, o.space, n)
	case event.State:
		if e.Failed() {
			return false
		}
		a.state(e, sec, o.space, n)
	default:
		return false
	}
	return true
}

// alloc is a port search, and the port it found.
func (a *Aggregator) alloc(e *event.Event, sec int64, s *space) {
	s.latency.Add(sec, e.Latency)
	if e.Errno == 0 {
		a.follower.assignPort(e.Cookie, e.Src.Port(), sec)
	}
}

// connectFailed is a connect() that failed: before SYN_SENT, an attempt
// of its own; in or after the port search, one that SYN_SENT counted.
func (a *Aggregator) connectFailed(e *event.Event, sec int64, k summary.SpaceKey) {
	if !e.Failed() {
		return
	}
	pk := procOf(e)
	s := a.space(k, sec)
	if e.Attempt() {
		s.attempt(sec, pk, e.Flags&event.Bound != 0)
		a.proc(pk, sec).connect(sec, k)
	}
	a.fail(s, e, sec, pk)
}

func (a *Aggregator) fail(s *space, e *event.Event, sec int64, pk ProcKey) {
	f := failure{e.Errno, e.Exhaustion()}
	s.fail(sec, pk, f)
	if f.exhaustion {
		a.noteFull(s, sec)
	}
	a.proc(pk, sec).fails.add(sec, f)
}

func (a *Aggregator) bindEvent(e *event.Event, sec int64, k summary.SpaceKey, pk ProcKey, n *nsState) {
	if e.Flags&event.FixedPort != 0 && e.Errno == event.EADDRINUSE {
		if e.Failed() {
			n.conflict(sec, e, pk, a.follower.holderOf(e.Netns, e.Src.Port()))
			a.proc(pk, sec).fails.add(sec, failure{errno: e.Errno})
		}
		return
	}
	// A named port that failed otherwise (EADDRNOTAVAIL: the address is
	// not on the host) is a failed call on that address, as one to port 0.
	s := a.space(k, sec)
	if e.Flags&event.FixedPort == 0 {
		s.latency.Add(sec, e.Latency)
	}
	if e.Failed() {
		// The attempt ends here: no connect() follows.
		s.attempt(sec, pk, true)
		a.proc(pk, sec).connect(sec, k)
		a.fail(s, e, sec, pk)
	}
}

// state handles a state change of a socket whose space is s.
func (a *Aggregator) state(e *event.Event, sec int64, s *space, n *nsState) {
	switch e.NewState {
	case event.SynSent:
		a.synSent(e, sec, s)
	case event.Established:
		a.follower.establish(e.Cookie, e.Src.Port(), sec)
	case event.Close:
		a.reconciler.closed(e.Cookie)
		if e.Failed() {
			a.fail(s, e, sec, procOf(e))
		}
		// Any CLOSE but SYN_SENT's ends an established connection.
		a.follower.release(e.Cookie, e.Time, sec, e.OldState != event.SynSent)
	}
}

// synSent is a connection attempt. A socket bound before connect() also
// draws on its address's bind() pool: the attempt counts there too.
func (a *Aggregator) synSent(e *event.Event, sec int64, s *space) {
	pk := procOf(e)
	bound := e.Flags&event.Bound != 0
	k := s.key
	if s == a.other {
		k = summary.SpaceOf(e)
	}
	s.attempt(sec, pk, bound)
	if e.PortRange != ([2]uint16{}) {
		s.sockRange = sockRange{r: e.PortRange, proc: pk, last: sec}
	}
	p := a.proc(pk, sec)
	p.connect(sec, k)
	if bound {
		a.space(summary.SpaceKey{Netns: k.Netns, Src: k.Src}, sec).attempt(sec, pk, true)
	}
	a.follower.open(e, s, p, bound, sec)
}

// timeWait is a port entering TIME_WAIT: its socket is closed, and the
// port is held until the time-wait socket's timer fires. A port bound by
// bind() stays bound while it waits. s is the socket's space.
func (a *Aggregator) timeWait(e *event.Event, sec int64, s *space, n *nsState) {
	s.active = sec
	a.reconciler.closed(e.Cookie)
	// Past tcp_max_tw_buckets the kernel makes no time-wait socket: the
	// port is free at once, and nothing entered TIME_WAIT.
	capped := s != a.other && n.twFull()
	key, bound := a.closeToTimeWait(e, sec, s, capped)
	if capped {
		return
	}
	s.twIn.Add(sec, 1)
	due := a.second(e.Time.Add(twHold(s, n)))
	if s.ports.timeWait(a.now, key, due, bound, s.orphans, a.limits.Sockets) && bound {
		n.bind(e.Src.Port())
	}
	a.reconciler.timeWait(pendingTW{s.key, e.Src.Port(), due, bound, s.orphans})
}

// closeToTimeWait closes the socket entering TIME_WAIT, counting the
// entry for its process unless capped, and returns the key its port is
// held under and whether bind() took it.
func (a *Aggregator) closeToTimeWait(e *event.Event, sec int64, s *space, capped bool) (uint64, bool) {
	bound := e.Flags&event.Bound != 0
	o, followed := a.follower.socks[e.Cookie]
	if !followed {
		if !capped {
			a.proc(procOf(e), sec).twIn.Add(sec, 1)
		}
		return s.portKey(e.Src.Port()), bound
	}
	if o.proc != nil && !capped {
		o.proc.twIn.Add(sec, 1)
	}
	a.follower.release(e.Cookie, e.Time, sec, true)
	return portKeyFor(o.origin, e.Src.Port()), bound || o.bound
}

// twHold is how long a new time-wait socket of s holds its port. The
// event does not tell an orphan (substate FIN_WAIT2) from TIME_WAIT:
// until the next socket table says, it is taken for what the space's
// time-wait sockets were at the last one, and an orphan's timer is
// tcp_fin_timeout.
func twHold(s *space, n *nsState) time.Duration {
	hold := summary.TimeWaitLen * time.Second
	if s.orphans && n.known && n.settings.FinTimeout > 0 {
		hold = time.Duration(min(n.settings.FinTimeout, summary.TimeWaitLen)) * time.Second
	}
	return hold
}
