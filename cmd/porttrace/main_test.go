package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/churn"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/testnet"
)

var binary string

func TestMain(m *testing.M) {
	testnet.RunHelper()
	dir, err := os.MkdirTemp("", "porttrace-cmd")
	if err != nil {
		panic(err)
	}
	// The VM has no Go toolchain: make test-vm builds the binary and
	// names it.
	binary = os.Getenv("PORTTRACE_BINARY")
	if binary == "" {
		binary = filepath.Join(dir, "porttrace")
		out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
		if err != nil {
			panic(string(out))
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestTraceAsUser runs the built binary as an operator would, during a real
// exhaustion, stops it with SIGINT, and checks its JSON against the client.
func TestTraceAsUser(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40009)
	dst := ns.Listen(t, "127.0.0.1:8080", 0)

	cmd := exec.Command(binary, "trace", "--json", "--dport", "8080", "--failures-only")
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	errLines := bufio.NewScanner(stderr)
	var log []string
	for errLines.Scan() {
		log = append(log, errLines.Text())
		if strings.Contains(errLines.Text(), "tracing with") {
			break
		}
	}

	cl := ns.StartClient(t, churn.Config{Target: dst, Count: 14, Close: churn.CloseFin})
	res := cl.Wait(t)
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)

	var got []event.JSON
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var j event.JSON
		if err := json.Unmarshal(sc.Bytes(), &j); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if j.Netns == ns.Inode {
			got = append(got, j)
		}
	}
	for errLines.Scan() {
		log = append(log, errLines.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("porttrace exited with %v after SIGINT:\n%s", err, strings.Join(log, "\n"))
	}
	if last := log[len(log)-1]; !strings.HasSuffix(last, " 0 lost") {
		t.Errorf("last stderr line %q", last)
	}

	want := res.Failures[testnet.EADDRNOTAVAIL]
	connects := 0
	for _, j := range got {
		if j.Errno == "" {
			t.Errorf("--failures-only printed a success: %+v", j)
		}
		// The attempt's end (SYN_SENT -> CLOSE) or connect()'s return,
		// by backend: once per failed call either way.
		if j.Event == "connect" || j.Event == "state" {
			connects++
			if j.Errno != "EADDRNOTAVAIL" || j.PID != uint32(cl.Cmd.Process.Pid) || j.Dst != dst.String() {
				t.Errorf("failure %+v, want EADDRNOTAVAIL by pid %d toward %s", j, cl.Cmd.Process.Pid, dst)
			}
		}
	}
	if want != 4 || connects != want {
		t.Errorf("porttrace printed %d failed connects, the client saw %d (of 14, 10 ports)", connects, want)
	}
}

// run executes the binary and returns its exit code and stderr.
func run(t *testing.T, wrap []string, args ...string) (int, string) {
	t.Helper()
	argv := append(append(wrap, binary), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	var errb strings.Builder
	cmd.Stderr = &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, errb.String()
}

func oneClearLine(t *testing.T, stderr, want string) {
	t.Helper()
	if !strings.Contains(stderr, want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || strings.Contains(stderr, "goroutine") {
		t.Errorf("stderr %q, want one line containing %q", stderr, want)
	}
}

func TestWithoutPrivileges(t *testing.T) {
	var wrap []string
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("setpriv"); err != nil {
			t.Skip("setpriv (util-linux) is needed to drop root")
		}
		wrap = []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"}
	}
	for _, args := range [][]string{{"trace"}, {"doctor"}} {
		code, stderr := run(t, wrap, args...)
		if code != 77 {
			t.Errorf("%v: exit %d, want 77", args, code)
		}
		if !strings.Contains(stderr, "porttrace needs root") || strings.Contains(stderr, "goroutine") {
			t.Errorf("%v: stderr %q", args, stderr)
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"trace", "--backend", "ebpf"}, `unknown backend "ebpf"`},
		{[]string{"trace", "--ring-size", "lots"}, "--ring-size"},
		{[]string{"trace", "--dport", "70000"}, "--dport"},
		{[]string{"trace", "--nope"}, "unknown flag: --nope"},
		{[]string{"trace", "extra"}, "unknown command"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"agent", "--otlp-protocol", "http/json"}, "use grpc or http/protobuf"},
		{[]string{"agent", "--otlp-protocol", "udp"}, `unknown OTLP protocol "udp"`},
		{[]string{"agent", "--otlp-endpoint", "collector:4317"}, "want a URL such as http://collector:4318"},
		{[]string{"top", "--otlp-endpoint", "ftp://x"}, "want a URL"},
		{[]string{"record", "-o", "/dev/null", "--export-interval", "-1s"}, "--export-interval must not be negative"},
	} {
		code, stderr := run(t, nil, c.args...)
		if code != 1 {
			t.Errorf("%v: exit %d", c.args, code)
		}
		oneClearLine(t, stderr, c.want)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"512K": 512 << 10, "8M": 8 << 20, "1G": 1 << 30, "4096": 4096} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("%s: %d %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "0", "-1M", "2G", "M"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
