package view

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/porttrace/porttrace/internal/frame"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"

	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/summary"
)

// Source gives the live view its frames: live.Monitor and report.Player.
type Source interface {
	Frame() frame.Frame
}

type tickMsg time.Time

// Model is the live terminal view: bubbletea's model of `porttrace top`.
type Model struct {
	src      Source
	info     Info
	interval time.Duration
	opts     Options
	frame    frame.Frame
	procs    bool // the process table instead of port spaces
	paused   bool
	help     bool
	editing  bool // typing a filter
	quit     bool
	width    int
	height   int
	trends   trends
	selected int  // the diagnosis line the arrows move
	open     bool // the selected finding in full
}

// NewModel returns the view, refreshing every interval.
func NewModel(src Source, info Info, interval time.Duration) Model {
	m := Model{src: src, info: info, interval: interval, opts: Options{Window: 10}, frame: src.Frame(), width: 80, height: 24, trends: trends{}}
	m.trends.add(&m.frame)
	return m
}

func (m Model) tick() tea.Cmd {
	return tea.Tick(m.interval, func(t time.Time) tea.Msg { return tickMsg(t) })
}

// Init starts the refresh.
func (m Model) Init() tea.Cmd { return m.tick() }

// Update handles refreshes, resizes and keys.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tickMsg:
		if !m.paused {
			m.frame = m.src.Frame()
			m.trends.add(&m.frame)
		}
		return m, m.tick()
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case tea.KeyMsg:
		// Keys typed faster than a read arrive as one message of several
		// runes (and so do keys sent by tmux): take them one at a time.
		if msg.Type == tea.KeyRunes && len(msg.Runes) > 1 && !msg.Paste {
			var cmd tea.Cmd
			var model tea.Model = m
			for _, r := range msg.Runes {
				model, cmd = model.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}})
				if cmd != nil {
					return model, cmd
				}
			}
			return model, nil
		}
		if m.editing {
			if m = m.editFilter(msg); m.quit {
				return m, tea.Quit
			}
			return m, nil
		}
		return m.key(msg)
	}
	return m, nil
}

func (m Model) editFilter(k tea.KeyMsg) Model {
	switch k.Type {
	case tea.KeyCtrlC:
		m.quit = true
	case tea.KeyEnter:
		m.editing = false
	case tea.KeyEsc:
		m.editing, m.opts.Filter = false, ""
	case tea.KeyBackspace:
		if f := []rune(m.opts.Filter); len(f) > 0 {
			m.opts.Filter = string(f[:len(f)-1])
		}
	case tea.KeyRunes, tea.KeySpace:
		m.opts.Filter += string(k.Runes)
	}
	return m
}

func (m Model) key(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	switch k.String() {
	case "q", "ctrl+c":
		return m, tea.Quit
	case "up", "k":
		m.selected--
	case "down", "j":
		m.selected++
	case "pgup":
		m.selected -= max(m.diagRoom()-1, 1)
	case "pgdown":
		m.selected += max(m.diagRoom()-1, 1)
	case "home":
		m.selected = 0
	case "end":
		m.selected = len(m.findings()) - 1
	case "enter":
		m.open = !m.open
	case "?", "h":
		m.help = !m.help
	case " ", "p":
		m.paused = !m.paused
		if !m.paused {
			m.frame = m.src.Frame()
			m.trends.add(&m.frame)
		}
	case "tab":
		m.procs = !m.procs
	case "s":
		m.opts.Sort = m.opts.Sort.Next()
	case "w":
		m.opts.Window = map[int]int{1: 10, 10: 60, 60: 1}[m.opts.Window]
	case "/":
		m.editing = true
	case "esc":
		m.opts.Filter, m.help, m.open = "", false, false
	}
	m.selected = min(max(m.selected, 0), max(len(m.findings())-1, 0))
	return m, nil
}

var (
	titleStyle  = lipgloss.NewStyle().Bold(true)
	headStyle   = lipgloss.NewStyle().Reverse(true)
	alertStyle  = lipgloss.NewStyle().Foreground(lipgloss.Color("9")).Bold(true)
	selectStyle = lipgloss.NewStyle().Reverse(true)
	footerStyle = lipgloss.NewStyle().Faint(true)
)

// minDiagnosis is the diagnosis lines kept under the table, whatever the
// number of rows: the table gives way first, the header never.
const minDiagnosis = 3

