package e2e

import (
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/frame"

	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/summary"
	"github.com/porttrace/porttrace/internal/testkit/churn"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// The port model beyond the textbook case (issue 11): each test is a
// situation from a public bug report, run for real in a private namespace
// with a tiny port range, and checked against the ground truth of the same
// run: the client's own errnos, its pid, ss and the listener table.

// watch runs `top --json` with the syscall tracepoints on (the tracepoint
// backend needs them for bind(); the others ignore the flag) and returns
// once the probes are attached; done ends it and returns what it saw.
func watch(t *testing.T) *topRun {
	t.Helper()
	return startTop(t, "5m", "--syscalls")
}

// done stops top as an operator would, with SIGINT, once the last events
// reached it, and returns its frame: the tests wait for their clients,
// however slow the machine (qemu's emulation is), not for a fixed time.
func (r *topRun) done(t *testing.T) frame.Frame {
	t.Helper()
	// "The last minute" is made of complete seconds, and a namespace new
	// to porttrace is read within one.
	time.Sleep(1500 * time.Millisecond)
	r.cmd.Process.Signal(syscall.SIGINT)
	return r.wait(t)
}

// invariants hold for every space of every frame.
func invariants(t *testing.T, s frame.Frame) {
	t.Helper()
	for _, sp := range s.Spaces {
		if sp.Usable > 0 && (sp.Used > sp.Usable || sp.UsedPct > 100) {
			t.Errorf("%s: used %d of %d (%.0f%%)", sp.Name, sp.Used, sp.Usable, sp.UsedPct)
		}
		for _, f := range sp.Failures {
			if strings.HasPrefix(f.Errno, "errno") {
				t.Errorf("%s: failure %q is no errno user space sees", sp.Name, f.Errno)
			}
		}
	}
}

func netnsSpaces(s frame.Frame, ino uint32) []summary.SpaceSummary {
	var out []summary.SpaceSummary
	for _, sp := range s.Spaces {
		if sp.Netns == ino {
			out = append(out, sp)
		}
	}
	return out
}

func findingsIn(s frame.Frame, ino uint32) []diagnose.Finding {
	var out []diagnose.Finding
	for _, f := range s.Findings {
		if f.Netns == ino {
			out = append(out, f)
		}
	}
	return out
}

func rules(fs []diagnose.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Rule)
	}
	return out
}

func procOf(s frame.Frame, pid uint32) *summary.ProcessSummary {
	for i := range s.Processes {
		if s.Processes[i].PID == pid {
			return &s.Processes[i]
		}
	}
	return nil
}

// TestModelTimeWaitReuse: with tcp_tw_reuse on, connect() takes TIME_WAIT
// ports over after 1 s: 60 connections in a 20-port space all succeed, and
// the space is never more than full, nor "exhausted".
func TestModelTimeWaitReuse(t *testing.T) {
	for _, reuse := range []string{"1", "2"} {
		t.Run("tcp_tw_reuse="+reuse, func(t *testing.T) {
			ns, dst, top := reuseSpace(t, reuse, 40019)
			// 10/s in 20 ports: each port comes back to connect()
			// after 2 s in TIME_WAIT, past the kernel's 1 s.
			res := ns.StartClient(t, churn.Config{Target: dst, Count: 60, Interval: 100 * time.Millisecond, Close: churn.CloseFin}).Wait(t)
			time.Sleep(200 * time.Millisecond)
			tw := ns.TimeWait(t, dst)
			snap := top.done(t)
			invariants(t, snap)
			if res.Connected != 60 || tw > 20 {
				t.Fatalf("setup: client %+v, ss %d in TIME_WAIT; want 60 connected", res, tw)
			}
			sp := spaceToward(t, snap, ns.Inode, dst)
			if sp.Exhausted || sp.TotalFailures != 0 || sp.TotalConns != 60 || sp.TimeWait != tw {
				t.Errorf("exhausted %v, %d failures, %d attempts, %d in TIME_WAIT (%d events lost); the client connected 60 times, ss shows %d in TIME_WAIT",
					sp.Exhausted, sp.TotalFailures, sp.TotalConns, sp.TimeWait, snap.Lost, tw)
			}
			if sp.Reused.S60 == 0 || sp.Used > sp.Usable || sp.Used+sp.Reusable < sp.TimeWait {
				t.Errorf("reused %v/s, used %d, reusable %d of %d in TIME_WAIT: connect() took time-wait sockets over", sp.Reused, sp.Used, sp.Reusable, sp.TimeWait)
			}
			if fs := findingsIn(snap, ns.Inode); slices.Contains(rules(fs), "tcp_tw_reuse") {
				t.Errorf("tcp_tw_reuse advice with tcp_tw_reuse=%s: %v", reuse, fs)
			}
		})
	}
}

