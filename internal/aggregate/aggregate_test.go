package aggregate

import (
	"encoding/json"
	"math"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/summary"
)

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s = %v, want %v (±%v)", what, got, want, tol)
	}
}

func TestRatesRollOver(t *testing.T) {
	s := newStream(t, DefaultLimits)
	s.churn(nginx1, upstream, 10, 0, 10, 100*time.Millisecond)

	rep := s.summary(10)
	// Each connection: SYN_SENT, port search, ESTABLISHED and TIME_WAIT.
	if rep.Events != 400 || len(rep.Processes) != 1 || rep.Processes[0].TotalTWIn != 100 {
		t.Errorf("%d events, processes %+v; want 400 events and 100 TIME_WAIT entries of nginx", rep.Events, rep.Processes)
	}
	r := s.space(rep, upstream)
	if r.Conns != (summary.Rates{S1: 10, S10: 10, S60: 10}) || r.TotalConns != 100 {
		t.Errorf("at 10 s: conns %+v total %d, want 10/s in every window, 100", r.Conns, r.TotalConns)
	}
	if r.TWIn != (summary.Rates{S1: 10, S10: 10, S60: 10}) {
		t.Errorf("TIME_WAIT entries %+v, want 10/s", r.TWIn)
	}
	r = s.space(s.summary(30), upstream)
	near(t, "conns 60 s window at 30 s", r.Conns.S60, 100.0/30, 1e-9)
	if r.Conns.S1 != 0 || r.Conns.S10 != 0 {
		t.Errorf("at 30 s: %+v, want nothing in the 1 s and 10 s windows", r.Conns)
	}
	r = s.space(s.summary(75), upstream)
	if r.Conns.S60 != 0 || r.TotalConns != 100 {
		t.Errorf("at 75 s: %+v total %d: the minute has rolled over, the total stays", r.Conns, r.TotalConns)
	}
}

func TestFailuresByErrno(t *testing.T) {
	s := newStream(t, DefaultLimits)
	for i := 0; i < 30; i++ {
		s.fail(at(1+float64(i)/10), nginx1, upstream, syscall.ECONNREFUSED)
	}
	for i := 0; i < 20; i++ {
		s.fail(at(2+float64(i)/10), nginx1, upstream, syscall.EADDRNOTAVAIL)
	}
	r := s.space(s.summary(5), upstream)
	if len(r.Failures) != 2 || r.Failures[0].Errno != "EADDRNOTAVAIL" || r.Failures[0].Total != 20 || r.Failures[1].Total != 30 {
		t.Fatalf("failures %+v, want EADDRNOTAVAIL (20) first, then ECONNREFUSED (30)", r.Failures)
	}
	near(t, "fail/s over 10 s", r.FailRate(), 50.0/5, 1e-9)
	if !r.Exhausted || r.ETA == nil || *r.ETA != 0 {
		t.Errorf("EADDRNOTAVAIL in the last 10 s must read as exhausted, got %v %v", r.Exhausted, r.ETA)
	}
	if r.Live != 0 {
		t.Errorf("failed connects hold no port, live = %d", r.Live)
	}
	if s.space(s.summary(20), upstream).Exhausted {
		t.Errorf("still exhausted 15 s after the last failure")
	}
	p := s.summary(5).Processes[0]
	if p.PID != 812 || len(p.Failures) != 2 || p.Failures[0].Total != 20 {
		t.Errorf("process %+v: the failures belong to pid 812", p)
	}
}

