package aggregate

import (
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/summary"
)

// TestClockStep: a step of the clock, either way, is taken out in
// constant time, counted, and figures go on from where they were. Issue
// 21: events 10 years apart across 10 spaces made Tick walk every second
// in between for every space (13 s; `report` of such a capture: 43 s
// before, 0.15 s after); a timestamp in 2116 ran past 60 s (`report`:
// killed at 90 s before, 0.12 s after); and after a backward step, rates
// read zero until the clock caught up.
func TestClockStep(t *testing.T) {
	for name, to := range map[string]time.Time{
		"10 years on": at(10).AddDate(10, 0, 0), "to 2116": time.Unix(0, 1<<62), "10 years back": at(10).AddDate(-10, 0, 0),
		"2 hours on": at(10).Add(2 * time.Hour), "2 hours back": at(10).Add(-2 * time.Hour), "from 1970": time.Unix(0, 0),
	} {
		t.Run(name, func(t *testing.T) {
			s := newStream(t, DefaultLimits)
			dst := func(i int) netip.AddrPort {
				return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}), 443)
			}
			for i := range 10 {
				s.churn(curl, dst(i), 20, 0, 5, 100*time.Millisecond)
			}
			before := s.space(s.summary(10), dst(0)).TimeWait
			done := make(chan *summary.Summary)
			go func() {
				s.a.Tick(to)
				// The node goes on at the new time: 30 connections a second.
				for sec := range 10 {
					for i := range 30 {
						c := s.open(to.Add(time.Duration(sec)*time.Second+time.Duration(i)*time.Millisecond), curl, dst(0), time.Microsecond)
						s.closeTW(to.Add(time.Duration(sec)*time.Second+time.Duration(i+1)*time.Millisecond), curl, c, dst(0))
					}
					s.a.Tick(to.Add(time.Duration(sec+1) * time.Second))
				}
				done <- s.a.Summary()
			}()
			var r *summary.Summary
			select {
			case r = <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("a step %s: still ticking after 10 s", name)
			}
			sp := s.space(r, dst(0))
			if r.Dropped.ClockSteps != 1 || r.Dropped.LastStep == 0 {
				t.Errorf("dropped %+v, want one clock step", r.Dropped)
			}
			// Live TIME_WAIT timers run on the monotonic clock: a wall
			// clock step does not free them. 100 from before, 300 since.
			if sp.Conns.S10 != 30 || sp.TimeWait != before+300 {
				t.Errorf("after the step: %.0f connections/s, %d TIME_WAIT (%d before); want 30/s and %d",
					sp.Conns.S10, sp.TimeWait, before, before+300)
			}
		})
	}
}

// TestNamespaceBound: however many namespaces events, socket tables and
// listings name, the aggregator keeps Limits.Namespaces and counts the
// rest (issue 21: a capture's rounds named ~876,000 namespaces and drove
// report to 1.15 GB; events each in its own namespace, 731 MB).
func TestNamespaceBound(t *testing.T) {
	l := Limits{Spaces: 64, Processes: 64, Sockets: 1 << 12, Namespaces: 100}
	a := New(t0, l, nil)
	var all []netns.Settings
	var tables []event.SocketTable
	for i := range 10_000 {
		all = append(all, netns.Settings{Inode: uint32(1_000_000 + i), PortLow: 32768, PortHigh: 60999, Reserved: "32768-60999"})
		tables = append(tables, event.SocketTable{Netns: uint32(2_000_000 + i), Time: t0, Sockets: []event.Socket{
			{Src: netip.MustParseAddrPort("10.0.0.1:40000"), Dst: netip.MustParseAddrPort("10.0.0.2:443"), Cookie: uint64(i + 1)}}})
	}
	a.SetNetns(all)
	a.BeginSync()
	a.Sync(tables)
	for i := range 10_000 {
		a.Add(&event.Event{Time: t0, Kind: event.State, OldState: event.Close, NewState: event.SynSent, Cookie: uint64(100_000 + i),
			Netns: uint32(3_000_000 + i), PID: 7, Family: syscall.AF_INET,
			Src: netip.MustParseAddrPort("10.0.0.1:0"), Dst: netip.MustParseAddrPort("10.0.0.2:443")})
	}
	a.Tick(t0.Add(time.Second))
	r := a.Summary()
	if len(a.ns) > l.Namespaces || r.Dropped.Namespaces != 30_000-uint64(l.Namespaces) {
		t.Errorf("%d namespaces kept (limit %d), %d dropped; want 29,900 dropped", len(a.ns), l.Namespaces, r.Dropped.Namespaces)
	}
	if len(r.Netns) > l.Namespaces || r.Dropped.String() == "" {
		t.Errorf("summary: %d namespaces, dropped %q", len(r.Netns), r.Dropped)
	}
}
