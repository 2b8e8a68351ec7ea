package view

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/charmbracelet/x/ansi"

	"github.com/porttrace/porttrace/internal/summary"
)

// column is one column of a table of the live view, whose rows are R
// (port spaces or processes). Columns are dropped, highest drop first,
// until the table fits the terminal; the ones with drop 0 always stay
// (for port spaces: PORT SPACE, PROCESS, FAIL/S, USED%, ETA; for
// processes: PID, COMM, FAIL/S, PORT SPACES).
type column[R any] struct {
	title    string
	min, max int // width; the spare width goes to columns with max > min
	want     int // width of an essential column when the terminal is 100 wide or more
	drop     int
	right    bool // numbers line up on the right
	left     bool // cut on the left: the end (a destination) matters most
	cell     func(r *R, c *cellCtx) string
}

// cellCtx is what a cell needs besides its row.
type cellCtx struct {
	window int
	trend  func(key string, width int) string
	width  int // of the cell being drawn
}

const trendTitle = "USED% 60s"

var spaceColumns = []column[summary.SpaceSummary]{
	{title: "PORT SPACE", min: 24, want: 32, max: 44, left: true, cell: func(r *summary.SpaceSummary, _ *cellCtx) string { return r.Name }},
	{title: "NETNS", min: 10, max: 22, drop: 7, cell: func(r *summary.SpaceSummary, _ *cellCtx) string {
		if r.Pod != "" { // a pod's namespace is the pod's
			return r.Pod
		}
		return fmt.Sprint(r.Netns)
	}},
	{title: "PROCESS", min: 12, want: 16, max: 22, cell: func(r *summary.SpaceSummary, _ *cellCtx) string { return procNames(r.Processes) }},
	{title: "CONN/S", min: 7, max: 7, drop: 2, right: true, cell: func(r *summary.SpaceSummary, c *cellCtx) string { return rate(pick(r.Conns, c.window)) }},
	{title: "FAIL/S", min: 7, max: 7, right: true, cell: func(r *summary.SpaceSummary, c *cellCtx) string { return rate(failRate(r, c.window)) }},
	{title: "TIME_WAIT", min: 9, max: 9, drop: 4, right: true, cell: func(r *summary.SpaceSummary, _ *cellCtx) string { return count(r.TimeWait) }},
	{title: "USED/USABLE", min: 13, max: 15, drop: 5, right: true, cell: func(r *summary.SpaceSummary, _ *cellCtx) string {
		usable := "?"
		if r.Usable > 0 {
			usable = count(r.Usable)
		}
		return count(r.Used) + "/" + usable
	}},
	{title: "USED%", min: 6, max: 6, right: true, cell: func(r *summary.SpaceSummary, _ *cellCtx) string {
		if r.Usable == 0 {
			return "?"
		}
		return fmt.Sprintf("%.1f%%", r.UsedPct)
	}},
	{title: trendTitle, min: 9, max: 30, drop: 3, cell: func(r *summary.SpaceSummary, c *cellCtx) string { return c.trend(r.Where(), c.width) }},
	{title: "ETA", min: 9, want: 12, max: 12, cell: func(r *summary.SpaceSummary, c *cellCtx) string {
		if e := eta(r); len(e) <= c.width || !r.FreedSince() {
			return e
		}
		return "was full" // too narrow for when
	}},
	{title: "ALLOC p50/p99", min: 13, max: 15, drop: 6, cell: func(r *summary.SpaceSummary, _ *cellCtx) string {
		if r.AllocLatency.Count == 0 {
			return "-"
		}
		return micros(r.AllocLatency.P50) + "/" + micros(r.AllocLatency.P99)
	}},
}

// layout picks the columns that fit width and their widths: the least
// urgent are dropped first, the spare width widens the flexible ones.
// processColumns are the process table's (Tab).
var processColumns = []column[summary.ProcessSummary]{
	{title: "PID", min: 7, max: 8, cell: func(p *summary.ProcessSummary, _ *cellCtx) string {
		if p.Other {
			return "-"
		}
		return fmt.Sprint(p.PID)
	}},
	{title: "COMM", min: 15, max: 16, cell: func(p *summary.ProcessSummary, _ *cellCtx) string {
		if p.Other {
			return "(other)"
		}
		return p.Comm
	}},
	{title: "POD OR CONTAINER", min: 16, max: 32, drop: 3, cell: func(p *summary.ProcessSummary, _ *cellCtx) string {
		return cmp.Or(p.Workload(), "-")
	}},
	{title: "CONN/S", min: 7, max: 7, drop: 1, right: true, cell: func(p *summary.ProcessSummary, c *cellCtx) string {
		return rate(pick(p.Conns, c.window))
	}},
	{title: "FAIL/S", min: 7, max: 7, right: true, cell: func(p *summary.ProcessSummary, c *cellCtx) string {
		return rate(processFailRate(p, c.window))
	}},
	{title: "TW/S", min: 7, max: 7, drop: 2, right: true, cell: func(p *summary.ProcessSummary, c *cellCtx) string {
		return rate(pick(p.TWIn, c.window))
	}},
	{title: "TOTAL", min: 10, max: 10, drop: 4, right: true, cell: func(p *summary.ProcessSummary, _ *cellCtx) string {
		return count(int(p.Total))
	}},
	{title: "PORT SPACES", min: 20, max: 200, cell: func(p *summary.ProcessSummary, _ *cellCtx) string {
		return strings.Join(p.Spaces, "; ")
	}},
}

func layout[R any](all []column[R], width int) ([]column[R], []int) {
	cols := slices.Clone(all)
	if width >= 100 {
		for i := range cols {
			cols[i].min = max(cols[i].min, cols[i].want)
		}
	}
	used := func(cs []column[R]) int {
		n := len(cs) - 1 // one space between columns
		for _, c := range cs {
			n += c.min
		}
		return n
	}
	for used(cols) > width {
		worst := -1
		for i, c := range cols {
			if c.drop > 0 && (worst < 0 || c.drop > cols[worst].drop) {
				worst = i
			}
		}
		if worst < 0 {
			break // the essential columns, cut at the edge
		}
		cols = append(cols[:worst:worst], cols[worst+1:]...)
	}
	widths := make([]int, len(cols))
	spare := width - used(cols)
	for i, c := range cols {
		widths[i] = c.min
	}
	for spare > 0 {
		grew := false
		for i, c := range cols {
			if spare > 0 && widths[i] < c.max {
				widths[i]++
				spare--
				grew = true
			}
		}
		if !grew {
			break
		}
	}
	return cols, widths
}

// cell fits s into w cells: cut with "~" when longer (at the start if
// left), padded to w, numbers on the right. Never wider than w, so a row
// never wraps mid-cell.
func cell(s string, w int, right, left bool) string {
	if n := ansi.StringWidth(s); n > w && left {
		s = "~" + ansi.TruncateLeft(s, n-w+1, "")
	} else if n > w {
		s = ansi.Truncate(s, w, "~")
	}
	pad := strings.Repeat(" ", max(w-ansi.StringWidth(s), 0))
	if right {
		return pad + s
	}
	return s + pad
}

// tableHeader and tableRow draw the port space table with the chosen layout.
func tableHeader[R any](cols []column[R], widths []int) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = cell(c.title, widths[i], c.right, false)
	}
	return strings.Join(parts, " ")
}

func tableRow[R any](r *R, cols []column[R], widths []int, ctx cellCtx) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		ctx.width = widths[i]
		parts[i] = cell(c.cell(r, &ctx), widths[i], c.right, c.left)
	}
	return strings.Join(parts, " ")
}
