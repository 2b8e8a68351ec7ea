package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/testkit/churn"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// TestModelFullThenFreed: tcp_tw_reuse=2 on loopback, 10 ports. 25
// connects in a burst: 10 connect and close into TIME_WAIT, 15 fail with
// EADDRNOTAVAIL while those time-wait sockets are younger than
// tcp_tw_reuse_delay. Seconds later connect() may take every one of them
// over, so no port is used, and the failures still count. What top says
// of the moment they failed is checked against the kernel's word: an
// EADDRNOTAVAIL from the port search means every usable port was taken.
func TestModelFullThenFreed(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40009)
	ns.Sysctl(t, "net/ipv4/tcp_tw_reuse", "2")
	dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	top := watch(t)
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
