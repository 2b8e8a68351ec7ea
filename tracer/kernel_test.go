package tracer_test

import (
	"context"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/testkit/churn"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
	"github.com/porttrace/porttrace/tracer"
)

func TestMain(m *testing.M) {
	testnet.RunHelper()
	os.Exit(m.Run())
}

// backendUnderTest is PORTTRACE_BACKEND (set by the VM run for fentry and
// kprobe), or the automatic choice.
func backendUnderTest(t *testing.T) tracer.Backend {
	b, err := tracer.ParseBackend(os.Getenv("PORTTRACE_BACKEND"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type recorder struct {
	mu     sync.Mutex
	events []event.Event
}

func (r *recorder) add(e *event.Event) {
	r.mu.Lock()
	r.events = append(r.events, *e)
	r.mu.Unlock()
}

// in returns the events of one network namespace.
func (r *recorder) in(netns uint32) []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event.Event
	for _, e := range r.events {
		if e.Netns == netns {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) naming(pid uint32) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return count(r.events, func(e *event.Event) bool { return e.PID == pid })
}

// trace starts the tracer; the returned function stops it after draining
// the ring buffer and returns the number of lost events.
func trace(t *testing.T) (*tracer.Tracer, *recorder, func() uint64) {
	return traceWith(t, tracer.Options{})
}

// traceWith is trace with options; the backend is always the one under test.
func traceWith(t *testing.T, opts tracer.Options) (*tracer.Tracer, *recorder, func() uint64) {
	testnet.RequireRoot(t)
	opts.Backend = backendUnderTest(t)
	tr, err := tracer.Open(opts)
	if err != nil {
		t.Fatalf("open tracer: %v", err)
	}
	t.Logf("backend %s", tr.Backend())
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, rec.add) }()
	stopped := false
	stop := func() uint64 {
		if !stopped {
			// ss sees a time-wait socket a moment before its owner's
			// CLOSE transition runs (more under qemu's emulation): let
			// the last events reach the ring before draining it.
			time.Sleep(300 * time.Millisecond)
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
			stopped = true
		}
		lost, err := tr.Lost()
		if err != nil {
			t.Fatal(err)
		}
		return lost
	}
	t.Cleanup(func() { stop(); tr.Close() })
	return tr, rec, stop
}

// settleTimeWait waits until ss shows want sockets in TIME_WAIT toward dst,
// or gives up after a few seconds and returns what it sees.
func settleTimeWait(t *testing.T, ns *testnet.Netns, dst netip.AddrPort, want int) int {
	var n int
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if n = ns.TimeWait(t, dst); n >= want {
			break
		}
	}
	return n
}

func count(evs []event.Event, match func(*event.Event) bool) int {
	n := 0
	for i := range evs {
		if match(&evs[i]) {
			n++
		}
	}
	return n
}

func sameDst(e *event.Event, dst netip.AddrPort) bool {
	return e.Dst.Addr().Unmap() == dst.Addr().Unmap() && e.Dst.Port() == dst.Port()
}

// TestKernelExhaustion drives a real exhaustion: ten ports, a client that
// connects and actively closes fifteen times, a server that closes only after
// the client has exited (so every TIME_WAIT transition runs in softirq with
// some other task current). porttrace must agree with the client and ss.
func TestKernelExhaustion(t *testing.T) {
	for _, tc := range []struct{ name, listen string }{
		{"ipv4", "127.0.0.1:8080"},
		{"ipv6", "[::1]:8080"},
	} {
		t.Run(tc.name, func(t *testing.T) { exhaust(t, tc.listen) })
	}
}

