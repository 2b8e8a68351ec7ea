package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/frame"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/testkit/churn"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// The capabilities the README lists, measured with this test: trace needs
// these four as a user other than root; top, record and agent need
// CAP_SYS_ADMIN (setns), which also covers CAP_BPF, CAP_PERFMON and
// CAP_NET_ADMIN, and see the namespaces other users' processes hold only
// with CAP_SYS_PTRACE.
var (
	traceCaps = []string{"bpf", "perfmon", "net_admin", "dac_read_search"}
	topCaps   = []string{"sys_admin", "dac_read_search", "sys_ptrace"}
)

// asUser runs the binary as nobody with exactly caps: inheritable, ambient
// and bounding sets all reduced to them.
func asUser(t *testing.T, caps []string) []string {
	t.Helper()
	testnet.RequireTool(t, "setpriv")
	set := "-all"
	for _, c := range caps {
		set += ",+" + c
	}
	return []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=" + set, "--ambient-caps=" + set, "--bounding-set=" + set, userBinary(t)}
}

// userBinary is a copy of the binary that nobody may run (the test's own
// temporary directory is root's, mode 0700).
func userBinary(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "porttrace-caps")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "porttrace")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	return path
}

func without(caps []string, drop string) []string {
	var out []string
	for _, c := range caps {
		if c != drop {
			out = append(out, c)
		}
	}
	return out
}

// TestCapabilities runs the binary as nobody with exactly the README's
// capabilities during a real exhaustion: trace sees every failed connect()
// of the client, top sees the namespace's port range and the exhausted
// space. Without any one of them, each refuses in one line naming it.
func TestCapabilities(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40009)
	dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)

	argv := append(asUser(t, traceCaps), "trace", "--json", "--failures-only", "--netns", fmt.Sprint(ns.Inode))
	cmd, stdout, _ := startTrace(t, argv...)
	res := ns.StartClient(t, churn.Config{Target: dst, Count: 14, Close: churn.CloseFin}).Wait(t)
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(os.Interrupt)
	connects := 0
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var j event.JSON
		// The attempt's end (SYN_SENT -> CLOSE) or connect()'s return, by
		// backend: once per failed call either way.
		if json.Unmarshal(sc.Bytes(), &j) == nil && (j.Event == "connect" || j.Event == "state") && j.Errno == "EADDRNOTAVAIL" {
			connects++
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("trace as nobody with %v: %v", traceCaps, err)
	}
	if want := res.Failures[testnet.EADDRNOTAVAIL]; want != 4 || connects != want {
		t.Errorf("trace as nobody with %v saw %d failed connects, the client %d", traceCaps, connects, want)
	}

	argv = append(asUser(t, topCaps), "top", "--json", "--interval", "1s", "--netns", fmt.Sprint(ns.Inode))
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	if err != nil {
		t.Fatalf("top as nobody with %v: %v", topCaps, err)
	}
	var snap frame.Frame
	if err := json.Unmarshal(out, &snap); err != nil {
		t.Fatalf("top --json: %v\n%s", err, out)
	}
	if len(snap.Spaces) != 1 || snap.Spaces[0].Usable != 10 || snap.Spaces[0].Used != 10 || !snap.Spaces[0].Exhausted {
		t.Errorf("top as nobody with %v: %+v", topCaps, snap.Spaces)
	}

	for _, c := range []struct {
		caps []string
		args []string
	}{{traceCaps, []string{"trace", "--duration", "1s"}}, {without(topCaps, "sys_ptrace"), []string{"top", "--once", "--interval", "1s"}}} {
		for _, drop := range c.caps {
			code, stderr := runArgv(t, append(asUser(t, without(c.caps, drop)), c.args...))
			name := "CAP_" + strings.ToUpper(drop)
			if code != 77 {
				t.Errorf("%s without %s: exit %d, want 77: %s", c.args[0], name, code, stderr)
			}
			oneClearLine(t, stderr, "missing "+name+" ("+name+" to ")
		}
	}
}

// TestCapabilityPtrace: a namespace that only another user's process holds
// (a container's, not under /run/netns) is seen with CAP_SYS_PTRACE and
// not without; top says so.
func TestCapabilityPtrace(t *testing.T) {
	testnet.RequireRoot(t)
	holder := exec.Command("unshare", "-n", "sh", "-c", `sysctl -qw net.ipv4.ip_local_port_range="41000 41009" && exec sleep 60`)
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	var ino uint64
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		self, _ := os.Readlink("/proc/self/ns/net")
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid)); err == nil && l != self {
			fmt.Sscanf(l, "net:[%d]", &ino)
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", holder.Process.Pid)); strings.TrimSpace(string(b)) == "sleep" {
				break
			}
		}
	}
	for _, caps := range [][]string{topCaps, without(topCaps, "sys_ptrace")} {
		argv := append(asUser(t, caps), "top", "--json", "--interval", "1s")
		cmd := exec.Command(argv[0], argv[1:]...)
		var errb strings.Builder
		cmd.Stderr = &errb
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("top with %v: %v\n%s", caps, err, errb.String())
		}
		var snap frame.Frame
		if err := json.Unmarshal(out, &snap); err != nil {
			t.Fatal(err)
		}
		seen := false
		for _, n := range snap.Netns {
			seen = seen || (uint64(n.Inode) == ino && n.PortLow == 41000)
		}
		ptrace := len(caps) == len(topCaps)
		if seen != ptrace {
			t.Errorf("with %v: namespace %d of another user's process seen: %v", caps, ino, seen)
		}
		if warned := strings.Contains(errb.String(), "without CAP_SYS_PTRACE"); warned == ptrace {
			t.Errorf("with %v: stderr %q", caps, errb.String())
		}
	}
}

// TestDoctorAsUser: doctor without privileges reports what it can, then
// exits 77 naming what is missing.
func TestDoctorAsUser(t *testing.T) {
	testnet.RequireRoot(t)
	argv := asUser(t, nil)
	cmd := exec.Command(argv[0], append(argv[1:], "doctor")...)
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 77 {
		t.Fatalf("doctor as nobody: %v", err)
	}
	range_, _ := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	for _, want := range []string{"kernel ", "BTF ", "uid 65534 (CAP_SYS_ADMIN no, CAP_BPF no", "this network namespace: ports " + strings.Join(strings.Fields(string(range_)), "-")} {
		if !strings.Contains(string(out), want) {
			t.Errorf("doctor as nobody lacks %q:\n%s", want, out)
		}
	}
	oneClearLine(t, errb.String(), "needs root, or the capabilities CAP_SYS_ADMIN and CAP_DAC_READ_SEARCH: missing CAP_SYS_ADMIN, CAP_DAC_READ_SEARCH")
}

// runArgv runs argv and returns its exit code and stderr.
func runArgv(t *testing.T, argv []string) (int, string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	var errb strings.Builder
	cmd.Stderr = &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), errb.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, errb.String()
}
