package view

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/frame"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"

	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/summary"
)

type fixed struct{ s frame.Frame }

func (f *fixed) Frame() frame.Frame { return f.s }

func testFrame() frame.Frame {
	eta := 90.0
	full := summary.SpaceSummary{
		Name: "127.0.0.1 -> 127.0.0.1:8080", Netns: 7, Dst: "127.0.0.1:8080",
		Key:       summary.SpaceKey{Netns: 7, Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddrPort("127.0.0.1:8080")},
		Processes: []summary.ProcRef{{PID: 812, Comm: "nginx"}, {PID: 813, Comm: "nginx"}},
		Conns:     summary.Rates{S1: 1950, S10: 1900, S60: 1200},
		Failures:  []summary.Failure{{Errno: "EADDRNOTAVAIL", Rates: summary.Rates{S10: 30}}},
		TimeWait:  27610, Used: 28232, Usable: 28232, UsedPct: 100, Exhausted: true,
	}
	filling := summary.SpaceSummary{
		Name: "10.0.0.5 -> 10.0.0.9:5432", Netns: 7, Dst: "10.0.0.9:5432",
		Processes: []summary.ProcRef{{PID: 900, Comm: "python3"}},
		Conns:     summary.Rates{S10: 3000}, TimeWait: 1000, Used: 1200, Usable: 28232, UsedPct: 4.3, ETA: &eta,
		AllocLatency: summary.Durations{Count: 10, P50: 7000, P99: 1340000},
	}
	return frame.Frame{
		Summary: &summary.Summary{Seconds: 12, Spaces: []summary.SpaceSummary{full, filling},
			Processes: []summary.ProcessSummary{{PID: 812, Comm: "nginx"}, {PID: 900, Comm: "python3"}}},
		Findings: []diagnose.Finding{{Rule: "keepalive", Space: full.Where(), Situation: "28,232 of 28,232 ports in use", Evidence: "nginx churns", Fix: "enable keepalive"}},
	}
}

func TestText(t *testing.T) {
	s := testFrame()
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
	s := testFrame()
	names := func(o Options) []string {
		var out []string
		for _, r := range sortedSpaces(&s, o) {
			out = append(out, r.Name)
		}
		return out
	}
	if got := names(Options{Window: 10, Sort: ByConns}); !slices.Equal(got, []string{"10.0.0.5 -> 10.0.0.9:5432", "127.0.0.1 -> 127.0.0.1:8080"}) {
		t.Errorf("by conn/s over 10 s: %q", got)
	}
	if got := names(Options{Window: 1, Sort: ByConns}); got[0] != "127.0.0.1 -> 127.0.0.1:8080" {
		t.Errorf("by conn/s over 1 s: %q", got)
	}
	// The filter matches a row's text, process names included.
	if rows := Spaces(&s, Options{Window: 10, Filter: "PYTHON"}); len(rows) != 1 || !strings.HasPrefix(rows[0], "10.0.0.5 -> 10.0.0.9:5432") {
		t.Errorf("filtered: %q", rows)
	}
}

func press(m tea.Model, keys string) tea.Model {
	m, _ = m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(keys)})
	return m
}

