package sockdiag

import (
	"net"
	"os"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/churn"
	"github.com/porttrace/porttrace/internal/testnet"
)

func TestMain(m *testing.M) {
	testnet.RunHelper()
	os.Exit(m.Run())
}

// TestKernelDump compares the dump with ss in a namespace holding
// TIME_WAIT ports, open connections and a listener.
func TestKernelDump(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	if res := ns.StartClient(t, churn.Config{Target: dst, Count: 5, Close: churn.CloseFin}).Wait(t); res.Connected != 5 {
		t.Fatalf("setup: %+v", res)
	}
	var conns []net.Conn
	ns.Do(t, func() {
		for i := 0; i < 2; i++ {
			c, err := net.Dial("tcp", dst.String())
			if err != nil {
				t.Error(err)
				return
			}
			conns = append(conns, c)
		}
	})
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	time.Sleep(100 * time.Millisecond)
	wantTW := ns.TimeWait(t, dst)

	socks, err := Dump("/run/netns/" + ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	var tw, open, accepted, listeners int
	for _, s := range socks {
		switch {
		case s.Listening():
			listeners++
			if s.Src != dst || s.Inode == 0 {
				t.Errorf("listener %+v: want %s with an inode", s, dst)
			}
		case s.TimeWait && s.Dst == dst:
			tw++
			if s.Expires <= 0 || s.Expires > 60*time.Second || s.State != 6 {
				t.Errorf("TIME_WAIT socket %+v: want state 6, expiry within 60 s", s)
			}
		case s.Dst == dst:
			open++
			if s.Cookie == 0 || s.State != 1 || s.Src.Port() < 40000 || s.Src.Port() > 40019 {
				t.Errorf("client socket %+v: want ESTABLISHED with a cookie and a port of the range", s)
			}
		case s.Src == dst:
			accepted++
		}
	}
	if tw != wantTW || wantTW != 5 || open != 2 || accepted != 2 || listeners != 1 {
		t.Errorf("dump: %d TIME_WAIT (ss: %d, want 5), %d client and %d accepted sockets (want 2 and 2), %d listeners (want 1)", tw, wantTW, open, accepted, listeners)
	}
	// Owners, as ss -p finds them: this test process holds every open one.
	want := map[uint32]bool{}
	for _, s := range socks {
		if !s.TimeWait {
			want[s.Inode] = true
		}
	}
	owners := Owners(want)
	for ino := range want {
		if o := owners[ino]; o.PID != uint32(os.Getpid()) {
			t.Errorf("socket inode %d: owner %+v, want this process (%d)", ino, o, os.Getpid())
		}
	}
	if _, err := Dump("/run/netns/does-not-exist"); err == nil {
		t.Error("no error for a missing namespace")
	}
}
