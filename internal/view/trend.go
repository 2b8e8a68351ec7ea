package view

import (
	"time"

	"github.com/porttrace/porttrace/internal/frame"

	"github.com/NimbleMarkets/ntcharts/sparkline"
)

// TrendSpan is how far back the USED% sparkline of each port space looks.
const TrendSpan = time.Minute

type sample struct {
	t   time.Time
	pct float64
}

// trends keeps each port space's USED% of the last TrendSpan, one sample per
// frame, keyed by where the space is (name and netns).
type trends map[string][]sample

// add records a frame's UsedPct of every space at the frame's time (the
// capture's clock in a replay), and forgets what is older than TrendSpan or
// no longer shown.
func (tr trends) add(s *frame.Frame) {
	if s.Summary == nil {
		return
	}
	seen := map[string]bool{}
	for i := range s.Spaces {
		sp := &s.Spaces[i]
		key := sp.Where()
		seen[key] = true
		h := tr[key]
		if n := len(h); n > 0 && !s.Time.After(h[n-1].t) {
			h = h[:n-1] // the same moment again (paused source, replay's end)
		}
		h = append(h, sample{s.Time, sp.UsedPct})
		for len(h) > 0 && s.Time.Sub(h[0].t) > TrendSpan {
			h = h[1:]
		}
		tr[key] = h
	}
	for k := range tr {
		if !seen[k] {
			delete(tr, k)
		}
	}
}

// buckets spreads the last TrendSpan before now over n columns; each takes
// the last sample in its interval, or carries the one before it. Columns
// before the first sample are -1 (nothing known).
func buckets(h []sample, now time.Time, n int) []float64 {
	out := make([]float64, n)
	step := TrendSpan / time.Duration(n)
	start := now.Add(-TrendSpan)
	j, last := 0, -1.0
	for i := range out {
		end := start.Add(step * time.Duration(i+1))
		if i == n-1 {
			end = now // not a rounding error short of it
		}
		for j < len(h) && !h[j].t.After(end) {
			last = h[j].pct
			j++
		}
		out[i] = last
	}
	return out
}

// sparkline draws a space's USED% over the last minute, 0 to 100, in width
// cells, with ntcharts' sparkline; a column with nothing known is blank.
func (tr trends) sparkline(key string, now time.Time, width int) string {
	if width < 1 {
		return ""
	}
	sl := sparkline.New(width, 1, sparkline.WithMaxValue(100), sparkline.WithNoAutoMaxValue())
	for _, v := range buckets(tr[key], now, width) {
		sl.Push(max(v, 0))
	}
	sl.Draw()
	return sl.View()
}
