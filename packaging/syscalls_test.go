package packaging

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// TestUnitSyscalls: every system call `porttrace agent` makes while it
// attaches its probes, reads the socket tables and serves a scrape is one
// the unit's SystemCallFilter allows (as systemd-analyze expands its
// groups), so that the filter cannot fail the agent on a host where
// systemd enforces it. strace records the calls.
func TestUnitSyscalls(t *testing.T) {
	testnet.RequireRoot(t)
	strace := testnet.RequireTool(t, "strace")
	testnet.RequireTool(t, "systemd-analyze")
	allowed := unitFilter(t, "porttrace-agent.service")

	bin := filepath.Join(t.TempDir(), "porttrace")
	run(t, "go", "build", "-o", bin, "../cmd/porttrace")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	trace := filepath.Join(t.TempDir(), "strace")
	cmd := exec.Command(strace, "-f", "-qq", "-o", trace, bin, "agent", "--metrics-addr", addr, "--cri-socket", "none")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	exporting := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "porttrace: exporting") {
				exporting <- true
			}
		}
		close(exporting)
	}()
	select {
	case ok := <-exporting:
		if !ok {
			t.Fatal("the agent stopped before exporting")
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the agent did not start exporting within 2 minutes under strace")
	}
	time.Sleep(6 * time.Second) // a round of socket tables (every 5 s)
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The agent is strace's child: SIGTERM it, as systemd stops it.
	kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
	for _, pid := range strings.Fields(string(kids)) {
		exec.Command("kill", "-TERM", pid).Run()
	}
	cmd.Wait()

	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	call := regexp.MustCompile(`^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]`)
	used := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		if m := call.FindStringSubmatch(line); m != nil && m[1] != "exited" {
			used[m[1]]++
		}
	}
	if used["bpf"] == 0 {
		t.Fatalf("strace saw no bpf() call: %d calls in all", len(used))
	}
	for name, n := range used {
		if !allowed[name] {
			t.Errorf("the agent calls %s() (%d times), which the unit's SystemCallFilter refuses", name, n)
		}
	}
	t.Logf("%d distinct system calls", len(used))
}

// unitFilter is the set of calls the unit's SystemCallFilter= lines allow:
// the first lists what is allowed, the ones starting with ~ what is then
// taken away.
func unitFilter(t *testing.T, unit string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "SystemCallFilter=")
		if !ok {
			continue
		}
		deny := strings.HasPrefix(v, "~")
		for _, item := range strings.Fields(strings.TrimPrefix(v, "~")) {
			for name := range expand(t, item, map[string]bool{}) {
				allowed[name] = !deny
			}
		}
	}
	if len(allowed) == 0 {
		t.Fatalf("%s has no SystemCallFilter", unit)
	}
	return allowed
}

// expand is a call, or the calls of a group as systemd-analyze lists them.
func expand(t *testing.T, item string, out map[string]bool) map[string]bool {
	if !strings.HasPrefix(item, "@") {
		out[item] = true
		return out
	}
	b, err := exec.Command("systemd-analyze", "syscall-filter", "--no-pager", item).Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter %s: %v", item, err)
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.TrimSpace(line)
		if f == "" || strings.HasPrefix(f, "#") {
			continue
		}
		expand(t, f, out)
	}
	return out
}