func TestKeys(t *testing.T) {
	src := &fixed{testFrame()}
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
	// Paused: new frames are not shown.
	m = press(m, " ")
	later := testFrame()
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

// crowded is a frame with many port spaces and findings: more than any
// terminal shows at once. The exhausted space is listed last, so that the
// view must sort it up.
func crowded(n int) frame.Frame {
	s := testFrame()
	var spaces []summary.SpaceSummary
	var findings []diagnose.Finding
	for i := range n {
		eta := float64(100 + i)
		sp := summary.SpaceSummary{
			Name: fmt.Sprintf("10.1.0.%d -> 10.2.0.%d:443", i, i), Netns: 7, Dst: fmt.Sprintf("10.2.0.%d:443", i),
			Processes: []summary.ProcRef{{PID: uint32(1000 + i), Comm: "envoy"}},
			Conns:     summary.Rates{S10: 400}, Used: 20000, Usable: 28232, UsedPct: 70.8, ETA: &eta,
		}
		spaces = append(spaces, sp)
		findings = append(findings, diagnose.Finding{Rule: "keepalive", Space: sp.Where(), Situation: "filling",
			Evidence: fmt.Sprintf("envoy[%d] opens 400 connections/s", 1000+i), Fix: "reuse connections with keep-alive, which buys 28,232 ports back"})
	}
	s.Spaces = append(spaces, s.Spaces...)
	s.Findings = append(findings, s.Findings...)
	return s
}

func sized(m tea.Model, w, h int) tea.Model {
	m, _ = m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	return m
}

// TestLayouts: at every size the header, totals, the table's head and the
// exhausted row are on screen, nothing is wider than the terminal, the
// screen is no taller than it, and the diagnosis has the lines left.
func TestLayouts(t *testing.T) {
	for _, size := range [][2]int{{80, 24}, {120, 40}, {200, 50}, {100, 30}} {
		w, h := size[0], size[1]
		m := sized(NewModel(&fixed{crowded(40)}, Info{Host: "h", Backend: "tracepoint", Kernel: "6.18"}, 1), w, h)
		v := ansi.Strip(m.View())
		lines := strings.Split(v, "\n")
		if len(lines) != h || !strings.HasPrefix(lines[h-1], "live |") {
			t.Errorf("%dx%d: %d lines, the status line not at the bottom", w, h, len(lines))
		}
		for _, l := range lines {
			if ansi.StringWidth(l) > w {
				t.Errorf("%dx%d: line wider than the terminal: %q", w, h, l)
			}
		}
		for _, want := range []string{"porttrace top  host h", "totals (10s)", "PORT SPACE", "PROCESS", "FAIL/S", "USED%", "ETA",
			"127.0.0.1 -> 127.0.0.1:8080", "EXHAUSTED", "DIAGNOSIS  1 of 41, worst first", "more rows: filter with /", "q quit"} {
			if !strings.Contains(v, want) {
				t.Errorf("%dx%d: no %q on screen:\n%s", w, h, want, v)
			}
		}
		// Worst first: the exhausted space's finding is the first line
		// under the diagnosis head.
		d := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "DIAGNOSIS") })
		if d < 0 || d+1 >= len(lines) || !strings.HasPrefix(lines[d+1], "127.0.0.1 -> 127.0.0.1:8080  enable keepalive (nginx churns)") && !strings.HasPrefix(lines[d+1], "127.0.0.1 -> 127.0.0.1:8080 (netns 7)  enable keepalive (nginx churns)") {
			t.Errorf("%dx%d: the first finding is not the exhausted space's:\n%s", w, h, v)
		}
		if shown := len(lines) - d - 2; shown < minDiagnosis {
			t.Errorf("%dx%d: %d diagnosis lines", w, h, shown)
		}
		head := lines[slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "PORT SPACE") })]
		compact := !strings.Contains(head, "TIME_WAIT") && !strings.Contains(head, "ALLOC")
		if compact != (w <= 100) {
			t.Errorf("%dx%d: compact layout %v:\n%s", w, h, compact, v)
		}
		if !strings.Contains(v, "-> 127.0.0.1:8080 ") {
			t.Errorf("%dx%d: the destination of the exhausted space is cut", w, h)
		}
		if w >= 200 && (!strings.Contains(v, "NETNS") || !strings.Contains(v, "28,232/28,232") || !strings.Contains(v, trendTitle)) {
			t.Errorf("%dx%d: the wide layout lacks columns:\n%s", w, h, v)
		}
	}
}

// TestDiagnosisKeys: arrows and PgDn move the selection, which the view
// keeps on screen; Enter opens the finding in full; the filter keeps the
// findings of the rows it keeps, and those whose text matches.
func TestDiagnosisKeys(t *testing.T) {
	m := sized(NewModel(&fixed{crowded(40)}, Info{}, 1), 80, 24)
	key := func(k tea.KeyType) { m, _ = m.Update(tea.KeyMsg{Type: k}) }
	key(tea.KeyDown)
	key(tea.KeyDown)
	if v := m.View(); !strings.Contains(v, "DIAGNOSIS  3 of 41") {
		t.Errorf("two downs:\n%s", v)
	}
	key(tea.KeyPgDown)
	key(tea.KeyPgDown)
	v := ansi.Strip(m.View())
	if !strings.Contains(v, "DIAGNOSIS  ") || strings.Contains(v, "DIAGNOSIS  3 of 41") {
		t.Errorf("PgDn did not move:\n%s", v)
	}
	for range 100 {
		key(tea.KeyDown)
	}
	v = ansi.Strip(m.View())
	if !strings.Contains(v, "DIAGNOSIS  41 of 41") || !strings.Contains(v, "10.1.0.39 -> 10.2.0.39:443") {
		t.Errorf("the last finding is not in view:\n%s", v)
	}
	key(tea.KeyEnter)
	v = ansi.Strip(m.View())
	if !strings.Contains(v, "envoy[1039] opens 400 connections/s: reuse connections with keep-alive, which") ||
		!strings.Contains(v, "buys 28,232 ports back.") || !strings.Contains(v, "10.2.0.39:443 (netns 7): filling") {
		t.Errorf("Enter does not open the finding in full:\n%s", v)
	}
	key(tea.KeyEsc)
	m = press(m, "/1017")
	key(tea.KeyEnter)
	v = ansi.Strip(m.View())
	if !strings.Contains(v, "DIAGNOSIS  1 of 1") || !strings.Contains(v, "envoy[1017]") || strings.Contains(v, "nginx churns") {
		t.Errorf("the filter does not apply to the diagnosis:\n%s", v)
	}
}

func TestReplayStatus(t *testing.T) {
	m := sized(NewModel(&fixed{testFrame()}, Info{Replay: "incident.ptcap at 2x"}, 1), 120, 40)
	v := ansi.Strip(m.View())
	if !strings.Contains(v, "replay | port spaces") || strings.Contains(v, "live |") || !strings.Contains(v, "replay of incident.ptcap at 2x") {
		t.Errorf("replay status:\n%s", v)
	}
}

