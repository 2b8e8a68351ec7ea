package aggregate

import (
	"time"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/summary"
)

// pendingTW is a TIME_WAIT entry seen while a socket table was being read:
// the table may or may not include it.
type pendingTW struct {
	key        summary.SpaceKey
	port       uint16
	due        int64
	bound, fin bool
}

// reconciler brings the model back to the kernel's socket tables, which
// show what events cannot: sockets older than porttrace or whose events
// were lost, states no event reports (CLOSE_WAIT, FIN_WAIT2), listeners,
// the time-wait sockets' timers. While the tables are read (begin to
// sync) it notes the TIME_WAIT entries and closes that events report
// (pending, closedSince), so that sync neither loses nor doubles them.
type reconciler struct {
	syncing     bool
	pending     []pendingTW
	closedSince map[uint64]bool // cookies
	twLimit     int             // time-wait ports in all (Limits.Sockets)
	// What a table corrects.
	rows   *rows
	nets   *namespaces
	follow *follower
	clock  *clock
}

// begin marks the start of reading the tables the next sync applies.
func (r *reconciler) begin() {
	r.syncing, r.pending, r.closedSince = true, nil, map[uint64]bool{}
}

// closed notes that an event closed a socket while tables are read.
func (r *reconciler) closed(cookie uint64) {
	if r.syncing {
		r.closedSince[cookie] = true
	}
}

// timeWait notes a TIME_WAIT entry while tables are read.
func (r *reconciler) timeWait(p pendingTW) {
	if r.syncing {
		r.pending = append(r.pending, p)
	}
}

// sync replaces the occupancy of each namespace in tables by what the
// kernel reported (Aggregator.Sync).
func (r *reconciler) sync(tables []event.SocketTable) {
	defer func() { r.syncing, r.pending, r.closedSince = false, nil, nil }()
	if len(tables) == 0 {
		return
	}
	synced := r.listed(tables)
	wasBound := r.resetTimeWait(synced)
	r.resetSpaces(synced)
	present := map[uint64]bool{}
	for _, sn := range tables {
		n := r.nets.ns[sn.Netns]
		if _, ok := synced[sn.Netns]; !ok || n == nil {
			continue
		}
		n.listeners = n.listeners[:0]
		for i := range sn.Sockets {
			r.socket(sn, n, &sn.Sockets[i], present, wasBound)
		}
	}
	r.replayPending(synced)
	r.dropMissing(synced, present)
	r.recount(synced)
	r.noteOrphans(synced)
}

// listed is the namespaces the tables cover, with the time each was read.
func (r *reconciler) listed(tables []event.SocketTable) map[uint32]time.Time {
	synced := map[uint32]time.Time{}
	for _, sn := range tables {
		if r.nets.of(sn.Netns, 0) != nil {
			synced[sn.Netns] = sn.Time
		}
	}
	return synced
}

// resetTimeWait forgets the TIME_WAIT ports of the namespaces about to be
// read again, and returns which of them were held by bind(), by space.
func (r *reconciler) resetTimeWait(synced map[uint32]time.Time) map[*space]map[uint64]bool {
	out := map[*space]map[uint64]bool{}
	for k, s := range r.rows.spaces {
		if _, ok := synced[k.Netns]; ok {
			out[s] = s.ports.resetTimeWait()
		}
	}
	out[r.rows.other] = r.rows.other.ports.resetTimeWait()
	return out
}

// resetSpaces forgets what only a table shows of the spaces it covers.
func (r *reconciler) resetSpaces(synced map[uint32]time.Time) {
	for k, s := range r.rows.spaces {
		if _, ok := synced[k.Netns]; ok {
			s.peerCloseWait = 0
			for _, st := range s.procs {
				st.held = 0
			}
		}
	}
}

// replayPending puts back the TIME_WAIT entries seen during the dump: the
// same port is never counted twice, so whether the dump saw them or not,
// they are back.
func (r *reconciler) replayPending(synced map[uint32]time.Time) {
	for _, p := range r.pending {
		if _, ok := synced[p.key.Netns]; ok {
			s := r.rows.lookup(p.key)
			s.ports.timeWait(r.clock.now, s.portKey(p.port), p.due, p.bound, p.fin, r.twLimit)
		}
	}
}

// dropMissing forgets the followed sockets a table should have listed
// and did not: opened before it was read, and closed unseen.
func (r *reconciler) dropMissing(synced map[uint32]time.Time, present map[uint64]bool) {
	for cookie, o := range r.follow.socks {
		t, ok := synced[o.netns]
		if ok && !present[cookie] && o.start < t.UnixNano() {
			delete(r.follow.socks, cookie)
		}
	}
}

