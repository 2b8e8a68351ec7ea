package aggregate

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/summary"
)

// TestInvariants feeds random streams of events and socket tables, in and
// out of order, with every kind of socket (bound, reused, duplicated,
// lost), and checks after each step what must always hold: used never
// exceeds usable, no count is negative, and "exhausted" needs a failure
// for want of a port or a full table.
func TestInvariants(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		a := New(t0, Limits{Spaces: 8, Processes: 8, Sockets: 64}, nil)
		settings := netns.Settings{Inode: testNetns, PortLow: 40000, PortHigh: 40009, TWReuse: rng.IntN(3), Timestamps: 1, Reserved: "40003"}
		a.SetNetns([]netns.Settings{settings})
		srcs := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}
		dsts := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:8080"), netip.MustParseAddrPort("10.0.0.1:443"), {}}
		var cookies []uint64
		now := 0.0
		for step := range 400 {
			now += rng.Float64() * 0.3
			e := event.Event{Time: at(now), Netns: testNetns, PID: uint32(100 + rng.IntN(12)), Family: syscall.AF_INET,
				Src: netip.AddrPortFrom(srcs[rng.IntN(2)], uint16(39998+rng.IntN(14))), Dst: dsts[rng.IntN(3)]}
			e.TID = e.PID
			e.Cookie = uint64(rng.IntN(40))
			if len(cookies) > 0 && rng.IntN(2) == 0 {
				e.Cookie = cookies[rng.IntN(len(cookies))]
			}
			cookies = append(cookies, e.Cookie)
			if rng.IntN(4) == 0 {
				e.Flags |= event.Bound
			}
			switch rng.IntN(9) {
			case 0:
				e.Kind, e.NewState, e.OldState = event.State, event.SynSent, event.Close
			case 1:
				e.Kind, e.NewState, e.OldState = event.State, event.Established, event.SynSent
			case 2:
				e.Kind, e.NewState, e.OldState = event.State, event.Close, event.SynSent
				if rng.IntN(2) == 0 {
					e.Errno, e.Flags = syscall.EADDRNOTAVAIL, e.Flags|event.Searched
				}
			case 3:
				e.Kind = event.TimeWait
			case 4:
				e.Kind = event.Alloc
			case 5:
				e.Kind, e.Errno = event.Bind, []syscall.Errno{0, syscall.EADDRINUSE}[rng.IntN(2)]
				if rng.IntN(3) == 0 {
					e.Flags |= event.FixedPort
				}
			case 6:
				e.Kind, e.Errno = event.Connect, []syscall.Errno{syscall.EADDRNOTAVAIL, syscall.ENETUNREACH, 512}[rng.IntN(3)]
			case 7:
				a.BeginSync()
				a.Sync([]event.SocketTable{{Netns: testNetns, Time: at(now), Sockets: randomTable(rng, srcs, dsts)}})
				continue
			case 8:
				a.Tick(at(now))
				continue
			}
			a.Add(&e)
			if step%10 == 0 {
				a.Tick(at(now))
				check(t, seed, step, a.Summary())
			}
		}
		a.Tick(at(now + 70))
		check(t, seed, -1, a.Summary())
	}
}

func randomTable(rng *rand.Rand, srcs []netip.Addr, dsts []netip.AddrPort) []event.Socket {
	var out []event.Socket
	for range rng.IntN(20) {
		so := event.Socket{Src: netip.AddrPortFrom(srcs[rng.IntN(2)], uint16(39998+rng.IntN(14))), Dst: dsts[rng.IntN(2)],
			State: 1, Cookie: uint64(rng.IntN(40)), PID: uint32(200 + rng.IntN(3)), Comm: "old"}
		switch rng.IntN(4) {
		case 0:
			so.TimeWait, so.State, so.Expires = true, 6, time.Duration(rng.IntN(60))*time.Second
		case 1:
			so.State, so.Dst = 10, netip.AddrPort{}
		}
		out = append(out, so)
	}
	return out
}

func check(t *testing.T, seed uint64, step int, r *summary.Summary) {
	t.Helper()
	for _, s := range r.Spaces {
		if s.Used < 0 || s.Live < 0 || s.TimeWait < 0 || s.Reusable < 0 || s.Bound < 0 {
			t.Fatalf("seed %d step %d: %s: negative count %+v", seed, step, s.Name, s)
		}
		if s.Usable > 0 && (s.Used > s.Usable || s.UsedPct > 100) {
			t.Fatalf("seed %d step %d: %s: used %d of %d", seed, step, s.Name, s.Used, s.Usable)
		}
		if s.Exhausted && s.Used < s.Usable && s.Exhaustion60() == 0 && exhaustionFailures(&s) == 0 {
			t.Fatalf("seed %d step %d: %s: exhausted at %d of %d without a failure for want of a port", seed, step, s.Name, s.Used, s.Usable)
		}
		for _, f := range s.Failures {
			if strings.HasPrefix(f.Errno, "errno ") { // 512 and up: ERESTARTSYS and kin
				t.Fatalf("seed %d step %d: kernel-internal errno %s counted", seed, step, f.Errno)
			}
		}
	}
}
