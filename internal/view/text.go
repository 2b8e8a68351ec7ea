// Package view shows a frame (the aggregator's summary and its diagnosis)
// as plain text tables for scripts and logs, and as the live terminal view
// of `porttrace top`. Both draw the same rows, so what a script reads is
// what an operator sees.
package view

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/frame"
	"github.com/porttrace/porttrace/internal/summary"
)

// Info is what the header says about where porttrace runs.
type Info struct {
	Host, Kernel, Backend string
	// Replay names the capture being played and its speed; "" when live.
	Replay string
}

// Options choose what the tables show.
type Options struct {
	Window int    // rate window in seconds: 1, 10 or 60
	Sort   Sort   // row order of the port spaces
	Filter string // rows must contain it (case-insensitive); "" for all
}

// Sort is a port space order.
type Sort int

const (
	ByUrgency Sort = iota
	ByConns
	ByFailures
	ByTimeWait
	ByUsed
	sorts
)

var sortNames = [...]string{"urgency", "conn/s", "fail/s", "TIME_WAIT", "used %"}

func (s Sort) String() string { return sortNames[s] }

// Next is the following order, cycling.
func (s Sort) Next() Sort { return (s + 1) % sorts }

func pick(r summary.Rates, w int) float64 {
	switch w {
	case 1:
		return r.S1
	case 60:
		return r.S60
	}
	return r.S10
}

func failRate(s *summary.SpaceSummary, w int) float64 { return pick(s.SumFailures(nil).Rates, w) }

// Header is the lines above the tables.
func Header(s *frame.Frame, info Info, o Options) []string {
	var conns, fails float64
	var tw int
	for i := range s.Spaces {
		conns += pick(s.Spaces[i].Conns, o.Window)
		fails += failRate(&s.Spaces[i], o.Window)
		tw += s.Spaces[i].TimeWait
	}
	title := fmt.Sprintf("porttrace top  host %s  observed %ds  lost events %d  backend %s  kernel %s",
		info.Host, s.Seconds, s.Lost, info.Backend, info.Kernel)
	if info.Replay != "" {
		title = fmt.Sprintf("porttrace top  replay of %s  host %s  observed %ds  lost events %d  backend %s  kernel %s",
			info.Replay, info.Host, s.Seconds, s.Lost, info.Backend, info.Kernel)
	}
	lines := []string{
		title,
		fmt.Sprintf("totals (%ds): %s conn/s  %s fail/s  %s in TIME_WAIT  %d port spaces  %d processes",
			o.Window, rate(conns), rate(fails), count(tw), len(s.Spaces), len(s.Processes)),
	}
	shown := 0
	for _, ns := range s.Netns {
		if !slices.ContainsFunc(s.Spaces, func(sp summary.SpaceSummary) bool { return sp.Netns == ns.Inode }) && len(s.Netns) > 1 {
			continue
		}
		if shown == 3 {
			lines = append(lines, "  ... more namespaces: see porttrace doctor")
			break
		}
		shown++
		names := strings.Join(ns.Names, ", ")
		if ns.Pod != "" {
			names = ns.Pod + "; " + names
		}
		lines = append(lines, fmt.Sprintf("netns %d (%s): ports %d-%d, %s usable, tcp_tw_reuse %d",
			ns.Inode, names, ns.PortLow, ns.PortHigh, count(ns.Usable), ns.TWReuse))
	}
	if s.Untracked > 0 {
		lines = append(lines, fmt.Sprintf("%d sockets beyond the tracking limit: occupancy is corrected at each socket table read", s.Untracked))
	}
	if d := s.Dropped.String(); d != "" {
		lines = append(lines, "dropped: "+d)
	}
	if s.Status != "" {
		lines = append(lines, "probes: "+s.Status)
	}
	if s.Warning != "" {
		lines = append(lines, "warning: "+s.Warning)
	}
	return lines
}

// SpaceHeader is the port space table's column header.
const SpaceHeader = "PORT SPACE                                   NETNS       PROCESS             CONN/S   FAIL/S    TIME_WAIT  USED/USABLE        USED%  ETA          ALLOC p50/p99"

// Spaces is the port space table's rows, sorted and filtered.
func Spaces(s *frame.Frame, o Options) []string {
	var out []string
	for _, r := range sortedSpaces(s, o) {
		line := spaceRow(r, o.Window)
		if matches(line, o.Filter) {
			out = append(out, line)
		}
	}
	return out
}

// sortedSpaces is the port spaces in the order o asks for.
func sortedSpaces(s *frame.Frame, o Options) []*summary.SpaceSummary {
	if s.Summary == nil {
		return nil
	}
	rows := slices.Clone(s.Spaces)
	slices.SortStableFunc(rows, func(x, y summary.SpaceSummary) int {
		switch o.Sort {
		case ByConns:
			return cmp.Compare(pick(y.Conns, o.Window), pick(x.Conns, o.Window))
		case ByFailures:
			return cmp.Compare(failRate(&y, o.Window), failRate(&x, o.Window))
		case ByTimeWait:
			return cmp.Compare(y.TimeWait, x.TimeWait)
		case ByUsed:
			return cmp.Compare(y.UsedPct, x.UsedPct)
		}
		return summary.ByUrgency(x, y)
	})
	out := make([]*summary.SpaceSummary, len(rows))
	for i := range rows {
		out[i] = &rows[i]
	}
	return out
}

