package e2e

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/frame"
	"github.com/porttrace/porttrace/internal/live"
	"github.com/porttrace/porttrace/internal/testkit/churn"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
	"golang.org/x/sys/unix"
)

// What holds the ports decides the finding and the fix (issue 19): each
// test makes one cause for real in a private namespace with a tiny range,
// and compares porttrace's figures with ss's state counts and with the
// clients' own errnos and pids from the same run.

// ssClientStates counts, by ss's state name, the sockets of the namespace
// whose local port is in [lo, hi] (the clients' side).
func ssClientStates(t *testing.T, ns *testnet.Netns, lo, hi int) map[string]int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns.Name, "ss", "-Htan").Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	got := map[string]int{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		ap, err := netip.ParseAddrPort(f[3])
		if err != nil {
			continue
		}
		if p := int(ap.Port()); p >= lo && p <= hi {
			got[f[0]]++
		}
	}
	return got
}

// ssServerStates counts, by state, the sockets whose local end is addr.
func ssServerStates(t *testing.T, ns *testnet.Netns, addr netip.AddrPort) map[string]int {
	t.Helper()
	out, _ := exec.Command("ip", "netns", "exec", ns.Name, "ss", "-Htan").Output()
	got := map[string]int{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 5 && f[3] == addr.String() {
			got[f[0]]++
		}
	}
	return got
}

// afterTable waits until the monitor has read the socket tables again
// (every live.Resync): the time-wait substate and the open sockets' states
// come from them.
func afterTable() { time.Sleep(live.Resync + time.Second) }

// capacityAdvice are the findings that offer ports or reuse.
var capacityAdvice = []string{"keepalive", "idle_pool", "tcp_tw_reuse", "more_destinations", "unix_socket", "port_range", "source_addresses"}

func wantCause(t *testing.T, snap frame.Frame, ino uint32, rule string) diagnose.Finding {
	t.Helper()
	fs := findingsIn(snap, ino)
	var got *diagnose.Finding
	for i, f := range fs {
		if slices.Contains(capacityAdvice, f.Rule) {
			t.Errorf("capacity advice for %s: %s", rule, f)
		}
		if f.Rule == rule {
			got = &fs[i]
		}
	}
	if got == nil {
		t.Fatalf("no %s finding: %v", rule, fs)
	}
	return *got
}

// TestModelCauseOrphanedFinWait2: the client closes, the server never does.
// With tcp_tw_reuse=1 every port stays held as an orphan in FIN_WAIT2
// and connect() fails: porttrace counts them used, never reusable, and
// names the peer; no tcp_tw_reuse advice.
func TestModelCauseOrphanedFinWait2(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	ns.Sysctl(t, "net/ipv4/tcp_tw_reuse", "1")
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	dst := ns.Serve(t, "127.0.0.1:8080", func(c net.Conn) { <-release }) // never closes
	top := watch(t)
	res := ns.StartClient(t, churn.Config{Target: dst, Count: 25, Close: churn.CloseFin}).Wait(t)
	afterTable()
	ss := ssClientStates(t, ns, 40000, 40019)
	peer := ssServerStates(t, ns, dst)
	snap := top.done(t)
	invariants(t, snap)
	if res.Connected != 20 || res.Failures[testnet.EADDRNOTAVAIL] != 5 || ss["FIN-WAIT-2"] != 20 || peer["CLOSE-WAIT"] != 20 {
		t.Fatalf("setup: client %+v, ss clients %v, server %v; want 20 connected, 5 EADDRNOTAVAIL, 20 FIN-WAIT-2 and 20 CLOSE-WAIT", res, ss, peer)
	}
	sp := spaceToward(t, snap, ns.Inode, dst)
	if sp.FinWait2 != ss["FIN-WAIT-2"] || sp.TimeWait != ss["TIME-WAIT"] || sp.Reusable != 0 || sp.Used != 20 || sp.PeerCloseWait != peer["CLOSE-WAIT"] {
		t.Errorf("fin_wait2 %d time_wait %d reusable %d used %d peer close_wait %d; ss: %v, server %v, every connect() failed",
			sp.FinWait2, sp.TimeWait, sp.Reusable, sp.Used, sp.PeerCloseWait, ss, peer)
	}
	if n := failures(sp, "EADDRNOTAVAIL"); n != 5 || !sp.Exhausted {
		t.Errorf("%d EADDRNOTAVAIL, exhausted %v; the client saw 5", n, sp.Exhausted)
	}
	t.Logf("client %+v; ss clients %v, server %v; porttrace fin_wait2 %d time_wait %d reusable %d used %d/%d peer close_wait %d",
		res, ss, peer, sp.FinWait2, sp.TimeWait, sp.Reusable, sp.Used, sp.Usable, sp.PeerCloseWait)
	f := wantCause(t, snap, ns.Inode, "fin_wait2_orphans")
	t.Log(f)
	if !strings.Contains(f.Evidence, "pid "+strconv.Itoa(int(selfPid()))) || !strings.Contains(f.Evidence, "20 connections in CLOSE_WAIT") {
		t.Errorf("finding does not name the peer (this test, pid %d) and its 20 CLOSE_WAIT: %s", selfPid(), f)
	}
}

