package main

import (
	"slices"
	"testing"
)

func rates(rs ...float64) []sample {
	out := make([]sample, len(rs))
	for i, r := range rs {
		out[i].churn.Rate = r
	}
	return out
}

// TestPaired: rounds are compared pairwise, so a machine that speeds up
// over the run does not pass for a tracer's cost; a target the rounds
// fall on both sides of is unsure.
func TestPaired(t *testing.T) {
	for _, c := range []struct {
		name   string
		a, ref []sample
		mark   string
		med    float64
	}{
		// Medians alone would say 20,000 / 20,500 = 0.976x: met.
		{"drift", rates(10000, 20000, 30000), rates(9000, 20500, 33000), "UNSURE", 0.9756},
		{"all above", rates(9800, 19600, 29700), rates(10000, 20000, 30000), "met   ", 0.98},
		{"all below", rates(9000, 18000, 27300), rates(10000, 20000, 30000), "MISSED", 0.90},
		{"median below, one above", rates(9000, 18000, 30000), rates(10000, 20000, 30000), "UNSURE", 0.90},
	} {
		mark, med, _, _ := paired(c.a, c.ref, 0.97)
		if mark != c.mark || med < c.med-0.001 || med > c.med+0.001 {
			t.Errorf("%s: %q %.4f, want %q %.4f", c.name, mark, med, c.mark, c.med)
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
	names := func(cs []condition) (out []string) {
		for _, c := range cs {
			out = append(out, c.name)
		}
		return out
	}
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