// recount derives the open sockets' holds and the bound ports from the
// sockets followed, so that drift from lost events or evictions ends at
// every socket table.
func (r *reconciler) recount(synced map[uint32]time.Time) {
	for _, s := range r.rows.spaces {
		s.ports.resetLive()
	}
	r.rows.other.ports.resetLive()
	for ino := range synced {
		if n := r.nets.ns[ino]; n != nil {
			clear(n.bound)
		}
	}
	for _, o := range r.follow.socks {
		if o.port == 0 {
			continue
		}
		o.space.ports.open(r.clock.now, portKeyFor(o.origin, o.port))
		if o.bound {
			r.nets.bind(o.netns, o.port)
		}
	}
	for k, s := range r.rows.spaces {
		for pk, x := range s.ports.m {
			if x.bound && x.twDue != 0 {
				r.nets.bind(k.Netns, uint16(pk))
			}
		}
	}
}

// noteOrphans records whether most of each space's time-wait sockets
// were orphans (FIN_WAIT2), what new ones are taken for until the next
// table.
func (r *reconciler) noteOrphans(synced map[uint32]time.Time) {
	for k, s := range r.rows.spaces {
		if _, ok := synced[k.Netns]; ok && s.ports.tw > 0 {
			s.orphans = 2*s.ports.fin > s.ports.tw
		}
	}
}

// socket takes one socket of the table of namespace n.
func (r *reconciler) socket(sn event.SocketTable, n *nsState, so *event.Socket, present map[uint64]bool, wasBound map[*space]map[uint64]bool) {
	if so.Listening() {
		n.listeners = append(n.listeners, summary.Listener{Addr: so.Src, PID: so.PID, Comm: event.MakeComm(so.Comm).String()})
		return
	}
	if !so.TimeWait {
		present[so.Cookie] = true
	}
	if !n.ephemeral(so.Src.Port()) {
		r.serverSide(sn.Netns, so)
		return // a server's side, or a fixed bind outside the range
	}
	s := r.rows.spaceQuiet(summary.SpaceKey{Netns: sn.Netns, Src: so.Src.Addr(), Dst: so.Dst})
	if so.TimeWait {
		pk := s.portKey(so.Src.Port())
		fin := so.State == uint8(event.FinWait2)
		s.ports.timeWait(r.clock.now, pk, r.clock.second(sn.Time.Add(so.Expires)), wasBound[s][pk], fin, r.twLimit)
		return
	}
	if !r.closedSince[so.Cookie] { // else an event told more than the table can
		r.open(sn.Netns, s, so)
	}
}

// serverSide counts a server's socket in CLOSE_WAIT: a peer that never
// closes a connection a client of this namespace closed.
func (r *reconciler) serverSide(ino uint32, so *event.Socket) {
	if so.State != tcpCloseWait {
		return
	}
	if s := r.rows.spaces[summary.SpaceKey{Netns: ino, Src: so.Dst.Addr(), Dst: so.Src}]; s != nil {
		s.peerCloseWait++
	}
}

// tcpCloseWait is TCP_CLOSE_WAIT (include/net/tcp_states.h).
const tcpCloseWait = 8

// open takes an open socket of the table, in space s. One events follow
// keeps their owner and age, and takes the table's state; one older than
// porttrace, or missed, takes its owner from the table.
func (r *reconciler) open(ino uint32, s *space, so *event.Socket) {
	o, followed := r.follow.socks[so.Cookie]
	if followed && o.start != 0 {
		o.state = event.TCPState(so.State)
		if o.port == 0 {
			o.port = so.Src.Port()
		}
		r.follow.socks[so.Cookie] = o
		return
	}
	p := r.owner(s, so)
	if followed {
		o.state = event.TCPState(so.State)
		r.follow.socks[so.Cookie] = o
	} else if len(r.follow.socks) < r.follow.limit {
		r.follow.socks[so.Cookie] = sock{space: s, origin: s.id, proc: p, netns: ino, port: so.Src.Port(), state: event.TCPState(so.State)}
	}
}

// owner is the process a table names as a socket's owner, counted as
// holding a port of s; nil if it names none.
func (r *reconciler) owner(s *space, so *event.Socket) *proc {
	if so.PID == 0 {
		return nil
	}
	now := r.clock.now
	pk := ProcKey{PID: so.PID, Comm: event.MakeComm(so.Comm)}
	p := r.rows.proc(pk, now)
	if st := s.proc(now, pk, false); st != nil {
		st.held++
	}
	return p
}