func exhaust(t *testing.T, listen string) {
	tr, rec, stop := trace(t)
	ns := testnet.New(t, 40000, 40009)
	dst := ns.Listen(t, listen, 300*time.Millisecond)
	bystander := testnet.StartBystander(t)

	cl := ns.StartClient(t, churn.Config{Target: dst, Count: 15, Close: churn.CloseFin})
	res := cl.Wait(t)
	failures := res.Failures[testnet.EADDRNOTAVAIL]
	if res.Connected != 10 || failures != 5 {
		t.Fatalf("test setup: client connected %d times and saw %d EADDRNOTAVAIL, want 10 and 5 (%+v)", res.Connected, failures, res)
	}
	tw := settleTimeWait(t, ns, dst, res.Connected)
	if lost := stop(); lost != 0 {
		t.Errorf("lost %d events", lost)
	}

	evs := rec.in(ns.Inode)
	pid := uint32(cl.Cmd.Process.Pid)
	self, _ := os.Executable()
	comm := testnet.Comm(self)
	client := func(e *event.Event) bool { return e.PID == pid && e.Comm.String() == comm && sameDst(e, dst) }
	is := func(k event.Kind, errno syscall.Errno) func(*event.Event) bool {
		return func(e *event.Event) bool { return e.Kind == k && e.Errno == errno }
	}
	state := func(from, to event.TCPState) func(*event.Event) bool {
		return func(e *event.Event) bool { return e.Kind == event.State && e.OldState == from && e.NewState == to }
	}
	// An attempt that found no port: on the tracepoint backend SYN_SENT ->
	// CLOSE says so, elsewhere connect()'s own return.
	exhausted := func(e *event.Event) bool {
		return e.Failed() && e.Exhaustion() && e.Errno == syscall.EADDRNOTAVAIL
	}

	for _, c := range []struct {
		what      string
		match     func(*event.Event) bool
		want      int
		wantTruth string
	}{
		{"attempts", state(event.Close, event.SynSent), failures + res.Connected, "client's connect() calls"},
		{"failed for want of a port", exhausted, failures, "client's failures"},
		{"any other failure", func(e *event.Event) bool { return e.Failed() && !exhausted(e) }, 0, "client's other errnos"},
		{"port search failed", is(event.Alloc, syscall.EADDRNOTAVAIL), failures, "client's failures"},
		{"port search ok", is(event.Alloc, 0), res.Connected, "client's connections"},
		{"TIME_WAIT", is(event.TimeWait, 0), tw, "ss -tan state time-wait"},
	} {
		all := count(evs, c.match)
		mine := count(evs, func(e *event.Event) bool { return c.match(e) && client(e) })
		if all != c.want || mine != c.want {
			t.Errorf("%s: %d events (%d naming client pid %d, %s, %s), want %d (%s)", c.what, all, mine, pid, comm, dst, c.want, c.wantTruth)
		}
	}
	if tw != res.Connected {
		t.Errorf("ss shows %d in TIME_WAIT, client connected %d times", tw, res.Connected)
	}
	checkPorts(t, evs, res)
	checkLatency(t, tr.Backend(), evs)

	// Attribution: the server's sockets are not traced at all, so only the
	// client connects or closes here. (The test process does bind() port
	// 0: Go probes IPv6 support that way on its first listen.) The
	// bystander never appears anywhere.
	for _, e := range evs {
		if e.Kind != event.Bind && e.PID != pid {
			t.Errorf("event names pid %d (%s), only the client %d may appear (test %d, bystander %d): %+v",
				e.PID, e.Comm, pid, os.Getpid(), bystander.Process.Pid, e)
		}
	}
	if n := rec.naming(uint32(bystander.Process.Pid)); n > 0 {
		t.Errorf("%d events name the bystander, which never touches the network", n)
	}
	closes := count(evs, func(e *event.Event) bool {
		return e.Kind == event.TimeWait && e.Flags&event.OwnerFromSocket != 0 && client(e)
	})
	if closes != tw {
		t.Errorf("TIME_WAIT entries after the client exited: %d attributed to it, want %d", closes, tw)
	}
	if t.Failed() {
		for _, e := range evs {
			t.Logf("%s flags %d", e.Text(), e.Flags)
		}
	}
}

// checkPorts compares the ports porttrace saw assigned with the ones the
// client got from getsockname().
func checkPorts(t *testing.T, evs []event.Event, res churn.Result) {
	got := map[int]bool{}
	for _, e := range evs {
		if e.Kind == event.Alloc && e.Errno == 0 {
			got[int(e.Src.Port())] = true
		}
	}
	for _, p := range res.Ports {
		if !got[p] {
			t.Errorf("client got source port %d, porttrace saw no allocation of it (saw %v)", p, got)
		}
	}
}