// TestTrend feeds a space that fills over a minute: the sparkline rises
// from left to right, and forgets what is older than a minute.
func TestTrend(t *testing.T) {
	src := &fixed{testFrame()}
	src.s.Spaces = src.s.Spaces[1:] // the filling one
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var m tea.Model = sized(NewModel(&fixed{frame.Frame{Summary: &summary.Summary{Time: t0}}}, Info{}, 1), 200, 50)
	mm := m.(Model)
	mm.src = src
	m = mm
	for i := range 61 {
		rep := *src.s.Summary
		rep.Time = t0.Add(time.Duration(i) * time.Second)
		rep.Spaces = slices.Clone(rep.Spaces)
		rep.Spaces[0].UsedPct = float64(i) * 100 / 60
		src.s.Summary = &rep
		m, _ = m.Update(tickMsg{})
	}
	h := m.(Model).trends[src.s.Spaces[0].Where()]
	if len(h) != 61 || h[0].pct != 0 || h[60].pct != 100 {
		t.Fatalf("history %d samples, %v .. %v", len(h), h[0], h[len(h)-1])
	}
	b := buckets(h, h[60].t, 10)
	if !slices.IsSorted(b) || b[0] > 20 || b[9] != 100 {
		t.Errorf("buckets %v", b)
	}
	line := m.(Model).trends.sparkline(src.s.Spaces[0].Where(), h[60].t, 10)
	if r := []rune(ansi.Strip(line)); len(r) != 10 || r[9] != '█' || r[0] == '█' {
		t.Errorf("sparkline %q", line)
	}
	// Two minutes on, the space is gone: so is its history.
	rep := *src.s.Summary
	rep.Time, rep.Spaces = t0.Add(3*time.Minute), nil
	src.s.Summary = &rep
	m, _ = m.Update(tickMsg{})
	if len(m.(Model).trends) != 0 {
		t.Errorf("history kept: %v", m.(Model).trends)
	}
	if got := buckets([]sample{{t0, 50}}, t0.Add(TrendSpan), 4); got[0] != 50 || got[3] != 50 {
		t.Errorf("a lone sample is not carried: %v", got)
	}
	if got := buckets([]sample{{t0, 50}}, t0.Add(TrendSpan/2), 4); got[0] != -1 || got[3] != 50 {
		t.Errorf("before the first sample: %v", got)
	}
}

// TestSelect keeps the spaces, processes and findings the filter flags name.
func TestSelect(t *testing.T) {
	s := testFrame()
	for _, c := range []struct {
		sel    Select
		spaces int
		procs  int
		finds  int
	}{
		{Select{}, 2, 2, 1},
		{Select{PIDs: []uint32{900}}, 1, 1, 0},
		{Select{PIDs: []uint32{813, 900}}, 2, 1, 1},
		{Select{Comm: "nginx"}, 1, 1, 1},
		{Select{DPort: 5432}, 1, 0, 0},
		{Select{Dst: netip.MustParseAddr("127.0.0.1")}, 1, 0, 1},
		{Select{Netns: 8}, 0, 0, 0},
	} {
		got := c.sel.Apply(s)
		if len(got.Spaces) != c.spaces || len(got.Processes) != c.procs || len(got.Findings) != c.finds {
			t.Errorf("%+v: %d spaces, %d processes, %d findings", c.sel, len(got.Spaces), len(got.Processes), len(got.Findings))
		}
	}
	if len(s.Spaces) != 2 {
		t.Error("Select changed its input")
	}
}

// TestProcessLayouts: the process table (Tab) drops its least needed
// columns to fit, as the port space table does: at 80 columns PID, COMM,
// FAIL/S and PORT SPACES stay and nothing is wider than the terminal; at
// 200 every column is there.
func TestProcessLayouts(t *testing.T) {
	f := testFrame()
	for _, c := range []struct {
		w       int
		want    []string
		dropped []string
	}{
		{80, []string{"PID", "COMM", "FAIL/S", "PORT SPACES", "nginx", "python3"}, []string{"POD OR CONTAINER", "TOTAL"}},
		{200, []string{"PID", "COMM", "POD OR CONTAINER", "CONN/S", "FAIL/S", "TW/S", "TOTAL", "PORT SPACES"}, nil},
	} {
		m, _ := sized(NewModel(&fixed{f}, Info{Host: "h"}, 1), c.w, 30).Update(tea.KeyMsg{Type: tea.KeyTab})
		v := ansi.Strip(m.View())
		for _, l := range strings.Split(v, "\n") {
			if ansi.StringWidth(l) > c.w {
				t.Errorf("%d columns: line wider than the terminal: %q", c.w, l)
			}
		}
		for _, want := range c.want {
			if !strings.Contains(v, want) {
				t.Errorf("%d columns: no %q on screen:\n%s", c.w, want, v)
			}
		}
		for _, gone := range c.dropped {
			if strings.Contains(v, gone) {
				t.Errorf("%d columns: %q should have been dropped:\n%s", c.w, gone, v)
			}
		}
	}
}
