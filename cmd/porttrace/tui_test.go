package main

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/churn"
	"github.com/porttrace/porttrace/internal/testnet"
)

// terminal is a tmux session on a private server: a real terminal that the
// test types into and reads back.
type terminal struct {
	t      *testing.T
	socket string
}

func newTerminal(t *testing.T) *terminal {
	testnet.RequireTool(t, "tmux")
	term := &terminal{t: t, socket: fmt.Sprintf("porttrace-test-%d", time.Now().UnixNano())}
	term.tmux("new-session", "-d", "-s", "top", "-x", "180", "-y", "50", "sh")
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
	var s string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		s = term.screen()
		missing := false
		for _, w := range want {
			missing = missing || !strings.Contains(s, w)
		}
		if !missing {
			return s
		}
	}
	term.t.Fatalf("%s: the screen never showed %q:\n%s", what, want, s)
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
	t.Logf("client %+v; screen:\n%s", res, s)
	if !strings.Contains(s, "keep-alive") && !strings.Contains(s, "keepalive") {
		t.Errorf("no keepalive advice on screen")
	}

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
