package aggregate

import (
	"time"

	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/summary"
)

// occupancy is a port space's ports as the kernel's search finds them.
type occupancy struct {
	live, tw, reusable, bound, used int
	fin                             int // time-wait sockets in the FIN_WAIT2 substate (in tw)
}

// occupancies computes every space's occupancy at once: a bind() pool is
// made of the ports of every space with its source address, and every
// connect space of a namespace shares its bound ports.
func (a *Aggregator) occupancies() map[*space]occupancy {
	out := make(map[*space]occupancy, len(a.spaces)+1)
	bound := map[uint32]map[uint16]bool{}
	bySrc := map[summary.SpaceKey][]*space{}
	for k, s := range a.spaces {
		if k.IsBindPool() {
			continue
		}
		bySrc[summary.SpaceKey{Netns: k.Netns, Src: k.Src}] = append(bySrc[summary.SpaceKey{Netns: k.Netns, Src: k.Src}], s)
		if _, ok := bound[k.Netns]; !ok {
			if n := a.ns[k.Netns]; n != nil {
				bound[k.Netns] = n.boundPorts()
			}
		}
	}
	for k, s := range a.spaces {
		out[s] = a.occupancy(s, a.ns[k.Netns], bySrc[k], bound[k.Netns], a.now)
	}
	out[a.other] = a.loose(a.other)
	return out
}

// occupancy is one space's, by its kind, its time-wait sockets aged as
// of second at.
func (a *Aggregator) occupancy(s *space, n *nsState, pools []*space, bound map[uint16]bool, at int64) occupancy {
	switch {
	case s == a.other || n == nil || !n.known:
		return a.loose(s)
	case s.key.IsBindPool():
		return a.pool(s.key, n, pools)
	}
	return a.connectSpace(s, n, bound, at)
}

// noteFull records what s held at second sec, when a call failed there
// for want of a port, once a second: the next sample may come after the
// sockets that held the ports are gone.
func (a *Aggregator) noteFull(s *space, sec int64) {
	m := &s.lastFull
	m.n++
	if m.n > 1 && m.at == sec {
		return
	}
	m.at = sec
	n := a.ns[s.key.Netns]
	var pools []*space
	var bound map[uint16]bool
	if n != nil && s != a.other {
		pools = a.sameSource(s.key)
		bound = n.boundPorts()
	}
	m.used = a.occupancy(s, n, pools, bound, sec).used
}

// sameSource is the connect spaces of a bind() pool: those with its
// namespace and source address.
func (a *Aggregator) sameSource(pool summary.SpaceKey) []*space {
	var out []*space
	for k, s := range a.spaces {
		if !k.IsBindPool() && k.Netns == pool.Netns && k.Src == pool.Src {
			out = append(out, s)
		}
	}
	return out
}

// loose counts a space's holds without the namespace's rules: "other", or
// a namespace whose settings are unknown.
func (a *Aggregator) loose(s *space) occupancy {
	o := occupancy{tw: s.ports.tw, fin: s.ports.fin, live: s.ports.live()}
	o.used = len(s.ports.m)
	return o
}

// connectSpace: the ports bound in the namespace, and those whose 4-tuple
// an open or time-wait socket holds, unless connect() may take it over
// (TakeOver: tcp_tw_reuse, never an orphan in FIN_WAIT2).
//
// Time-wait sockets are aged as of second at: now, or the second a call
// failed for want of a port, to tell what was taken then.
//
// For a space whose sockets set IP_LOCAL_PORT_RANGE, only the ports of
// their window count (portWindow): the search looks nowhere else.
func (a *Aggregator) connectSpace(s *space, n *nsState, bound map[uint16]bool, at int64) occupancy {
	lo, hi, _ := a.portWindow(s, n)
	in := func(p uint16) bool { return int(p) >= lo && int(p) <= hi }
	o := occupancy{tw: s.ports.tw, fin: s.ports.fin}
	for p := range bound {
		if in(p) {
			o.bound++
		}
	}
	o.used = o.bound
	rule := takeOver(n.settings, s.key.Src.IsLoopback() || s.key.Dst.Addr().IsLoopback())
	if rule.Delay == 0 { // settings from before porttrace read it
		rule.Delay = netns.DefaultTWReuseDelay * time.Millisecond
	}
	for k, x := range s.ports.m {
		o.live += int(x.live)
		port := uint16(k)
		if !n.ephemeral(port) || bound[port] || !in(port) {
			continue
		}
		if x.live == 0 && x.twDue != 0 {
			// The time-wait socket entered at second twDue-TimeWaitLen
			// (an orphan's timer is shorter, but it is never taken over).
			rule.FinWait2 = x.fin
			rule.Age = time.Duration(at-(int64(x.twDue)-summary.TimeWaitLen)) * time.Second
			if rule.Allowed() {
				o.reusable++
				continue
			}
		}
		o.used++
	}
	return o
}

// portWindow is the ports connect() searches for the space's sockets:
// the namespace's range, or, where an attempt of the last minute carried
// the socket's own IP_LOCAL_PORT_RANGE, what the kernel makes of it
// (inet_sk_get_local_port_range: each of the socket's bounds that lies
// inside the namespace's range replaces that bound). narrowed says that
// the socket's range narrowed it.
func (a *Aggregator) portWindow(s *space, n *nsState) (lo, hi int, narrowed bool) {
	lo, hi = n.settings.PortLow, n.settings.PortHigh
	r := s.sockRange
	if r.r == ([2]uint16{}) || r.last < a.now-60 {
		return lo, hi, false
	}
	if sl := int(r.r[0]); lo <= sl && sl <= hi {
		lo = sl
	}
	if sh := int(r.r[1]); lo <= sh && sh <= hi {
		hi = sh
	}
	return lo, hi, lo != n.settings.PortLow || hi != n.settings.PortHigh
}

// windowUsable is the ephemeral ports of [lo, hi]: the range minus the
// reserved ports.
func windowUsable(n *nsState, lo, hi int) int {
	c := 0
	for p := lo; p <= hi; p++ {
		if n.ephemeral(uint16(p)) {
			c++
		}
	}
	return c
}

// pool: every port held by a socket with the pool's address, whatever its
// destination, or by a listener on that address or the wildcard.
func (a *Aggregator) pool(k summary.SpaceKey, n *nsState, spaces []*space) occupancy {
	taken := map[uint16]bool{}
	var o occupancy
	for _, l := range n.listeners {
		ad := l.Addr.Addr().Unmap()
		if n.ephemeral(l.Addr.Port()) && (ad == k.Src || ad.IsUnspecified() && ad.Is4() == k.Src.Is4()) {
			taken[l.Addr.Port()] = true
		}
	}
	o.bound = len(taken)
	for _, s := range spaces {
		o.tw += s.ports.tw
		o.fin += s.ports.fin
		for pk, x := range s.ports.m {
			o.live += int(x.live)
			if n.ephemeral(uint16(pk)) {
				taken[uint16(pk)] = true
			}
		}
	}
	o.used = len(taken)
	return o
}

// sample computes every space's occupancy once per Tick, for the summary
// that follows and for the fill rate (each space's Used, once a second).
func (a *Aggregator) sample() {
	a.occ = a.occupancies()
	a.held = a.follower.held()
	for s, o := range a.occ {
		s.noteUsed(a.now, o.used)
	}
}
