package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/testkit/churn"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
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
		out, err := exec.Command("go", "build", "-o", binary, "github.com/porttrace/porttrace/cmd/porttrace").CombinedOutput()
		if err != nil {
			panic(string(out))
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startTrace starts argv, a porttrace trace command, and returns once it
// says it is tracing, with its output and the rest of its stderr; the lines
// before are logged. It is killed at the test's end.
func startTrace(t *testing.T, argv ...string) (*exec.Cmd, io.Reader, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	errLines := bufio.NewScanner(stderr)
	for errLines.Scan() {
		t.Logf("%s: %s", argv[0], errLines.Text())
		if strings.Contains(errLines.Text(), "tracing with") {
			break
		}
	}
	return cmd, stdout, errLines
}

// TestTraceAsUser runs the built binary as an operator would, during a real
// exhaustion, stops it with SIGINT, and checks its JSON against the client.
func TestTraceAsUser(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40009)
	dst := ns.Listen(t, "127.0.0.1:8080", 0)

	cmd, stdout, errLines := startTrace(t, binary, "trace", "--json", "--dport", "8080", "--failures-only")
	var log []string

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
		// Sizes: spelled as people type them, refused with the limits.
		{[]string{"record", "-o", "/tmp/x.ptcap", "--max-size", "100"}, "--max-size 100 is 100 B: it must be between 1.0 MiB and"},
		{[]string{"record", "-o", "/tmp/x.ptcap", "--max-size", "lots"}, `--max-size "lots" is not a size`},
		{[]string{"trace", "--ring-size", "2GiB"}, "between 4.0 KiB and 1.0 GiB"},
		// Durations, names and paths, before anything attaches.
		{[]string{"record", "-o", "/tmp/x.ptcap", "--pre-trigger", "-1s", "--until-failures", "5"}, "--pre-trigger -1s is negative"},
		{[]string{"record", "-o", "/tmp/x.ptcap", "--pre-trigger", "0s", "--until-failures", "5"}, "--pre-trigger must be more than 0"},
		{[]string{"record", "-o", "/tmp/x.ptcap", "--duration", "-5m"}, "--duration -5m0s is negative"},
		{[]string{"record", "-o", "/tmp/x.ptcap", "--pre-trigger", "2m"}, "--pre-trigger keeps the lead-up to --until-failures N"},
		{[]string{"trace", "--duration", "-1s"}, "--duration -1s is negative"},
		{[]string{"record", "-o", "/nonexistent/dir/x.ptcap"}, "-o /nonexistent/dir/x.ptcap: cannot create a file there: no such file or directory"},
		{[]string{"record", "-o", os.TempDir()}, "is a directory: name a file in it"},
		{[]string{"trace", "--comm", "a-very-long-process-name"}, "the kernel keeps at most 15 bytes"},
		{[]string{"top", "--comm", "a-very-long-process-name"}, "the kernel keeps at most 15 bytes"},
		{[]string{"report", "--comm", "a-very-long-process-name", "x"}, "the kernel keeps at most 15 bytes"},
		{[]string{"agent", "--otlp-endpoint", "http://localhost:99999"}, `port "99999" is not a number from 1 to 65535`},
		{[]string{"agent", "--otlp-endpoint", "http://localhost:43x8"}, "--otlp-endpoint"},
		// Filters.
		{[]string{"trace", "-4", "-6"}, "-4 and -6 exclude each other"},
		{[]string{"trace", "--pid", "0"}, "--pid 0 is not a process id"},
		{[]string{"top", "--dst", "upstream"}, `--dst "upstream" is not an address`},
		{[]string{"top", "--netns", "no-such-namespace"}, "neither a namespace inode number nor a name under /run/netns"},
		{[]string{"trace", "--dst", "127.0.0.1:80", "--dport", "81"}, "name different ports"},
		// Replay: refused before the terminal is touched.
		{[]string{"top", "--replay", "/nonexistent.ptcap"}, "no such file or directory"},
		{[]string{"top", "--replay", "/nonexistent.ptcap", "--speed", "0"}, "--speed 0: give how many seconds"},
		{[]string{"top", "--replay", "/nonexistent.ptcap", "--speed", "-2"}, "--speed -2"},
		{[]string{"top", "--replay", os.TempDir()}, "is a directory"},
		{[]string{"report", os.TempDir()}, "is a directory: name one capture file in it"},
	} {
		code, stderr := run(t, nil, c.args...)
		if code != 1 {
			t.Errorf("%v: exit %d", c.args, code)
		}
		oneClearLine(t, stderr, c.want)
	}
}