// TestModelCauseCloseWaitLeak: the server closes at once, a process holds its
// 20 connections without closing them (CLOSE_WAIT), and a client then
// finds no port. porttrace names the holder, its count and its age.
func TestModelCauseCloseWaitLeak(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	dst := ns.Serve(t, "127.0.0.1:8080", func(c net.Conn) {}) // closes at once
	top := watch(t)
	holder := ns.StartScenario(t, "hold", testnet.HoldArgs{Target: dst, Count: 20, Hold: time.Minute})
	holder.WaitLine(t, "holding")
	cl := ns.StartClient(t, churn.Config{Target: dst, Count: 5, Close: churn.CloseFin})
	res := cl.Wait(t)
	afterTable()
	ss := ssClientStates(t, ns, 40000, 40019)
	snap := top.done(t)
	invariants(t, snap)
	if res.Failures[testnet.EADDRNOTAVAIL] != 5 || ss["CLOSE-WAIT"] != 20 {
		t.Fatalf("setup: client %+v, ss %v; want 5 EADDRNOTAVAIL, 20 CLOSE-WAIT", res, ss)
	}
	sp := spaceToward(t, snap, ns.Inode, dst)
	if sp.States["CLOSE_WAIT"] != ss["CLOSE-WAIT"] || sp.Used != 20 || failures(sp, "EADDRNOTAVAIL") != 5 {
		t.Errorf("states %v used %d, %d EADDRNOTAVAIL; ss %v, client 5 EADDRNOTAVAIL", sp.States, sp.Used, failures(sp, "EADDRNOTAVAIL"), ss)
	}
	if len(sp.Holders) == 0 || sp.Holders[0].PID != holder.Pid() || sp.Holders[0].Sockets != 20 || sp.Holders[0].State != "CLOSE_WAIT" || sp.Holders[0].Oldest < 5 {
		t.Errorf("holders %+v, want pid %d with 20 in CLOSE_WAIT for 5 s or more", sp.Holders, holder.Pid())
	}
	t.Logf("client %+v; ss %v; porttrace states %v used %d/%d holders %+v", res, ss, sp.States, sp.Used, sp.Usable, sp.Holders)
	f := wantCause(t, snap, ns.Inode, "close_wait_leak")
	t.Log(f)
	if !strings.Contains(f.Evidence, "pid "+strconv.Itoa(int(holder.Pid()))+") holds 20 sockets in CLOSE_WAIT") || !strings.Contains(f.Fix, "delays the failure by") {
		t.Errorf("finding %s: want the holder %d, its count and what widening buys", f, holder.Pid())
	}
}

// TestModelCauseEstablishedLeak: 20 connections that stay open and never
// close, then a client finds no port: a leak, named with its holder.
func TestModelCauseEstablishedLeak(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	dst := ns.Serve(t, "127.0.0.1:8080", func(c net.Conn) { io.Copy(io.Discard, c) })
	top := watch(t)
	holder := ns.StartScenario(t, "hold", testnet.HoldArgs{Target: dst, Count: 20, Hold: time.Minute})
	holder.WaitLine(t, "holding")
	res := ns.StartClient(t, churn.Config{Target: dst, Count: 5, Close: churn.CloseFin}).Wait(t)
	afterTable()
	ss := ssClientStates(t, ns, 40000, 40019)
	snap := top.done(t)
	invariants(t, snap)
	if res.Failures[testnet.EADDRNOTAVAIL] != 5 || ss["ESTAB"] != 20 {
		t.Fatalf("setup: client %+v, ss %v; want 5 EADDRNOTAVAIL, 20 ESTAB", res, ss)
	}
	sp := spaceToward(t, snap, ns.Inode, dst)
	if sp.States["ESTABLISHED"] != ss["ESTAB"] || sp.Used != 20 || sp.Closed60 != 0 {
		t.Errorf("states %v used %d closed %d; ss %v", sp.States, sp.Used, sp.Closed60, ss)
	}
	t.Logf("client %+v; ss %v; porttrace states %v used %d/%d holders %+v", res, ss, sp.States, sp.Used, sp.Usable, sp.Holders)
	f := wantCause(t, snap, ns.Inode, "established_leak")
	t.Log(f)
	if !strings.Contains(f.Evidence, "pid "+strconv.Itoa(int(holder.Pid()))+") holds 20 sockets in ESTABLISHED") {
		t.Errorf("finding %s: want the holder %d", f, holder.Pid())
	}
}

