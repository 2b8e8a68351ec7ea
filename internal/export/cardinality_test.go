package export

import (
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/attribute"

	"github.com/porttrace/porttrace/internal/summary"
)

// TestSumsNeverGoDown: a member that moves from a set to another, and one
// that leaves, never make a set's count go down nor count twice; a set
// unchanged for Idle is no longer exported, and comes back when its
// members count again.
func TestSumsNeverGoDown(t *testing.T) {
	s := newSums()
	own := attribute.NewSet(attribute.String("k", "own"))
	other := attribute.NewSet(attribute.String("k", "other"))
	a, b := member{pid: 1}, member{pid: 2}
	t0 := time.Unix(1000, 0)
	idle := time.Minute
	collect := func(at time.Duration) map[string]uint64 {
		got := map[string]uint64{}
		s.end(t0.Add(at), idle, func(set attribute.Set, v uint64) {
			k, _ := set.Value("k")
			got[k.AsString()] = v
		})
		return got
	}
	s.add(a, own, 10)
	s.add(b, other, 5)
	checkSums(t, "start", collect(0), map[string]uint64{"own": 10, "other": 5})
	// a is folded into other: other adds what a counted since own last
	// reported it (10), own stays at 10.
	s.add(a, other, 12)
	s.add(b, other, 6)
	checkSums(t, "a folded", collect(time.Second), map[string]uint64{"own": 10, "other": 8})
	s.add(a, other, 20)
	s.add(b, other, 6)
	checkSums(t, "a counts in other", collect(2*time.Second), map[string]uint64{"own": 10, "other": 16})
	// b is evicted: other keeps what b had counted.
	s.add(a, other, 21)
	checkSums(t, "b gone", collect(3*time.Second), map[string]uint64{"own": 10, "other": 17})
	// a gets its own series back: own goes on from 10, other keeps a's
	// share; the sum of both is a's and b's total, 25 + 6.
	s.add(a, own, 25)
	checkSums(t, "a own again", collect(4*time.Second), map[string]uint64{"own": 14, "other": 17})
	// Unchanged for idle: other (no members) goes; own is idle too.
	s.add(a, own, 25)
	checkSums(t, "idle", collect(4*time.Second+idle), map[string]uint64{})
	s.add(a, own, 26)
	checkSums(t, "back", collect(5*time.Second+idle), map[string]uint64{"own": 1})
}

// TestPickBounded: a hundred spaces under pressure and a hundred active
// ones get at most 2×Spaces series; the fullest and the busiest win.
func TestPickBounded(t *testing.T) {
	// The chooser only reads the summaries; see TestSeriesBounded for the
	// series they make.
	ch := newChooser(Cardinality{Spaces: 5, Idle: time.Minute})
	spaces := syntheticSpaces(100, 100)
	own := ch.pick(spaces, time.Now())
	n := 0
	for _, mine := range own {
		if mine {
			n++
		}
	}
	if n != 10 || len(own) != len(spaces) {
		t.Fatalf("%d own series of %d spaces, want 10 of %d", n, len(own), len(spaces))
	}
	for i := range 5 { // the fullest under pressure: UsedPct 99..95
		if s := spaces[199-i]; !own[s.Key] {
			t.Errorf("space %d (used %v%%) has no series", 199-i, s.UsedPct)
		}
	}
}

// TestClassicBuckets: the native histogram of the Prometheus exporter
// gets classic buckets on a text scrape, with exact cumulative counts.
func TestClassicBuckets(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x_seconds", Help: "x",
		NativeHistogramBucketFactor: 1.1, NativeHistogramZeroThreshold: 1e-9})
	if err := withClassicBuckets(reg).Register(h); err != nil {
		t.Fatal(err)
	}
	// 3 under 1 µs, 2 at 10 µs, 4 at 1 ms, 1 at 0.1 s.
	for v, n := range map[float64]int{0.5e-6: 3, 10e-6: 2, 1e-3: 4, 0.1: 1} {
		for range n {
			h.Observe(v)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buckets []*dto.Bucket
	for _, mf := range mfs {
		buckets = mf.Metric[0].Histogram.Bucket
	}
	// The histogram's own classic buckets (the defaults, 5 ms and up) are
	// kept, not replaced: a histogram without native buckets is left as is.
	if len(buckets) == 0 {
		t.Fatal("no buckets")
	}
	// Now a native-only one, as the OpenTelemetry exporter makes.
	reg = prometheus.NewRegistry()
	desc := prometheus.NewDesc("y_seconds", "y", nil, nil)
	native, err := prometheus.NewConstNativeHistogram(desc, 10, 0.1,
		map[int]int64{int(math.Ceil(math.Log2(10e-6) * 8)): 2, int(math.Ceil(math.Log2(1e-3) * 8)): 4, int(math.Ceil(math.Log2(0.1) * 8)): 1},
		nil, 3, 3, 1e-9, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	m := bucketsMetric{native}
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	want := map[float64]uint64{}
	for _, b := range ClassicBounds {
		var n uint64 = 3 // the zero bucket
		for v, c := range map[float64]uint64{10e-6: 2, 1e-3: 4, 0.1: 1} {
			if v <= b {
				n += c
			}
		}
		want[b] = n
	}
	if len(out.Histogram.Bucket) != len(ClassicBounds) {
		t.Fatalf("%d buckets, want %d", len(out.Histogram.Bucket), len(ClassicBounds))
	}
	for _, b := range out.Histogram.Bucket {
		if b.GetCumulativeCount() != want[b.GetUpperBound()] {
			t.Errorf("le=%g: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want[b.GetUpperBound()])
		}
	}
	if ClassicBounds[0] > 1e-6 || ClassicBounds[len(ClassicBounds)-1] < 10e-3 {
		t.Errorf("bounds %v do not cover 1 µs to 10 ms", ClassicBounds)
	}
}

// syntheticSpaces are active spaces (the first, busier as i grows) and
// spaces under pressure (then, fuller as i grows).
func syntheticSpaces(active, hot int) []summary.SpaceSummary {
	var out []summary.SpaceSummary
	for i := range active + hot {
		s := summary.SpaceSummary{Key: summary.SpaceKey{Netns: ino, Src: upstream.Addr(),
			Dst: netip.AddrPortFrom(upstream.Addr(), uint16(10000+i))}, TotalConns: uint64(i + 1)}
		s.Conns.S60 = float64(i)
		if i >= active {
			s.UsedPct = float64(i - active)
		}
		if i >= active && s.UsedPct < 50 {
			s.UsedPct += 50 // all of them under pressure
		}
		out = append(out, s)
	}
	return out
}