// reuseSpace is a private namespace with ports 40000 to hi and
// tcp_tw_reuse set to reuse, a listener on its loopback, and top
// watching.
func reuseSpace(t *testing.T, reuse string, hi int) (*testnet.Netns, netip.AddrPort, *topRun) {
	t.Helper()
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, hi)
	ns.Sysctl(t, "net/ipv4/tcp_tw_reuse", reuse)
	return ns, ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond), watch(t)
}

// TestModelFullThenFreed: tcp_tw_reuse=2 on loopback, 10 ports. 25
// connects in a burst: 10 connect and close into TIME_WAIT, 15 fail with
// EADDRNOTAVAIL while those time-wait sockets are younger than
// tcp_tw_reuse_delay. Seconds later connect() may take every one of them
// over, so no port is used, and the failures still count. What top says
// of the moment they failed is checked against the kernel's word: an
// EADDRNOTAVAIL from the port search means every usable port was taken.
func TestModelFullThenFreed(t *testing.T) {
	ns, dst, top := reuseSpace(t, "2", 40009)
	res := ns.StartClient(t, churn.Config{Target: dst, Count: 25, Close: churn.CloseFin}).Wait(t)
	time.Sleep(2 * time.Second) // the time-wait sockets grow older than tcp_tw_reuse_delay (1 s)
	tw := ns.TimeWait(t, dst)
	snap := top.done(t)
	invariants(t, snap)
	// Before 6.13 tcp_tw_reuse's delay is whole seconds: a burst across
	// a second's edge may take some time-wait sockets over at once.
	failed := res.Failures[testnet.EADDRNOTAVAIL]
	if failed == 0 || res.Connected+failed != 25 || tw != 10 {
		t.Fatalf("setup: client %+v, ss %d in TIME_WAIT; want EADDRNOTAVAIL and the rest connected, 10", res, tw)
	}
	sp := spaceToward(t, snap, ns.Inode, dst)
	if sp.Used != 0 || sp.TimeWait != tw || sp.Reusable != tw || !sp.Exhausted || sp.Exhaustion60() != uint64(failed) {
		t.Fatalf("used %d, %d in TIME_WAIT (%d reusable), exhausted %v, %d failed for want of a port; ss: %d in TIME_WAIT, the client: %d EADDRNOTAVAIL",
			sp.Used, sp.TimeWait, sp.Reusable, sp.Exhausted, sp.Exhaustion60(), tw, failed)
	}
	if sp.LastExhaustion == nil || *sp.LastExhaustion < 2 || *sp.LastExhaustion > 10 || sp.UsedAtExhaustion != sp.Usable || !sp.FreedSince() {
		t.Errorf("last exhaustion %v s ago with %d of %d used; the client failed 3.5 s before the snapshot, when the kernel had no port left",
			sp.LastExhaustion, sp.UsedAtExhaustion, sp.Usable)
	}
	fs := findingsIn(snap, ns.Inode)
	if len(fs) == 0 || !strings.Contains(fs[0].Situation, "when 10 of 10 ports were in use") {
		t.Errorf("the findings do not say what was in use when the calls failed: %+v", fs)
	}
	t.Logf("client %+v; ss %d in TIME_WAIT; top: used %d, exhausted, %d of %d in use %v s ago; %q", res, tw, sp.Used, sp.UsedAtExhaustion, sp.Usable, *sp.LastExhaustion, fs[0].Situation)
}