// View draws the screen: header, totals and the table first, so that they
// stay whatever the height; the diagnosis takes what is left, one line per
// finding; the status line last. No line is wider than the terminal.
func (m Model) View() string {
	if m.help {
		return strings.Join(m.fitAll(strings.Split(helpText, "\n")), "\n")
	}
	top := m.header()
	head, rows := m.table()
	room, diagRoom := m.rooms(len(top), len(rows))
	var table []string
	for i, r := range rows {
		if i == room-1 && len(rows) > room {
			table = append(table, footerStyle.Render(m.fit(fmt.Sprintf("  ... %d more rows: filter with /", len(rows)-i))))
			break
		}
		table = append(table, r)
	}
	lines := append(top, "", headStyle.Render(m.pad(head)))
	lines = append(lines, table...)
	lines = append(lines, "")
	lines = append(lines, m.diagnosis(diagRoom)...)
	for len(lines) < m.height-1 {
		lines = append(lines, "") // the status line stays at the bottom
	}
	lines = append(lines, footerStyle.Render(m.footer()))
	return strings.Join(lines, "\n")
}

// header is the title, totals and namespace lines, fewer namespaces on a
// short terminal.
func (m Model) header() []string {
	h := Header(&m.frame, m.info, m.opts)
	if m.height < 40 && len(h) > 3 {
		h = append(h[:3:3], h[len(h)-countWarnings(h):]...)
	}
	var out []string
	for i, l := range h {
		if i == 0 {
			out = append(out, titleStyle.Render(m.fit(l)))
			continue
		}
		out = append(out, m.fit(l))
	}
	return out
}

// countWarnings is the header's trailing lines that are not namespaces.
func countWarnings(h []string) int {
	n := 0
	for i := len(h) - 1; i >= 2 && !strings.HasPrefix(h[i], "netns ") && !strings.HasPrefix(h[i], "  ..."); i-- {
		n++
	}
	return n
}

// table is the header and rows of the table shown: port spaces in the
// columns that fit, or processes.
func (m Model) table() (string, []string) {
	ctx := cellCtx{window: m.opts.Window, trend: func(key string, w int) string { return m.trends.sparkline(key, m.frame.Time, w) }}
	if m.procs {
		cols, widths := layout(processColumns, m.width)
		if m.frame.Summary == nil {
			return tableHeader(cols, widths), nil
		}
		var rows []string
		for i := range m.frame.Processes {
			p := &m.frame.Processes[i]
			if matches(processRow(p, m.opts.Window), m.opts.Filter) {
				rows = append(rows, tableRow(p, cols, widths, ctx))
			}
		}
		return tableHeader(cols, widths), rows
	}
	cols, widths := layout(spaceColumns, m.width)
	var rows []string
	for _, sp := range m.spaces() {
		row := tableRow(sp, cols, widths, ctx)
		if sp.Exhausted {
			row = alertStyle.Render(ansi.Strip(row))
		}
		rows = append(rows, row)
	}
	rows = append(rows, m.natRows()...)
	return tableHeader(cols, widths), rows
}

// spaces is the port spaces in the chosen order that pass the filter (on
// the same text the plain table prints).
func (m Model) spaces() []*summary.SpaceSummary {
	if m.frame.Summary == nil {
		return nil
	}
	order := sortedSpaces(&m.frame, m.opts)
	var out []*summary.SpaceSummary
	for _, sp := range order {
		if matches(spaceRow(sp, m.opts.Window), m.opts.Filter) {
			out = append(out, sp)
		}
	}
	return out
}

// findings is the diagnosis, worst port space first (by urgency), kept by
// the filter when their line or their port space's row matches it.
func (m Model) findings() []diagnose.Finding {
	if m.frame.Summary == nil {
		return nil
	}
	rank := map[string]int{}
	rowMatch := map[string]bool{}
	urgent := slices.Clone(m.frame.Spaces)
	slices.SortStableFunc(urgent, summary.ByUrgency)
	for i := range urgent {
		rank[urgent[i].Where()] = i
		rowMatch[urgent[i].Where()] = matches(spaceRow(&urgent[i], m.opts.Window), m.opts.Filter)
	}
	fs := slices.Clone(m.frame.Findings)
	slices.SortStableFunc(fs, func(a, b diagnose.Finding) int { return cmp.Compare(rank[a.Space], rank[b.Space]) })
	return slices.DeleteFunc(fs, func(f diagnose.Finding) bool {
		return m.opts.Filter != "" && !rowMatch[f.Space] && !matches(m.findingLine(f), m.opts.Filter)
	})
}

// findingLine is a finding on one line: where, then the fix, then the
// evidence, so that a line cut at the edge keeps what to do. Under 120
// columns the namespace is left out (the table's row has it).
func (m Model) findingLine(f diagnose.Finding) string {
	where := f.Space
	if m.width < 120 {
		where, _, _ = strings.Cut(where, " (netns ")
	}
	if f.Fix == "" {
		return where + "  " + f.Evidence + "."
	}
	return where + "  " + f.Fix + " (" + f.Evidence + ")"
}