func TestTimeWaitPopulationAndDrain(t *testing.T) {
	s := newStream(t, DefaultLimits)
	s.churn(curl, upstream, 20, 5, 6, 10*time.Millisecond) // 20 ports into TIME_WAIT at 5 s
	var open []uint64
	for i := 0; i < 5; i++ {
		open = append(open, s.open(at(6), curl, upstream, time.Microsecond))
	}
	for _, tc := range []struct {
		sec        float64
		tw, live   int
		released60 float64
	}{{6, 20, 5, 0}, {64, 20, 5, 0}, {65.5, 0, 5, 0}, {66, 0, 5, 20.0 / 60}, {80, 0, 5, 20.0 / 60}} {
		r := s.space(s.summary(tc.sec), upstream)
		if r.TimeWait != tc.tw || r.Live != tc.live || r.Used != tc.tw+tc.live {
			t.Errorf("at %v s: TIME_WAIT %d live %d used %d, want %d %d", tc.sec, r.TimeWait, r.Live, r.Used, tc.tw, tc.live)
		}
		near(t, "released/s over 60 s", r.Released.S60, tc.released60, 1e-9)
		near(t, "used %", r.UsedPct, float64(tc.tw+tc.live), 1e-9) // 100 usable ports
	}
	s.state(at(81), curl, open[0], upstream, event_Established, event_Close)
	if r := s.space(s.summary(82), upstream); r.Live != 4 {
		t.Errorf("after one close: live %d, want 4", r.Live)
	}
}

func TestETA(t *testing.T) {
	s := newStream(t, DefaultLimits)
	// 5 new ports a second, none returning for 60 s: 100 ports last 20 s.
	s.a.Tick(at(0))
	for sec := 0; sec < 10; sec++ {
		s.churn(curl, upstream, 5, float64(sec), float64(sec+1), 10*time.Millisecond)
		s.a.Tick(at(float64(sec + 1)))
	}
	r := s.space(s.summary(10), upstream)
	if r.Used != 50 || r.ETA == nil {
		t.Fatalf("used %d, ETA %v: want 50 and an estimate", r.Used, r.ETA)
	}
	near(t, "fill/s", r.FillRate, 5, 1e-9)
	near(t, "ETA", *r.ETA, 10, 1e-9)
	// Filling stops: no estimate, and no exhaustion.
	for sec := 11; sec <= 21; sec++ {
		s.a.Tick(at(float64(sec)))
	}
	if r := s.space(s.summary(21), upstream); r.ETA != nil || r.Exhausted || r.FillRate != 0 {
		t.Errorf("idle: ETA %v exhausted %v fill %v, want none", r.ETA, r.Exhausted, r.FillRate)
	}
}

func TestExhaustedWhenFull(t *testing.T) {
	s := newStream(t, DefaultLimits)
	for i := 0; i < 100; i++ {
		s.open(at(1), curl, upstream, time.Microsecond)
	}
	r := s.space(s.summary(2), upstream)
	if !r.Exhausted || r.UsedPct != 100 {
		t.Errorf("100 of 100 ports in use: exhausted %v, %v%%", r.Exhausted, r.UsedPct)
	}
}

func TestAllocLatency(t *testing.T) {
	s := newStream(t, DefaultLimits)
	for i := 1; i <= 1000; i++ {
		c := s.open(at(1+float64(i)/1000), curl, upstream, time.Duration(i)*time.Microsecond)
		s.state(at(2), curl, c, upstream, event_Established, event_Close)
	}
	l := s.space(s.summary(3), upstream).AllocLatency
	if l.Count != 1000 || l.Max != time.Millisecond {
		t.Errorf("latency %+v: want 1000 samples, max 1ms", l)
	}
	near(t, "p50 µs", float64(l.P50.Microseconds()), 500, 500*0.02)
	near(t, "p99 µs", float64(l.P99.Microseconds()), 990, 990*0.02)
	if l := s.space(s.summary(75), upstream).AllocLatency; l.Count != 0 {
		t.Errorf("latency a minute later: %+v, want aged out", l)
	}
}

func TestLifetime(t *testing.T) {
	s := newStream(t, DefaultLimits)
	s.churn(nginx1, upstream, 30, 0, 1, 100*time.Millisecond)
	s.churn(nginx1, upstream, 10, 0, 1, 5*time.Second)
	r := s.space(s.summary(7), upstream)
	if r.Closed60 != 40 {
		t.Fatalf("closed %d, want 40", r.Closed60)
	}
	near(t, "short-lived %", r.ShortPct, 75, 1e-9)
	near(t, "median lifetime ms", float64(r.Lifetime.P50.Milliseconds()), 100, 2)
	if r.Lifetime.Max != 5*time.Second {
		t.Errorf("max lifetime %v, want 5s", r.Lifetime.Max)
	}
}