// TestModelBindPool: bind(127.0.0.1, 0) then connect() round-robin to three
// destinations. The bind() pool is what runs out; its owner is the client;
// a bind-then-connect is one attempt; more destinations are not the advice.
func TestModelBindPool(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	port := ns.Listen(t, "0.0.0.0:8080", 20*time.Millisecond).Port()
	var dsts []netip.AddrPort
	for _, a := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		dsts = append(dsts, netip.AddrPortFrom(netip.MustParseAddr(a), port))
	}
	top := watch(t)
	cl := ns.StartClient(t, churn.Config{Targets: dsts, BindFirst: true, BindAddr: netip.MustParseAddr("127.0.0.1"), Count: 30, Close: churn.CloseFin})
	res := cl.Wait(t)
	time.Sleep(200 * time.Millisecond)
	tw := 0
	for _, d := range dsts {
		tw += ns.TimeWait(t, d)
	}
	snap := top.done(t)
	invariants(t, snap)
	if res.Connected != 20 || res.Failures["EADDRINUSE"] != 10 || tw != 20 {
		t.Fatalf("setup: client %+v, ss %d in TIME_WAIT; want 20 connected, 10 EADDRINUSE, 20", res, tw)
	}
	pid := uint32(cl.Cmd.Process.Pid)
	var pool *summary.SpaceSummary
	for _, sp := range netnsSpaces(snap, ns.Inode) {
		if sp.Dst == "" {
			pool = &sp
		}
	}
	if pool == nil {
		t.Fatalf("no bind() pool in %+v", netnsSpaces(snap, ns.Inode))
	}
	if pool.Src != "127.0.0.1" || pool.Used != 20 || pool.Usable != 20 || !pool.Exhausted || pool.TotalConns != 30 {
		t.Errorf("pool %s: used %d of %d, exhausted %v, %d attempts; ss: 20 ports in TIME_WAIT, client: 30 attempts", pool.Src, pool.Used, pool.Usable, pool.Exhausted, pool.TotalConns)
	}
	if len(pool.Failures) != 1 || pool.Failures[0].Errno != "EADDRINUSE" || !pool.Failures[0].Exhaustion || pool.Failures[0].Total != 10 {
		t.Errorf("pool failures %+v, the client saw 10 EADDRINUSE from bind()", pool.Failures)
	}
	if len(pool.Processes) != 1 || pool.Processes[0].PID != pid {
		t.Errorf("pool's processes %+v, want the client %d", pool.Processes, pid)
	}
	if p := procOf(snap, pid); p == nil || p.Total != 30 {
		t.Errorf("client's row %+v: 30 attempts", p)
	}
	fs := findingsIn(snap, ns.Inode)
	if !slices.Contains(rules(fs), "bind_no_port") || slices.Contains(rules(fs), "more_destinations") {
		t.Errorf("findings %v: want bind_no_port, never more destinations", rules(fs))
	}
}

// TestModelAsyncFailures: non-blocking connects refused, one given up
// after a second, a blocking one whose process is killed. Each is one
// failure of its attempt, with its errno, and none is exhaustion.
func TestModelAsyncFailures(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	stalled := netip.MustParseAddrPort("127.0.0.1:7000")
	ns.StalledListener(t, stalled)
	refused := netip.MustParseAddrPort("127.0.0.1:9")
	top := watch(t)
	async := ns.StartScenario(t, "async", testnet.AsyncArgs{Refused: refused, Count: 3, Stalled: stalled, GiveUp: time.Second})
	block := ns.StartScenario(t, "block", testnet.HoldArgs{Target: stalled})
	block.WaitLine(t, "connecting")
	time.Sleep(time.Second) // inside connect(), its SYN dropped
	block.Cmd.Process.Kill()
	block.Cmd.Wait()
	var got testnet.AsyncResult
	async.Wait(t, &got)
	snap := top.done(t)
	invariants(t, snap)
	want := []string{"ECONNREFUSED", "ECONNREFUSED", "ECONNREFUSED", "given up"}
	if !slices.Equal(got.Outcomes, want) || slices.ContainsFunc(got.Returned, func(s string) bool { return s != "EINPROGRESS" }) {
		t.Fatalf("setup: connect() returned %v, outcomes %v; want EINPROGRESS each, then %v", got.Returned, got.Outcomes, want)
	}
	byErrno := func(pid uint32) map[string]uint64 {
		out := map[string]uint64{}
		if p := procOf(snap, pid); p != nil {
			for _, f := range p.Failures {
				out[f.Errno] += f.Total
				if f.Exhaustion {
					t.Errorf("pid %d: %s counted as exhaustion", pid, f.Errno)
				}
			}
		}
		return out
	}
	if f := byErrno(async.Pid()); f["ECONNREFUSED"] != 3 || f["ECANCELED"] != 1 || len(f) != 2 {
		t.Errorf("non-blocking client %d: %v, want 3 ECONNREFUSED and 1 ECANCELED (given up)", async.Pid(), f)
	}
	if f := byErrno(block.Pid()); f["ECANCELED"] != 1 || len(f) != 1 {
		t.Errorf("killed client %d: %v, want its one attempt ECANCELED", block.Pid(), f)
	}
	for _, sp := range netnsSpaces(snap, ns.Inode) {
		if sp.Exhausted || sp.ETA != nil {
			t.Errorf("%s: exhausted %v, ETA %v, with every port free", sp.Name, sp.Exhausted, sp.ETA)
		}
	}
	if fs := findingsIn(snap, ns.Inode); len(fs) != 0 {
		t.Errorf("findings about ports for failures that are not about ports: %v", fs)
	}
}

