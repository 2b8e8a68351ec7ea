package aggregate

import (
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/summary"
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

// TestETAUneven: 20 of 100 used, filling at 5/s: 16 s (not 20, the
// whole space over the rate, nor 4, what is used over it).
func TestETAUneven(t *testing.T) {
	s := newStream(t, DefaultLimits)
	s.a.Tick(at(0))
	for sec := 0; sec < 4; sec++ {
		s.churn(curl, upstream, 5, float64(sec), float64(sec+1), 10*time.Millisecond)
		s.a.Tick(at(float64(sec + 1)))
	}
	r := s.space(s.summary(4), upstream)
	if r.Used != 20 || r.ETA == nil {
		t.Fatalf("used %d ETA %v: want 20 and an estimate", r.Used, r.ETA)
	}
	near(t, "fill/s", r.FillRate, 5, 1e-9)
	near(t, "ETA", *r.ETA, 16, 1e-9)
}

// TestETAShortObservation: three seconds seen, 4 ports a second filling:
// an ETA from what was seen.
func TestETAShortObservation(t *testing.T) {
	s := newStream(t, DefaultLimits)
	s.a.Tick(at(0))
	for sec := 0; sec < 3; sec++ {
		s.churn(curl, upstream, 4, float64(sec), float64(sec+1), 10*time.Millisecond)
		s.a.Tick(at(float64(sec + 1)))
	}
	r := s.space(s.summary(3), upstream)
	if r.ETA == nil || r.FillRate != 4 {
		t.Fatalf("after 3 s at 4/s: fill %v ETA %v", r.FillRate, r.ETA)
	}
	near(t, "ETA", *r.ETA, float64(100-12)/4, 1e-9)
}

// TestNoETAWhenEveryAttemptFails: ports filled earlier, then every
// attempt times out: no ETA extrapolated from the earlier successes.
func TestNoETAWhenEveryAttemptFails(t *testing.T) {
	s := newStream(t, DefaultLimits)
	s.a.Tick(at(0))
	for sec := 0; sec < 8; sec++ {
		s.churn(curl, upstream, 5, float64(sec), float64(sec+1), 10*time.Millisecond)
		s.a.Tick(at(float64(sec + 1)))
	}
	if r := s.space(s.summary(8), upstream); r.ETA == nil {
		t.Fatalf("filling: no ETA")
	}
	for sec := 8; sec < 10; sec++ {
		for range 5 {
			s.fail(at(float64(sec)+0.2), curl, upstream, syscall.ETIMEDOUT)
		}
		s.a.Tick(at(float64(sec + 1)))
	}
	// The 10 s slope still rises (5 to 40 ports); the last seconds' every
	// attempt failed.
	if r := s.space(s.summary(10), upstream); r.ETA != nil || r.Exhausted || r.FillRate <= 0 {
		t.Errorf("every attempt timing out: ETA %v exhausted %v fill %v", r.ETA, r.Exhausted, r.FillRate)
	}
}

// TestBindPoolAutobindReuse: with ip_autobind_reuse=1 a pool whose ports
// are in TIME_WAIT still hands them out: not exhausted while every call
// succeeds; a failed call is exhaustion whatever the setting.
func TestBindPoolAutobindReuse(t *testing.T) {
	pool := func(autobind int, failed bool) *summary.SpaceSummary {
		s := newStream(t, DefaultLimits)
		s.a.SetNetns([]netns.Settings{{Inode: testNetns, PortLow: 40000, PortHigh: 40009, Timestamps: 1, AutobindReuse: autobind}})
		dst := netip.MustParseAddrPort("127.0.0.2:8080")
		for range 10 {
			s.cookie++
			s.port++
			s.ports[s.cookie] = s.port
			syn := s.ev(at(1), nginx1, event.State, s.cookie, dst)
			syn.OldState, syn.NewState, syn.Flags = event.Close, event.SynSent, event.Bound
			s.add(syn)
			tw := s.ev(at(1.5), nginx1, event.TimeWait, s.cookie, dst)
			tw.Flags = event.Bound
			s.add(tw)
		}
		if failed {
			e := s.ev(at(2), nginx1, event.Bind, 1, netip.AddrPort{})
			e.Errno, e.Src = syscall.EADDRINUSE, netip.AddrPortFrom(src, 0)
			s.add(e)
		}
		r := s.summary(3)
		if c := s.space(r, dst); c.Exhausted || c.Used != 10 {
			t.Errorf("connect space of bound sockets: used %d exhausted %v; its callers make no port search", c.Used, c.Exhausted)
		}
		for i := range r.Spaces {
			if r.Spaces[i].Key.IsBindPool() {
				return &r.Spaces[i]
			}
		}
		t.Fatal("no pool")
		return nil
	}
	for _, c := range []struct {
		autobind  int
		failed    bool
		exhausted bool
	}{{1, false, false}, {1, true, true}, {0, false, true}} {
		p := pool(c.autobind, c.failed)
		if p.Exhausted != c.exhausted || p.Used != 10 || !c.exhausted && p.ETA != nil && *p.ETA == 0 {
			t.Errorf("ip_autobind_reuse=%d failed %v: used %d exhausted %v ETA %v, want exhausted %v", c.autobind, c.failed, p.Used, p.Exhausted, p.ETA, c.exhausted)
		}
	}
}

// TestProcessCount: 17 processes in one space: 8 listed, 17 counted; the
// busiest process now has the smaller total and comes first in the
// process table.
func TestProcessCount(t *testing.T) {
	s := newStream(t, DefaultLimits)
	for i := range 17 {
		c := s.open(at(3), who{uint32(2000 + i), "curl-like"}, upstream, time.Microsecond)
		s.closeTW(at(3.1), who{uint32(2000 + i), "curl-like"}, c, upstream)
	}
	old, busy := who{3000, "old"}, who{3001, "busy"}
	for range 30 {
		c := s.open(at(0.5), old, upstream, time.Microsecond)
		s.closeTW(at(0.6), old, c, upstream)
	}
	for range 5 {
		c := s.open(at(11), busy, upstream, time.Microsecond)
		s.closeTW(at(11.1), busy, c, upstream)
	}
	r := s.summary(12)
	sp := s.space(r, upstream)
	if len(sp.Processes) != 8 || sp.ProcessCount != 19 {
		t.Errorf("%d processes listed, %d counted; want 8 and 19", len(sp.Processes), sp.ProcessCount)
	}
	if r.Processes[0].PID != busy.pid || r.Processes[0].Total != 5 {
		t.Errorf("first process %+v, want the busiest now (%d, 5 in all) before the one with 30 a minute ago", r.Processes[0], busy.pid)
	}
}

// TestListenersInRange: a listener on 0.0.0.0 and one on [::] (dual
// stack: it holds the IPv4 port too) inside the range are skipped by
// connect() for every destination; a listener on another port outside
// the range takes nothing.
func TestListenersInRange(t *testing.T) {
	a := New(t0, DefaultLimits, nil)
	a.SetNetns([]netns.Settings{{Inode: testNetns, PortLow: 40000, PortHigh: 40019, Timestamps: 1}})
	tb := event.SocketTable{Netns: testNetns, Time: at(1), Sockets: []event.Socket{
		{Src: netip.MustParseAddrPort("0.0.0.0:40003"), State: 10},
		{Src: netip.MustParseAddrPort("[::]:40007"), State: 10},
		{Src: netip.MustParseAddrPort("0.0.0.0:8080"), State: 10},
		{Src: netip.AddrPortFrom(src, 40011), Dst: upstream, State: 1, Cookie: 5},
	}}
	a.Tick(at(1))
	a.BeginSync()
	a.Sync([]event.SocketTable{tb})
	a.Tick(at(2))
	sp := a.Summary().Spaces[0]
	if sp.Bound != 2 || sp.Used != 3 || sp.Live != 1 {
		t.Errorf("bound %d used %d live %d: want the two listeners in the range bound, 3 used", sp.Bound, sp.Used, sp.Live)
	}
}

// TestConflictHolderSameNamespace: a bind() conflict on port 40005 names
// the holder of that port in its own namespace, never a socket on the
// same port in another.
func TestConflictHolderSameNamespace(t *testing.T) {
	s := newStream(t, DefaultLimits)
	other := uint32(4026532999)
	s.a.SetNetns([]netns.Settings{{Inode: testNetns, PortLow: 40000, PortHigh: 40099}, {Inode: other, PortLow: 40000, PortHigh: 40099}})
	s.port = 40004
	c := s.open(at(1), curl, upstream, time.Microsecond) // port 40005 in testNetns
	_ = c
	bind := func(ns uint32) *summary.Conflict {
		e := s.ev(at(2), nginx1, event.Bind, 99, netip.AddrPort{})
		e.Netns, e.Flags, e.Errno, e.Src = ns, event.FixedPort, syscall.EADDRINUSE, netip.MustParseAddrPort("0.0.0.0:40005")
		s.add(e)
		for _, n := range s.summary(3).Netns {
			if n.Inode == ns && len(n.Conflicts) == 1 {
				return &n.Conflicts[0]
			}
		}
		return nil
	}
	if cf := bind(other); cf == nil || cf.Holder != nil {
		t.Errorf("conflict in another namespace %+v: names curl, whose port is in %d", cf, testNetns)
	}
	if cf := bind(testNetns); cf == nil || cf.Holder == nil || cf.Holder.PID != curl.pid {
		t.Errorf("conflict %+v, want curl as the holder", cf)
	}
}

// TestBoundConnectNotAvailable: connect() of a socket bound before it
// that fails with EADDRNOTAVAIL (its 4-tuple taken) is a failure of the
// pool's design, not of the port search: not exhaustion.
func TestBoundConnectNotAvailable(t *testing.T) {
	s := newStream(t, DefaultLimits)
	e := s.ev(at(1), curl, event.Connect, 7, upstream)
	e.Errno, e.Flags = syscall.EADDRNOTAVAIL, event.Searched|event.Bound
	s.add(e)
	sp := s.space(s.summary(2), upstream)
	if sp.Errno("EADDRNOTAVAIL") != 1 || sp.Exhaustion60() != 0 || sp.Exhausted {
		t.Errorf("failures %+v exhausted %v: one EADDRNOTAVAIL, not exhaustion", sp.Failures, sp.Exhausted)
	}
}

// TestIPv6NoSource: an IPv6 event without a source address goes to the
// unspecified IPv6 source, not IPv4's.
func TestIPv6NoSource(t *testing.T) {
	s := newStream(t, DefaultLimits)
	dst := netip.MustParseAddrPort("[::1]:8080")
	e := s.ev(at(1), curl, event.Connect, 8, dst)
	e.Family, e.Src, e.Errno = syscall.AF_INET6, netip.AddrPort{}, syscall.EADDRNOTAVAIL
	s.add(e)
	sp := s.space(s.summary(2), dst)
	if sp.Src != "::" || sp.NoAddress60() != 1 || sp.Exhausted {
		t.Errorf("src %q, %d without an address, exhausted %v", sp.Src, sp.NoAddress60(), sp.Exhausted)
	}
}

// TestSettingsChangedMidRun: the operator widens the range while ports
// are full: connect() hands out a port outside the known range, the
// namespace asks to be read again (Unknown), and meanwhile the space is
// not called EXHAUSTED on the old range.
func TestSettingsChangedMidRun(t *testing.T) {
	s := newStream(t, DefaultLimits)
	s.a.SetNetns([]netns.Settings{{Inode: testNetns, PortLow: 40000, PortHigh: 40009, Timestamps: 1}})
	s.a.Tick(at(0))
	s.churn(curl, upstream, 10, 0, 1, 10*time.Millisecond) // 40000-40009 in TIME_WAIT
	if sp := s.space(s.summary(1), upstream); !sp.Exhausted || s.a.Unknown() {
		t.Fatalf("full: exhausted %v, unknown %v", sp.Exhausted, s.a.Unknown())
	}
	s.open(at(1.5), curl, upstream, time.Microsecond) // port 40010: the range is wider now
	if sp := s.space(s.summary(2), upstream); sp.Exhausted || !s.a.Unknown() {
		t.Errorf("a port outside the range: exhausted %v, unknown %v; want a re-read and no EXHAUSTED", sp.Exhausted, s.a.Unknown())
	}
	s.a.SetNetns([]netns.Settings{{Inode: testNetns, PortLow: 40000, PortHigh: 40099, Timestamps: 1}})
	if sp := s.space(s.summary(3), upstream); sp.Usable != 100 || sp.Used != 11 || sp.Exhausted || s.a.Unknown() {
		t.Errorf("read again: used %d of %d, exhausted %v, unknown %v", sp.Used, sp.Usable, sp.Exhausted, s.a.Unknown())
	}
}

// TestBindNotOnHost: bind() to an address the host does not have fails
// with EADDRNOTAVAIL before any port search, whether it asked for port 0
// or named one: a failed call on that address, never exhaustion nor a
// conflict; EACCES likewise. Only EADDRINUSE is a pool gone empty.
func TestBindNotOnHost(t *testing.T) {
	s := newStream(t, DefaultLimits)
	away := netip.MustParseAddr("10.9.9.9")
	add := func(cookie uint64, port uint16, errno syscall.Errno) {
		e := s.ev(at(1), nginx1, event.Bind, cookie, netip.AddrPort{})
		e.Src, e.Errno = netip.AddrPortFrom(away, port), errno
		if port != 0 {
			e.Flags = event.FixedPort
		}
		s.add(e)
	}
	add(1, 0, syscall.EADDRNOTAVAIL)
	add(2, 8080, syscall.EADDRNOTAVAIL)
	add(3, 80, syscall.EACCES)
	rep := s.summary(2)
	var pool *summary.SpaceSummary
	for i := range rep.Spaces {
		if rep.Spaces[i].Key.IsBindPool() && rep.Spaces[i].Src == away.String() {
			pool = &rep.Spaces[i]
		}
	}
	if pool == nil {
		t.Fatalf("no %s bind() pool in %+v", away, rep.Spaces)
	}
	if pool.Errno("EADDRNOTAVAIL") != 2 || pool.Errno("EACCES") != 1 || pool.NoAddress60() != 2 ||
		pool.Exhaustion60() != 0 || pool.Exhausted || pool.TotalConns != 3 {
		t.Errorf("pool failures %+v, %d attempts, exhausted %v: want 2 EADDRNOTAVAIL without a search, 1 EACCES, 3 attempts", pool.Failures, pool.TotalConns, pool.Exhausted)
	}
	for _, n := range rep.Netns {
		if len(n.Conflicts) != 0 {
			t.Errorf("conflicts %+v: none of these is a port taken", n.Conflicts)
		}
	}
}

// TestSocketPortRange: a process whose sockets set IP_LOCAL_PORT_RANGE
// 40000-40004 inside a namespace range of 40000-40099 with 40002 reserved
// has 4 ports, not 99: usable is the kernel's window minus the reserved
// port, used counts only the window's ports, and the space names the
// process. A bound outside the namespace's range leaves that bound alone
// (inet_sk_get_local_port_range); a minute without such an attempt gives
// the namespace's range back.
func TestSocketPortRange(t *testing.T) {
	for _, c := range []struct {
		name           string
		r              [2]uint16
		lo, hi, usable int
	}{
		{"inside", [2]uint16{40000, 40004}, 40000, 40004, 4},
		{"high bound only", [2]uint16{0, 40004}, 40000, 40004, 4},
		{"low bound below the namespace's", [2]uint16{30000, 40009}, 40000, 40009, 9},
		{"high bound above the namespace's", [2]uint16{40090, 50000}, 40090, 40099, 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newStream(t, DefaultLimits)
			s.a.SetNetns([]netns.Settings{{Inode: testNetns, PortLow: 40000, PortHigh: 40099, Reserved: "40002"}})
			s.port = uint16(c.lo - 1)
			for i := 0; i < 3; i++ {
				s.cookie++
				s.port++
				if s.port == 40002 {
					s.port++
				}
				s.ports[s.cookie] = 0
				syn := s.ev(at(1), curl, event.State, s.cookie, upstream)
				syn.OldState, syn.NewState, syn.PortRange = event.Close, event.SynSent, c.r
				s.add(syn)
				s.ports[s.cookie] = s.port
				s.state(at(1), curl, s.cookie, upstream, event.SynSent, event.Established)
			}
			// Another process's connection outside the window.
			s.port = 40050
			s.open(at(1), nginx1, upstream, time.Microsecond)
			sp := s.space(s.summary(2), upstream)
			want := &summary.SocketRange{Low: c.r[0], High: c.r[1], SearchLow: c.lo, SearchHigh: c.hi, By: summary.ProcRef{PID: curl.pid, Comm: curl.comm}}
			if sp.SocketRange == nil || *sp.SocketRange != *want || sp.Usable != c.usable || sp.Used != 3 {
				t.Errorf("range %+v, used %d of %d; want %+v, 3 of %d", sp.SocketRange, sp.Used, sp.Usable, want, c.usable)
			}
			sp = s.space(s.summary(63), upstream)
			if sp.SocketRange != nil || sp.Usable != 99 || sp.Used != 4 {
				t.Errorf("a minute later: range %+v, used %d of %d; want none, 4 of 99", sp.SocketRange, sp.Used, sp.Usable)
			}
		})
	}
}