func TestProcesses(t *testing.T) {
	s := newStream(t, DefaultLimits)
	s.churn(nginx1, upstream, 6, 0, 2, time.Millisecond)
	s.churn(nginx2, upstream, 4, 0, 2, time.Millisecond)
	other := netip.MustParseAddrPort("10.0.0.7:5432")
	s.churn(curl, other, 1, 0, 2, time.Millisecond)
	rep := s.summary(2)
	r := s.space(rep, upstream)
	if len(r.Processes) != 2 || r.Processes[0].PID != 812 || r.Processes[0].Conns60 != 12 || r.Processes[1].PID != 813 {
		t.Errorf("processes of %s: %+v, want 812 (12) then 813 (8)", upstream, r.Processes)
	}
	if len(rep.Processes) != 3 || rep.Processes[0].PID != 812 || rep.Processes[0].Conns.S10 != 6 || rep.Processes[2].Spaces[0] != "127.0.0.1 -> 10.0.0.7:5432" {
		t.Errorf("process table %+v", rep.Processes)
	}
}

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

func TestEvictionBoundsMemory(t *testing.T) {
	s := newStream(t, Limits{Spaces: 16, Processes: 4, Sockets: 50})
	var total uint64
	for i := 0; i < 40; i++ {
		dst := netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(1000+i))
		s.churn(who{uint32(100 + i), "client"}, dst, 1, float64(i), float64(i+1), time.Millisecond)
		s.a.Tick(at(float64(i) + 0.5))
		total++
	}
	r := s.summary(41)
	if len(s.a.spaces) > 16 || len(s.a.procs) > 4 {
		t.Fatalf("tables grew past their limits: %d spaces, %d processes", len(s.a.spaces), len(s.a.procs))
	}
	var sum uint64
	var other *summary.SpaceSummary
	for i := range r.Spaces {
		sum += r.Spaces[i].TotalConns
		if r.Spaces[i].Other {
			other = &r.Spaces[i]
		}
	}
	if sum != total || other == nil || other.TotalConns == 0 {
		t.Errorf("connections across rows %d, want %d, with an 'other' row (%v)", sum, total, other)
	}
	// The newest (hottest) destination keeps its own row.
	s.space(r, netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), 1039))
	for i := 0; i < 100; i++ {
		s.open(at(42), curl, upstream, time.Microsecond)
	}
	if len(s.a.socks) > 50 || s.summary(43).Untracked != 50 {
		t.Errorf("followed sockets %d (limit 50), untracked %d", len(s.a.socks), s.summary(43).Untracked)
	}
}

