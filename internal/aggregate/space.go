package aggregate

import (
	"syscall"
	"time"

	"github.com/porttrace/porttrace/internal/summary"
	"github.com/porttrace/porttrace/internal/window"
)

// maxProcsPerSpace bounds the processes remembered per port space; a space
// shared by more keeps those with the most failures, then connections, then
// the most recent.
const maxProcsPerSpace = 8

// failure is one kind of failed call: its errno, and whether it means that
// no port was left (the port search failed, or a bind() pool was empty).
type failure struct {
	errno      syscall.Errno
	exhaustion bool
}

// failures counts failed calls by kind.
type failures map[failure]*window.Counter

func (m failures) add(sec int64, f failure) {
	c := m[f]
	if c == nil {
		c = &window.Counter{}
		m[f] = c
	}
	c.Add(sec, 1)
}

func (m failures) merge(o failures, sec int64) {
	for f, c := range o {
		if m[f] == nil {
			m[f] = &window.Counter{}
		}
		m[f].Merge(c, sec)
	}
}

// sum is the count over the last w seconds of the failures that match.
func (m failures) sum(now int64, w int, match func(failure) bool) uint64 {
	var n uint64
	for f, c := range m {
		if match(f) {
			n += c.Sum(now, w)
		}
	}
	return n
}

// procStat is one process's share of a port space.
type procStat struct {
	conns, fails window.Counter
	held         int // sockets of a socket table it owns here
	active       int64
}

func (p *procStat) weight(now int64) [3]int64 {
	return [3]int64{int64(p.fails.Recent(now, window.Span)), int64(p.conns.Recent(now, window.Span)) + int64(p.held), p.active}
}

// space is the state of one port space.
type space struct {
	key      summary.SpaceKey
	id       uint64         // tells its ports apart once folded into "other"
	conns    window.Counter // connection attempts
	bound    window.Counter // ... of which from a socket bound by bind() first
	fails    failures
	twIn     window.Counter // ports entering TIME_WAIT
	ports    holds
	used     window.Gauge   // Used, each second: the fill rate
	closed   window.Counter // established connections that closed
	short    window.Counter // ... of which lived under a second
	lifetime window.Sketch
	latency  window.Sketch // port search
	procs    map[ProcKey]*procStat
	active   int64 // last second with an event
	// orphans: most of the time-wait sockets the last socket table listed
	// were orphans (substate FIN_WAIT2), so new ones are taken for orphans
	// until the next table.
	orphans bool
	// peerCloseWait is the peer's sockets in CLOSE_WAIT toward this space
	// in the last socket table, where the peer is in the same namespace.
	peerCloseWait int
	// firstSec and firstUsed are the first occupancy sampled, for a fill
	// rate before the gauge spans enough seconds for its slope.
	firstSec, firstUsed int64
	sampled             bool
	// sockRange is the last IP_LOCAL_PORT_RANGE an attempt carried.
	sockRange sockRange
	// lastFull is what it held when a call last failed for want of a
	// port.
	lastFull exhaustionMark
}

// exhaustionMark is what a port space held when calls failed for want of
// a port: the ports Used as the model saw them at the first such failure
// of the second of the last one. The sockets that held them may be gone
// by the next sample: closed by a reset, or time-wait sockets grown old
// enough for tcp_tw_reuse.
type exhaustionMark struct {
	n    uint64 // failures in all
	at   int64  // the second of the last
	used int
}

// merge keeps the later of two marks (an evicted space's, into "other").
func (m *exhaustionMark) merge(o exhaustionMark) {
	if o.n > 0 && (m.n == 0 || o.at >= m.at) {
		m.at, m.used = o.at, o.used
	}
	m.n += o.n
}

// sockRange is a socket's own IP_LOCAL_PORT_RANGE, who set it, and the
// second of the last attempt that carried it.
type sockRange struct {
	r    [2]uint16
	proc ProcKey
	last int64
}

