package view

import (
	"fmt"
	"strings"

	"github.com/porttrace/porttrace/internal/frame"
	"github.com/porttrace/porttrace/internal/nat"
)

// NATHeader is the NAT space table's column header.
// FAILED and ALLOC p50/p99 are the NAT probe's (fentry, kprobe): the
// flows refused in the last minute and the NAT's port search time; "-"
// where no probe counted a flow.
const NATHeader = "NAT SPACE (translated)                       NETNS       TOP CLIENTS                            INS_FAIL DROP     USED/PORTS   USED%   FAILED   ALLOC p50/p99   RULE"

// NAT is the NAT space table and each translating namespace's conntrack
// table, as lines under their headers; nil when the frame has none.
func NAT(s *frame.Frame) []string {
	if s.NAT == nil || len(s.NAT.Spaces) == 0 && len(s.NAT.Tables) == 0 {
		return nil
	}
	out := []string{NATHeader}
	for i := range s.NAT.Spaces {
		out = append(out, natRow(&s.NAT.Spaces[i]))
	}
	for _, c := range s.NAT.Tables {
		line := fmt.Sprintf("CONNTRACK netns %-11s %s/%s entries; insert_failed +%d, drop +%d, early_drop +%d in %.0f s (since start: %d, %d, %d)",
			natNetns(c.Netns, c.Names), count(c.Count), count(c.Max), c.Rise.InsertFailed, c.Rise.Drop, c.Rise.EarlyDrop, c.Seconds,
			c.Stats.InsertFailed, c.Stats.Drop, c.Stats.EarlyDrop)
		if c.Dropped > 0 {
			line += fmt.Sprintf("; %d translated entries past the bound, not counted", c.Dropped)
		}
		if c.DroppedSpaces > 0 {
			line += fmt.Sprintf("; %d quieter NAT spaces past the %d shown", c.DroppedSpaces, nat.MaxSpaces)
		}
		if c.Err != "" {
			line += "; " + c.Err
		}
		out = append(out, line)
	}
	return out
}

func natRow(r *nat.Space) string {
	var cl []string
	for _, c := range r.Clients {
		who := c.Addr.String()
		if len(c.Names) > 0 {
			who = c.Names[0]
		}
		if c.Failures > 0 {
			who += fmt.Sprintf(" %d (%d failed)", c.Used, c.Failures)
		} else {
			who += fmt.Sprintf(" %d", c.Used)
		}
		cl = append(cl, who)
	}
	failed, lat := "-", "-"
	if r.Flows > 0 {
		failed = fmt.Sprint(r.Failures)
	}
	if r.AllocLatency.Count > 0 {
		lat = micros(r.AllocLatency.P50) + "/" + micros(r.AllocLatency.P99)
	}
	rule := r.Rule
	if rule == "" {
		rule = "(no rule read: nf_nat default range)"
	} else if _, after, ok := strings.Cut(rule, ": "); ok {
		rule = after
	}
	return fmt.Sprintf("%-44s %-11s %-38s %-8d %-8d %-12s %-7s %-8s %-15s %s",
		clip(fmt.Sprintf("NAT %s %s->%s", r.Proto, r.Addr, r.Dst), 44), natNetns(r.Netns, r.Names), clip(strings.Join(cl, ", "), 38),
		r.InsertFailed, r.Drop, count(r.Used)+"/"+count(r.Ports), fmt.Sprintf("%.1f%%", 100*float64(r.Used)/float64(max(r.Ports, 1))), failed, lat, rule)
}

func natNetns(ino uint32, names []string) string {
	if len(names) > 0 && strings.HasPrefix(names[0], "pod ") {
		return clip(strings.TrimPrefix(names[0], "pod "), 11)
	}
	return fmt.Sprint(ino)
}

// natRows are the live view's NAT rows under the port spaces: each NAT
// space on a line of its own (marked NAT, full ones in the alert style),
// filtered like the table, cut to the terminal.
func (m Model) natRows() []string {
	if m.frame.NAT == nil {
		return nil
	}
	var out []string
	for i := range m.frame.NAT.Spaces {
		sp := &m.frame.NAT.Spaces[i]
		line := natRow(sp)
		if !matches(line, m.opts.Filter) {
			continue
		}
		if sp.Full() {
			out = append(out, alertStyle.Render(m.fit(line)))
		} else {
			out = append(out, m.fit(line))
		}
	}
	return out
}
