package aggregate

import (
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/netns"
)

// TestGoneNamespace: a namespace that goes frees its ports at once, keeps
// its rows as history for GoneFor (a job that exhausted its pod's ports and
// ended is still shown), then takes them with it; one replaced by a new
// namespace under the same inode is forgotten at once.
func TestGoneNamespace(t *testing.T) {
	host := netns.Settings{Inode: 4026531840, Cookie: 9, PortLow: 32768, PortHigh: 60999}
	s := newStream(t, DefaultLimits)
	s.a.SetNetns([]netns.Settings{{Inode: testNetns, Cookie: 1, PortLow: 40000, PortHigh: 40009}})
	s.churn(nginx1, upstream, 10, 1, 2, time.Millisecond) // 10 ports in TIME_WAIT: all of them
	for range 5 {
		s.fail(at(2.5), nginx1, upstream, syscall.EADDRNOTAVAIL)
	}
	if sp := s.space(s.summary(3), upstream); sp.Used != 10 || !sp.Exhausted || sp.Gone {
		t.Fatalf("before: used %d, exhausted %v, gone %v; want 10, true, false", sp.Used, sp.Exhausted, sp.Gone)
	}

	s.a.SetNetns(nil) // nothing listed: nothing learnt
	if sp := s.space(s.summary(3), upstream); sp.Gone || sp.Used != 10 {
		t.Fatalf("after an empty listing: gone %v, used %d; want false, 10", sp.Gone, sp.Used)
	}
	s.a.SetNetns([]netns.Settings{host}) // the namespace is gone, at second 3 (the last Tick)
	r := s.summary(4)
	sp := s.space(r, upstream)
	if !sp.Gone || sp.Used != 0 || sp.TimeWait != 0 || sp.ETA != nil || sp.Exhausted || sp.TotalFailures != 5 || sp.TotalConns != 15 {
		t.Errorf("gone: gone %v, used %d, TIME_WAIT %d, ETA %v, exhausted %v, %d failures, %d attempts; want true, 0, 0, nil, false, 5, 15",
			sp.Gone, sp.Used, sp.TimeWait, sp.ETA, sp.Exhausted, sp.TotalFailures, sp.TotalConns)
	}
	if len(r.Netns) != 2 || r.Netns[0].Gone || !r.Netns[1].Gone {
		t.Errorf("namespaces %+v: want the host's, and the test's gone", r.Netns)
	}
	if got := len(s.summary(3 + GoneFor.Seconds() - 1).Spaces); got != 1 {
		t.Errorf("%d spaces a second before GoneFor, want 1", got)
	}
	if r := s.summary(3 + GoneFor.Seconds()); len(r.Spaces) != 0 || len(r.Netns) != 1 {
		t.Errorf("after GoneFor: %d spaces, %d namespaces; want none and the host's", len(r.Spaces), len(r.Netns))
	}

	// A namespace never listed is gone only once two listings missed it:
	// the first may have been read before it was made.
	s = newStream(t, DefaultLimits)
	s.a = New(t0, DefaultLimits, func(uint32, uint64) cgroup.Process { return cgroup.Process{} })
	s.a.SetNetns([]netns.Settings{host})
	s.fail(at(1), nginx1, upstream, syscall.EADDRNOTAVAIL)
	if !s.a.Unknown() {
		t.Errorf("a namespace with events and no settings is not unknown")
	}
	s.a.SetNetns([]netns.Settings{host})
	if sp := s.space(s.summary(2), upstream); sp.Gone || !s.a.Unknown() {
		t.Errorf("missed once: gone %v, unknown %v; want false, true", sp.Gone, s.a.Unknown())
	}
	s.a.SetNetns([]netns.Settings{host})
	if sp := s.space(s.summary(3), upstream); !sp.Gone || s.a.Unknown() || sp.TotalFailures != 1 {
		t.Errorf("missed twice: gone %v, unknown %v, %d failures; want true, false (nothing left to read), 1", sp.Gone, s.a.Unknown(), sp.TotalFailures)
	}

	// A new namespace under the same inode replaces the old one at once.
	s = newStream(t, DefaultLimits)
	s.a.SetNetns([]netns.Settings{{Inode: testNetns, Cookie: 1, PortLow: 40000, PortHigh: 40009}})
	s.fail(at(1), nginx1, upstream, syscall.EADDRNOTAVAIL)
	s.a.SetNetns([]netns.Settings{host})
	s.a.SetNetns([]netns.Settings{host, {Inode: testNetns, Cookie: 2, PortLow: 40000, PortHigh: 40009}})
	if r := s.summary(2); len(r.Spaces) != 0 || len(r.Netns) != 2 || r.Netns[1].Gone || r.Netns[1].Cookie != 2 {
		t.Errorf("replaced: %d spaces, namespaces %+v; want none, the host's and the new one", len(r.Spaces), r.Netns)
	}
}
