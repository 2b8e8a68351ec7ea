package aggregate

import (
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/summary"
)

// A synthetic event stream, shaped as the tracer delivers it.

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

const testNetns = 4026532177

var (
	src      = netip.MustParseAddr("127.0.0.1")
	upstream = netip.MustParseAddrPort("127.0.0.1:8080")
)

type stream struct {
	t      *testing.T
	a      *Aggregator
	cookie uint64
	port   uint16
	ports  map[uint64]uint16 // each socket's port, by cookie
}

func newStream(t *testing.T, limits Limits) *stream {
	a := New(t0, limits, func(uint32, uint64) cgroup.Process { return cgroup.Process{} })
	a.SetNetns([]netns.Settings{{Inode: testNetns, PortLow: 40000, PortHigh: 40099, TWReuse: 0}})
	return &stream{t: t, a: a, cookie: 1000, port: 39999, ports: map[uint64]uint16{}}
}

type who struct {
	pid  uint32
	comm string
}

var nginx1, nginx2, curl = who{812, "nginx"}, who{813, "nginx"}, who{900, "curl"}

// ev is an event of the socket cookie, from its port if it has one.
func (s *stream) ev(t time.Time, w who, kind event.Kind, cookie uint64, dst netip.AddrPort) event.Event {
	port, ok := s.ports[cookie]
	if !ok {
		port = uint16(cookie)
	}
	return event.Event{Time: t, Kind: kind, Cookie: cookie, Netns: testNetns, TID: w.pid, PID: w.pid,
		Comm: event.MakeComm(w.comm), Family: syscall.AF_INET, Src: netip.AddrPortFrom(src, port), Dst: dst}
}

func (s *stream) add(e event.Event) { s.a.Add(&e) }

func (s *stream) state(t time.Time, w who, cookie uint64, dst netip.AddrPort, from, to event.TCPState) {
	e := s.ev(t, w, event.State, cookie, dst)
	e.OldState, e.NewState = from, to
	s.add(e)
}

// open is a successful connect(): it returns the socket's cookie.
func (s *stream) open(t time.Time, w who, dst netip.AddrPort, latency time.Duration) uint64 {
	s.cookie++
	s.port++
	s.ports[s.cookie] = 0 // no port before the search
	s.state(t, w, s.cookie, dst, event.Close, event.SynSent)
	s.ports[s.cookie] = s.port
	alloc := s.ev(t, w, event.Alloc, s.cookie, dst)
	alloc.Latency = latency
	s.add(alloc)
	s.state(t, w, s.cookie, dst, event.SynSent, event.Established)
	return s.cookie
}

// closeTW is an active close whose port goes to TIME_WAIT.
func (s *stream) closeTW(t time.Time, w who, cookie uint64, dst netip.AddrPort) {
	s.add(s.ev(t, w, event.TimeWait, cookie, dst))
}

// fail is a connect() attempt that failed: for want of a port
// (EADDRNOTAVAIL, as the tracepoint backend reports it) or in the
// handshake (the socket's error).
func (s *stream) fail(t time.Time, w who, dst netip.AddrPort, errno syscall.Errno) {
	s.cookie++
	s.ports[s.cookie] = 0
	s.state(t, w, s.cookie, dst, event.Close, event.SynSent)
	e := s.ev(t, w, event.State, s.cookie, dst)
	e.OldState, e.NewState, e.Errno = event.SynSent, event.Close, errno
	if errno == syscall.EADDRNOTAVAIL {
		e.Flags = event.Searched
	}
	s.add(e)
}

// churn opens and closes n connections per second from w to dst over
// seconds [from, to), each living `life`.
func (s *stream) churn(w who, dst netip.AddrPort, perSec int, from, to float64, life time.Duration) {
	for sec := from; sec < to; sec++ {
		for i := 0; i < perSec; i++ {
			start := at(sec + float64(i)/float64(perSec)/2)
			c := s.open(start, w, dst, 10*time.Microsecond)
			s.closeTW(start.Add(life), w, c, dst)
		}
	}
}

func (s *stream) summary(sec float64) *summary.Summary {
	s.a.Tick(at(sec))
	return s.a.Summary()
}

func (s *stream) space(r *summary.Summary, dst netip.AddrPort) *summary.SpaceSummary {
	s.t.Helper()
	for i := range r.Spaces {
		if r.Spaces[i].Key.Dst == dst && !r.Spaces[i].Other {
			return &r.Spaces[i]
		}
	}
	s.t.Fatalf("no port space toward %s in %+v", dst, r.Spaces)
	return nil
}

// Short names for the event constants the tests use most.
const (
	event_Established = event.Established
	event_Close       = event.Close
	event_TimeWait    = event.TimeWait
	event_Bind        = event.Bind
)