// TestBadEnvironment: OTEL_* variables that do not parse are refused up
// front, in one line, as flags are.
func TestBadEnvironment(t *testing.T) {
	for _, c := range []struct{ env, want string }{
		{"OTEL_METRIC_EXPORT_INTERVAL=10s", `OTEL_METRIC_EXPORT_INTERVAL="10s" is not a positive number of milliseconds`},
		{"OTEL_BLRP_EXPORT_TIMEOUT=-1", "OTEL_BLRP_EXPORT_TIMEOUT"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT=collector:4318", `OTEL_EXPORTER_OTLP_ENDPOINT="collector:4318" is not a URL`},
		{"OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:0", "is not a number from 1 to 65535"},
		{"OTEL_EXPORTER_OTLP_INSECURE=maybe", "is not true or false"},
		{"OTEL_RESOURCE_ATTRIBUTES=k8s.pod.name", `"k8s.pod.name" is not key=value`},
		{"OTEL_EXPORTER_OTLP_PROTOCOL=thrift", `unknown OTLP protocol "thrift"`},
	} {
		for _, args := range [][]string{{"agent"}, {"top", "--otlp-endpoint", "http://localhost:4318"}} {
			cmd := exec.Command(binary, args...)
			cmd.Env = append(os.Environ(), c.env)
			var errb strings.Builder
			cmd.Stderr = &errb
			err := cmd.Run()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Errorf("%s %v: %v", c.env, args, err)
			}
			oneClearLine(t, errb.String(), c.want)
		}
	}
}

// TestVersion: version and --version print the build's facts; make build's
// stamp wins over what the build info lacks.
func TestVersion(t *testing.T) {
	bi, _ := debug.ReadBuildInfo()
	var ebpf string
	for _, d := range bi.Deps {
		if d.Path == "github.com/cilium/ebpf" {
			ebpf = d.Version
		}
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.Command(binary, args...).Output()
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		for _, want := range []string{"porttrace ", "commit ", "built ", "go          " + runtime.Version(), "cilium/ebpf " + ebpf} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%v: no %q in\n%s", args, want, out)
			}
		}
	}
	stamped := filepath.Join(t.TempDir(), "porttrace")
	ld := "-X main.stampVersion=v9.8.7 -X main.stampCommit=0123abc -X main.stampDate=2026-01-02T03:04:05Z"
	if out, err := exec.Command("go", "build", "-ldflags", ld, "-o", stamped, "github.com/porttrace/porttrace/cmd/porttrace").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err := exec.Command(stamped, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "porttrace v9.8.7\n  commit      0123abc\n  built       2026-01-02T03:04:05Z\n") {
		t.Errorf("stamped: %v\n%s", err, out)
	}
}

// TestMakeRun: make run sets up with .ci/run-deps, which installs none of
// the tests' peers, and stamps the binary it runs.
func TestMakeRun(t *testing.T) {
	testnet.RequireTool(t, "make")
	out, err := exec.Command("make", "-C", "../../..", "-n", "run").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n run: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "sh .ci/run-deps") || strings.Contains(string(out), ".ci/deps") || !strings.Contains(string(out), "main.stampVersion=") {
		t.Errorf("make run:\n%s", out)
	}
	script, err := os.ReadFile("../../../.ci/run-deps")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(script), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, word := range []string{"qemu", "nginx", "wrk", "tmux", "kernel.sh", "busybox", "clang"} {
			if strings.Contains(line, word) {
				t.Errorf(".ci/run-deps installs %s: %q", word, line)
			}
		}
	}
}