// TestModelFastOpenDeferred: with TCP_FASTOPEN_CONNECT, and a namespace
// where a client needs no Fast Open cookie, connect() takes a port and
// returns 0 without sending a SYN; each socket closes before a first
// write. Like a failed port search, no segment was sent, but nothing
// failed: every attempt is a connection, none a failure, no finding.
func TestModelFastOpenDeferred(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	ns.Sysctl(t, "net/ipv4/tcp_fastopen", "5") // client on (1), no cookie needed (4); IPv6 too
	dsts := []netip.AddrPort{ns.Listen(t, "127.0.0.1:8080", 0), ns.Listen(t, "[::1]:8080", 0)}
	top := watch(t)
	for _, dst := range dsts {
		if res := ns.StartClient(t, churn.Config{Target: dst, Count: 5, Close: churn.CloseFin, FastOpenConnect: true}).Wait(t); res.Connected != 5 {
			t.Fatalf("setup: client toward %s %+v, want 5 connected", dst, res)
		}
	}
	snap := top.done(t)
	invariants(t, snap)
	// The kernel's count of SYNs sent (tcp_connect) is the ground truth
	// that no attempt left the host.
	if opens := tcpActiveOpens(t, ns); opens != 0 {
		t.Fatalf("setup: %d SYNs sent, want none", opens)
	}
	for _, dst := range dsts {
		sp := spaceToward(t, snap, ns.Inode, dst)
		if len(sp.Failures) != 0 || sp.TotalFailures != 0 || sp.TotalConns != 5 || sp.Used != 0 {
			t.Errorf("%s: failures %+v (total %d), %d connections, %d used; want none failed of 5, none used",
				sp.Name, sp.Failures, sp.TotalFailures, sp.TotalConns, sp.Used)
		}
	}
	if fs := findingsIn(snap, ns.Inode); len(fs) != 0 {
		t.Errorf("findings with no port short and nothing failed: %v", fs)
	}
}

