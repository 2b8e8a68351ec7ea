package sockdiag

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/testkit/churn"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// TestKernelTimeWaitSubstate: a time-wait socket reports its substate.
// Three connections closed by the client toward a server that never
// closes are orphans in FIN_WAIT2 (state 5); three toward one that closes
// are in TIME_WAIT (state 6). Both are time-wait sockets, as ss shows.
func TestKernelTimeWaitSubstate(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	silent := ns.Serve(t, "127.0.0.1:8081", func(net.Conn) { <-release })
	closing := ns.Listen(t, "127.0.0.1:8080", 0)
	for _, dst := range []netip.AddrPort{silent, closing} {
		if res := ns.StartClient(t, churn.Config{Target: dst, Count: 3, Close: churn.CloseFin}).Wait(t); res.Connected != 3 {
			t.Fatalf("setup: %+v", res)
		}
	}
	time.Sleep(200 * time.Millisecond)
	socks, err := Dump("/run/netns/" + ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, s := range socks {
		if !s.TimeWait {
			continue
		}
		switch {
		case s.Dst == silent && s.State == 5 && s.Inode == 0 && s.Expires > 0:
			got["orphan"]++
		case s.Dst == closing && s.State == 6 && s.Expires > 0:
			got["time_wait"]++
		default:
			t.Errorf("time-wait socket %+v", s)
		}
	}
	if got["orphan"] != 3 || got["time_wait"] != ns.TimeWait(t, closing) || got["time_wait"] != 3 {
		t.Errorf("decoded %v, want 3 orphans (FIN_WAIT2) and 3 in TIME_WAIT (ss: %d)", got, ns.TimeWait(t, closing))
	}
}
