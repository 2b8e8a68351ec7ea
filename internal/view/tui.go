package view

import (
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/porttrace/porttrace/internal/live"
)

// Source gives the live view its snapshots.
type Source interface {
	Snapshot() live.Snapshot
}

type tickMsg time.Time

// Model is the live terminal view: bubbletea's model of `porttrace top`.
type Model struct {
	src      Source
	info     Info
	interval time.Duration
	opts     Options
	snap     live.Snapshot
	procs    bool // the process table instead of port spaces
	paused   bool
	help     bool
	editing  bool // typing a filter
	quit     bool
	width    int
	height   int
}

// NewModel returns the view, refreshing every interval.
func NewModel(src Source, info Info, interval time.Duration) Model {
	return Model{src: src, info: info, interval: interval, opts: Options{Window: 10}, snap: src.Snapshot(), width: 160, height: 40}
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
			m.snap = m.src.Snapshot()
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
	case "?", "h":
		m.help = !m.help
	case " ", "p":
		m.paused = !m.paused
		if !m.paused {
			m.snap = m.src.Snapshot()
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
		m.opts.Filter, m.help = "", false
	}
	return m, nil
}

var (
	titleStyle  = lipgloss.NewStyle().Bold(true)
	headStyle   = lipgloss.NewStyle().Reverse(true)
	alertStyle  = lipgloss.NewStyle().Foreground(lipgloss.Color("9")).Bold(true)
	footerStyle = lipgloss.NewStyle().Faint(true)
)

// View draws the screen.
func (m Model) View() string {
	if m.help {
		return helpText
	}
	var lines []string
	for i, l := range Header(&m.snap, m.info, m.opts) {
		style := lipgloss.NewStyle()
		if i == 0 {
			style = titleStyle
		}
		lines = append(lines, style.Render(m.fit(l)))
	}
	lines = append(lines, "")
	rows, head := Spaces(&m.snap, m.opts), SpaceHeader
	if m.procs {
		rows, head = Processes(&m.snap, m.opts), ProcessHeader
	}
	lines = append(lines, headStyle.Render(m.pad(head)))
	diag := m.wrap(Diagnosis(&m.snap))
	room := max(m.height-len(lines)-len(diag)-3, 3)
	for i, r := range rows {
		if i == room {
			lines = append(lines, footerStyle.Render("  ... more rows: filter with /"))
			break
		}
		style := lipgloss.NewStyle()
		if !m.procs && strings.Contains(r, "EXHAUSTED") {
			style = alertStyle
		}
		lines = append(lines, style.Render(m.fit(r)))
	}
	lines = append(lines, "", headStyle.Render(m.pad("DIAGNOSIS")))
	lines = append(lines, diag...)
	lines = append(lines, footerStyle.Render(m.footer()))
	return strings.Join(lines, "\n")
}

func (m Model) footer() string {
	state := "live"
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

  q, Ctrl-C   quit
  tab         switch between port spaces and processes
  s           sort port spaces: urgency, conn/s, fail/s, TIME_WAIT, used %
  w           rates over 1 s, 10 s or 60 s
  /           filter rows by text (Enter keeps it, Esc clears it)
  space, p    pause and resume the refresh
  ?, h        this help (any of these again to leave)

A port space is (netns, source address, destination address and port): the
ports connect() may pick from for that destination. USED counts its sockets
and its ports in TIME_WAIT; ETA is when it runs out at the rate it filled over
the last 10 s. Urgency puts failing spaces first, then the soonest to run out.`

// fit cuts a line to the terminal's width (ANSI codes are added after).
func (m Model) fit(s string) string {
	if lipgloss.Width(s) > m.width && m.width > 0 {
		r := []rune(s)
		if len(r) > m.width {
			return string(r[:m.width])
		}
	}
	return s
}

func (m Model) pad(s string) string {
	s = m.fit(s)
	if n := m.width - lipgloss.Width(s); n > 0 {
		s += strings.Repeat(" ", n)
	}
	return s
}

// wrap breaks each paragraph at the width, keeping its indentation and
// indenting continuation lines a little further.
func (m Model) wrap(paras []string) []string {
	var out []string
	w := max(m.width, 40)
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
		out = append(out, line)
	}
	return out
}
