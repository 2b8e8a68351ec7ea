package main

import (
	"fmt"
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
				bare := b.rate(mode, "bare program (counts)") / baseRate
				stream := b.rate(mode, "minimal streamer") / baseRate
				verdict(rate >= 0.97*bare, "%s, reset close: connects/s at least 0.97x of the bare program's: %.3fx", name, rate/bare)
				verdict(rate >= stream, "%s, reset close: connects/s at least the minimal streamer's: %.3fx of no tracer, streamer %.3fx", name, rate, stream)
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

func verdict(ok bool, format string, args ...any) {
	mark := "met   "
	if !ok {
		mark = "MISSED"
	}
	fmt.Printf("  %s %s\n", mark, fmt.Sprintf(format, args...))
}