// TestModelCauseSynSentPileUp: five connects to a listener that drops SYNs
// hold the five ports of the range in SYN_SENT; the next attempts find no
// port. The upstream does not answer: no capacity advice.
func TestModelCauseSynSentPileUp(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40004)
	stalled := netip.MustParseAddrPort("127.0.0.1:7000")
	ns.StalledListener(t, stalled)
	top := watch(t)
	var blocked []*testnet.Scenario
	for range 4 { // the stalled listener's own client holds the fifth port
		b := ns.StartScenario(t, "block", testnet.HoldArgs{Target: stalled})
		b.WaitLine(t, "connecting")
		blocked = append(blocked, b)
	}
	t.Cleanup(func() {
		for _, b := range blocked {
			b.Cmd.Process.Kill()
			b.Cmd.Wait()
		}
	})
	time.Sleep(300 * time.Millisecond)
	res := ns.StartClient(t, churn.Config{Target: stalled, Count: 3, Close: churn.CloseFin}).Wait(t)
	afterTable()
	ss := ssClientStates(t, ns, 40000, 40004)
	snap := top.done(t)
	invariants(t, snap)
	// A blocked connect() that returned (EADDRNOTAVAIL, seen on 6.1 and
	// here under load) has exited: its errno is ground truth too.
	var still []*testnet.Scenario
	errnos := map[string]int{testnet.EADDRNOTAVAIL: res.Failures[testnet.EADDRNOTAVAIL]}
	for _, b := range blocked {
		if stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", b.Pid())); strings.Contains(string(stat), ") Z ") {
			var r testnet.BindResult
			b.Wait(t, &r)
			errnos[r.Errno]++
			continue
		}
		still = append(still, b)
	}
	if res.Failures[testnet.EADDRNOTAVAIL] != 3 || ss["SYN-SENT"] != len(still) || len(still) < 3 {
		t.Fatalf("setup: client %+v, ss %v, %d of 4 connects still blocked (others: %v); want 3 EADDRNOTAVAIL and ss agreeing",
			res, ss, len(still), errnos)
	}
	blocked = still
	sp := spaceToward(t, snap, ns.Inode, stalled)
	if sp.States["SYN_SENT"] != ss["SYN-SENT"] || int(failures(sp, "EADDRNOTAVAIL")) != errnos[testnet.EADDRNOTAVAIL] {
		t.Errorf("states %v, %d EADDRNOTAVAIL; ss %v, the clients saw %v", sp.States, failures(sp, "EADDRNOTAVAIL"), ss, errnos)
	}
	blockedPids := map[uint32]bool{}
	for _, b := range blocked {
		blockedPids[b.Pid()] = true
	}
	waiting := 0
	for _, h := range sp.Holders {
		if h.State != "SYN_SENT" {
			continue
		}
		waiting += h.Sockets
		if !blockedPids[h.PID] {
			t.Errorf("holder %+v is none of the blocked clients", h)
		}
	}
	if waiting != ss["SYN-SENT"] {
		t.Errorf("holders %+v name %d sockets in SYN_SENT, ss shows %d", sp.Holders, waiting, ss["SYN-SENT"])
	}
	t.Logf("client %+v; ss %v; porttrace states %v used %d/%d holders %+v", res, ss, sp.States, sp.Used, sp.Usable, sp.Holders)
	f := wantCause(t, snap, ns.Inode, "syn_sent")
	t.Log(f)
	if !strings.Contains(f.Evidence, "does not answer") {
		t.Errorf("finding %s", f)
	}
}

