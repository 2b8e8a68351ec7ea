package aggregate

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
)

// TestTakeOverTable is tcp_twsk_unique (net/ipv4/tcp_ipv4.c, 6.13+) case
// by case: tcp_tw_reuse 0/1/2 × timestamps × a loopback address × age
// 0.5 s and 1.5 s (tcp_tw_reuse_delay 1 s) × the FIN_WAIT2 substate × a
// port already the socket's own (bind() before connect(): twp NULL).
//
// Without timestamps nothing is taken over. With a port of its own, any
// time-wait socket with timestamps is. In the port search, only these
// three: reuse 1 from anywhere, reuse 2 toward loopback, older than the
// delay, and never an orphan in FIN_WAIT2.
func TestTakeOverTable(t *testing.T) {
	search := map[string]bool{
		"reuse=1 ts lo=false age=1.5s fin=false": true,
		"reuse=1 ts lo=true age=1.5s fin=false":  true,
		"reuse=2 ts lo=true age=1.5s fin=false":  true,
	}
	n := 0
	for _, reuse := range []int{0, 1, 2} {
		for _, ts := range []bool{false, true} {
			for _, lo := range []bool{false, true} {
				for _, age := range []time.Duration{500 * time.Millisecond, 1500 * time.Millisecond} {
					for _, fin := range []bool{false, true} {
						for _, fixed := range []bool{false, true} {
							c := TakeOver{TWReuse: reuse, Timestamps: ts, Loopback: lo, FinWait2: fin, Age: age, Delay: time.Second, PortFixed: fixed}
							name := fmt.Sprintf("reuse=%d ts lo=%v age=%v fin=%v", reuse, lo, age, fin)
							want := ts && (fixed || search[name])
							if got := c.Allowed(); got != want {
								t.Errorf("%+v: taken over %v, want %v", c, got, want)
							}
							n++
						}
					}
				}
			}
		}
	}
	if n != 96 {
		t.Fatalf("%d cases", n)
	}
}

// twTable is a socket table of time-wait sockets on the first n ports of
// 40000-, toward upstream, in the given substate, entered at sec.
func twTable(tableAt time.Time, n int, state event.TCPState, left time.Duration) event.SocketTable {
	tb := event.SocketTable{Netns: testNetns, Time: tableAt}
	for i := range n {
		tb.Sockets = append(tb.Sockets, event.Socket{Src: netip.AddrPortFrom(src, uint16(40000+i)), Dst: upstream,
			State: uint8(state), TimeWait: true, Expires: left})
	}
	return tb
}

// TestOrphansAreUsed: time-wait sockets in the FIN_WAIT2 substate hold
// their ports whatever tcp_tw_reuse says, and are not TIME_WAIT; the same
// number in TIME_WAIT, old enough, are free to connect() with reuse on.
func TestOrphansAreUsed(t *testing.T) {
	for _, c := range []struct {
		state                          event.TCPState
		used, reusable, tw, fin, usedN int
	}{
		{event.FinWait2, 20, 0, 0, 20, 20},
		{event.TCPState(6), 0, 20, 20, 0, 0}, // TIME_WAIT
	} {
		a := New(t0, DefaultLimits, nil)
		a.SetNetns([]netns.Settings{{Inode: testNetns, PortLow: 40000, PortHigh: 40019, TWReuse: 1, Timestamps: 1, FinTimeout: 60, TWReuseDelay: 1000}})
		a.Tick(at(10))
		a.BeginSync()
		a.Sync([]event.SocketTable{twTable(at(10), 20, c.state, 50*time.Second)}) // entered 10 s ago
		a.Tick(at(11))
		r := a.Summary()
		sp := r.Spaces[0]
		if sp.Used != c.used || sp.Reusable != c.reusable || sp.TimeWait != c.tw || sp.FinWait2 != c.fin || sp.Usable != 20 {
			t.Errorf("%s: used %d reusable %d time_wait %d fin_wait2 %d of %d; want %d %d %d %d of 20",
				c.state, sp.Used, sp.Reusable, sp.TimeWait, sp.FinWait2, sp.Usable, c.used, c.reusable, c.tw, c.fin)
		}
		if r.Netns[0].TimeWait != 20 {
			t.Errorf("%s: the namespace counts %d time-wait sockets against tcp_max_tw_buckets, want 20", c.state, r.Netns[0].TimeWait)
		}
	}
}