func checkLatency(t *testing.T, b tracer.Backend, evs []event.Event) {
	for _, e := range evs {
		if e.Kind != event.Alloc {
			continue
		}
		if e.Latency <= 0 || e.Latency > time.Second {
			t.Errorf("port search latency %v out of range: %+v", e.Latency, e)
		}
		if approx := e.Flags&event.LatencyApprox != 0; approx == b.ExactLatency() {
			t.Errorf("backend %s marks latency approximate=%v", b, approx)
		}
	}
}

// TestKernelBindExhaustion: a proxy that binds before connecting takes its
// port in bind() and fails there with EADDRINUSE. The tracepoint backend
// sees bind() only with its syscall tracepoints.
func TestKernelBindExhaustion(t *testing.T) {
	_, rec, stop := traceWith(t, tracer.Options{Syscalls: true})
	ns := testnet.New(t, 40000, 40009)
	dst := ns.Listen(t, "127.0.0.1:8080", 0)
	cl := ns.StartClient(t, churn.Config{Target: dst, Count: 14, Close: churn.CloseFin, BindFirst: true})
	res := cl.Wait(t)
	inUse := res.Failures["EADDRINUSE"]
	if res.Connected != 10 || inUse != 4 {
		t.Fatalf("test setup: client connected %d times, bind() failed %d times, want 10 and 4 (%+v)", res.Connected, inUse, res)
	}
	if lost := stop(); lost != 0 {
		t.Errorf("lost %d events", lost)
	}
	evs := rec.in(ns.Inode)
	pid := uint32(cl.Cmd.Process.Pid)
	ok := count(evs, func(e *event.Event) bool { return e.Kind == event.Bind && e.Errno == 0 && e.PID == pid })
	failed := count(evs, func(e *event.Event) bool {
		return e.Kind == event.Bind && e.Errno == syscall.EADDRINUSE && e.PID == pid
	})
	if ok != res.Connected || failed != inUse {
		t.Errorf("bind events: %d ok, %d EADDRINUSE; client: %d bound, %d EADDRINUSE", ok, failed, res.Connected, inUse)
	}
	for _, e := range evs {
		if e.Kind == event.Bind && e.Errno == 0 && (e.Src.Port() < 40000 || e.Src.Port() > 40009) {
			t.Errorf("bind took port %d, outside the namespace's range", e.Src.Port())
		}
	}
	// Every connect() of a bound socket says so: its port was not searched.
	bound := count(evs, func(e *event.Event) bool {
		return e.Kind == event.State && e.NewState == event.SynSent && e.Flags&event.Bound != 0 && e.PID == pid
	})
	if bound != res.Connected {
		t.Errorf("%d attempts marked bound, client connected %d bound sockets", bound, res.Connected)
	}
}

// TestKernelNestedStateChanges: under churn, an interrupt's softirq changes
// sockets' states while pt_state runs in a task on the same CPU, and the
// kernel skips pt_state for those (its recursion_misses: 354 in 228,000
// connections here before pt_state_nested). Every connection's SYN_SENT
// must still arrive, no more TIME_WAIT than connections, and nothing may
// count as lost.
func TestKernelNestedStateChanges(t *testing.T) {
	tr, rec, stop := trace(t)
	ns := testnet.New(t, 20000, 60999)
	dst := ns.Listen(t, "127.0.0.1:8080", 5*time.Millisecond)
	cl := ns.StartClient(t, churn.Config{Target: dst, Count: 6000, Duration: 8 * time.Second, Threads: 4, Close: churn.CloseFin})
	res := cl.Wait(t)
	if res.Connected != res.Attempts || res.Connected == 0 {
		t.Fatalf("test setup: %d of %d attempts connected (%v)", res.Connected, res.Attempts, res.Failures)
	}
	// A client thread held up past the server's 5 ms closes second and
	// leaves no TIME_WAIT, and tcp_tw_reuse=2 hands loopback ports back:
	// ss may list fewer than the connections.
	ssTW := settleTimeWait(t, ns, dst, res.Connected)
	lost := stop()
	t.Logf("%d connections; the kernel skipped %d probe runs", res.Connected, tr.Missed())
	evs := rec.in(ns.Inode)
	pid := uint32(cl.Cmd.Process.Pid)
	synSent := count(evs, func(e *event.Event) bool {
		return e.PID == pid && e.Kind == event.State && e.NewState == event.SynSent
	})
	tw := count(evs, func(e *event.Event) bool { return e.Kind == event.TimeWait && sameDst(e, dst) })
	if synSent < res.Attempts || tw > res.Connected || lost != 0 {
		t.Errorf("%d SYN_SENT, %d TIME_WAIT, %d lost; the client made %d connections, ss shows %d in TIME_WAIT",
			synSent, tw, lost, res.Attempts, ssTW)
	}
	// Not yet required: pt_state_nested once in about 50,000 connections
	// does a SYN_SENT that pt_state did too. And the development VM's
	// kernel (6.18.44-fc) calls no tracepoint probe while the current
	// task is a thread of its PID 1 agent: in one run tp_btf sched_switch
	// saw 37 switches to such a thread and none away from one, and
	// sys_enter none of their syscalls. A softirq that runs on leaving an
	// interrupt of that thread closes sockets unseen, a burst at a time:
	// up to 9 TIME_WAIT transitions in 22,000 connections that sock_ops'
	// STATE_CB saw and neither pt_state nor a perf program on the same
	// tracepoint did, none counted as skipped. Mainline's
	// __bpf_trace_run skips a program only for recursion, which it
	// counts. The socket-table round after sets the counts right.
	if tw < ssTW || synSent > res.Attempts {
		t.Logf("%d SYN_SENT, %d TIME_WAIT events; ss lists %d", synSent, tw, ssTW)
	}
}

