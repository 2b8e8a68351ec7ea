package aggregate

import (
	"time"

	"github.com/porttrace/porttrace/internal/event"
)

// sock is an open socket that holds, or is about to hold, a port. Kept
// small: there may be a million of them.
type sock struct {
	space  *space // "other" once its own was evicted
	origin uint64 // the id of the space it was opened in
	start  int64  // UnixNano; 0 if known only from a socket table
	proc   *proc  // nil if known only from a socket table
	netns  uint32
	port   uint16 // 0 until the port search succeeded
	bound  bool   // its port came from bind()
	// state is its TCP state as last seen: SYN_SENT and ESTABLISHED from
	// events, any from a socket table (CLOSE_WAIT, FIN_WAIT2... which no
	// event shows).
	state event.TCPState
}

// established reports whether the connection was made.
func (o sock) established() bool { return o.state != 0 && o.state != event.SynSent }

// follower follows each open client socket, by its cookie, from SYN_SENT
// (or the socket table that first lists it) to its close: the space and
// process it counts in, the port it got, which it holds in its space (and,
// bound by bind(), in its namespace's bound ports) until it closes, when
// its lifetime is recorded. It follows at most limit sockets; those beyond
// are counted as untracked.
type follower struct {
	socks     map[uint64]sock // by cookie
	limit     int
	untracked uint64
	nets      *namespaces // where bound ports are counted
}

// open follows a socket from its SYN_SENT event e, in space s, by p. A
// socket a table listed first keeps its place and takes the event's owner
// and age.
func (f *follower) open(e *event.Event, s *space, p *proc, bound bool, sec int64) {
	if o, ok := f.socks[e.Cookie]; ok {
		o.start, o.proc = e.Time.UnixNano(), p
		f.socks[e.Cookie] = o
		return
	}
	if len(f.socks) >= f.limit {
		f.untracked++
		return
	}
	f.socks[e.Cookie] = sock{space: s, origin: s.id, start: e.Time.UnixNano(), proc: p, netns: e.Netns, bound: bound, state: event.SynSent}
	if bound && e.Src.Port() != 0 {
		f.assignPort(e.Cookie, e.Src.Port(), sec)
	}
}

// establish marks a followed socket's connection made, from port.
func (f *follower) establish(cookie uint64, port uint16, sec int64) {
	o, ok := f.socks[cookie]
	if !ok {
		return
	}
	o.state = event.Established
	f.socks[cookie] = o
	if o.port == 0 {
		f.assignPort(cookie, port, sec)
	}
}

// assignPort records the port a followed socket got.
func (f *follower) assignPort(cookie uint64, port uint16, sec int64) {
	o, ok := f.socks[cookie]
	if !ok || o.port != 0 || port == 0 {
		return
	}
	o.port = port
	f.socks[cookie] = o
	if n := f.nets.ns[o.netns]; n != nil && n.known && !o.bound && !n.ephemeral(port) {
		n.stale = true // the range or the reserved ports changed
	}
	if o.space.ports.open(sec, portKeyFor(o.origin, port)) {
		f.nets.unbind(o.netns, port)
	}
	if o.bound {
		f.nets.bind(o.netns, port)
	}
}

// release forgets a socket that closed at t, and records its lifetime if
// it was established (as its event says, or an earlier one did).
func (f *follower) release(cookie uint64, t time.Time, sec int64, established bool) {
	o, ok := f.socks[cookie]
	if !ok {
		return
	}
	delete(f.socks, cookie)
	if o.port != 0 {
		o.space.ports.close(portKeyFor(o.origin, o.port))
		if o.bound {
			f.nets.unbind(o.netns, o.port)
		}
	}
	if (o.established() || established) && o.start != 0 {
		o.space.closedAfter(sec, t.Sub(time.Unix(0, o.start)))
	}
}

// holderOf is the process behind a socket of the namespace on port: the
// one that connected from it, or the owner a socket table named.
func (f *follower) holderOf(netns uint32, port uint16) *ProcKey {
	for _, o := range f.socks {
		if o.netns == netns && o.port == port && o.proc != nil {
			k := o.proc.key
			return &k
		}
	}
	return nil
}

// dropNetns forgets the sockets of a namespace.
func (f *follower) dropNetns(ino uint32) {
	for c, o := range f.socks {
		if o.netns == ino {
			delete(f.socks, c)
		}
	}
}

// reattach points the sockets of evicted rows to what took them: spaces
// gone to other, and processes no longer in procs to none.
func (f *follower) reattach(gone map[*space]bool, other *space, procs map[ProcKey]*proc) {
	for cookie, o := range f.socks {
		moved := gone[o.space]
		if moved {
			o.space = other
		}
		lost := procs != nil && o.proc != nil && procs[o.proc.key] != o.proc
		if lost {
			o.proc = nil
		}
		if moved || lost {
			f.socks[cookie] = o
		}
	}
}