// TestOrphansPresumedUntilNextTable: after a table showed orphans, new
// time-wait entries from events are taken for orphans (the event cannot
// tell), held for tcp_fin_timeout; after a table showed TIME_WAIT, for
// TIME_WAIT.
func TestOrphansPresumedUntilNextTable(t *testing.T) {
	for _, state := range []event.TCPState{event.FinWait2, 6} {
		s := newStream(t, DefaultLimits)
		s.a.SetNetns([]netns.Settings{{Inode: testNetns, PortLow: 40000, PortHigh: 40099, TWReuse: 1, Timestamps: 1, FinTimeout: 20}})
		s.port = 40049
		s.a.Tick(at(1))
		s.a.BeginSync()
		s.a.Sync([]event.SocketTable{twTable(at(1), 10, state, 10*time.Second)})
		for i := range 5 {
			c := s.open(at(2), curl, upstream, time.Microsecond)
			s.closeTW(at(2.5+float64(i)/10), curl, c, upstream)
		}
		sp := s.space(s.summary(5), upstream)
		orphan := state == event.FinWait2
		if orphan && (sp.FinWait2 != 15 || sp.Reusable != 0 || sp.Used != 15) || !orphan && (sp.TimeWait != 15 || sp.Reusable != 15) {
			t.Errorf("after a table of %s: fin_wait2 %d time_wait %d reusable %d used %d", state, sp.FinWait2, sp.TimeWait, sp.Reusable, sp.Used)
		}
		// Orphans go after tcp_fin_timeout (20 s), TIME_WAIT after 60 s.
		sp = s.space(s.summary(25), upstream)
		if orphan && sp.FinWait2 != 0 || !orphan && sp.TimeWait != 5 {
			t.Errorf("after a table of %s, at 25 s: fin_wait2 %d time_wait %d", state, sp.FinWait2, sp.TimeWait)
		}
	}
}

// TestMaxTWBuckets: past tcp_max_tw_buckets the kernel makes no
// time-wait socket: the ports are free at once, are no TIME_WAIT entries,
// the peak stays at the limit, and a new connection on such a port is not
// a "reused" time-wait socket (tcp_tw_reuse=0).
func TestMaxTWBuckets(t *testing.T) {
	s := newStream(t, DefaultLimits)
	s.a.SetNetns([]netns.Settings{{Inode: testNetns, PortLow: 40000, PortHigh: 40099, Timestamps: 1, MaxTWBuckets: 5}})
	s.a.Tick(at(0))
	s.churn(curl, upstream, 10, 0, 1, 10*time.Millisecond)
	sp := s.space(s.summary(1), upstream)
	if sp.TimeWait != 5 || sp.Used != 5 || sp.TotalTWIn != 5 || sp.UsedMax60 != 5 {
		t.Errorf("10 closes with tcp_max_tw_buckets 5: %d in TIME_WAIT, %d used (peak %d), %d entries; want 5 each", sp.TimeWait, sp.Used, sp.UsedMax60, sp.TotalTWIn)
	}
	// The kernel hands a freed port out again: not a take-over.
	s.port = 40005 - 1
	s.open(at(1.5), curl, upstream, time.Microsecond)
	if sp := s.space(s.summary(2), upstream); sp.Reused.S60 != 0 {
		t.Errorf("reused %v/s with tcp_tw_reuse=0", sp.Reused)
	}
}
