package report

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/frame"
	"github.com/porttrace/porttrace/internal/summary"
	"github.com/porttrace/porttrace/internal/view"
)

// table is rows of cells, drawn as aligned text or as Markdown.
type table [][]string

func (t table) text() string {
	widths := map[int]int{}
	for _, row := range t {
		for i, c := range row {
			widths[i] = max(widths[i], len(c))
		}
	}
	var b strings.Builder
	for _, row := range t {
		for i, c := range row {
			if i == len(row)-1 {
				b.WriteString(c)
			} else {
				fmt.Fprintf(&b, "%-*s  ", widths[i], c)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

func (t table) markdown() string {
	var b strings.Builder
	for i, row := range t {
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
		if i == 0 {
			b.WriteString(strings.Repeat("|---", len(row)) + "|\n")
		}
	}
	return b.String()
}

// maxRows bounds each table; --json has everything.
const maxRows = 15

func (r *Report) summary() table {
	t := table{{"", ""},
		{"host", fmt.Sprintf("%s, kernel %s, %s backend", r.Header.Host, r.Header.Kernel, r.Header.Backend)},
		{"recorded", fmt.Sprintf("%s to %s (%s)", r.Start.Format(time.RFC3339), r.End.Format("15:04:05"), r.End.Sub(r.Start).Round(time.Second))},
		{"events", fmt.Sprintf("%s, %s failed connect()/bind()", count(r.Events), count(r.Failures))},
	}
	if r.Trailer != nil {
		t = append(t, []string{"ended", fmt.Sprintf("%s; %s events lost by the ring buffer, %s dropped from the pre-trigger window",
			r.Trailer.Reason, count(r.Trailer.Lost), count(r.Trailer.Dropped))})
	} else {
		t = append(t, []string{"ended", "without a trailer: the recording was cut off (killed, or the disk filled)"})
	}
	if d := r.Final.Dropped.String(); d != "" {
		t = append(t, []string{"dropped", d})
	}
	if r.Damage != "" {
		t = append(t, []string{"damage", "reading stopped at " + r.Damage + "; everything before it is reported"})
	}
	return t
}

func (r *Report) spaces() table {
	t := table{{"PORT SPACE", "NETNS", "PROCESSES", "CONNECTIONS", "FAILURES", "TIME_WAIT ENTRIES", "PEAK USED", "ALLOC p50/p99 (last minute)"}}
	for i, s := range r.Final.Spaces {
		if i == maxRows {
			t = append(t, []string{fmt.Sprintf("... %d more", len(r.Final.Spaces)-i)})
			break
		}
		used := "-"
		if pk, ok := r.PeakUsed[s.Where()]; ok {
			used = fmt.Sprintf("%.1f%% of %s", pk, count(uint64(s.Usable)))
		}
		lat := "-"
		if s.AllocLatency.Count > 0 {
			lat = fmt.Sprintf("%s/%s", s.AllocLatency.P50.Round(time.Microsecond), s.AllocLatency.P99.Round(time.Microsecond))
		}
		t = append(t, []string{s.Name, fmt.Sprint(s.Netns), procs(s.Processes), count(s.TotalConns), failures(s.Failures), count(s.TotalTWIn), used, lat})
	}
	return t
}

func (r *Report) processes() table {
	t := table{{"PID", "COMM", "POD OR CONTAINER", "CONNECTIONS", "FAILURES", "PORT SPACES"}}
	for i, p := range r.Final.Processes {
		if i == maxRows {
			t = append(t, []string{fmt.Sprintf("... %d more", len(r.Final.Processes)-i)})
			break
		}
		t = append(t, []string{fmt.Sprint(p.PID), p.Comm, cmp.Or(p.Workload(), "-"), count(p.Total), failures(p.Failures), strings.Join(p.Spaces, "; ")})
	}
	return t
}

func (r *Report) timeline() table {
	t := table{{"TIME", "CONNECTIONS", "FAILURES", "FULLEST PORT SPACE", "USED", "TIME_WAIT"}}
	for _, p := range r.Timeline {
		t = append(t, []string{p.Time.Format("15:04:05"), count(p.Conns), count(p.Failures), cmp.Or(p.Space, "-"),
			fmt.Sprintf("%.1f%%", p.UsedPct), count(uint64(p.TimeWait))})
	}
	return t
}

func (r *Report) diagnosis() []string {
	if len(r.Findings) == 0 {
		return []string{"No port space was under pressure: nothing to fix."}
	}
	return diagnose.Paragraphs(r.Findings)
}

// Text is the report for a terminal.
func (r *Report) Text() string {
	var b strings.Builder
	b.WriteString("porttrace report\n\n" + r.summary()[1:].text())
	b.WriteString("\nPORT SPACES\n" + r.spaces().text())
	if n := r.natLines(); n != nil {
		b.WriteString("\nSOURCE NAT" + r.natWhen() + "\n" + strings.Join(n, "\n") + "\n")
	}
	b.WriteString("\nPROCESSES\n" + r.processes().text())
	b.WriteString("\nTIMELINE (every " + Step.String() + ")\n" + r.timeline().text())
	b.WriteString("\nDIAGNOSIS" + r.when() + "\n" + strings.Join(r.diagnosis(), "\n") + "\n")
	return b.String()
}

// Markdown is the report for a ticket.
func (r *Report) Markdown() string {
	var b strings.Builder
	b.WriteString("## porttrace report\n\n" + r.summary().markdown())
	b.WriteString("\n### Port spaces\n\n" + r.spaces().markdown())
	if n := r.natLines(); n != nil {
		b.WriteString("\n### Source NAT" + r.natWhen() + "\n\n```\n" + strings.Join(n, "\n") + "\n```\n")
	}
	b.WriteString("\n### Processes\n\n" + r.processes().markdown())
	b.WriteString("\n### Timeline (every " + Step.String() + ")\n\n" + r.timeline().markdown())
	b.WriteString("\n### Diagnosis" + r.when() + "\n\n")
	for _, l := range r.diagnosis() {
		if strings.HasPrefix(l, "  ") {
			b.WriteString("   " + strings.TrimSpace(l) + "\n")
		} else {
			b.WriteString("- **" + l + "**\n")
		}
	}
	return b.String()
}

func (r *Report) when() string {
	if r.Peak == nil {
		return " (at the end of the capture)"
	}
	return " (each port space at its own worst 10 s; the most failures at " + r.Peak.Time.Format("15:04:05") + ")"
}

func failures(fs []summary.Failure) string {
	if len(fs) == 0 {
		return "0"
	}
	var parts []string
	for _, f := range fs {
		parts = append(parts, count(f.Total)+" "+f.Errno)
	}
	return strings.Join(parts, ", ")
}

// procs names the first three task names of refs, and how many more.
func procs(refs []summary.ProcRef) string {
	var parts []string
	cs := summary.Commands(refs)
	for i, c := range cs {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("+%d", len(cs)-i))
			break
		}
		parts = append(parts, c.String())
	}
	return cmp.Or(strings.Join(parts, " "), "-")
}

func count(n uint64) string { return humanize.Comma(int64(n)) }

// natLines are the NAT spaces and conntrack tables as top shows them; nil
// when the capture has no conntrack rounds or nothing translates.
func (r *Report) natLines() []string {
	if r.NAT == nil {
		return nil
	}
	return view.NAT(&frame.Frame{NAT: r.NAT})
}

func (r *Report) natWhen() string {
	return " (at " + r.NAT.Time.Format("15:04:05") + ", the capture's fullest conntrack round)"
}