// TestWatchedSettings: a namespace with a space at least half full is
// watched, and a new read of its settings replaces the old at once; an
// unchanged read, or one of another namespace under the same inode, does
// nothing.
func TestWatchedSettings(t *testing.T) {
	s := newStream(t, DefaultLimits)
	s.a.SetNetns([]netns.Settings{{Inode: testNetns, PortLow: 40000, PortHigh: 40099, Cookie: 5, Path: "/run/netns/x"}})
	for i := 0; i < 49; i++ {
		s.open(at(1), curl, upstream, time.Microsecond)
	}
	s.summary(2)
	if w := s.a.Watched(8); len(w) != 0 {
		t.Fatalf("49 of 100 used: watched %+v", w)
	}
	s.open(at(2), curl, upstream, time.Microsecond)
	s.summary(3)
	w := s.a.Watched(8)
	if len(w) != 1 || w[0].Inode != testNetns || w[0].Path != "/run/netns/x" {
		t.Fatalf("50 of 100 used: watched %+v, want the namespace with its path", w)
	}
	wide := w[0]
	wide.PortHigh, wide.Path = 40999, ""
	if s.a.UpdateSettings(wide) != true {
		t.Fatal("a wider range: not taken")
	}
	if sp := s.space(s.summary(4), upstream); sp.Usable != 1000 {
		t.Errorf("usable %d after the range widened to 1000", sp.Usable)
	}
	if s.a.UpdateSettings(wide) {
		t.Error("the same settings again: reported as a change")
	}
	other := wide
	other.Cookie, other.PortHigh = 6, 40009
	if s.a.UpdateSettings(other) {
		t.Error("another namespace's settings under the same inode: taken")
	}
}