// TestModelCauseTimeoutsNotExhaustion: attempts time out (tcp_syn_retries=1:
// about 3 s) with the range nearly free: porttrace says it is not port
// exhaustion, shows no ETA, and offers nothing about ports.
func TestModelCauseTimeoutsNotExhaustion(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	ns.Sysctl(t, "net/ipv4/tcp_syn_retries", "1")
	stalled := netip.MustParseAddrPort("127.0.0.1:7000")
	ns.StalledListener(t, stalled)
	top := watch(t)
	var got []string
	var pids []uint32
	for range 3 {
		b := ns.StartScenario(t, "block", testnet.HoldArgs{Target: stalled})
		pids = append(pids, b.Pid())
		var r testnet.BindResult
		b.Wait(t, &r)
		got = append(got, r.Errno)
	}
	snap := top.done(t)
	invariants(t, snap)
	if !slices.Equal(got, []string{"ETIMEDOUT", "ETIMEDOUT", "ETIMEDOUT"}) {
		t.Fatalf("setup: connect() returned %v, want ETIMEDOUT thrice", got)
	}
	sp := spaceToward(t, snap, ns.Inode, stalled)
	if failures(sp, "ETIMEDOUT") != 3 || sp.Exhausted || sp.ETA != nil || sp.Exhaustion60() != 0 {
		t.Errorf("%d ETIMEDOUT, exhausted %v, ETA %v, %d exhaustion; the clients saw 3 ETIMEDOUT with 19 ports free",
			failures(sp, "ETIMEDOUT"), sp.Exhausted, sp.ETA, sp.Exhaustion60())
	}
	for _, pid := range pids {
		if p := procOf(snap, pid); p == nil || len(p.Failures) != 1 || p.Failures[0].Errno != "ETIMEDOUT" || p.Failures[0].Total != 1 {
			t.Errorf("pid %d: %+v, want its one ETIMEDOUT", pid, p)
		}
	}
	fs := findingsIn(snap, ns.Inode)
	t.Logf("clients %v; porttrace ETIMEDOUT %d used %d/%d ETA %v; findings %v", got, failures(sp, "ETIMEDOUT"), sp.Used, sp.Usable, sp.ETA, fs)
	if got := rules(fs); !slices.Equal(got, []string{"not_port_exhaustion"}) {
		t.Errorf("findings %v, want not_port_exhaustion alone", fs)
	}
}

func selfPid() uint32 { return uint32(os.Getpid()) }

// TestModelCauseHalfClosed: this process connects 20 times, shuts each
// connection down for writing and keeps it; the server never closes.
// The sockets sit in FIN_WAIT2 with no timer, owned by this process: a
// half-close, not an orphan, and tcp_fin_timeout does not apply.
func TestModelCauseHalfClosed(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	dst := ns.Serve(t, "127.0.0.1:8080", func(c net.Conn) { <-release })
	top := watch(t)
	var held []net.Conn
	ns.Do(t, func() {
		for range 20 {
			c, err := net.Dial("tcp", dst.String())
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			c.(*net.TCPConn).CloseWrite()
			held = append(held, c)
		}
	})
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	res := ns.StartClient(t, churn.Config{Target: dst, Count: 5, Close: churn.CloseFin}).Wait(t)
	afterTable()
	ss := ssClientStates(t, ns, 40000, 40019)
	snap := top.done(t)
	invariants(t, snap)
	if len(held) != 20 || res.Failures[testnet.EADDRNOTAVAIL] != 5 || ss["FIN-WAIT-2"] != 20 {
		t.Fatalf("setup: %d held, client %+v, ss %v; want 20, 5 EADDRNOTAVAIL, 20 FIN-WAIT-2", len(held), res, ss)
	}
	sp := spaceToward(t, snap, ns.Inode, dst)
	t.Logf("client %+v; ss %v; porttrace states %v fin_wait2 orphans %d used %d/%d holders %+v", res, ss, sp.States, sp.FinWait2, sp.Used, sp.Usable, sp.Holders)
	if sp.States["FIN_WAIT2"] != ss["FIN-WAIT-2"] || sp.FinWait2 != 0 || sp.Used != 20 || failures(sp, "EADDRNOTAVAIL") != 5 {
		t.Errorf("states %v, %d orphans, used %d, %d EADDRNOTAVAIL; ss %v (open, owned), the client saw 5", sp.States, sp.FinWait2, sp.Used, failures(sp, "EADDRNOTAVAIL"), ss)
	}
	f := wantCause(t, snap, ns.Inode, "half_closed")
	t.Log(f)
	if !strings.Contains(f.Evidence, "pid "+strconv.Itoa(int(selfPid()))+") holds 20 sockets in FIN_WAIT2") {
		t.Errorf("finding %s: want this process, %d, and its 20 sockets", f, selfPid())
	}
}