// diagnosis is the diagnosis' head and room lines under it: one line per
// finding, the selected one reversed, scrolled to keep it in view; or the
// selected finding in full.
func (m Model) diagnosis(room int) []string {
	fs := m.findings()
	sel := min(m.selected, max(len(fs)-1, 0))
	title := "DIAGNOSIS"
	if len(fs) > 0 {
		title = fmt.Sprintf("DIAGNOSIS  %d of %d, worst first  (up/down, PgUp/PgDn select; Enter opens)", sel+1, len(fs))
	}
	out := []string{headStyle.Render(m.pad(title))}
	if len(fs) == 0 {
		msg := "No port space is under pressure: nothing to fix."
		if len(m.frame.Findings) > 0 {
			msg = "No finding matches the filter."
		}
		return append(out, m.fit(msg))
	}
	if m.open {
		f := fs[sel]
		full := m.wrap([]string{f.Space + ": " + f.Situation, "  " + f.Advice(), "  (Enter or Esc closes)"})
		return append(out, full[:min(len(full), room)]...)
	}
	first := min(max(sel-room+1, 0), max(len(fs)-room, 0))
	for i := first; i < len(fs) && i < first+room; i++ {
		l := m.fit(m.findingLine(fs[i]))
		if i == sel {
			l = selectStyle.Render(m.pad(l))
		}
		out = append(out, l)
	}
	return out
}

// rooms is how many table rows and diagnosis lines fit under the header:
// the header, the table's head and the status line always; minDiagnosis
// lines of diagnosis before the table gets more than one row.
func (m Model) rooms(header, rows int) (table, diagnosis int) {
	table = max(m.height-header-3-minDiagnosis-2, 1) // blank, table head, blank; diagnosis head, status
	shown := min(rows, table)
	return table, max(m.height-header-shown-5, 1)
}

// diagRoom is how many findings one page shows, for PgUp and PgDn.
func (m Model) diagRoom() int {
	_, rows := m.table()
	_, d := m.rooms(len(m.header()), len(rows))
	return d
}

func (m Model) footer() string {
	state := "live"
	if m.info.Replay != "" {
		state = "replay"
	}
	if m.paused {
		state = "PAUSED"
	}
	table := "port spaces"
	if m.procs {
		table = "processes"
	}
	f := "filter: " + m.opts.Filter
	if m.editing {
		f += "_"
	}
	return m.fit(strings.Join([]string{state, table, "sort: " + m.opts.Sort.String(),
		"rates over " + map[int]string{1: "1s", 10: "10s", 60: "60s"}[m.opts.Window], f,
		"q quit  ? help  tab table  s sort  w window  / filter  space pause"}, " | "))
}

const helpText = `porttrace top: keys

  q, Ctrl-C     quit
  tab           switch between port spaces and processes
  s             sort port spaces: urgency, conn/s, fail/s, TIME_WAIT, used %
  w             rates over 1 s, 10 s or 60 s
  /             filter rows and findings by text (Enter keeps it, Esc clears it)
  up, down      select a finding; PgUp, PgDn a page at a time; Home, End
  Enter         open the selected finding in full (Enter or Esc closes it)
  space, p      pause and resume the refresh
  ?, h          this help (any of these again to leave)

A port space is (netns, source address, destination address and port): the
ports connect() may pick from for that destination. USED counts its sockets
and its ports in TIME_WAIT; USED% 60s is its fill over the last minute; ETA
is when it runs out at the rate it filled over the last 10 s, and says gone
for a namespace that is gone (its rows stay a minute). Urgency puts
failing spaces first, then the soonest to run out. On a narrow terminal the
least urgent columns go first: NETNS, ALLOC, USED/USABLE, TIME_WAIT, the
trend, CONN/S.`

// fit cuts a line to the terminal's width, ANSI codes included.
func (m Model) fit(s string) string {
	if m.width > 0 && ansi.StringWidth(s) > m.width {
		return ansi.Truncate(s, m.width, "")
	}
	return s
}

func (m Model) fitAll(ls []string) []string {
	for i := range ls {
		ls[i] = m.fit(ls[i])
	}
	return ls
}

func (m Model) pad(s string) string {
	s = m.fit(s)
	if n := m.width - ansi.StringWidth(s); n > 0 {
		s += strings.Repeat(" ", n)
	}
	return s
}

// wrap breaks each paragraph at the width, keeping its indentation and
// indenting continuation lines a little further.
func (m Model) wrap(paras []string) []string {
	var out []string
	w := max(m.width, 20)
	for _, p := range paras {
		indent := p[:len(p)-len(strings.TrimLeft(p, " "))]
		line, cont := "", indent+"   "
		for _, word := range strings.Fields(p) {
			switch {
			case line == "":
				line = indent + word
			case len(line)+1+len(word) > w:
				out = append(out, line)
				line = cont + word
			default:
				line += " " + word
			}
		}
		out = append(out, m.fit(line))
	}
	return out
}