// noteUsed records the occupancy sampled at sec.
func (s *space) noteUsed(sec int64, used int) {
	if !s.sampled {
		s.firstSec, s.firstUsed, s.sampled = sec, int64(used), true
	}
	s.used.Set(sec, used)
}

// fillSince is the fill rate since the first sample, when at least a
// second has passed since; what a short observation has to go on.
func (s *space) fillSince(now int64) (float64, bool) {
	cur, ok := s.used.Max(now, 1)
	if !s.sampled || now-s.firstSec < 1 || now-s.firstSec > 10 || !ok {
		return 0, false
	}
	return float64(int64(cur)-s.firstUsed) / float64(now-s.firstSec), true
}

func newSpace(k summary.SpaceKey, id uint64, timeWaits *int) *space {
	s := &space{key: k, id: id, fails: failures{}, procs: map[ProcKey]*procStat{}}
	s.ports.init(timeWaits)
	return s
}

// portKey is where a port of this space is held, in this space or, once
// folded, in "other".
func (s *space) portKey(port uint16) uint64 { return portKeyFor(s.id, port) }

func portKeyFor(origin uint64, port uint16) uint64 { return origin<<16 | uint64(port) }

// proc is p's share of the space, made room for if the space keeps too
// many: the one with the fewest failures, then connections, then the
// least recent, gives way. Nil if p weighs less than all of them.
func (s *space) proc(now int64, p ProcKey, failing bool) *procStat {
	if st := s.procs[p]; st != nil {
		st.active = now
		return st
	}
	if len(s.procs) >= maxProcsPerSpace {
		var weakest ProcKey
		var low [3]int64
		first := true
		for k, st := range s.procs {
			if w := st.weight(now); first || less(w, low) {
				weakest, low, first = k, w, false
			}
		}
		if failing && low[0] > 0 || !failing && (low[0] > 0 || low[1] > 1) {
			return nil
		}
		delete(s.procs, weakest)
	}
	st := &procStat{active: now}
	s.procs[p] = st
	return st
}

func less(a, b [3]int64) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// attempt counts a connection attempt by p.
func (s *space) attempt(sec int64, p ProcKey, bound bool) {
	s.conns.Add(sec, 1)
	if bound {
		s.bound.Add(sec, 1)
	}
	if st := s.proc(sec, p, false); st != nil {
		st.conns.Add(sec, 1)
	}
}

// fail counts a failed call by p.
func (s *space) fail(sec int64, p ProcKey, f failure) {
	s.fails.add(sec, f)
	if st := s.proc(sec, p, true); st != nil {
		st.fails.Add(sec, 1)
	}
}

// closedAfter counts an established connection that closed at sec after
// living life.
func (s *space) closedAfter(sec int64, life time.Duration) {
	s.closed.Add(sec, 1)
	if life < time.Second {
		s.short.Add(sec, 1)
	}
	s.lifetime.Add(sec, life)
}

// tick ages the space to sec.
func (s *space) tick(sec int64, unbind func(k uint64)) {
	s.ports.expire(sec, unbind)
	for p, st := range s.procs {
		if st.held == 0 && st.conns.Recent(sec, window.Span) == 0 && st.fails.Recent(sec, window.Span) == 0 {
			delete(s.procs, p)
		}
	}
}

// merge folds o into s: an evicted space's figures go to "other".
func (s *space) merge(o *space, sec int64) {
	s.conns.Merge(&o.conns, sec)
	s.bound.Merge(&o.bound, sec)
	s.fails.merge(o.fails, sec)
	s.twIn.Merge(&o.twIn, sec)
	s.ports.merge(&o.ports, sec)
	s.closed.Merge(&o.closed, sec)
	s.short.Merge(&o.short, sec)
	s.lifetime.Merge(&o.lifetime)
	s.latency.Merge(&o.latency)
	s.active = max(s.active, o.active)
	s.lastFull.merge(o.lastFull)
}
