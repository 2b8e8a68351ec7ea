package export

import (
	"math"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// ClassicBounds are the upper bounds, in seconds, of the classic buckets
// that the port search latency histogram carries on /metrics beside its
// native (exponential) buckets: powers of 4 from 2^-20 s (0.95 µs) to
// 2^-4 s (62.5 ms), which cover what was measured here (about 7 µs for a
// free port, 1.3 ms while the range fills, 2.7 ms for a search that fails).
// Each is a power of 2, so a boundary of the native buckets at every
// schema from 0 up: the classic counts are exact sums of native ones.
var ClassicBounds = func() []float64 {
	var b []float64
	for k := -20; k <= -4; k += 2 {
		b = append(b, math.Ldexp(1, k))
	}
	return b
}()

// classicBuckets registers collectors with reg so that each native
// histogram they give also carries ClassicBounds' classic buckets: a text
// scrape (Prometheus without native histograms, or any other reader of
// the text format) otherwise gets only le="+Inf".
type classicBuckets struct {
	prometheus.Registerer
	mu      sync.Mutex
	wrapped map[prometheus.Collector]prometheus.Collector
}

func withClassicBuckets(reg prometheus.Registerer) *classicBuckets {
	return &classicBuckets{Registerer: reg, wrapped: map[prometheus.Collector]prometheus.Collector{}}
}

func (r *classicBuckets) Register(c prometheus.Collector) error {
	w := bucketsCollector{c}
	if err := r.Registerer.Register(w); err != nil {
		return err
	}
	r.mu.Lock()
	r.wrapped[c] = w
	r.mu.Unlock()
	return nil
}

func (r *classicBuckets) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *classicBuckets) Unregister(c prometheus.Collector) bool {
	r.mu.Lock()
	w, ok := r.wrapped[c]
	delete(r.wrapped, c)
	r.mu.Unlock()
	if !ok {
		return r.Registerer.Unregister(c)
	}
	return r.Registerer.Unregister(w)
}

type bucketsCollector struct{ prometheus.Collector }

func (c bucketsCollector) Collect(ch chan<- prometheus.Metric) {
	inner := make(chan prometheus.Metric)
	go func() {
		c.Collector.Collect(inner)
		close(inner)
	}()
	for m := range inner {
		ch <- bucketsMetric{m}
	}
}

type bucketsMetric struct{ prometheus.Metric }

func (m bucketsMetric) Write(out *dto.Metric) error {
	if err := m.Metric.Write(out); err != nil {
		return err
	}
	if h := out.Histogram; h != nil && h.Schema != nil && len(h.Bucket) == 0 {
		h.Bucket = classic(h, ClassicBounds)
	}
	return nil
}

// classic sums a native histogram's buckets into cumulative classic ones
// at bounds, each a power of 2; a bound that is no boundary of the native
// buckets (schemas below 0 merge powers of 2) is left out rather than
// estimated.
func classic(h *dto.Histogram, bounds []float64) []*dto.Bucket {
	schema := h.GetSchema()
	type bucket struct {
		index int
		count float64
	}
	var native []bucket
	idx := 0
	var run int64
	n := 0
	for i, sp := range h.PositiveSpan {
		if i == 0 {
			idx = int(sp.GetOffset())
		} else {
			idx += int(sp.GetOffset())
		}
		for j := uint32(0); j < sp.GetLength(); j++ {
			var c float64
			switch {
			case n < len(h.PositiveDelta):
				run += h.PositiveDelta[n]
				c = float64(run)
			case n < len(h.PositiveCount):
				c = h.PositiveCount[n]
			}
			native = append(native, bucket{idx, c})
			idx++
			n++
		}
	}
	zero := float64(h.GetZeroCount()) + h.GetZeroCountFloat()
	var out []*dto.Bucket
	for _, b := range bounds {
		_, exp := math.Frexp(b) // b = 0.5 * 2^exp: b = 2^(exp-1)
		k := exp - 1
		var last int // the last native bucket index at or under b
		if schema >= 0 {
			last = k << schema
		} else {
			if k%(1<<-schema) != 0 {
				continue
			}
			last = k >> -schema
		}
		sum := zero
		for _, nb := range native {
			if nb.index <= last {
				sum += nb.count
			}
		}
		cum := uint64(math.Round(sum))
		out = append(out, &dto.Bucket{UpperBound: &b, CumulativeCount: &cum})
	}
	return out
}
