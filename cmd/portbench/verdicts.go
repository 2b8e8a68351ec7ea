package main

import (
	"fmt"
	"slices"
)

// verdicts compares the run with the targets of docs/performance.md.
func (b *bench) verdicts() {
	fmt.Println("Targets:")
	for _, c := range b.conds {
		if !c.porttrace {
			continue
		}
		for _, t := range pairTargets {
			b.pairedVerdict(c.name, t)
		}
		var lost uint64
		for _, s := range slices.Concat(b.results["fin"][c.name], b.paired["fin"][c.name]) {
			lost += s.stats.Lost
		}
		verdict(lost == 0, "%s, TIME_WAIT close: 0 lost events: %d", c.name, lost)
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

func verdict(ok bool, format string, args ...any) {
	mark := "met   "
	if !ok {
		mark = "MISSED"
	}
	fmt.Printf("  %s %s\n", mark, fmt.Sprintf(format, args...))
}
