package export

import (
	"context"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/aggregate"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/summary"
	"github.com/porttrace/porttrace/internal/testkit/otlptest"
)

const ino = 4026532177

var (
	upstream       = netip.MustParseAddrPort("127.0.0.1:8080")
	nginx, curl    = who{812, "nginx"}, who{900, "curl"}
	exportInterval = 200 * time.Millisecond
)

type who struct {
	pid  uint32
	comm string
}

// fixture is an aggregator and an exporter fed the same events, as the
// monitor feeds them.
type fixture struct {
	t      *testing.T
	mu     sync.Mutex
	agg    *aggregate.Aggregator
	x      *Exporter
	cookie uint64
}

// newFixture exports an aggregator bounded by limits.
func newFixture(t *testing.T, limits aggregate.Limits, o Options) *fixture {
	o.Spaces = limits.Spaces
	f := &fixture{t: t, agg: aggregate.New(time.Now(), limits, nil), cookie: 1}
	f.agg.SetNetns([]netns.Settings{{Inode: ino, PortLow: 40000, PortHigh: 40019}})
	x, err := New(context.Background(), o, f.summary)
	if err != nil {
		t.Fatal(err)
	}
	f.x = x
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		x.Shutdown(ctx)
	})
	return f
}

func (f *fixture) summary() *summary.Summary {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.agg.Tick(time.Now())
	return f.agg.Summary()
}

func (f *fixture) add(e event.Event) {
	f.mu.Lock()
	f.agg.Add(&e)
	f.mu.Unlock()
	f.x.Observe(&e)
}

func (f *fixture) ev(w who, kind event.Kind, dst netip.AddrPort) event.Event {
	return event.Event{Time: time.Now(), Kind: kind, Cookie: f.cookie, Netns: ino, TID: w.pid + 1, PID: w.pid,
		Comm: event.MakeComm(w.comm), Family: syscall.AF_INET, Src: netip.AddrPortFrom(upstream.Addr(), uint16(40000+f.cookie%20)), Dst: dst}
}

func (f *fixture) state(w who, dst netip.AddrPort, from, to event.TCPState) {
	e := f.ev(w, event.State, dst)
	e.OldState, e.NewState = from, to
	f.add(e)
}

// attempt is a connect() as the kernel goes through it: SYN_SENT, the port
// search, then the call's result; a success ends in TIME_WAIT.
func (f *fixture) attempt(w who, dst netip.AddrPort, latency time.Duration, errno syscall.Errno) {
	f.cookie++
	f.state(w, dst, event.Close, event.SynSent)
	alloc := f.ev(w, event.Alloc, dst)
	alloc.Latency, alloc.Errno = latency, errno
	f.add(alloc)
	if errno != 0 {
		// The attempt's outcome, as the tracepoint backend reports it.
		e := f.ev(w, event.State, dst)
		e.OldState, e.NewState, e.Errno, e.Flags = event.SynSent, event.Close, errno, event.Searched
		f.add(e)
	}
	if errno == 0 {
		f.state(w, dst, event.SynSent, event.Established)
		f.state(w, dst, event.Established, event.FinWait1)
		f.add(f.ev(w, event.TimeWait, dst))
		f.state(w, dst, event.FinWait2, event.Close)
	}
}

func endpointOf(rcv *otlptest.Receiver, proto string) string {
	if proto == "grpc" {
		return rcv.GRPC()
	}
	return rcv.HTTP()
}

// TestExport: twelve connections into TIME_WAIT, then 25 attempts that find
// no port, from two processes; what the receiver gets must be what the
// aggregator counted, with the semantic conventions' attributes, over both
// transports.
func TestExport(t *testing.T) {
	for _, proto := range Protocols {
		t.Run(proto, func(t *testing.T) { testExport(t, proto) })
	}
}

