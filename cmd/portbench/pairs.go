package main

import (
	"fmt"
	"slices"
	"time"

	"golang.org/x/perf/benchmath"
)

// pairConditions are what the targets compare porttrace with in a mode:
// reset churn against the bare program and the streamer, TIME_WAIT churn
// against no tracer.
func pairConditions(mode string, conds []condition) []condition {
	var first, porttrace, last []condition
	for _, c := range conds {
		switch {
		case c.porttrace:
			porttrace = append(porttrace, c)
		case mode == "reset" && c.name == bareName, mode == "fin" && c.name == "no tracer":
			first = append(first, c)
		case mode == "reset" && c.name == streamName:
			last = append(last, c)
		}
	}
	return slices.Concat(first, porttrace, last)
}

// pairOrder is the order of a pair round: reversed every other round, so
// that no condition always runs first after the one before.
func pairOrder(conds []condition, round int) []condition {
	out := slices.Clone(conds)
	if round%2 == 1 {
		slices.Reverse(out)
	}
	return out
}

// pairs measures the conditions the verdicts need in short runs, a few
// seconds apart, over many rounds (--pairs, --pair-duration). Where
// several porttrace backends attach, a round runs them all between its
// references, and each is paired with the references of its round. The
// machine's speed drifts over tens of seconds (its other tenants), by
// more than the targets' margins: a ratio of two runs seconds apart
// cancels most of the drift, and many rounds give the median of those
// ratios a confidence interval (verdicts).
func (b *bench) pairs(mode string, conds []condition) error {
	if b.paired == nil {
		b.paired = map[string]map[string][]sample{}
	}
	pc := pairConditions(mode, conds)
	var err error
	b.paired[mode], err = b.rounds(mode, "pair round", b.o.pairs, b.o.pairDuration, func(round int) []condition { return pairOrder(pc, round) })
	return err
}

// confidence is the confidence level of the verdicts' intervals; with
// fewer than minPairs rounds, order statistics give none.
const (
	confidence = 0.95
	minPairs   = 6
)

// ratioSummary is the median over rounds of f(as[i]) / f(rs[i]) (as and rs
// of the same length, one sample per round), each round's
// two runs taken seconds apart, with its confidence interval: order
// statistics, which assume nothing about the ratios' distribution
// (benchmath.AssumeNothing, as benchstat uses).
func ratioSummary(as, rs []sample, f func(sample) float64) benchmath.Summary {
	ratios := make([]float64, len(as))
	for i := range ratios {
		ratios[i] = f(as[i]) / f(rs[i])
	}
	return benchmath.AssumeNothing.Summary(benchmath.NewSample(ratios, &benchmath.DefaultThresholds), confidence)
}

// judge says whether s's median is on the good side of target (at least
// target when atLeast, at most otherwise), and with what certainty:
// "met" and "MISSED" when the whole interval is on one side, "UNSURE"
// when it straddles the target.
func judge(s benchmath.Summary, target float64, atLeast bool) string {
	lo, hi := s.Lo, s.Hi
	if !atLeast {
		lo, hi = -hi, -lo
		target = -target
	}
	switch {
	case lo >= target:
		return "met   "
	case hi < target:
		return "MISSED"
	default:
		return "UNSURE"
	}
}

// pairTarget is a target judged by the pair rounds: porttrace's f against
// ref's in a mode, at least (or at most) target.
type pairTarget struct {
	mode, ref string
	f         func(sample) float64
	target    float64
	atLeast   bool
	what      string
}

// pairTargets are issue 22's targets for churn (docs/performance.md).
var pairTargets = []pairTarget{
	{"reset", bareName, rateOf, 0.97, true, "connects/s at least 0.97x of the bare program's"},
	{"reset", streamName, rateOf, 1, true, "connects/s at least the minimal streamer's"},
	{"fin", "no tracer", rateOf, 0.99, true, "connects/s 1.00x of no tracer (at least 0.99x)"},
	{"fin", "no tracer", p50Of, 1.10, false, "connect() p50 within 10% of no tracer's"},
}

// pairedVerdict prints the verdict on condition a against t, round by
// round, and returns its mark ("" when a or t's reference was not
// measured in the same rounds).
func (b *bench) pairedVerdict(a string, t pairTarget) string {
	as, rs := b.paired[t.mode][a], b.paired[t.mode][t.ref]
	if len(as) == 0 || len(as) != len(rs) {
		fmt.Printf("  (no verdict for %s against %s, %s close: %d and %d pair rounds)\n", a, t.ref, t.mode, len(as), len(rs))
		return ""
	}
	s := ratioSummary(as, rs, t.f)
	mark := judge(s, t.target, t.atLeast)
	fmt.Printf("  %s %s, %s close: %s: %.3fx (%.0f%% interval %.3f-%.3f, %d rounds of %s)\n",
		mark, a, t.mode, t.what, s.Center, 100*s.Confidence, s.Lo, s.Hi, len(as), b.o.pairDuration)
	for _, w := range s.Warnings {
		fmt.Printf("         %v\n", w)
	}
	return mark
}

func rateOf(s sample) float64 { return s.churn.Rate }
func p50Of(s sample) float64  { return float64(s.churn.P50) }

// pairTable prints each condition's median rate and connect() p50 over the
// pair rounds.
func (b *bench) pairTable(mode string) {
	fmt.Printf("%s close, %d rounds of %s, seconds apart: medians\n", mode, b.o.pairs, b.o.pairDuration)
	for _, c := range pairConditions(mode, b.conds) {
		ss := b.paired[mode][c.name]
		fmt.Printf("  %-24s %12.0f connects/s %12s connect p50\n", c.name,
			median(column(ss, rateOf)), time.Duration(median(column(ss, p50Of))).Round(100*time.Nanosecond))
	}
	fmt.Println()
}
