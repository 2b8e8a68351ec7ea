package aggregate

import (
	"syscall"

	"github.com/porttrace/porttrace/internal/window"
)

// TimeWaitLen is how long a port stays in TIME_WAIT: TCP_TIMEWAIT_LEN, fixed
// in the kernel.
const TimeWaitLen = 60

// maxProcsPerSpace bounds the processes remembered per port space; a space
// shared by more shows the busiest and a count of the rest.
const maxProcsPerSpace = 8

// errnos counts failures by errno.
type errnos map[syscall.Errno]*window.Counter

func (m errnos) add(sec int64, errno syscall.Errno) {
	c := m[errno]
	if c == nil {
		c = &window.Counter{}
		m[errno] = c
	}
	c.Add(sec, 1)
}

func (m errnos) merge(o errnos, sec int64) {
	for errno, c := range o {
		if m[errno] == nil {
			m[errno] = &window.Counter{}
		}
		m[errno].Merge(c, sec)
	}
}

// space is the state of one port space.
type space struct {
	key      SpaceKey
	conns    window.Counter // connection attempts (sockets entering SYN_SENT, or bind())
	fails    errnos
	twIn     window.Counter // ports entering TIME_WAIT
	tw       window.Expiry  // ports in TIME_WAIT, by the second they return
	live     int            // sockets holding a port, TIME_WAIT aside
	used     window.Gauge   // live + TIME_WAIT, each second: the fill rate
	closed   window.Counter // established connections that closed
	short    window.Counter // ... of which lived under a second
	lifetime durations
	latency  durations // port search
	procs    map[ProcKey]*window.Counter
	active   int64 // last second with an event
}

func newSpace(k SpaceKey) *space {
	return &space{key: k, fails: errnos{}, procs: map[ProcKey]*window.Counter{}}
}

// attribute counts a connection to a process; past the bound the busiest
// processes stay and newcomers go uncounted here (not in the totals).
func (s *space) attribute(sec int64, p ProcKey) {
	c := s.procs[p]
	if c == nil {
		if len(s.procs) >= maxProcsPerSpace {
			return
		}
		c = &window.Counter{}
		s.procs[p] = c
	}
	c.Add(sec, 1)
}

// tick ages the space to sec and samples its occupancy.
func (s *space) tick(sec int64) {
	s.tw.Advance(sec)
	s.used.Set(sec, s.live+s.tw.Size())
	for p, c := range s.procs {
		if c.Sum(sec, window.Span) == 0 {
			delete(s.procs, p)
		}
	}
}

// merge folds o into s: an evicted space's figures go to "other".
func (s *space) merge(o *space, sec int64) {
	s.conns.Merge(&o.conns, sec)
	s.fails.merge(o.fails, sec)
	s.twIn.Merge(&o.twIn, sec)
	s.tw.Merge(&o.tw, sec)
	s.live += o.live
	s.closed.Merge(&o.closed, sec)
	s.short.Merge(&o.short, sec)
	s.lifetime.Merge(&o.lifetime)
	s.latency.Merge(&o.latency)
	s.active = max(s.active, o.active)
}