// TestModelRouteFailsAfterSearch: a policy rule refuses a route to the
// ports the search finds (ip rule sport, ahead of the local table), so
// each connect() fails with ENETUNREACH after its search found a port,
// before any segment. That is not exhaustion: connect()'s errno, once per
// attempt, no EADDRNOTAVAIL, and a finding that says more ports would not
// help. An IPv6 socket connecting to the v4-mapped address competes for
// the same ports, through tcp_v6_connect calling tcp_v4_connect: its
// failures count once too, in the same space.
func TestModelRouteFailsAfterSearch(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	dst := ns.Listen(t, "127.0.0.1:8080", 0)
	mapped := netip.AddrPortFrom(netip.AddrFrom16(dst.Addr().As16()), dst.Port())
	ns.Exec(t, "ip", "rule", "add", "pref", "10", "sport", "40000-40019", "unreachable")
	ns.Exec(t, "ip", "rule", "add", "pref", "100", "lookup", "local")
	ns.Exec(t, "ip", "rule", "del", "pref", "0")
	top := watch(t)
	for _, to := range []netip.AddrPort{dst, mapped} {
		if res := ns.StartClient(t, churn.Config{Target: to, Count: 5, Close: churn.CloseFin}).Wait(t); res.Failures["ENETUNREACH"] != 5 {
			t.Fatalf("setup: client toward %s %+v, want 5 ENETUNREACH", to, res)
		}
	}
	snap := top.done(t)
	invariants(t, snap)
	if opens := tcpActiveOpens(t, ns); opens != 0 {
		t.Fatalf("setup: %d SYNs sent, want none", opens)
	}
	sp := spaceToward(t, snap, ns.Inode, dst)
	if len(sp.Failures) != 1 || sp.Failures[0].Errno != "ENETUNREACH" || sp.Failures[0].Exhaustion || sp.Failures[0].Total != 10 || sp.TotalConns != 10 {
		t.Errorf("failures %+v of %d attempts, want 10 ENETUNREACH, not exhaustion, of 10", sp.Failures, sp.TotalConns)
	}
	// Nor in another space: an address the failure reset, or misread.
	var conns, failed uint64
	for _, sp := range netnsSpaces(snap, ns.Inode) {
		conns, failed = conns+sp.TotalConns, failed+sp.TotalFailures
	}
	if conns != 10 || failed != 10 {
		t.Errorf("the namespace's spaces count %d attempts and %d failures, want 10 and 10", conns, failed)
	}
	if got := rules(findingsIn(snap, ns.Inode)); !slices.Equal(got, []string{"not_port_exhaustion"}) {
		t.Errorf("findings %v, want not_port_exhaustion alone", got)
	}
}

// tcpActiveOpens is the namespace's Tcp ActiveOpens (/proc/net/snmp): how
// many SYNs its sockets sent to open a connection.
func tcpActiveOpens(t *testing.T, ns *testnet.Netns) int {
	lines := strings.Split(ns.Exec(t, "cat", "/proc/net/snmp"), "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "Tcp:" || len(values) != len(names) || values[0] != "Tcp:" {
			continue
		}
		if k := slices.Index(names, "ActiveOpens"); k > 0 {
			n, err := strconv.Atoi(values[k])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Tcp ActiveOpens in /proc/net/snmp")
	return 0
}

// TestModelThreadNames: one process whose connecting threads have names
// of their own is one row, named as ps names the process.
func TestModelThreadNames(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40099)
	dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	top := watch(t)
	cl := ns.StartClient(t, churn.Config{Target: dst, Count: 5, Threads: 3, ThreadName: "worker", Close: churn.CloseFin})
	res := cl.Wait(t)
	snap := top.done(t)
	self, _ := os.Executable()
	comm := testnet.Comm(self)
	var rows []summary.ProcessSummary
	for _, p := range snap.Processes {
		if p.PID == uint32(cl.Cmd.Process.Pid) {
			rows = append(rows, p)
		}
	}
	if res.Connected != 15 || len(rows) != 1 || rows[0].PID != uint32(cl.Cmd.Process.Pid) || rows[0].Comm != comm || rows[0].Total != 15 {
		t.Fatalf("rows %+v, want one: pid %d, %q, 15 connections", rows, cl.Cmd.Process.Pid, comm)
	}
	// The client ran in this test's cgroup, as /proc/PID/cgroup says.
	b, _ := os.ReadFile("/proc/self/cgroup")
	want := ""
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			want = p
		}
	}
	if rows[0].CgroupPath != want {
		t.Errorf("cgroup path %q, want %q", rows[0].CgroupPath, want)
	}
}