// TestBindPool: bind(127.0.0.1, 0) then connect(), round-robin over three
// destinations; a bind-then-connect is one attempt, and every socket with
// the address holds a port of the pool, whatever its destination.
func TestBindPool(t *testing.T) {
	s := newStream(t, DefaultLimits)
	dsts := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.2:8080"), netip.MustParseAddrPort("127.0.0.3:8080"), netip.MustParseAddrPort("127.0.0.4:8080")}
	for i := 0; i < 10; i++ {
		s.cookie++
		s.port++
		s.ports[s.cookie] = s.port
		e := s.ev(at(1), nginx1, event_Bind, s.cookie, netip.AddrPort{})
		e.Latency = 20 * time.Microsecond
		if i >= 6 {
			e.Errno = syscall.EADDRINUSE
			s.ports[s.cookie] = 0
			e.Src = netip.AddrPortFrom(src, 0)
		}
		s.add(e)
		if i < 6 {
			syn := s.ev(at(1), nginx1, event.State, s.cookie, dsts[i%3])
			syn.OldState, syn.NewState, syn.Flags = event.Close, event.SynSent, event.Bound
			s.add(syn)
		}
	}
	rep := s.summary(2)
	var pool *summary.SpaceSummary
	for i := range rep.Spaces {
		if rep.Spaces[i].Key.IsBindPool() {
			pool = &rep.Spaces[i]
		}
	}
	if pool == nil || pool.TotalConns != 10 || pool.Errno("EADDRINUSE") != 4 || pool.Exhaustion60() != 4 ||
		!pool.Exhausted || pool.ExhaustionErrno() != "EADDRINUSE" || pool.Used != 6 || pool.BoundPct != 100 {
		t.Fatalf("bind pool %+v: want 10 attempts, 4 EADDRINUSE, exhausted, 6 ports used", pool)
	}
	if len(pool.Processes) != 1 || pool.Processes[0].PID != nginx1.pid || pool.Processes[0].Conns60 != 10 {
		t.Errorf("pool's processes %+v: nginx made all 10 attempts", pool.Processes)
	}
	if p := rep.Processes[0]; p.Total != 10 {
		t.Errorf("nginx made %d attempts, want 10 (a bind and its connect are one)", p.Total)
	}
	// Each destination's space: the two ports its sockets hold are bound
	// by bind(), so every destination sees all six as taken.
	if r := s.space(rep, dsts[0]); r.Used != 6 || r.Bound != 6 {
		t.Errorf("%s: used %d bound %d, want 6 and 6", dsts[0], r.Used, r.Bound)
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

// TestJSONHasNoNullLists: every list in a report is [] when empty, never
// null; the only null is an ETA that does not apply.
func TestJSONHasNoNullLists(t *testing.T) {
	for _, s := range []*stream{newStream(t, DefaultLimits), func() *stream {
		s := newStream(t, DefaultLimits)
		s.fail(at(1), curl, upstream, syscall.ECONNREFUSED)
		return s
	}()} {
		b, err := json.Marshal(s.summary(2))
		if err != nil {
			t.Fatal(err)
		}
		out := strings.ReplaceAll(string(b), `"eta_seconds":null`, "")
		if strings.Contains(out, "null") {
			t.Errorf("null in %s", b)
		}
	}
}

// TestSpaceKeepsFailingProcesses: eight one-shot health checks, then
// one-shot clients that fail, all within seconds: the space names the
// failing ones.
func TestSpaceKeepsFailingProcesses(t *testing.T) {
	s := newStream(t, DefaultLimits)
	for i := range 8 {
		s.open(at(1+float64(i)/10), who{uint32(100 + i), "check"}, upstream, time.Microsecond)
	}
	for i := range 12 {
		s.fail(at(3), who{uint32(200 + i), "client"}, upstream, syscall.EADDRNOTAVAIL)
	}
	r := s.space(s.summary(3.5), upstream)
	if len(r.Processes) != 8 {
		t.Fatalf("%d processes, want 8", len(r.Processes))
	}
	for _, p := range r.Processes {
		if p.Comm != "client" {
			t.Errorf("space names %+v, want only failing clients", p)
		}
	}
}

// TestTimeWaitCapped: past tcp_max_tw_buckets closing sockets skip
// TIME_WAIT, so a space filling by TIME_WAIT in a namespace near the limit
// gets no ETA, and says why.
func TestTimeWaitCapped(t *testing.T) {
	for _, tc := range []struct {
		max    int
		capped bool
	}{{30, true}, {0, false}, {100000, false}} {
		s := newStream(t, DefaultLimits)
		s.a.SetNetns([]netns.Settings{{Inode: testNetns, PortLow: 40000, PortHigh: 40099, Timestamps: 1, MaxTWBuckets: tc.max}})
		s.a.Tick(at(0))
		for sec := 0; sec < 5; sec++ {
			s.churn(curl, upstream, 5, float64(sec), float64(sec+1), 10*time.Millisecond)
			s.a.Tick(at(float64(sec + 1)))
		}
		r := s.space(s.summary(5), upstream)
		if r.TWCapped != tc.capped || (r.ETA == nil) != tc.capped {
			t.Errorf("tcp_max_tw_buckets %d with %d in TIME_WAIT: capped %v, ETA %v; want capped %v", tc.max, r.TimeWait, r.TWCapped, r.ETA, tc.capped)
		}
	}
}

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
