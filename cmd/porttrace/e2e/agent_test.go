package e2e

import (
	"bufio"
	encbin "encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/porttrace/porttrace/internal/testkit/churn"
	"github.com/porttrace/porttrace/internal/testkit/otlptest"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// stopBudget is how long a stop may take once SIGTERM or SIGINT arrives,
// as docs/metrics.md promises (cmd/porttrace's stopBudget).
const stopBudget = 5 * time.Second

// agentRun is porttrace exporting in the background: agent, or top or
// record with --otlp-endpoint.
type agentRun struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  []string
	done chan struct{}
}

// startAgent starts the agent with args and returns once its probes are
// attached and the socket tables read. env is added to its environment.
func startAgent(t *testing.T, env []string, args ...string) *agentRun {
	t.Helper()
	return startExporting(t, env, append([]string{"agent"}, args...)...)
}

// startExporting starts porttrace with args and returns once it exports.
func startExporting(t *testing.T, env []string, args ...string) *agentRun {
	t.Helper()
	// In the VM, each run names the backend under test.
	if b := os.Getenv("PORTTRACE_BACKEND"); b != "" {
		args = append(args, "--backend", b)
	}
	a := &agentRun{cmd: exec.Command(binary, args...), done: make(chan struct{})}
	a.cmd.Env = append(os.Environ(), env...)
	stderr, _ := a.cmd.StderrPipe()
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.cmd.Process.Kill(); a.cmd.Wait() })
	go func() {
		defer close(a.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			a.mu.Lock()
			a.log = append(a.log, sc.Text())
			a.mu.Unlock()
		}
	}()
	a.waitLine(t, "porttrace: exporting")
	time.Sleep(300 * time.Millisecond) // the seeding socket tables follow
	return a
}

func (a *agentRun) waitLine(t *testing.T, s string) {
	t.Helper()
	err := otlptest.Eventually(30*time.Second, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return strings.Contains(strings.Join(a.log, "\n"), s)
	})
	if err != nil {
		t.Fatalf("%s never said %q:\n%s", a.cmd.Args, s, a.stderr())
	}
}

func (a *agentRun) stderr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.log, "\n")
}

// stop sends SIGTERM and expects a clean exit.
func (a *agentRun) stop(t *testing.T) {
	t.Helper()
	a.cmd.Process.Signal(syscall.SIGTERM)
	<-a.done
	if err := a.cmd.Wait(); err != nil {
		t.Fatalf("%s after SIGTERM: %v\n%s", a.cmd.Args, err, a.stderr())
	}
}

