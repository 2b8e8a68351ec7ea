package view

import (
	"net/netip"
	"strings"
	"testing"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/porttrace/porttrace/internal/aggregate"
	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/live"
)

type fixed struct{ s live.Snapshot }

func (f *fixed) Snapshot() live.Snapshot { return f.s }

func snapshot() live.Snapshot {
	eta := 90.0
	full := aggregate.SpaceReport{
		Name: "127.0.0.1 -> 127.0.0.1:8080", Netns: 7, Dst: "127.0.0.1:8080",
		Key:       aggregate.SpaceKey{Netns: 7, Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddrPort("127.0.0.1:8080")},
		Processes: []aggregate.ProcRef{{PID: 812, Comm: "nginx"}, {PID: 813, Comm: "nginx"}},
		Conns:     aggregate.Rates{S1: 1950, S10: 1900, S60: 1200},
		Failures:  []aggregate.Failure{{Errno: "EADDRNOTAVAIL", Rates: aggregate.Rates{S10: 30}}},
		TimeWait:  27610, Used: 28232, Usable: 28232, UsedPct: 100, Exhausted: true,
	}
	filling := aggregate.SpaceReport{
		Name: "10.0.0.5 -> 10.0.0.9:5432", Netns: 7, Dst: "10.0.0.9:5432",
		Processes: []aggregate.ProcRef{{PID: 900, Comm: "python3"}},
		Conns:     aggregate.Rates{S10: 3000}, TimeWait: 1000, Used: 1200, Usable: 28232, UsedPct: 4.3, ETA: &eta,
		AllocLatency: aggregate.Summary{Count: 10, P50: 7000, P99: 1340000},
	}
	return live.Snapshot{
		Report: &aggregate.Report{Seconds: 12, Spaces: []aggregate.SpaceReport{full, filling},
			Processes: []aggregate.ProcessReport{{PID: 812, Comm: "nginx"}, {PID: 900, Comm: "python3"}}},
		Findings: []diagnose.Finding{{Rule: "keepalive", Space: full.Where(), Situation: "28,232 of 28,232 ports in use", Evidence: "nginx churns", Fix: "enable keepalive"}},
	}
}

func TestText(t *testing.T) {
	s := snapshot()
	out := Text(&s, Info{Host: "h", Kernel: "6.1", Backend: "fentry"}, Options{Window: 10})
	for _, want := range []string{
		"backend fentry", "4,900 conn/s  30 fail/s  28,610 in TIME_WAIT",
		"127.0.0.1 -> 127.0.0.1:8080", "nginx(2)", "27,610", "28,232/28,232", "100.0%", "EXHAUSTED",
		"python3[900]", "1m30s", "7us/1.3ms",
		"127.0.0.1 -> 127.0.0.1:8080 (netns 7): 28,232 of 28,232 ports in use\n  1. nginx churns: enable keepalive.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
}

func TestSortAndFilter(t *testing.T) {
	s := snapshot()
	rows := Spaces(&s, Options{Window: 10, Sort: ByConns})
	if len(rows) != 2 || !strings.HasPrefix(rows[0], "10.0.0.5") {
		t.Errorf("by conn/s: %q", rows)
	}
	if rows := Spaces(&s, Options{Window: 10, Filter: "PYTHON"}); len(rows) != 1 || !strings.Contains(rows[0], "python3") {
		t.Errorf("filtered: %q", rows)
	}
	if rows := Spaces(&s, Options{Window: 1, Sort: ByConns}); !strings.HasPrefix(rows[0], "127.0.0.1") {
		t.Errorf("by conn/s over 1 s: %q", rows)
	}
}

func press(m tea.Model, keys string) tea.Model {
	m, _ = m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(keys)})
	return m
}

func TestKeys(t *testing.T) {
	src := &fixed{snapshot()}
	var m tea.Model = NewModel(src, Info{}, 1)
	m, _ = m.Update(tea.WindowSizeMsg{Width: 200, Height: 40})
	// Several keys in one message, as a fast typist or tmux sends them.
	m = press(m, "sw/pyth")
	m, _ = m.Update(tea.KeyMsg{Type: tea.KeyEnter})
	v := m.View()
	for _, want := range []string{"sort: conn/s", "rates over 60s", "filter: pyth", "python3[900]"} {
		if !strings.Contains(v, want) {
			t.Errorf("view lacks %q:\n%s", want, v)
		}
	}
	if strings.Contains(v, "nginx(2)") {
		t.Errorf("the filter kept nginx's row")
	}
	// Paused: new snapshots are not shown.
	m = press(m, " ")
	later := snapshot()
	later.Seconds = 99
	src.s = later
	m, _ = m.Update(tickMsg{})
	if v := m.View(); !strings.Contains(v, "PAUSED") || strings.Contains(v, "observed 99s") {
		t.Errorf("pause: %s", v)
	}
	m = press(m, "?")
	if !strings.Contains(m.View(), "porttrace top: keys") {
		t.Error("no help")
	}
	if _, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("q")}); cmd == nil {
		t.Error("q does not quit")
	}
}