// TestKernelBindErrnos: bind() failures of every errno, without --syscalls,
// one event per failed call with the errno and address the caller got:
// EADDRINUSE from a pool gone empty, EADDRNOTAVAIL from an address (IPv4
// and IPv6) that is not in the namespace. fentry and kprobe see them from
// inet{,6}_bind always; the tracepoint backend while WatchBind has its
// bind() tracepoints on, and not after it turns them off.
func TestKernelBindErrnos(t *testing.T) {
	tr, rec, stop := trace(t)
	if want := tr.Backend() == tracer.Tracepoint; tr.BindOnDemand() != want {
		t.Fatalf("%s: BindOnDemand %v, want %v", tr.Backend(), tr.BindOnDemand(), want)
	}
	if _, err := tr.WatchBind(true); err != nil {
		t.Fatal(err)
	}
	ns := testnet.New(t, 40000, 40009)
	dst := ns.Listen(t, "127.0.0.1:8080", 0)
	away4, away6 := netip.MustParseAddr("10.9.9.9"), netip.MustParseAddr("2001:db8::9")
	pool := ns.StartClient(t, churn.Config{Target: dst, Count: 14, Close: churn.CloseFin, BindFirst: true})
	gone4 := ns.StartClient(t, churn.Config{Target: dst, Count: 3, BindFirst: true, BindAddr: away4})
	gone6 := ns.StartClient(t, churn.Config{Target: netip.MustParseAddrPort("[::1]:8080"), Count: 2, BindFirst: true, BindAddr: away6})
	resPool, res4, res6 := pool.Wait(t), gone4.Wait(t), gone6.Wait(t)
	if resPool.Connected != 10 || resPool.Failures["EADDRINUSE"] != 4 || res4.Failures["EADDRNOTAVAIL"] != 3 || res6.Failures["EADDRNOTAVAIL"] != 2 {
		t.Fatalf("setup: pool client %+v (want 10 connected, 4 EADDRINUSE), %s client %+v (3 EADDRNOTAVAIL), %s client %+v (2 EADDRNOTAVAIL)",
			resPool, away4, resPool, away6, res6)
	}
	// Off again: a failure now is not seen on the tracepoint backend.
	changed, err := tr.WatchBind(false)
	if err != nil || changed != tr.BindOnDemand() {
		t.Fatalf("WatchBind(false): changed %v, %v", changed, err)
	}
	after := ns.StartClient(t, churn.Config{Target: dst, Count: 2, BindFirst: true, BindAddr: away4})
	if r := after.Wait(t); r.Failures["EADDRNOTAVAIL"] != 2 {
		t.Fatalf("setup: client after the watch %+v, want 2 EADDRNOTAVAIL", r)
	}
	if lost := stop(); lost != 0 {
		t.Errorf("lost %d events", lost)
	}
	evs := rec.in(ns.Inode)
	failed := func(cl *testnet.Client, errno syscall.Errno, addr netip.Addr) int {
		pid := uint32(cl.Cmd.Process.Pid)
		return count(evs, func(e *event.Event) bool {
			return e.Kind == event.Bind && e.PID == pid && e.Errno == errno && (!addr.IsValid() || e.Src.Addr() == addr)
		})
	}
	for _, c := range []struct {
		name  string
		cl    *testnet.Client
		errno syscall.Errno
		addr  netip.Addr
		want  int
	}{
		{"pool's EADDRINUSE", pool, syscall.EADDRINUSE, netip.Addr{}, resPool.Failures["EADDRINUSE"]},
		{"EADDRNOTAVAIL from " + away4.String(), gone4, syscall.EADDRNOTAVAIL, away4, res4.Failures["EADDRNOTAVAIL"]},
		{"EADDRNOTAVAIL from " + away6.String(), gone6, syscall.EADDRNOTAVAIL, away6, res6.Failures["EADDRNOTAVAIL"]},
	} {
		if got := failed(c.cl, c.errno, c.addr); got != c.want {
			t.Errorf("%s: %d bind events, the client got %d", c.name, got, c.want)
		}
	}
	want := 2
	if tr.BindOnDemand() {
		want = 0
	}
	if got := failed(after, syscall.EADDRNOTAVAIL, away4); got != want {
		t.Errorf("after WatchBind(false): %d bind events, want %d (the client got 2)", got, want)
	}
}

