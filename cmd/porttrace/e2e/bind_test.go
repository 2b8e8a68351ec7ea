package e2e

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/summary"
	"github.com/porttrace/porttrace/internal/testkit/churn"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// waitLog reads top's log until a line holds want, for at most d.
func (r *topRun) waitLog(t *testing.T, want string, d time.Duration) bool {
	t.Helper()
	found := make(chan bool, 1)
	go func() {
		for r.stderr.Scan() {
			r.log = append(r.log, r.stderr.Text())
			if strings.Contains(r.stderr.Text(), want) {
				found <- true
				return
			}
		}
		found <- false
	}()
	select {
	case ok := <-found:
		return ok
	case <-time.After(d):
		t.Fatalf("no %q in top's log within %s", want, d)
	}
	return false
}

// TestModelBindFailures: bind() failures of every errno, without
// --syscalls. A pool of 10 ports is filled by 10 bind()+connect() pairs
// (TIME_WAIT); then 4 more bind() fail with EADDRINUSE, and 3 bind() to
// 10.9.9.9, not in the namespace, fail with EADDRNOTAVAIL. Each client's
// errnos are what porttrace counts for its pid and space. On the
// tracepoint backend the failures come once the full pool has attached
// the bind() tracepoints, which top logs and shows in its status.
func TestModelBindFailures(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40009)
	dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	top := startTop(t, "5m")
	fill := ns.StartClient(t, churn.Config{Target: dst, Count: 10, BindFirst: true, Close: churn.CloseFin}).Wait(t)
	if fill.Connected != 10 {
		t.Fatalf("setup: filling client %+v, want 10 connected", fill)
	}
	onDemand := slices.ContainsFunc(top.log, func(l string) bool {
		return strings.Contains(l, "tracing with the tracepoint backend")
	})
	if onDemand && !top.waitLog(t, "attached the bind() syscall tracepoints", 10*time.Second) {
		t.Fatalf("top ended before attaching the bind() tracepoints:\n%s", strings.Join(top.log, "\n"))
	}
	full := ns.StartClient(t, churn.Config{Target: dst, Count: 4, BindFirst: true})
	away := netip.MustParseAddr("10.9.9.9")
	gone := ns.StartClient(t, churn.Config{Target: dst, Count: 3, BindFirst: true, BindAddr: away})
	resFull, resGone := full.Wait(t), gone.Wait(t)
	if resFull.Failures["EADDRINUSE"] != 4 || resGone.Failures["EADDRNOTAVAIL"] != 3 {
		t.Fatalf("setup: clients got %+v and %+v; want 4 EADDRINUSE, 3 EADDRNOTAVAIL", resFull, resGone)
	}
	snap := top.done(t)
	invariants(t, snap)
	if onDemand && !strings.Contains(snap.Status, "bind() syscall tracepoints on since") {
		t.Errorf("status %q: should say the bind() tracepoints are on", snap.Status)
	}
	pools := map[string]summary.SpaceSummary{}
	for _, sp := range netnsSpaces(snap, ns.Inode) {
		if sp.Dst == "" {
			pools[sp.Src] = sp
		}
	}
	one := func(sp summary.SpaceSummary, errno string, exhaustion bool, want uint64) {
		t.Helper()
		if len(sp.Failures) != 1 || sp.Failures[0].Errno != errno || sp.Failures[0].Exhaustion != exhaustion || sp.Failures[0].Total != want {
			t.Errorf("%s: failures %+v; the client saw %d %s (exhaustion %v)", sp.Name, sp.Failures, want, errno, exhaustion)
		}
	}
	one(pools["127.0.0.1"], "EADDRINUSE", true, 4)
	one(pools[away.String()], "EADDRNOTAVAIL", false, 3)
	if !pools["127.0.0.1"].Exhausted || pools[away.String()].Exhausted {
		t.Errorf("exhausted: 127.0.0.1 pool %v, %s %v; want true, false", pools["127.0.0.1"].Exhausted, away, pools[away.String()].Exhausted)
	}
	for _, c := range []struct {
		cl    *testnet.Client
		errno string
		want  uint64
	}{{full, "EADDRINUSE", 4}, {gone, "EADDRNOTAVAIL", 3}} {
		p := procOf(snap, uint32(c.cl.Cmd.Process.Pid))
		if p == nil || len(p.Failures) != 1 || p.Failures[0].Errno != c.errno || p.Failures[0].Total != c.want {
			t.Errorf("pid %d: %+v; it got %d %s", c.cl.Cmd.Process.Pid, p, c.want, c.errno)
		}
	}
	var noAddr bool
	for _, f := range findingsIn(snap, ns.Inode) {
		noAddr = noAddr || f.Rule == "no_source_address" && strings.Contains(f.Evidence, away.String())
	}
	if !noAddr {
		t.Errorf("findings %v: want no_source_address for %s", rules(findingsIn(snap, ns.Inode)), away)
	}
}
