package aggregate

import (
	"encoding/json"
	"math"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

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

// TestConnectFailures: connect()'s own failures, as the return hooks
// report them (event.Connect). One before SYN_SENT (no route) is an
// attempt of its own; one after a search that found a port (a route
// refused for that port: SYN_SENT -> CLOSE with no error, then
// connect()'s ENETUNREACH, AfterSearch) is the attempt SYN_SENT counted.
// Neither is exhaustion.
func TestConnectFailures(t *testing.T) {
	s := newStream(t, DefaultLimits)
	early := s.ev(at(1), nginx1, event.Connect, 0, upstream)
	early.Errno = syscall.ENETUNREACH
	s.add(early)
	s.cookie++
	s.state(at(2), nginx1, s.cookie, upstream, event.Close, event.SynSent)
	s.state(at(2), nginx1, s.cookie, upstream, event.SynSent, event.Close)
	late := s.ev(at(2), nginx1, event.Connect, s.cookie, upstream)
	late.Errno, late.Flags = syscall.ENETUNREACH, event.AfterSearch
	s.add(late)
	r := s.space(s.summary(5), upstream)
	if r.TotalConns != 2 || len(r.Failures) != 1 || r.Failures[0].Total != 2 || r.Failures[0].Exhaustion || r.Exhausted {
		t.Errorf("%d attempts, failures %+v, exhausted %v; want 2 attempts, 2 ENETUNREACH, not exhaustion", r.TotalConns, r.Failures, r.Exhausted)
	}
}