// TestModelCauseBindPoolAutobindReuse: with ip_autobind_reuse=1, bind() with
// SO_REUSEADDR hands out ports held in TIME_WAIT, and connect() takes the
// time-wait socket over: 40 bind-then-connects through a 20-port pool
// all succeed. The pool is full of TIME_WAIT, yet never EXHAUSTED nor
// "full in 0 s".
func TestModelCauseBindPoolAutobindReuse(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	ns.Sysctl(t, "net/ipv4/ip_autobind_reuse", "1")
	port := ns.Listen(t, "0.0.0.0:8080", 20*time.Millisecond).Port()
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), port)
	top := watch(t)
	var errs []string
	ns.Do(t, func() {
		for range 40 {
			errs = append(errs, bindConnectClose(dst))
			time.Sleep(30 * time.Millisecond) // the server's close arrives: TIME_WAIT here
		}
	})
	time.Sleep(200 * time.Millisecond)
	tw := ns.TimeWait(t, dst)
	snap := top.done(t)
	invariants(t, snap)
	if slices.ContainsFunc(errs, func(e string) bool { return e != "" }) || tw != 20 {
		t.Fatalf("setup: calls %v, ss %d in TIME_WAIT; want 40 successes and 20", errs, tw)
	}
	for _, sp := range netnsSpaces(snap, ns.Inode) {
		t.Logf("%s: used %d/%d time_wait %d exhausted %v ETA %v failures %d", sp.Name, sp.Used, sp.Usable, sp.TimeWait, sp.Exhausted, sp.ETA, sp.TotalFailures)
		if sp.Exhausted || sp.TotalFailures != 0 || sp.ETA != nil && *sp.ETA == 0 {
			t.Errorf("%s: exhausted %v, %d failures, ETA %v; every one of 40 calls succeeded", sp.Name, sp.Exhausted, sp.TotalFailures, sp.ETA)
		}
	}
	for _, f := range findingsIn(snap, ns.Inode) {
		if strings.Contains(f.Situation, "full in 0s") || strings.Contains(f.Situation, "no port left") {
			t.Errorf("finding %s beside zero failures", f)
		}
	}
}

// bindConnectClose binds to 127.0.0.1:0 with SO_REUSEADDR, connects to
// dst and closes; it returns the errno's name, "" for success.
func bindConnectClose(dst netip.AddrPort) string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return churn.ErrName(err)
	}
	defer unix.Close(fd)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return churn.ErrName(err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}); err != nil {
		return churn.ErrName(err)
	}
	return ""
}

// TestModelCauseRangeWidenedMidRun: the range is full of TIME_WAIT, the
// operator widens it, and connect() succeeds again: the next frame has
// the new range, with no EXHAUSTED from the old one (socket tables are
// read every 5 s; the out-of-range port asks for them at once).
func TestModelCauseRangeWidenedMidRun(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40009)
	dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	top := watch(t)
	first := ns.StartClient(t, churn.Config{Target: dst, Count: 10, Close: churn.CloseFin}).Wait(t)
	ns.Sysctl(t, "net/ipv4/ip_local_port_range", "40000 40099")
	second := ns.StartClient(t, churn.Config{Target: dst, Count: 10, Close: churn.CloseFin}).Wait(t)
	// The re-read takes a tick, and as long as reading every namespace
	// takes; still well before the 5 s round.
	time.Sleep(time.Second)
	tw := ns.TimeWait(t, dst)
	snap := top.done(t)
	invariants(t, snap)
	if first.Connected != 10 || second.Connected != 10 || tw != 20 {
		t.Fatalf("setup: before %+v, after %+v, ss %d in TIME_WAIT; want 10, 10, 20", first, second, tw)
	}
	sp := spaceToward(t, snap, ns.Inode, dst)
	t.Logf("porttrace used %d/%d time_wait %d exhausted %v failures %d; ss %d in TIME_WAIT, clients %d and %d connected", sp.Used, sp.Usable, sp.TimeWait, sp.Exhausted, sp.TotalFailures, tw, first.Connected, second.Connected)
	if sp.Usable != 100 || sp.Used != tw || sp.TimeWait != tw || sp.Exhausted || sp.TotalFailures != 0 {
		t.Errorf("used %d of %d, %d in TIME_WAIT, exhausted %v, %d failures; ss %d, the range is 100 now, no call failed",
			sp.Used, sp.Usable, sp.TimeWait, sp.Exhausted, sp.TotalFailures, tw)
	}
}