// TestKernelOwnersFreed: every client socket's entry in the probes'
// owners map goes at its CLOSE, however the connection ended (TIME_WAIT,
// a reset, refused, no port left), so the map does not grow with churn.
// An entry whose CLOSE the kernel did not run pt_state for stays until a
// socket reuses its address: the development VM skips a few in 20,000
// (see TestKernelNestedStateChanges), so a handful may remain.
func TestKernelOwnersFreed(t *testing.T) {
	tr, _, stop := trace(t)
	ns := testnet.New(t, 40000, 40999)
	dst := ns.Listen(t, "127.0.0.1:8080", 0)
	closed := netip.MustParseAddrPort("127.0.0.1:9") // nothing listens: refused
	owners := func() int {
		n, err := tracer.OwnersIn(tr, ns.Inode)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// waitOwners polls until ok(owners()), or 5 s: a closed socket's
	// entry goes once its peer has closed too.
	waitOwners := func(ok func(int) bool) int {
		n := owners()
		for deadline := time.Now().Add(5 * time.Second); !ok(n) && time.Now().Before(deadline); n = owners() {
			time.Sleep(50 * time.Millisecond)
		}
		return n
	}
	// Open connections have their entries (another process's: porttrace
	// leaves its own, and this test's, alone).
	holder := ns.StartScenario(t, "hold", testnet.HoldArgs{Target: dst, Count: 3, Hold: 2 * time.Second})
	holder.WaitLine(t, "holding 3")
	if n := waitOwners(func(n int) bool { return n == 3 }); n != 3 {
		t.Fatalf("%d entries in owners for the namespace with 3 connections open, want 3", n)
	}
	holder.Wait(t, &testnet.HoldResult{})
	attempts := 3
	for _, c := range []struct {
		churn.Config
		failed int // how many of them fail at least
	}{
		{churn.Config{Target: dst, Count: 500, Close: churn.CloseFin}, 0},
		{churn.Config{Target: dst, Count: 2000, Close: churn.CloseReset}, 0},
		{churn.Config{Target: closed, Count: 200, Close: churn.CloseReset}, 200}, // refused
		{churn.Config{Target: dst, Count: 1000, Close: churn.CloseFin}, 400},     // no port left
	} {
		res := ns.StartClient(t, c.Config).Wait(t)
		if res.Failed() < c.failed || c.failed == 0 && res.Failed() > 0 {
			t.Fatalf("test setup: %d of %d attempts to %s failed, want %d or more (%v)", res.Failed(), res.Attempts, c.Target, c.failed, res.Failures)
		}
		attempts += res.Attempts
	}
	n := waitOwners(func(n int) bool { return n <= attempts/1000 })
	stop()
	if n > attempts/1000 {
		t.Errorf("%d entries left in owners after %d attempts, all closed", n, attempts)
	}
	t.Logf("%d entries left in owners after %d attempts", n, attempts)
}