func spaceRow(r *summary.SpaceSummary, w int) string {
	name := r.Name
	usable, pct := "?", "?"
	if r.Usable > 0 {
		usable, pct = count(r.Usable), fmt.Sprintf("%.1f%%", r.UsedPct)
	}
	lat := "-"
	if r.AllocLatency.Count > 0 {
		lat = micros(r.AllocLatency.P50) + "/" + micros(r.AllocLatency.P99)
	}
	netns := fmt.Sprint(r.Netns)
	if r.Pod != "" { // a pod's namespace is the pod's
		netns = clip(r.Pod, 11)
	}
	return fmt.Sprintf("%-44s %-11s %-19s %-8s %-9s %-10s %-18s %-6s %-12s %s",
		clip(name, 44), netns, clip(procNames(r.Processes), 19), rate(pick(r.Conns, w)), rate(failRate(r, w)),
		count(r.TimeWait), count(r.Used)+"/"+usable, pct, eta(r), lat)
}

// ProcessHeader is the process table's column header.
const ProcessHeader = "PID      COMM             POD OR CONTAINER       CONN/S   FAIL/S    TW/S     TOTAL      PORT SPACES"

// Processes is the process table's rows, busiest first, filtered.
func Processes(s *frame.Frame, o Options) []string {
	var out []string
	for i := range s.Processes {
		if line := processRow(&s.Processes[i], o.Window); matches(line, o.Filter) {
			out = append(out, line)
		}
	}
	return out
}

// processRow is a process as the plain table prints it, under ProcessHeader.
func processRow(p *summary.ProcessSummary, w int) string {
	pid, comm := fmt.Sprint(p.PID), p.Comm
	if p.Other {
		pid, comm = "-", "(other)"
	}
	return fmt.Sprintf("%-8s %-16s %-22s %-8s %-9s %-8s %-10s %s", pid, comm, cut(cmp.Or(p.Workload(), "-"), 22),
		rate(pick(p.Conns, w)), rate(processFailRate(p, w)), rate(pick(p.TWIn, w)), count(int(p.Total)), strings.Join(p.Spaces, "; "))
}

func processFailRate(p *summary.ProcessSummary, w int) float64 {
	return pick(summary.SumFailures(p.Failures, nil).Rates, w)
}

// Diagnosis is the findings as paragraphs, or a line saying there are none.
func Diagnosis(s *frame.Frame) []string {
	if len(s.Findings) == 0 {
		return []string{"No port space is under pressure: nothing to fix."}
	}
	return diagnose.Paragraphs(s.Findings)
}

// maxTextProcesses keeps --once output readable when every request is a
// process of its own (curl in a loop).
const maxTextProcesses = 20

// Text is the whole frame as `top --once` prints it.
func Text(s *frame.Frame, info Info, o Options) string {
	var b strings.Builder
	for _, l := range Header(s, info, o) {
		b.WriteString(l + "\n")
	}
	b.WriteString("\n" + SpaceHeader + "\n")
	for _, l := range Spaces(s, o) {
		b.WriteString(l + "\n")
	}
	if nat := NAT(s); nat != nil {
		b.WriteString("\n" + strings.Join(nat, "\n") + "\n")
	}
	b.WriteString("\n" + ProcessHeader + "\n")
	procs := Processes(s, o)
	for i, l := range procs {
		if i == maxTextProcesses {
			fmt.Fprintf(&b, "... %d more processes (--json lists them all)\n", len(procs)-i)
			break
		}
		b.WriteString(l + "\n")
	}
	b.WriteString("\nDIAGNOSIS\n")
	for _, l := range Diagnosis(s) {
		b.WriteString(l + "\n")
	}
	return b.String()
}

func matches(line, filter string) bool {
	return filter == "" || strings.Contains(strings.ToLower(line), strings.ToLower(filter))
}

func procNames(refs []summary.ProcRef) string {
	var parts []string
	for _, c := range summary.Commands(refs) {
		parts = append(parts, c.String())
	}
	return cmp.Or(strings.Join(parts, ","), "-")
}

func rate(f float64) string {
	if f >= 10 || f == 0 {
		return count(int(f + 0.5))
	}
	return fmt.Sprintf("%.1f", f)
}

func count(n int) string { return humanize.Comma(int64(n)) }

// eta is the ETA cell: gone (the namespace is), EXHAUSTED, full some
// seconds ago (exhausted, and ports freed since: the failures and Used
// are of different moments), the time left, or - when the space is not
// filling.
func eta(r *summary.SpaceSummary) string {
	switch {
	case r.Gone:
		return "gone"
	case r.FreedSince():
		return "full " + duration(*r.LastExhaustion) + " ago"
	case r.Exhausted:
		return "EXHAUSTED"
	case r.ETA != nil:
		return duration(*r.ETA)
	}
	return "-"
}

func duration(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 24*time.Hour:
		return d.Round(time.Minute).String()
	}
	return ">1d"
}

func micros(d time.Duration) string {
	if d >= time.Millisecond {
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%dus", d.Microseconds())
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "~"
}

// cut shortens s to n runes, marking the cut with "~".
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "~"
}