func testExport(t *testing.T, proto string) {
	rcv := otlptest.Start(t)
	f := newFixture(t, aggregate.DefaultLimits, Options{Endpoint: endpointOf(rcv, proto), Protocol: proto, Interval: exportInterval, Version: "test"})
	for i := range 12 {
		f.attempt(nginx, upstream, time.Duration(i+1)*10*time.Microsecond, 0)
	}
	for range 25 {
		f.attempt(curl, upstream, time.Millisecond, syscall.EADDRNOTAVAIL)
	}
	space := map[string]string{"server.address": "127.0.0.1", "server.port": "8080", "network.local.address": "127.0.0.1",
		"network.type": "ipv4", "porttrace.netns": strconv.Itoa(ino), "porttrace.port_space.kind": "connect"}
	otlptest.Wait(t, "attempts exported", func() bool {
		pts := rcv.Last("porttrace.connect.attempts")
		return len(pts) == 1 && pts[0].Value == 37
	})
	res := rcv.Last("porttrace.connect.attempts")[0].Resource
	if res["service.name"] != "porttrace" || res["host.name"] == "" || res["service.version"] != "test" {
		t.Errorf("resource %v: want service.name porttrace, version test, and host.name", res)
	}
	want := map[string]float64{
		"porttrace.connect.failures":  25,
		"porttrace.time_wait.entries": 12,
		"porttrace.time_wait.sockets": 12,
		"porttrace.ports.used":        12,
		"porttrace.ports.usable":      20,
		"porttrace.ports.utilization": 0.6,
	}
	for name, v := range want {
		p := otlptest.One(t, rcv.Last(name), space)
		if p.Value != v {
			t.Errorf("%s = %v, want %v", name, p.Value, v)
		}
	}
	if p := otlptest.One(t, rcv.Last("porttrace.connect.failures"), space); p.Attrs["error.type"] != "EADDRNOTAVAIL" || !p.Monotonic {
		t.Errorf("failures %+v: want a monotonic sum with error.type EADDRNOTAVAIL", p)
	}
	checkProcesses(t, rcv)
	checkLatency(t, rcv, space)
	checkFailureLogs(t, rcv, 25)
}

func checkProcesses(t *testing.T, rcv *otlptest.Receiver) {
	t.Helper()
	for _, c := range []struct {
		w                    who
		attempts, fails, tws float64
	}{{nginx, 12, 0, 12}, {curl, 25, 25, 0}} {
		// No process.pid by default (Cardinality.PID).
		proc := map[string]string{"process.executable.name": c.w.comm}
		if p := otlptest.One(t, rcv.Last("porttrace.process.connect.attempts"), proc); p.Value != c.attempts {
			t.Errorf("%s attempts %v, want %v", c.w.comm, p.Value, c.attempts)
		}
		if p := otlptest.One(t, rcv.Last("porttrace.process.time_wait.entries"), proc); p.Value != c.tws {
			t.Errorf("%s TIME_WAIT entries %v, want %v", c.w.comm, p.Value, c.tws)
		}
		if c.fails > 0 {
			if p := otlptest.One(t, rcv.Last("porttrace.process.connect.failures"), proc); p.Value != c.fails || p.Attrs["error.type"] != "EADDRNOTAVAIL" {
				t.Errorf("%s failures %+v, want %v EADDRNOTAVAIL", c.w.comm, p, c.fails)
			}
		}
	}
}

func checkLatency(t *testing.T, rcv *otlptest.Receiver, space map[string]string) {
	t.Helper()
	h := otlptest.One(t, rcv.Last(latencyName), space)
	// 10, 20 … 120 µs, then 25 × 1 ms.
	wantSum := 780e-6 + 25e-3
	if h.Kind != "exponential_histogram" || h.Unit != "s" || h.Count != 37 || h.Min != 10e-6 || h.Max != 1e-3 ||
		h.Sum < wantSum*0.999 || h.Sum > wantSum*1.001 {
		t.Errorf("latency %+v: want an exponential histogram in s of 37, min 10µs, max 1ms, sum %v", h, wantSum)
	}
}

