package sockdiag

import (
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/testkit/churn"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
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

// TestKernelReader: a Reader dumps a namespace again only when it was
// touched or its idle period ran out, and looks up in /proc only the owners
// of sockets it has not named before.
func TestKernelReader(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	dst := ns.Listen(t, "127.0.0.1:8080", 0)
	var st unix.Stat_t
	if err := unix.Stat("/run/netns/"+ns.Name, &st); err != nil {
		t.Fatal(err)
	}
	ino := uint32(st.Ino)
	clock := time.Now()
	r := NewReader()
	r.now = func() time.Time { return clock }
	// The owners looked up in /proc, of this namespace's sockets: other
	// tests' namespaces may come and go meanwhile.
	looked := map[uint32]bool{}
	r.lookup = func(want map[uint32]bool) map[uint32]Owner {
		for ino := range want {
			looked[ino] = true
		}
		return Owners(want)
	}
	ours := func(tb event.SocketTable) (n int) {
		for _, s := range tb.Sockets {
			if looked[s.Inode] {
				n++
			}
		}
		return n
	}
	round := func(touched map[uint32]bool) event.SocketTable {
		t.Helper()
		clear(looked)
		_, tables, err := r.Read(touched)
		if err != nil {
			t.Fatal(err)
		}
		for _, tb := range tables {
			if tb.Netns == ino {
				return tb
			}
		}
		t.Fatalf("no table for namespace %d", ino)
		return event.SocketTable{}
	}
	clients := func(tb event.SocketTable) (n int) {
		for _, s := range tb.Sockets {
			if s.Dst == dst {
				n++
				if s.PID != uint32(os.Getpid()) {
					t.Errorf("client socket %+v: want this process (%d) as its owner", s, os.Getpid())
				}
			}
		}
		return n
	}
	first := round(nil)
	if clients(first) != 0 || ours(first) != 1 {
		t.Fatalf("first round: %d client sockets (want 0), %d owner lookups (want 1: the listener's)", clients(first), ours(first))
	}
	var conn net.Conn
	ns.Do(t, func() {
		var err error
		if conn, err = net.Dial("tcp", dst.String()); err != nil {
			t.Fatal(err)
		}
	})
	defer conn.Close()
	clock = clock.Add(time.Second)
	if tb := round(nil); !tb.Time.Equal(first.Time) || clients(tb) != 0 || ours(tb) != 0 {
		t.Errorf("untouched namespace: table of %s with %d client sockets, %d owner lookups; want the first round's (%s, 0), none",
			tb.Time, clients(tb), ours(tb), first.Time)
	}
	touched := round(map[uint32]bool{ino: true})
	// The new client socket (its accepted peer is on the listener's port,
	// which is not ephemeral).
	if touched.Time.Equal(first.Time) || clients(touched) != 1 || ours(touched) != 1 {
		t.Errorf("touched namespace: table of %s with %d client sockets, %d owner lookups; want a new table, 1, 1 (the new socket)",
			touched.Time, clients(touched), ours(touched))
	}
	// The same inode under another path: a new namespace that took the
	// inode of one that went. Read at once.
	r.seen[ino].path = "/run/netns/gone"
	clock = clock.Add(time.Second)
	again := round(nil)
	if again.Time.Equal(touched.Time) || clients(again) != 1 {
		t.Errorf("inode seen under another path: table of %s with %d client sockets; want a new table, 1", again.Time, clients(again))
	}
	touched = again
	clock = clock.Add(IdleSettings)
	if tb := round(nil); !tb.Time.Equal(touched.Time) {
		t.Errorf("settings' idle period over: table of %s, want the last one (%s): only the settings are read again", tb.Time, touched.Time)
	}
	clock = clock.Add(IdleDump)
	if tb := round(nil); tb.Time.Equal(touched.Time) || clients(tb) != 1 || ours(tb) != 0 {
		t.Errorf("table's idle period over: table of %s with %d client sockets, %d owner lookups; want a new table, 1, none (owners known)",
			tb.Time, clients(tb), ours(tb))
	}
}
