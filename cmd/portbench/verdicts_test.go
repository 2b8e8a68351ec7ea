package main

import (
	"slices"
	"testing"
	"time"
)

// names are the conditions' names, in order.
func names(cs []condition) (out []string) {
	for _, c := range cs {
		out = append(out, c.name)
	}
	return out
}

func rates(rs ...float64) []sample {
	out := make([]sample, len(rs))
	for i, r := range rs {
		out[i].churn.Rate = r
	}
	return out
}

// ratiosOf are rounds whose reference ran at rates that drift by a
// factor of 3 over the run, and whose other condition ran at ratio[i] of
// its round's reference.
func ratiosOf(ratio ...float64) (a, ref []sample) {
	for i, r := range ratio {
		base := 10000 * (1 + 2*float64(i)/float64(len(ratio)))
		a, ref = append(a, rates(base*r)...), append(ref, rates(base)...)
	}
	return a, ref
}

// TestJudge: rounds are compared pairwise (ratiosOf's reference triples
// its rate over the run, which a ratio of medians would carry); a target inside the
// median's confidence interval is unsure, and so is any target with too
// few rounds to bound the median.
func TestJudge(t *testing.T) {
	for _, c := range []struct {
		name    string
		ratios  []float64
		target  float64
		atLeast bool
		mark    string
		med     float64
	}{
		{"above", []float64{0.99, 0.98, 1.01, 0.975, 1.0, 0.985, 0.995, 1.02, 0.98, 0.99, 1.0, 0.97}, 0.97, true, "met   ", 0.99},
		{"below", []float64{0.93, 0.95, 0.91, 0.96, 0.94, 0.92, 0.99, 0.95, 0.93, 0.94, 0.92, 0.96}, 0.97, true, "MISSED", 0.94},
		{"straddles", []float64{0.93, 0.99, 0.95, 1.01, 0.96, 0.98, 0.97, 1.0, 0.94, 0.99, 0.96, 0.98}, 0.97, true, "UNSURE", 0.97},
		{"too few rounds", []float64{0.99, 0.99, 1.0, 0.98, 1.01}, 0.97, true, "UNSURE", 0.99},
		{"at most, below", []float64{1.05, 1.02, 1.08, 1.04, 1.06, 1.01, 1.03, 1.05, 1.07, 1.04, 1.02, 1.06}, 1.10, false, "met   ", 1.05},
		{"at most, above", []float64{1.15, 1.22, 1.18, 1.16, 1.2, 1.12, 1.19, 1.17, 1.21, 1.14, 1.18, 1.16}, 1.10, false, "MISSED", 1.17},
		// The interval's end on the target counts as on the good side.
		{"low end at the target", []float64{0.97, 0.97, 0.97, 0.98, 0.98, 0.98, 0.99, 0.99, 0.99, 1.0, 1.0, 1.0}, 0.97, true, "met   ", 0.985},
		{"high end at the target", []float64{1.05, 1.05, 1.05, 1.06, 1.06, 1.06, 1.08, 1.08, 1.08, 1.10, 1.10, 1.10}, 1.10, false, "met   ", 1.07},
	} {
		a, ref := ratiosOf(c.ratios...)
		s := ratioSummary(a, ref, rateOf)
		if mark := judge(s, c.target, c.atLeast); mark != c.mark || s.Center < c.med-0.006 || s.Center > c.med+0.006 {
			t.Errorf("%s: %q %.4f (%.3f-%.3f), want %q %.4f", c.name, mark, s.Center, s.Lo, s.Hi, c.mark, c.med)
		}
	}
}

// TestPairTargets: each target is judged in the right direction against
// the right reference: porttrace a tenth slower than every reference, in
// rate and in p50, misses all four; a hundredth faster meets all four.
func TestPairTargets(t *testing.T) {
	for _, c := range []struct {
		factor float64
		want   string
	}{{0.9, "MISSED"}, {1.01, "met   "}} {
		b := &bench{o: options{pairDuration: 3 * time.Second}, paired: map[string]map[string][]sample{"reset": {}, "fin": {}}}
		for _, ref := range []struct{ mode, name string }{{"reset", bareName}, {"reset", streamName}, {"fin", "no tracer"}} {
			var pt, rs []sample
			for i := range 12 {
				r := sample{}
				r.churn.Rate, r.churn.P50 = 30000+float64(100*i), 25*time.Microsecond
				p := r
				p.churn.Rate, p.churn.P50 = r.churn.Rate*c.factor, time.Duration(float64(r.churn.P50)/c.factor)
				pt, rs = append(pt, p), append(rs, r)
			}
			b.paired[ref.mode][ref.name], b.paired[ref.mode]["porttrace"] = rs, pt
		}
		for _, target := range pairTargets {
			if got := b.pairedVerdict("porttrace", target); got != c.want {
				t.Errorf("%.2fx: %s, %s: %q, want %q", c.factor, target.mode, target.what, got, c.want)
			}
		}
	}
}

// TestPairConditions: reset churn's rounds run porttrace between the bare
// program and the streamer, TIME_WAIT churn's beside no tracer, and every
// other round in the reverse order.
func TestPairConditions(t *testing.T) {
	conds := []condition{{name: "no tracer"}, {name: bareName}, {name: streamName},
		{name: "porttrace (tracepoint)", porttrace: true}, {name: "BCC tcpstates"}}
	for _, c := range []struct {
		mode  string
		round int
		want  []string
	}{
		{"reset", 0, []string{bareName, "porttrace (tracepoint)", streamName}},
		{"reset", 1, []string{streamName, "porttrace (tracepoint)", bareName}},
		{"fin", 0, []string{"no tracer", "porttrace (tracepoint)"}},
		{"fin", 1, []string{"porttrace (tracepoint)", "no tracer"}},
	} {
		if got := names(pairOrder(pairConditions(c.mode, conds), c.round)); !slices.Equal(got, c.want) {
			t.Errorf("%s round %d: %q, want %q", c.mode, c.round, got, c.want)
		}
	}
}

// TestRoundOrder: each round runs porttrace right between the bare
// program and the streamer, which go first in turn; every condition runs
// once a round, and the others do not always follow the same one.
func TestRoundOrder(t *testing.T) {
	conds := []condition{{name: "no tracer"}, {name: bareName}, {name: streamName},
		{name: "porttrace (fentry)", porttrace: true}, {name: "porttrace (tracepoint)", porttrace: true},
		{name: "BCC tcpstates"}, {name: "bpftrace printf"}}
	want := [][]string{
		{bareName, "porttrace (fentry)", "porttrace (tracepoint)", streamName, "no tracer", "BCC tcpstates", "bpftrace printf"},
		{streamName, "porttrace (tracepoint)", "porttrace (fentry)", bareName, "BCC tcpstates", "bpftrace printf", "no tracer"},
		{bareName, "porttrace (fentry)", "porttrace (tracepoint)", streamName, "bpftrace printf", "no tracer", "BCC tcpstates"},
	}
	for round, w := range want {
		if got := names(roundOrder(conds, round)); !slices.Equal(got, w) {
			t.Errorf("round %d: %q, want %q", round, got, w)
		}
	}
}