// TestModelNoSourceAddress: IPv6 connect()s with no IPv6 address at all
// fail with EADDRNOTAVAIL before any port search: not exhaustion.
func TestModelNoSourceAddress(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	dst := netip.MustParseAddrPort("[::1]:8080")
	if out, err := exec.Command("ip", "-n", ns.Name, "-6", "addr", "del", "::1/128", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("remove ::1: %v %s", err, out)
	}
	top := watch(t)
	res := ns.StartClient(t, churn.Config{Target: dst, Count: 5, Close: churn.CloseFin}).Wait(t)
	snap := top.done(t)
	invariants(t, snap)
	if res.Failures[testnet.EADDRNOTAVAIL] != 5 {
		t.Fatalf("setup: client %+v, want 5 EADDRNOTAVAIL", res)
	}
	sp := spaceToward(t, snap, ns.Inode, dst)
	if len(sp.Failures) != 1 || sp.Failures[0].Errno != "EADDRNOTAVAIL" || sp.Failures[0].Exhaustion || sp.Failures[0].Total != 5 {
		t.Errorf("failures %+v, want 5 EADDRNOTAVAIL that are not exhaustion", sp.Failures)
	}
	if sp.Exhausted || sp.ETA != nil || sp.Used != 0 {
		t.Errorf("exhausted %v ETA %v used %d, with the whole range free", sp.Exhausted, sp.ETA, sp.Used)
	}
	if got := rules(findingsIn(snap, ns.Inode)); !slices.Equal(got, []string{"no_source_address"}) {
		t.Errorf("findings %v, want no_source_address alone", got)
	}
}

// TestModelLoopbackListener: a listener bound to 127.0.0.1 does not answer
// on 127.0.0.2; the advice says so instead of offering it.
func TestModelLoopbackListener(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	dst := ns.Listen(t, "127.0.0.1:6399", 20*time.Millisecond)
	top := watch(t)
	res := ns.StartClient(t, churn.Config{Target: dst, Count: 30, Close: churn.CloseFin}).Wait(t)
	snap := top.done(t)
	invariants(t, snap)
	if res.Connected != 20 {
		t.Fatalf("setup: %+v", res)
	}
	for _, f := range findingsIn(snap, ns.Inode) {
		if f.Rule == "more_destinations" {
			if !strings.Contains(f.Fix, "accepts only on 127.0.0.1") {
				t.Errorf("advice %q for a listener on 127.0.0.1 only", f.Fix)
			}
			return
		}
	}
	t.Errorf("no more_destinations finding: %v", rules(findingsIn(snap, ns.Inode)))
}

// TestModelBindConflict: twenty long-lived connections, opened before
// porttrace started, fill the range; a service's bind(0.0.0.0:41005) then
// fails. porttrace names the connections' owner from the socket table and
// the conflict with who holds the port, and advises reserving it.
func TestModelBindConflict(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 41000, 41019)
	dst := ns.Serve(t, "127.0.0.1:8080", func(c net.Conn) { io.Copy(io.Discard, c) })
	holder := ns.StartScenario(t, "hold", testnet.HoldArgs{Target: dst, Count: 20, Hold: 2 * time.Minute})
	holder.WaitLine(t, "holding")
	waitEstablished(t, ns, dst, 20)
	top := watch(t)
	var b testnet.BindResult
	svc := ns.StartScenario(t, "bind", testnet.BindArgs{Addr: netip.MustParseAddrPort("0.0.0.0:41005")})
	svc.Wait(t, &b)
	snap := top.done(t)
	invariants(t, snap)
	if b.Errno != "EADDRINUSE" {
		t.Fatalf("setup: bind() returned %q, want EADDRINUSE", b.Errno)
	}
	sp := spaceToward(t, snap, ns.Inode, dst)
	if sp.Live != 20 || sp.Used != 20 || !sp.Exhausted {
		t.Errorf("live %d used %d exhausted %v, ss shows 20 established", sp.Live, sp.Used, sp.Exhausted)
	}
	if len(sp.Processes) != 1 || sp.Processes[0].PID != holder.Pid() || sp.Processes[0].Sockets != 20 {
		t.Errorf("processes %+v, want the holder %d with 20 sockets, named from the socket table", sp.Processes, holder.Pid())
	}
	var conflict *summary.Conflict
	for _, n := range snap.Netns {
		if n.Inode == ns.Inode && len(n.Conflicts) == 1 {
			conflict = &n.Conflicts[0]
		}
	}
	if conflict == nil || conflict.Port != 41005 || conflict.By.PID != svc.Pid() || conflict.Holder == nil || conflict.Holder.PID != holder.Pid() {
		t.Fatalf("conflict %+v, want port 41005 by %d, held by %d", conflict, svc.Pid(), holder.Pid())
	}
	fs := findingsIn(snap, ns.Inode)
	if i := slices.Index(rules(fs), "bind_conflict"); i < 0 || !strings.Contains(fs[i].Fix, `ip_local_reserved_ports="41005"`) {
		t.Errorf("findings %v: want bind_conflict with the reserved-ports fix", fs)
	}
}