// checkFailureLogs: one record per failure up to LogRate a second, the rest
// counted on the next record and in porttrace.logs.suppressed.
func checkFailureLogs(t *testing.T, rcv *otlptest.Receiver, failures int) {
	t.Helper()
	var logs []otlptest.Log
	otlptest.Wait(t, "failure logs", func() bool {
		logs = rcv.Logs()
		sup := rcv.Last("porttrace.logs.suppressed")
		return len(sup) == 1 && len(logs)+int(sup[0].Value) == failures
	})
	if len(logs) < LogRate || len(logs) >= failures {
		t.Errorf("%d log records for %d failures at LogRate %d", len(logs), failures, LogRate)
	}
	var suppressed int
	for _, l := range logs {
		want := map[string]string{"error.type": "EADDRNOTAVAIL", "process.pid": "900", "process.executable.name": "curl",
			"thread.id": "901", "server.address": "127.0.0.1", "server.port": "8080"}
		if !otlptest.Includes(l.Attrs, want) || l.Event != "porttrace.connect.failure" || l.Severity != "WARN" || l.Body == "" {
			t.Fatalf("log record %+v, want attributes %v", l, want)
		}
		n, _ := strconv.Atoi(l.Attrs["porttrace.suppressed"])
		suppressed += n
	}
	// The last suppressed ones are told by the next record, if any.
	if total := int(rcv.Last("porttrace.logs.suppressed")[0].Value); suppressed > total {
		t.Errorf("records tell of %d suppressed, the counter of %d", suppressed, total)
	}
}

// TestSeriesBounded: a thousand port spaces failing with three errnos
// each. By default they make at most 2×Spaces series of their own per
// errno, the rest one "other" series per errno, and the counts add up to
// every failure; with Spaces above a thousand, every space has its own
// series, and none is folded into the SDK's overflow series.
func TestSeriesBounded(t *testing.T) {
	for _, c := range []struct {
		card      Cardinality
		maxSeries int
	}{
		{Cardinality{}, 3 * (2*DefaultCardinality.Spaces + 1)},
		{Cardinality{Spaces: 2000}, 3000},
	} {
		rcv := otlptest.Start(t)
		f := newFixture(t, aggregate.DefaultLimits, Options{Endpoint: rcv.GRPC(), Protocol: "grpc", Interval: exportInterval, Cardinality: c.card})
		for i := range 1000 {
			dst := netip.AddrPortFrom(upstream.Addr(), uint16(10000+i))
			for _, errno := range []syscall.Errno{syscall.EADDRNOTAVAIL, syscall.ECONNREFUSED, syscall.ETIMEDOUT} {
				f.attempt(curl, dst, time.Microsecond, errno)
			}
		}
		var pts []otlptest.Point
		otlptest.Wait(t, "3,000 failures", func() bool {
			pts = rcv.Last("porttrace.connect.failures")
			sum := 0.0
			for _, p := range pts {
				sum += p.Value
			}
			return sum == 3000
		})
		if len(pts) > c.maxSeries {
			t.Errorf("%+v: %d failure series, want at most %d", c.card, len(pts), c.maxSeries)
		}
		others := 0
		for _, p := range pts {
			if p.Attrs["otel.metric.overflow"] != "" {
				t.Fatalf("%+v: point %+v in the overflow series", c.card, p)
			}
			if p.Attrs["porttrace.port_space.kind"] == "other" {
				others++
				if p.Attrs["porttrace.netns"] != strconv.Itoa(ino) || p.Attrs["server.port"] != "" {
					t.Errorf("other series %v: want its namespace and no destination", p.Attrs)
				}
			}
		}
		if wantOthers := map[bool]int{true: 0, false: 3}[c.card.Spaces > 1000]; others != wantOthers {
			t.Errorf("%+v: %d other series, want %d", c.card, others, wantOthers)
		}
		// The histogram: the spaces chosen, the namespace's other, and
		// at most Spaces new ones recorded before the first collection.
		if lat := rcv.Last(latencyName); c.card.Spaces == 0 && len(lat) > 3*DefaultCardinality.Spaces+1 {
			t.Errorf("%d latency series, want at most %d", len(lat), 3*DefaultCardinality.Spaces+1)
		}
		t.Logf("%+v: %d failure series, %d latency series for 1,000 spaces × 3 errnos", c.card, len(pts), len(rcv.Last(latencyName)))
	}
}