// rss is the agent's resident memory in KiB.
func (a *agentRun) rss(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestAgentExports: `porttrace agent` while a client exhausts a 20-port
// space (8 ports in TIME_WAIT from before the agent started); what a real
// OTLP receiver gets over each transport must match the client's own
// counts, ss, and the client's pid.
func TestAgentExports(t *testing.T) {
	testnet.RequireRoot(t)
	for _, proto := range []string{"grpc", "http/protobuf"} {
		t.Run(proto, func(t *testing.T) { testAgentExports(t, proto) })
	}
}

func testAgentExports(t *testing.T, proto string) {
	rcv := otlptest.Start(t)
	ns := testnet.New(t, 40000, 40019)
	dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	if r := ns.StartClient(t, churn.Config{Target: dst, Count: 8, Close: churn.CloseFin}).Wait(t); r.Connected != 8 {
		t.Fatalf("setup: %+v", r)
	}
	endpoint := rcv.HTTP()
	if proto == "grpc" {
		endpoint = rcv.GRPC()
	}
	agent := startAgent(t, nil, "--otlp-endpoint", endpoint, "--otlp-protocol", proto, "--export-interval", "1s", "--metric-attributes", "process.pid")
	cl := ns.StartClient(t, churn.Config{Target: dst, Count: 30, Close: churn.CloseFin})
	res := cl.Wait(t)
	time.Sleep(200 * time.Millisecond)
	wantTW := ns.TimeWait(t, dst)
	if res.Connected != 12 || res.Failures[testnet.EADDRNOTAVAIL] != 18 || wantTW != 20 {
		t.Fatalf("setup: client %+v, ss TIME_WAIT %d; want 12 connected, 18 EADDRNOTAVAIL, 20", res, wantTW)
	}
	space := map[string]string{"server.address": "127.0.0.1", "server.port": "8080", "network.local.address": "127.0.0.1",
		"porttrace.netns": fmt.Sprint(ns.Inode)}
	otlptest.Wait(t, "all attempts", func() bool {
		for _, p := range rcv.Last("porttrace.connect.attempts") {
			if otlptest.Includes(p.Attrs, space) && p.Value == float64(res.Attempts) {
				return true
			}
		}
		return false
	})
	for name, want := range map[string]float64{
		"porttrace.connect.failures":     18,
		"porttrace.time_wait.entries":    12,
		"porttrace.time_wait.sockets":    float64(wantTW),
		"porttrace.ports.used":           float64(wantTW),
		"porttrace.ports.usable":         20,
		"porttrace.ports.utilization":    1,
		"porttrace.ports.exhaustion.eta": 0,
	} {
		if p := otlptest.One(t, rcv.Last(name), space); p.Value != want {
			t.Errorf("%s = %v, want %v", name, p.Value, want)
		}
	}
	if p := otlptest.One(t, rcv.Last("porttrace.connect.failures"), space); p.Attrs["error.type"] != "EADDRNOTAVAIL" {
		t.Errorf("failures carry error.type %q", p.Attrs["error.type"])
	}
	// Every attempt searched for a port: the 12 that found one and the
	// 18 that searched the whole range in vain.
	if h := otlptest.One(t, rcv.Last("porttrace.port_alloc.duration"), space); h.Count != uint64(res.Attempts) || h.Kind != "exponential_histogram" || h.Max <= 0 {
		t.Errorf("port search latency %+v, want an exponential histogram of %d searches", h, res.Attempts)
	}
	// The diagnosis is in the agent's log, each finding with its rule and
	// space as fields.
	agent.waitLine(t, fmt.Sprintf(`port_space="127.0.0.1 -> 127.0.0.1:8080 (netns %d)" netns=%d`, ns.Inode, ns.Inode))
	if !strings.Contains(agent.stderr(), `level=WARN msg=finding rule=`) {
		t.Errorf("the agent's log has no finding record:\n%s", agent.stderr())
	}
	pid := fmt.Sprint(cl.Cmd.Process.Pid)
	proc := map[string]string{"process.pid": pid, "process.executable.name": exeName(t)}
	if p := otlptest.One(t, rcv.Last("porttrace.process.connect.attempts"), proc); p.Value != float64(res.Attempts) {
		t.Errorf("client's attempts %v, want %d", p.Value, res.Attempts)
	}
	if p := otlptest.One(t, rcv.Last("porttrace.process.connect.failures"), proc); p.Value != 18 {
		t.Errorf("client's failures %v, want 18", p.Value)
	}
	if p := otlptest.One(t, rcv.Last("porttrace.process.time_wait.entries"), proc); p.Value != 12 {
		t.Errorf("client's TIME_WAIT entries %v, want its 12 connections", p.Value)
	}
	if p := otlptest.One(t, rcv.Last("porttrace.events.lost"), nil); p.Value != 0 {
		t.Errorf("%v events lost", p.Value)
	}
	if res := rcv.Last("porttrace.connect.attempts")[0].Resource; res["host.name"] == "" || res["service.name"] != "porttrace" {
		t.Errorf("resource %v: want host.name and service.name porttrace", res)
	}
	checkFailureRecords(t, rcv, 18, pid, space)
	agent.stop(t)
}

// checkFailureRecords: a log record per failure on the machine, but for
// those the rate limit suppressed; this namespace's are the client's
// failures, each with its pid and the upstream. Other failures (another
// package's tests run beside these) are accounted for, not checked.
func checkFailureRecords(t *testing.T, rcv *otlptest.Receiver, failures int, pid string, space map[string]string) {
	t.Helper()
	var logs []otlptest.Log
	otlptest.Wait(t, "failure records", func() bool {
		logs = rcv.Logs()
		sup := rcv.Last("porttrace.logs.suppressed")
		return len(sup) == 1 && len(logs)+int(sup[0].Value) == otlptest.Sum(rcv.Last("porttrace.connect.failures"))
	})
	if got := netnsFailures(rcv, space["porttrace.netns"]); got != failures {
		t.Errorf("%d failures in the client's namespace, want %d", got, failures)
	}
	for _, l := range logs {
		if l.Attrs["porttrace.netns"] != space["porttrace.netns"] {
			continue
		}
		if !otlptest.Includes(l.Attrs, space) || l.Attrs["process.pid"] != pid || l.Attrs["error.type"] != "EADDRNOTAVAIL" {
			t.Errorf("log record %+v: want pid %s, EADDRNOTAVAIL and %v", l, pid, space)
		}
	}
}

// netnsFailures is the failures counter summed over one namespace's spaces.
func netnsFailures(rcv *otlptest.Receiver, netns string) int {
	n := 0
	for _, p := range rcv.Last("porttrace.connect.failures") {
		if p.Attrs["porttrace.netns"] == netns {
			n += int(p.Value)
		}
	}
	return n
}

// failuresByErrno sums a failure counter's points by error.type and netns.
func failuresByErrno(pts []otlptest.Point) map[string]float64 {
	out := map[string]float64{}
	for _, p := range pts {
		out[p.Attrs["error.type"]+"@"+p.Attrs["porttrace.netns"]] += p.Value
	}
	return out
}

// TestAgentCollectorDown: the receiver stops while clients keep failing,
// then comes back. The agent must go on, stay within its memory, say what
// happens, resume, count every failure the clients saw, and account for
// every failure it counted on the machine: received as a log record,
// counted as dropped, or counted as suppressed.
func TestAgentCollectorDown(t *testing.T) {
	testnet.RequireRoot(t)
	rcv := otlptest.Start(t)
	ns := testnet.New(t, 40000, 40019)
	dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	// Short export timeouts, through the standard variables, so that
	// failed exports are counted within seconds.
	env := []string{"OTEL_METRIC_EXPORT_TIMEOUT=1500", "OTEL_BLRP_EXPORT_TIMEOUT=1500"}
	agent := startAgent(t, env, "--otlp-endpoint", rcv.GRPC(), "--otlp-protocol", "grpc", "--export-interval", "1s")
	otlptest.Wait(t, "a first export", func() bool { return rcv.Last("porttrace.events.lost") != nil })

	rcv.Stop()
	before := agent.rss(t)
	attempts, failed := 0, 0
	byErrno := map[string]int{}
	for range 5 { // five bursts a second apart: each logs up to 10 records
		res := ns.StartClient(t, churn.Config{Target: dst, Count: 400, Close: churn.CloseFin}).Wait(t)
		attempts += res.Attempts
		failed += res.Failed()
		for k, v := range res.Failures {
			byErrno[k] += v
		}
		time.Sleep(time.Second)
	}
	agent.waitLine(t, "logs export failed")
	agent.waitLine(t, "metrics export failed")
	if grown := agent.rss(t) - before; grown > 32<<10 {
		t.Errorf("RSS grew by %d MiB while the collector was down", grown>>10)
	}

	rcv.Restart(t)
	agent.waitLine(t, "export resumed")
	res := ns.StartClient(t, churn.Config{Target: dst, Count: 5, Close: churn.CloseFin}).Wait(t)
	attempts += res.Attempts
	failed += res.Failed()
	for k, v := range res.Failures {
		byErrno[k] += v
	}
	otlptest.Wait(t, "log records after the outage", func() bool { return len(rcv.Logs()) > 0 })
	var got string
	if err := otlptest.Eventually(30*time.Second, func() bool {
		logs := len(rcv.Logs())
		dropped := otlptest.Sum(rcv.Last("porttrace.export.dropped"))
		suppressed := otlptest.Sum(rcv.Last("porttrace.logs.suppressed"))
		all := otlptest.Sum(rcv.Last("porttrace.connect.failures"))
		ours := netnsFailures(rcv, fmt.Sprint(ns.Inode))
		got = fmt.Sprintf("%d received + %d dropped + %d suppressed, of %d failures, %d of them in the clients' namespace, whose clients saw %d (clients: %v; porttrace: %v)",
			logs, dropped, suppressed, all, ours, failed, byErrno, failuresByErrno(rcv.Last("porttrace.connect.failures")))
		return logs+dropped+suppressed == all && ours == failed
	}); err != nil {
		t.Fatalf("every failure accounted for: %s\n%s", got, agent.stderr())
	}
	t.Logf("%s\n%s", got, agent.stderr())
	if otlptest.Sum(rcv.Last("porttrace.export.dropped")) == 0 {
		t.Errorf("no log record counted as dropped: %s", got)
	}
	if p := otlptest.One(t, rcv.Last("porttrace.export.failures"), map[string]string{"porttrace.signal": "metrics"}); p.Value == 0 {
		t.Error("no failed metric export counted")
	}
	space := map[string]string{"server.address": "127.0.0.1", "server.port": "8080", "porttrace.netns": fmt.Sprint(ns.Inode)}
	if p := otlptest.One(t, rcv.Last("porttrace.connect.attempts"), space); p.Value != float64(attempts) {
		t.Errorf("attempts %v after the outage, the clients made %d", p.Value, attempts)
	}
	agent.stop(t)
}

// rawHeader is a capture's header block as stored, not as a reader
// cleans it: the first block after the magic and version, S2.
func rawHeader(t *testing.T, file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	off := len("porttrace-capture\n") + 1
	stored := int(encbin.LittleEndian.Uint32(b[off+5:]))
	raw, err := s2.Decode(nil, b[off+13:off+13+stored])
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// TestTopAndRecordExport: top and record export as the agent does, at the
// same time as they show or record.
func TestTopAndRecordExport(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	forTop, forRecord := otlptest.Start(t), otlptest.Start(t)
	file := filepath.Join(t.TempDir(), "capture.ptr")
	top := startExporting(t, nil, "top", "--json", "--interval", "1m", "--otlp-endpoint", forTop.GRPC(), "--otlp-protocol", "grpc", "--export-interval", "1s")
	// Credentials in the endpoint are neither printed nor stored (issue 21).
	withPassword := strings.Replace(forRecord.HTTP(), "http://", "http://user:s3cret@", 1)
	rec := startExporting(t, nil, "record", "-o", file, "--otlp-endpoint", withPassword, "--export-interval", "1s")
	res := ns.StartClient(t, churn.Config{Target: dst, Count: 30, Close: churn.CloseFin}).Wait(t)
	space := map[string]string{"server.address": "127.0.0.1", "server.port": "8080", "porttrace.netns": fmt.Sprint(ns.Inode)}
	for name, rcv := range map[string]*otlptest.Receiver{"top": forTop, "record": forRecord} {
		otlptest.Wait(t, name+"'s attempts", func() bool {
			for _, p := range rcv.Last("porttrace.connect.attempts") {
				if otlptest.Includes(p.Attrs, space) && p.Value == float64(res.Attempts) {
					return true
				}
			}
			return false
		})
		if p := otlptest.One(t, rcv.Last("porttrace.connect.failures"), space); p.Value != float64(res.Failed()) {
			t.Errorf("%s exported %v failures, the client saw %d", name, p.Value, res.Failed())
		}
	}
	top.stop(t)
	rec.stop(t)
	r := runReport(t, file)
	if header := rawHeader(t, file); strings.Contains(rec.stderr(), "s3cret") || strings.Contains(header, "s3cret") || !strings.Contains(header, "user:xxxxx@") {
		t.Errorf("the endpoint's password: record printed\n%s\nthe capture's header: %s", rec.stderr(), header)
	}
	sp := spaceToward(t, liveOf(r), ns.Inode, dst)
	if sp.TotalConns != uint64(res.Attempts) {
		t.Errorf("the capture recorded while exporting has %d attempts, the client made %d", sp.TotalConns, res.Attempts)
	}
}

// TestAgentStopsInTime: with the collector down, over gRPC (whose
// reconnection backoff would hold the last export) and HTTP, SIGTERM ends
// the agent within the documented 5 s, cleanly, with no line after the
// warnings but the one summary, and the monitor's own log records (the
// findings of whatever else the machine runs, the bind() watch).
func TestAgentStopsInTime(t *testing.T) {
	testnet.RequireRoot(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	for _, proto := range []string{"grpc", "http/protobuf"} {
		a := startAgent(t, nil, "--otlp-endpoint", down, "--otlp-protocol", proto, "--export-interval", "1s")
		a.waitLine(t, "export failed")
		begin := time.Now()
		a.stop(t)
		if took := time.Since(begin); took > stopBudget {
			t.Errorf("%s: SIGTERM took %s", proto, took)
		}
		log := a.stderr()
		lines := strings.Split(log[strings.Index(log, "porttrace: exporting"):], "\n")[1:]
		monitor := regexp.MustCompile(`^time=\S+ level=(INFO|WARN) msg=(finding|"finding [a-z ]+"|"(attached|detached) the bind\(\) syscall tracepoints[^"]*") `)
		for _, l := range lines[:len(lines)-1] {
			if !strings.Contains(l, "export failed; retrying") && !monitor.MatchString(l) {
				t.Errorf("%s: stray line %q", proto, l)
			}
		}
		last := lines[len(lines)-1]
		failed := regexp.MustCompile(`lost; ([1-9][0-9,]*) failed exports, [0-9,]+ log records dropped, [0-9,]+ rate-limited; the last export failed: `)
		if !strings.HasPrefix(last, "porttrace: agent stopped after ") || !failed.MatchString(last) {
			t.Errorf("%s: summary %q, want the failed exports counted and the last export's error", proto, last)
		}
	}
}

// exeName is the test binary's executable name, as process.executable.name
// gives it for the clients it runs.
func exeName(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(self)
}
