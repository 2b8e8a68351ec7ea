package main

import (
	"fmt"
	"slices"
	"time"
)

// verdicts compares the run with the targets of docs/performance.md.
func (b *bench) verdicts() {
	fmt.Println("Targets:")
	for _, mode := range []string{"reset", "fin"} {
		base := b.results[mode]["no tracer"]
		baseRate := median(column(base, func(s sample) float64 { return s.churn.Rate }))
		baseP50 := median(column(base, func(s sample) time.Duration { return s.churn.P50 }))
		for _, c := range b.conds {
			if !c.porttrace {
				continue
			}
			name, ss := c.name, b.results[mode][c.name]
			rate := median(column(ss, func(s sample) float64 { return s.churn.Rate })) / baseRate
			p50 := float64(median(column(ss, func(s sample) time.Duration { return s.churn.P50 }))) / float64(baseP50)
			var lost uint64
			for _, s := range ss {
				lost += s.stats.Lost
			}
			if mode == "reset" {
				b.pairedVerdict(mode, name, bareName, 0.97, "connects/s at least 0.97x of the bare program's")
				b.pairedVerdict(mode, name, streamName, 1, "connects/s at least the minimal streamer's")
			} else {
				verdict(rate >= 0.99, "%s, TIME_WAIT close: connects/s 1.00x of no tracer (at least 0.99x): %.3fx", name, rate)
				verdict(lost == 0, "%s, TIME_WAIT close: 0 lost events: %d", name, lost)
				verdict(p50 <= 1.10, "%s, TIME_WAIT close: connect() p50 within 10%% of no tracer: %.2fx", name, p50)
			}
		}
	}
	for _, c := range b.conds {
		if c.porttrace {
			r := b.getppid[c.name]
			verdict(r >= 0.99, "%s, defaults: an unrelated getppid() loop keeps at least 0.99x of its rate: %.2fx", c.name, r)
		}
	}
	verdict(b.max.lost == 0, "0 lost events at the highest churn (%s events/s): %d", fmt.Sprintf("%.0f", b.max.eventsPerSec), b.max.lost)
	for _, r := range b.idleResults {
		limit := map[bool]float64{true: 0.03, false: 0.1}[r.namespaces <= 200]
		verdict(r.cores <= limit, "idle agent with %d network namespaces: at most %.2f of a core: %.3f", r.namespaces, limit, r.cores)
	}
	verdict(b.spacesRSS < 100<<10 && b.spacesLost == 0, "peak RSS under 100 MiB with 100,000 port spaces: %d MiB", b.spacesRSS>>10)
	fmt.Println()
}

// pairedVerdict judges a's rate against ref's by their ratio within each
// round (paired).
func (b *bench) pairedVerdict(mode, a, ref string, target float64, what string) {
	as, rs := b.results[mode][a], b.results[mode][ref]
	if len(as) == 0 || len(as) != len(rs) {
		return
	}
	mark, med, lo, hi := paired(as, rs, target)
	fmt.Printf("  %s %s, %s close: %s: %.3fx (rounds %.3f-%.3f)\n", mark, a, mode, what, med, lo, hi)
}

// paired compares two conditions' rates round by round, where both ran
// minutes apart at most: the machine's speed drifts over a run (its other
// tenants), and a ratio of medians taken across rounds carries that
// drift. It returns the median of the rounds' ratios of a to ref, their
// range, and "met   " or "MISSED" by the median; "UNSURE" where the
// rounds' ratios fall on both sides of target.
func paired(as, rs []sample, target float64) (mark string, med, lo, hi float64) {
	ratios := make([]float64, len(as))
	for i := range as {
		ratios[i] = as[i].churn.Rate / rs[i].churn.Rate
	}
	med, lo, hi = median(ratios), slices.Min(ratios), slices.Max(ratios)
	switch {
	case lo < target && hi >= target:
		mark = "UNSURE"
	case med >= target:
		mark = "met   "
	default:
		mark = "MISSED"
	}
	return mark, med, lo, hi
}

func verdict(ok bool, format string, args ...any) {
	mark := "met   "
	if !ok {
		mark = "MISSED"
	}
	fmt.Printf("  %s %s\n", mark, fmt.Sprintf(format, args...))
}