// waitEstablished waits until ss shows n established connections to dst.
func waitEstablished(t *testing.T, ns *testnet.Netns, dst netip.AddrPort, n int) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		out, _ := exec.Command("ip", "netns", "exec", ns.Name, "ss", "-Htn", "state", "established", "dst", dst.String()).Output()
		if strings.Count(string(out), "\n") >= n {
			return
		}
	}
	t.Fatalf("%d connections to %s not established", n, dst)
}

// TestModelNetnsReuse: a namespace with an exhausted space goes, and the
// kernel gives its inode to a new one: the new one starts empty.
func TestModelNetnsReuse(t *testing.T) {
	testnet.RequireRoot(t)
	top := watch(t)
	old := testnet.New(t, 40000, 40009)
	dst := old.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	res := old.StartClient(t, churn.Config{Target: dst, Count: 15, Close: churn.CloseFin}).Wait(t)
	if res.Failures[testnet.EADDRNOTAVAIL] != 5 {
		t.Fatalf("setup: %+v", res)
	}
	time.Sleep(500 * time.Millisecond)
	ino := old.Inode
	old.Close(t)
	fresh := sameInode(t, ino)
	ndst := fresh.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	got := fresh.StartClient(t, churn.Config{Target: ndst, Count: 2, Close: churn.CloseFin}).Wait(t)
	snap := top.done(t)
	invariants(t, snap)
	if got.Connected != 2 {
		t.Fatalf("setup: %+v", got)
	}
	sp := spaceToward(t, snap, ino, ndst)
	if sp.TotalFailures != 0 || sp.TotalConns != 2 || sp.TimeWait != 2 || sp.Usable != 10 {
		t.Errorf("new namespace's space: %d failures, %d attempts, %d in TIME_WAIT, %d usable; want 0, 2, 2 (ss) and 10",
			sp.TotalFailures, sp.TotalConns, sp.TimeWait, sp.Usable)
	}
	if fs := findingsIn(snap, ino); len(fs) != 0 {
		t.Errorf("the old namespace's findings survive: %v", fs)
	}
}

// sameInode makes namespaces until the kernel hands out ino again.
func sameInode(t *testing.T, ino uint32) *testnet.Netns {
	t.Helper()
	for range 50 {
		n := testnet.New(t, 40000, 40009)
		if n.Inode == ino {
			return n
		}
		n.Close(t)
	}
	t.Fatalf("the kernel did not reuse inode %d in 50 new namespaces", ino)
	return nil
}

// TestModelHealthChecks: eight one-shot health checks, then one-shot
// clients that fail for want of a port. The space names the failing
// clients, not the first processes it saw.
func TestModelHealthChecks(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40009)
	dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	top := watch(t)
	checkers := map[uint32]bool{}
	for range 8 {
		cl := ns.StartClient(t, churn.Config{Target: dst, Count: 1, Close: churn.CloseFin})
		cl.Wait(t)
		checkers[uint32(cl.Cmd.Process.Pid)] = true
	}
	ns.StartClient(t, churn.Config{Target: dst, Count: 2, Close: churn.CloseFin}).Wait(t)
	failing := map[uint32]bool{}
	for range 12 {
		cl := ns.StartClient(t, churn.Config{Target: dst, Count: 1, Close: churn.CloseFin})
		if r := cl.Wait(t); r.Failures[testnet.EADDRNOTAVAIL] != 1 {
			t.Fatalf("setup: a client after the range filled: %+v", r)
		}
		failing[uint32(cl.Cmd.Process.Pid)] = true
	}
	snap := top.done(t)
	sp := spaceToward(t, snap, ns.Inode, dst)
	for _, p := range sp.Processes {
		if !failing[p.PID] || p.Failed60 != 1 {
			t.Errorf("space names %+v (a health check: %v), want only failing clients", p, checkers[p.PID])
		}
	}
	if len(sp.Processes) != 8 {
		t.Errorf("%d processes named, want 8 (the bound)", len(sp.Processes))
	}
	if sp.TotalFailures != 12 {
		t.Errorf("%d failures, the clients saw 12", sp.TotalFailures)
	}
}
