package export

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/aggregate"
	"github.com/porttrace/porttrace/internal/testkit/otlptest"
)

var smallLimits = aggregate.Limits{Spaces: 64, Processes: 64, Sockets: 1 << 16}

// TestCollectorDown: the receiver goes away while failures pour in toward
// 100,000 different upstreams, then comes back. The exporter must keep
// taking events, stay within its memory, resume, and account for every
// failure: received as a record, dropped with a failed export, or
// suppressed by the rate limit.
func TestCollectorDown(t *testing.T) {
	for _, proto := range Protocols {
		t.Run(proto, func(t *testing.T) { testCollectorDown(t, proto) })
	}
}

func testCollectorDown(t *testing.T, proto string) {
	rcv := otlptest.Start(t)
	f := newFixture(t, smallLimits, Options{Endpoint: endpointOf(rcv, proto), Protocol: proto, Interval: exportInterval, Timeout: time.Second})
	failures := 0
	fail := func(dst netip.AddrPort) {
		f.attempt(curl, dst, time.Microsecond, syscall.EADDRNOTAVAIL)
		failures++
	}
	fail(upstream)
	otlptest.Wait(t, "first export", func() bool { return len(rcv.Logs()) == 1 })

	rcv.Stop()
	heap := heapInUse()
	// Three seconds of failures, 30 of them logged a second and dropped.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		for i := range 20_000 {
			fail(netip.AddrPortFrom(upstream.Addr(), uint16(1+(failures+i)%50_000)))
		}
		time.Sleep(100 * time.Millisecond)
	}
	otlptest.Wait(t, "failed exports of both signals", func() bool {
		return f.x.health.logFailures.Load() > 0 && f.x.health.metricFailures.Load() > 0
	})
	grown := heapInUse() - heap
	t.Logf("heap grew by %.1f MiB while the collector was down", float64(grown)/(1<<20))
	if grown > 64<<20 {
		t.Errorf("heap grew by %d MiB while the collector was down", grown>>20)
	}

	rcv.Restart(t)
	// One failure every 300 ms, each in a second of its own for the rate
	// limit, until log records arrive again.
	otlptest.Wait(t, "log export resumed", func() bool {
		fail(upstream)
		time.Sleep(300 * time.Millisecond)
		return len(rcv.Logs()) > 1
	})
	var got string
	otlptest.Wait(t, "every failure accounted for", func() bool {
		logs := len(rcv.Logs())
		dropped := otlptest.Sum(rcv.Last("porttrace.export.dropped"))
		suppressed := otlptest.Sum(rcv.Last("porttrace.logs.suppressed"))
		got = fmt.Sprintf("%d received + %d dropped + %d suppressed, of %d", logs, dropped, suppressed, failures)
		return logs+dropped+suppressed == failures
	})
	t.Log(got)
	if otlptest.Sum(rcv.Last("porttrace.export.dropped")) == 0 {
		t.Errorf("no log record counted as dropped: %s", got)
	}
	if n := otlptest.Sum(otlptest.With(rcv.Last("porttrace.export.failures"), map[string]string{"porttrace.signal": "metrics"})); n == 0 {
		t.Errorf("no failed metric export counted")
	}
	// The aggregator's limit bounds the histogram's series (see
	// readerOptions): 4 × 64 spaces, and the SDK's overflow series.
	if n := len(rcv.Last(latencyName)); n > 4*smallLimits.Spaces+1 {
		t.Errorf("%d latency series for a limit of %d port spaces", n, smallLimits.Spaces)
	}
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// TestSlowCollector: a collector that answers nothing must not slow the
// event path; Shutdown gives up when its context ends.
func TestSlowCollector(t *testing.T) {
	rcv := otlptest.Start(t)
	rcv.SetDelay(time.Hour)
	f := newFixture(t, smallLimits, Options{Endpoint: rcv.GRPC(), Protocol: "grpc", Interval: exportInterval, Timeout: time.Second})
	otlptest.Wait(t, "an export waiting on the collector", func() bool { return rcv.Requests() > 0 })
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20_000 {
			f.attempt(curl, upstream, time.Microsecond, syscall.EADDRNOTAVAIL)
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("events blocked behind a slow collector")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	f.x.Shutdown(ctx)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown took %v with a 1 s deadline", d)
	}
}
