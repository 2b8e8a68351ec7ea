package aggregate

import (
	"net/netip"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/summary"
)

func TestSyncSeedsAndReconciles(t *testing.T) {
	s := newStream(t, DefaultLimits)
	tw := func(port uint16, expires time.Duration) event.Socket {
		return event.Socket{Src: netip.AddrPortFrom(src, port), Dst: upstream, State: 6, TimeWait: true, Expires: expires, Cookie: uint64(port)}
	}
	var socks []event.Socket
	for i := 0; i < 30; i++ {
		socks = append(socks, tw(40000+uint16(i), 20*time.Second))
	}
	for i := 0; i < 5; i++ {
		socks = append(socks, event.Socket{Src: netip.AddrPortFrom(src, 40050+uint16(i)), Dst: upstream, State: 1, Cookie: 50 + uint64(i)})
	}
	// Not ephemeral: a server's accepted socket and a fixed bind.
	socks = append(socks, event.Socket{Src: upstream, Dst: netip.AddrPortFrom(src, 40070), State: 1, Cookie: 90},
		event.Socket{Src: netip.AddrPortFrom(src, 999), Dst: upstream, State: 1, Cookie: 91})
	s.a.BeginSync()
	s.a.Sync([]event.SocketTable{{Netns: testNetns, Time: at(1), Sockets: socks}})

	r := s.space(s.summary(1), upstream)
	if r.TimeWait != 30 || r.Live != 5 || len(s.summary(1).Spaces) != 1 {
		t.Fatalf("seeded: TIME_WAIT %d live %d spaces %d, want 30, 5, 1", r.TimeWait, r.Live, len(s.summary(1).Spaces))
	}
	// A TIME_WAIT entry the socket table already counted: the same port.
	s.add(s.ev(at(1.1), curl, event_TimeWait, 40007, upstream))
	if r := s.space(s.summary(2), upstream); r.TimeWait != 30 {
		t.Errorf("TIME_WAIT %d after an entry the table had, want 30", r.TimeWait)
	}
	if r := s.space(s.summary(21.5), upstream); r.TimeWait != 0 {
		t.Errorf("TIME_WAIT from the socket table must expire on its own timer (20 s): %d left", r.TimeWait)
	}
	// A new one.
	s.add(s.ev(at(22), curl, event_TimeWait, 8, upstream))
	// A socket of the table closes: porttrace saw its close.
	s.state(at(22), curl, 50, upstream, event_Established, event_Close)
	r = s.space(s.summary(23), upstream)
	if r.TimeWait != 1 || r.Live != 4 || r.TotalTWIn != 2 {
		t.Errorf("after events: TIME_WAIT %d live %d entries %d, want 1, 4, 2", r.TimeWait, r.Live, r.TotalTWIn)
	}
	// A followed socket whose close was lost, and one opened after the
	// next dump began: only the first is dropped.
	lost := s.open(at(24), curl, upstream, time.Microsecond)
	late := s.open(at(26), curl, upstream, time.Microsecond)
	s.a.BeginSync()
	s.a.Sync([]event.SocketTable{{Netns: testNetns, Time: at(25), Sockets: socks[31:35]}})
	r = s.space(s.summary(27), upstream)
	if r.Live != 5 || r.TimeWait != 0 {
		t.Errorf("after resync: live %d TIME_WAIT %d, want 4 from the table + 1 newer, 0", r.Live, r.TimeWait)
	}
	_, lostKept := s.a.socks[lost]
	_, lateKept := s.a.socks[late]
	if lostKept || !lateKept {
		t.Errorf("resync dropped the wrong socket")
	}
}

// TestSyncDuringEvents: events that arrive while the tables are read are
// neither lost nor doubled, whether or not the dump saw them.
func TestSyncDuringEvents(t *testing.T) {
	s := newStream(t, DefaultLimits)
	a := s.open(at(1), curl, upstream, time.Microsecond)
	b := s.open(at(1), curl, upstream, time.Microsecond)
	s.a.BeginSync()
	s.closeTW(at(2), curl, a, upstream) // the dump saw a in TIME_WAIT
	s.closeTW(at(2), curl, b, upstream) // the dump saw b still open
	c := s.open(at(2), curl, upstream, time.Microsecond)
	s.state(at(2.1), curl, c, upstream, event_Established, event_Close) // the dump saw c open
	s.a.Sync([]event.SocketTable{{Netns: testNetns, Time: at(1.5), Sockets: []event.Socket{
		{Src: netip.AddrPortFrom(src, 40001), Dst: upstream, State: 6, TimeWait: true, Expires: 59 * time.Second, Cookie: a},
		{Src: netip.AddrPortFrom(src, 40002), Dst: upstream, State: 1, Cookie: b},
		{Src: netip.AddrPortFrom(src, 40003), Dst: upstream, State: 1, Cookie: c},
	}}})
	r := s.space(s.summary(3), upstream)
	if r.TimeWait != 2 || r.Live != 0 {
		t.Errorf("TIME_WAIT %d live %d, want 2 (a and b) and 0", r.TimeWait, r.Live)
	}
	// a's TIME_WAIT event again (a late duplicate) changes nothing.
	s.add(s.ev(at(3), curl, event_TimeWait, a, upstream))
	if r := s.space(s.summary(3), upstream); r.TimeWait != 2 {
		t.Errorf("TIME_WAIT %d after a duplicate, want 2", r.TimeWait)
	}
}

// TestOtherIsReconciled: with the space table full, the "other" row neither
// grows with each socket table nor keeps sockets that are gone.
func TestOtherIsReconciled(t *testing.T) {
	s := newStream(t, Limits{Spaces: 1, Processes: 16, Sockets: 100})
	s.open(at(1), curl, upstream, time.Microsecond) // fills the table
	far := netip.MustParseAddrPort("10.0.0.9:443")
	snap := []event.Socket{
		{Src: netip.AddrPortFrom(src, 40010), Dst: far, State: 6, TimeWait: true, Expires: 50 * time.Second, Cookie: 10},
		{Src: netip.AddrPortFrom(src, 40011), Dst: far, State: 1, Cookie: 11},
	}
	other := func(r *summary.Summary) *summary.SpaceSummary {
		for i := range r.Spaces {
			if r.Spaces[i].Other {
				return &r.Spaces[i]
			}
		}
		return &summary.SpaceSummary{}
	}
	for i := 0; i < 3; i++ {
		s.a.BeginSync()
		s.a.Sync([]event.SocketTable{{Netns: testNetns, Time: at(2 + float64(i)), Sockets: snap}})
	}
	if o := other(s.summary(5)); o.TimeWait != 1 || o.Live != 1 {
		t.Errorf("other after 3 socket tables: TIME_WAIT %d live %d, want 1 and 1", o.TimeWait, o.Live)
	}
	s.a.BeginSync()
	s.a.Sync([]event.SocketTable{{Netns: testNetns, Time: at(6), Sockets: nil}})
	if o := other(s.summary(7)); o.TimeWait != 0 || o.Live != 0 {
		t.Errorf("other after its sockets went: TIME_WAIT %d live %d, want 0", o.TimeWait, o.Live)
	}
}
