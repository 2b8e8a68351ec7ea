package e2e

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/testkit/churn"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// terminal is a tmux session on a private server: a real terminal that the
// test types into and reads back.
type terminal struct {
	t      *testing.T
	socket string
}

func newTerminal(t *testing.T) *terminal { return newTerminalSized(t, 180, 50) }

// newTerminalSized is a terminal of width x height cells.
func newTerminalSized(t *testing.T, width, height int) *terminal {
	testnet.RequireTool(t, "tmux")
	term := &terminal{t: t, socket: fmt.Sprintf("porttrace-test-%d", time.Now().UnixNano())}
	term.tmux("new-session", "-d", "-s", "top", "-x", fmt.Sprint(width), "-y", fmt.Sprint(height), "sh")
	t.Cleanup(func() { exec.Command("tmux", "-L", term.socket, "kill-server").Run() })
	return term
}

func (term *terminal) tmux(args ...string) string {
	term.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", term.socket}, args...)...).CombinedOutput()
	if err != nil {
		term.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// keys types into the terminal, one tmux argument per key, with a pause so
// that an Esc is not read as the Alt prefix of the next key.
func (term *terminal) keys(keys ...string) {
	for _, k := range keys {
		term.tmux("send-keys", "-t", "top", k)
		time.Sleep(50 * time.Millisecond)
	}
}

func (term *terminal) screen() string { return term.tmux("capture-pane", "-p", "-t", "top") }

// waitFor returns the screen once it shows every one of want.
func (term *terminal) waitFor(what string, want ...string) string {
	term.t.Helper()
	return term.waitUntil(what, func(s string) bool {
		for _, w := range want {
			if !strings.Contains(s, w) {
				return false
			}
		}
		return true
	}, fmt.Sprintf("%q", want))
}

// waitUntil returns the screen once ok holds for it; desc says what ok wants.
func (term *terminal) waitUntil(what string, ok func(string) bool, desc string) string {
	term.t.Helper()
	var s string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if s = term.screen(); ok(s) {
			return s
		}
	}
	term.t.Fatalf("%s: the screen never showed %s:\n%s", what, desc, s)
	return ""
}

// TestTopInTerminal drives the live view in tmux during a real exhaustion.
func TestTopInTerminal(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	term := newTerminal(t)
	term.keys("stty -a > /dev/null; echo before-top", "Enter")
	term.waitFor("shell", "before-top")

	term.keys(binary+" top --interval 1s", "Enter")
	term.waitFor("start", "porttrace top  host", "DIAGNOSIS", "q quit")
	cl := ns.StartClient(t, churn.Config{Target: dst, Count: 30, Close: churn.CloseFin})
	res := cl.Wait(t)
	pid := fmt.Sprint(cl.Cmd.Process.Pid)
	space := "127.0.0.1 -> 127.0.0.1:8080"
	s := term.waitFor("churn", space, "EXHAUSTED", "20/20", "100.0%")
	// The socket table alone can fill the row; the client's rates (and so
	// the advice that quotes them) need its events and a second observed.
	s = term.waitUntil("churn's events", func(s string) bool {
		return strings.Contains(s, "["+pid+"]") && !strings.Contains(s, "observed 0s")
	}, "the client's pid after the first second")
	t.Logf("client %+v; screen:\n%s", res, s)
	// The worst finding, opened in full, is the keepalive advice.
	term.keys("Enter")
	s = term.waitFor("finding", "(Enter or Esc closes)")
	if !strings.Contains(s, "keep-alive") && !strings.Contains(s, "keepalive") {
		t.Errorf("no keepalive advice in the first finding:\n%s", s)
	}
	term.keys("Escape")

	term.keys("Tab")
	term.waitFor("process table", "PID      COMM", pid, "| processes |")
	term.keys("/")
	for _, r := range pid {
		term.keys(string(r))
	}
	term.keys("Enter")
	s = term.waitFor("filter", "filter: "+pid)
	rows := strings.Split(s[strings.Index(s, "PID      COMM"):strings.Index(s, "DIAGNOSIS")], "\n")
	for _, row := range rows[1:] {
		if row = strings.TrimSpace(row); row != "" && !strings.Contains(row, pid) {
			t.Errorf("the filter kept a row without %s: %q", pid, row)
		}
	}
	term.keys("Escape")
	term.keys("Tab", "s")
	term.waitFor("sort", "sort: conn/s", "port spaces |")
	term.keys("w")
	term.waitFor("window", "rates over 60s")
	term.keys("Space")
	term.waitFor("pause", "PAUSED")
	term.keys("?")
	term.waitFor("help", "porttrace top: keys")
	term.keys("?", "q")
	term.waitFor("exit", "tracing with the")

	// The terminal is back: main screen, and a line discipline that
	// echoes and reads lines again.
	if alt := strings.TrimSpace(term.tmux("display-message", "-p", "-t", "top", "#{alternate_on}")); alt != "0" {
		t.Errorf("still on the alternate screen after q")
	}
	term.keys("stty -a | tr ' ' '\\n' | grep -x -e icanon -e echo | tr '\\n' ' '; echo", "Enter")
	term.waitFor("terminal modes", "icanon echo")
}

// TestTopSizes runs the live view during a real exhaustion of one port
// space while two more fill, in a terminal of 80x24 resized to 120x40 and
// 200x50 and back: at each size the title is on the first line, the status
// on the last, the table's head and the exhausted space's row in between,
// and no line wraps (a wrapped line would push the title off the screen).
func TestTopSizes(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	full := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	half := ns.Listen(t, "127.0.0.1:8081", 20*time.Millisecond)
	third := ns.Listen(t, "127.0.0.1:8082", 20*time.Millisecond)
	term := newTerminalSized(t, 80, 24)
	term.keys(binary+" top --interval 1s --netns "+fmt.Sprint(ns.Inode), "Enter")
	term.waitFor("start", "porttrace top  host", "DIAGNOSIS", "live |")
	for _, c := range []churn.Config{{Target: full, Count: 30}, {Target: half, Count: 12}, {Target: third, Count: 6}} {
		c.Close = churn.CloseFin
		res := ns.StartClient(t, c).Wait(t)
		t.Logf("client to %s: %+v", c.Target, res)
	}
	exhausted := "-> 127.0.0.1:8080"
	for _, size := range [][2]int{{80, 24}, {120, 40}, {200, 50}, {80, 24}} {
		w, h := size[0], size[1]
		term.tmux("resize-window", "-t", "top", "-x", fmt.Sprint(w), "-y", fmt.Sprint(h))
		want := []string{"PORT SPACE", "PROCESS", "FAIL/S", "USED%", "ETA", exhausted, "EXHAUSTED", "-> 127.0.0.1:8081", "60.0%", "30.0%"}
		if w >= 120 {
			want = append(want, "20/20", "TIME_WAIT", "USED% 60s")
		}
		// Wait for the redraw at this size: its layout, and the status
		// line on the last of h lines.
		layout := map[int]string{80: "USED% 60s ETA", 120: "TIME_WAIT", 200: "NETNS"}[w]
		var s string
		var lines []string
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			s = term.waitFor(fmt.Sprintf("%dx%d", w, h), append(want, layout)...)
			lines = strings.Split(strings.TrimRight(s, "\n"), "\n")
			head := ""
			if i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "PORT SPACE") }); i >= 0 {
				head = lines[i]
			}
			if len(lines) == h && strings.HasPrefix(lines[h-1], "live |") && (w > 80 || !strings.Contains(head, "TIME_WAIT")) && (w > 120 || !strings.Contains(head, "NETNS")) {
				break
			}
		}
		if !strings.HasPrefix(lines[0], "porttrace top  host") || len(lines) != h || !strings.HasPrefix(lines[h-1], "live |") {
			t.Errorf("%dx%d: title or status line not in place (%d lines):\n%s", w, h, len(lines), s)
		}
		row := lines[slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, exhausted) })]
		if !strings.Contains(row, "EXHAUSTED") || !strings.Contains(row, "100.0%") {
			t.Errorf("%dx%d: the exhausted row is cut: %q", w, h, row)
		}
		if d := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "DIAGNOSIS") }); d < 0 || !strings.Contains(lines[d+1], exhausted) {
			t.Errorf("%dx%d: the first finding is not about the exhausted space:\n%s", w, h, s)
		}
	}
	term.keys("q")
	term.waitFor("exit", "tracing with the")
	if alt := strings.TrimSpace(term.tmux("display-message", "-p", "-t", "top", "#{alternate_on}")); alt != "0" {
		t.Errorf("still on the alternate screen after q")
	}
}
