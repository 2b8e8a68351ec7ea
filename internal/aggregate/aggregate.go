// Package aggregate turns porttrace's event stream into per-port-space and
// per-process figures: rates over rolling windows, occupancy, time to
// exhaustion, port search latency and connection lifetimes. It is fed plain
// events, live or from a capture, and kernel socket tables that seed and
// correct the occupancy; it is not safe for concurrent use.
//
// Occupancy follows the kernel's port search (__inet_hash_connect): for a
// destination, a port is taken if any socket of the namespace holds it by
// bind() (listeners, bind-before-connect sockets and their time-wait
// sockets), or if a socket or time-wait socket has the same 4-tuple, unless
// tcp_tw_reuse lets connect() take that time-wait socket over. A bind()
// pool (inet_csk_get_port) is taken wherever any socket with that local
// address, or the wildcard, holds the port.
package aggregate

import (
	"slices"
	"time"

	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/summary"
)

// Limits bound the memory an aggregator may use whatever the traffic. Keys
// beyond a limit are counted in an "other" row; each second, if a table is
// full, its coldest sixteenth is folded into "other" to make room.
type Limits struct {
	Spaces    int // port spaces
	Processes int
	Sockets   int // open sockets followed, and TIME_WAIT ports, each
	// Namespaces bounds the network namespaces followed (0: the
	// default's). Events and socket tables of others are dropped, and
	// counted in Summary.Dropped.
	Namespaces int
}

// DefaultLimits hold a large proxy's upstreams with room to spare. Filled
// to the brim with the widest spread of values (a million open sockets and
// a million TIME_WAIT ports, each followed port by port), they take about
// 190 MiB (TestMemoryBound); a real incident, a few MiB.
var DefaultLimits = Limits{Spaces: 1024, Processes: 1024, Sockets: 1 << 20, Namespaces: 2048}

// MaxStep and MaxStepBack are how far a time may be ahead of the
// aggregator's clock, or behind it, before it is taken for a clock step
// (an NTP step, a forged capture) rather than time passing or events
// arriving out of order: the clock then goes on from where it was, and
// the step is counted (Summary.Dropped). Live, Tick runs every second; a
// capture has a round every 5 s; events reach the aggregator out of order
// by milliseconds. Whatever the step, nothing walks the seconds between.
const (
	MaxStep     = time.Hour
	MaxStepBack = time.Hour
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

// pendingTW is a TIME_WAIT entry seen while a socket table was being read:
// the table may or may not include it.
type pendingTW struct {
	key        summary.SpaceKey
	port       uint16
	due        int64
	bound, fin bool
}

// Aggregator accumulates events. Its clock is the events' own: seconds since
// Start.
type Aggregator struct {
	limits    Limits
	cgroup    func(pid uint32, cgroupID uint64) cgroup.Process
	start     time.Time
	now       int64
	spaces    map[summary.SpaceKey]*space
	procs     map[ProcKey]*proc
	other     *space
	otherProc *proc
	socks     map[uint64]sock
	ns        map[uint32]*nsState
	nextID    uint64
	timeWaits int                  // time-wait ports held, in every space
	occ       map[*space]occupancy // as of the last Tick
	held      map[*space]heldBy    // as of the last Tick
	lost      uint64
	events    uint64
	// While socket tables are read (BeginSync to Sync), TIME_WAIT entries
	// and closes are noted, so that Sync neither loses nor doubles them.
	syncing     bool
	pending     []pendingTW
	closedSince map[uint64]bool
	evictedAt   int64
	tickedAt    time.Time // the latest time given to Tick
	untracked   uint64    // sockets beyond Limits.Sockets
	dropped     summary.Dropped
}

// New returns an aggregator whose first second begins at start. where, if
// not nil, tells where a process runs, from its pid and the cgroup id its
// events carry (cgroup.Resolver.Of); it is called once per process.
func New(start time.Time, limits Limits, where func(pid uint32, cgroupID uint64) cgroup.Process) *Aggregator {
	if limits.Namespaces <= 0 {
		limits.Namespaces = DefaultLimits.Namespaces
	}
	a := &Aggregator{
		limits: limits, cgroup: where, start: start,
		spaces: map[summary.SpaceKey]*space{}, procs: map[ProcKey]*proc{},
		otherProc: newProc(ProcKey{}, cgroup.Process{}),
		socks:     map[uint64]sock{}, ns: map[uint32]*nsState{},
	}
	a.other = a.newSpace(summary.SpaceKey{})
	return a
}

func (a *Aggregator) newSpace(k summary.SpaceKey) *space {
	a.nextID++
	return newSpace(k, a.nextID, &a.timeWaits)
}

func (a *Aggregator) second(t time.Time) int64 {
	return max(int64(t.Sub(a.start)/time.Second), 0)
}

// clock is t's second, after a clock step is taken out: a t more than
// MaxStep ahead of the clock or MaxStepBack behind moves the origin so
// that t is now.
func (a *Aggregator) clock(t time.Time) int64 {
	d := t.Sub(a.start.Add(time.Duration(a.now) * time.Second))
	if d <= MaxStep && d >= -MaxStepBack {
		return a.second(t)
	}
	a.dropped.ClockSteps++
	a.dropped.LastStep = d.Round(time.Second)
	a.start = t.Add(-time.Duration(a.now) * time.Second)
	a.tickedAt = t
	return a.now
}

// SetNetns records the sysctls of the network namespaces, which decide each
// port space's size. all is every namespace there is; an empty list (there
// is always the host's) says that none could be listed, and changes
// nothing. One gone since the last call holds no port any more, but its
// rows stay, as history, for GoneFor: a job that exhausted its pod's ports
// and ended is still shown, and a capture's report still finds it. A
// namespace never listed is taken for gone only when two listings in a row
// miss it: the first may have been read before it was made. One replaced
// by a new namespace under the same inode (a new cookie) is forgotten at
// once.
func (a *Aggregator) SetNetns(all []netns.Settings) {
	if len(all) == 0 {
		return
	}
	present := map[uint32]bool{}
	for _, s := range all {
		present[s.Inode] = true
		n := a.netns(s.Inode, s.Cookie)
		if n == nil {
			continue
		}
		n.setSettings(s)
		n.gone, n.missed = false, 0
	}
	for ino, n := range a.ns {
		if present[ino] || n.gone {
			continue
		}
		if n.missed++; n.known || n.missed >= 2 {
			a.retire(ino, n)
		}
	}
}

// GoneFor is how long a namespace that is gone keeps its rows: the longest
// window its rates are given over.
const GoneFor = 60 * time.Second

// retire releases the ports of a namespace that is gone: the kernel freed
// them with it.
func (a *Aggregator) retire(ino uint32, n *nsState) {
	n.gone, n.goneAt = true, a.now
	clear(n.bound)
	n.listeners = nil
	for k, s := range a.spaces {
		if k.Netns == ino {
			s.ports.resetTimeWait()
			s.ports.resetLive()
			for _, st := range s.procs {
				st.held = 0
			}
		}
	}
	for c, o := range a.socks {
		if o.netns == ino {
			delete(a.socks, c)
		}
	}
}

// netns is the state of a namespace, new if cookie says that the inode
// now names another namespace than before; nil, counted as dropped, for a
// new one beyond Limits.Namespaces.
func (a *Aggregator) netns(ino uint32, cookie uint64) *nsState {
	n := a.ns[ino]
	if n != nil && cookie != 0 && n.cookie != 0 && n.cookie != cookie {
		a.forget(ino)
		n = nil
	}
	if n == nil {
		if len(a.ns) >= a.limits.Namespaces {
			a.dropped.Namespaces++
			return nil
		}
		n = newNS()
		a.ns[ino] = n
	}
	if cookie != 0 {
		n.cookie = cookie
	}
	return n
}

// Unknown reports whether events came from a namespace whose settings are
// not known yet (new since the last SetNetns, or back under a reused
// inode): its spaces have no size until they are read; or whose events
// contradict its settings (a connect() got a port outside the range): an
// operator changed them, and they are to be read again before the next
// refresh. A failure with room left is no such sign: the model lags the
// kernel by up to a second, and a sync per failure costs every
// namespace's read.
func (a *Aggregator) Unknown() bool {
	for _, n := range a.ns {
		if (!n.known || n.stale) && !n.gone {
			return true
		}
	}
	return false
}

// forget drops a namespace that is gone, and every row of it.
func (a *Aggregator) forget(ino uint32) {
	delete(a.ns, ino)
	for k := range a.spaces {
		if k.Netns == ino {
			delete(a.spaces, k)
		}
	}
	for c, o := range a.socks {
		if o.netns == ino {
			delete(a.socks, c)
		}
	}
	for _, p := range a.procs {
		for k := range p.spaces {
			if k.Netns == ino {
				delete(p.spaces, k)
			}
		}
	}
}

// SetLost records the tracer's count of events it could not deliver.
func (a *Aggregator) SetLost(n uint64) { a.lost = n }

func (a *Aggregator) space(k summary.SpaceKey, sec int64) *space {
	s := a.spaceQuiet(k)
	s.active = sec
	return s
}

// spaceQuiet finds or makes a space without marking it active: a socket
// table is not activity, and a space only a table knows is the first to go
// when the table of spaces is full.
func (a *Aggregator) spaceQuiet(k summary.SpaceKey) *space {
	if s := a.spaces[k]; s != nil {
		return s
	}
	if len(a.spaces) >= a.limits.Spaces {
		return a.other
	}
	s := a.newSpace(k)
	if n := a.ns[k.Netns]; n != nil {
		s.ports.ns = &n.tw
	}
	a.spaces[k] = s
	return s
}

// lookup is the space a key's figures go to: its own, or "other".
func (a *Aggregator) lookup(k summary.SpaceKey) *space {
	if s := a.spaces[k]; s != nil {
		return s
	}
	return a.other
}

func (a *Aggregator) proc(k ProcKey, sec int64) *proc {
	p := a.procs[k]
	if p == nil {
		if len(a.procs) >= a.limits.Processes {
			p = a.otherProc
		} else {
			var c cgroup.Process
			if a.cgroup != nil {
				c = a.cgroup(k.PID, k.CgroupID)
			}
			p = newProc(k, c)
			a.procs[k] = p
		}
	}
	p.active = sec
	return p
}

// Add accounts for one event.
func (a *Aggregator) Add(e *event.Event) {
	a.events++
	sec := a.clock(e.Time)
	a.now = max(a.now, sec)
	if e.Kind == event.NAT {
		return // a NAT's port, not a socket's: internal/nat counts it
	}
	n := a.netns(e.Netns, e.NetnsCookie)
	if n == nil {
		return
	}
	// A followed socket's space is known: most events need no lookup.
	o, followed := a.socks[e.Cookie]
	if followed && e.Kind != event.Bind && e.NewState != event.SynSent {
		o.space.active = sec
		switch e.Kind {
		case event.Alloc:
			o.space.latency.Add(sec, e.Latency)
			if e.Errno == 0 {
				a.assignPort(e.Cookie, e.Src.Port(), sec)
			}
			return
		case event.TimeWait:
			a.timeWait(e, sec, o.space, n)
			return
		case event.State:
			if !e.Failed() {
				a.state(e, sec, o.space, n)
				return
			}
		}
	}
	k := summary.SpaceOf(e)
	pk := procOf(e)
	switch e.Kind {
	case event.State:
		a.state(e, sec, a.space(k, sec), n)
	case event.Alloc:
		a.space(k, sec).latency.Add(sec, e.Latency)
		if e.Errno == 0 {
			a.assignPort(e.Cookie, e.Src.Port(), sec)
		}
	case event.Connect:
		// Failed before SYN_SENT: an attempt of its own. A failed search
		// had its SYN_SENT, and counted there.
		if !e.Failed() {
			return
		}
		s := a.space(k, sec)
		if e.Flags&event.Searched == 0 {
			s.attempt(sec, pk, e.Flags&event.Bound != 0)
			a.proc(pk, sec).connect(sec, k)
		}
		a.fail(s, e, sec, pk)
	case event.Bind:
		a.bindEvent(e, sec, k, pk, n)
	case event.TimeWait:
		a.timeWait(e, sec, a.space(k, sec), n)
	}
}

func (a *Aggregator) fail(s *space, e *event.Event, sec int64, pk ProcKey) {
	f := failure{e.Errno, e.Exhaustion()}
	s.fail(sec, pk, f)
	a.proc(pk, sec).fails.add(sec, f)
}

func (a *Aggregator) bindEvent(e *event.Event, sec int64, k summary.SpaceKey, pk ProcKey, n *nsState) {
	if e.Flags&event.FixedPort != 0 && e.Errno == event.EADDRINUSE {
		if e.Failed() {
			n.conflict(sec, e, pk, a.holderOf(e.Netns, e.Src.Port()))
			a.proc(pk, sec).fails.add(sec, failure{errno: e.Errno})
		}
		return
	}
	// A named port that failed otherwise (EADDRNOTAVAIL: the address is
	// not on the host) is a failed call on that address, as one to port 0.
	s := a.space(k, sec)
	if e.Flags&event.FixedPort == 0 {
		s.latency.Add(sec, e.Latency)
	}
	if e.Failed() {
		// The attempt ends here: no connect() follows.
		s.attempt(sec, pk, true)
		a.proc(pk, sec).connect(sec, k)
		a.fail(s, e, sec, pk)
	}
}

// BindPools tells whether some bind() pool has a space of its own: only
// then can one be under pressure.
func (a *Aggregator) BindPools() bool {
	for k := range a.spaces {
		if k.IsBindPool() {
			return true
		}
	}
	return false
}

// holderOf is the process behind a socket of the namespace on port: the
// one that connected from it, or the owner a socket table named.
func (a *Aggregator) holderOf(netns uint32, port uint16) *ProcKey {
	for _, o := range a.socks {
		if o.netns == netns && o.port == port && o.proc != nil {
			k := o.proc.key
			return &k
		}
	}
	return nil
}

// state handles a state change of a socket whose space is s.
func (a *Aggregator) state(e *event.Event, sec int64, s *space, n *nsState) {
	switch e.NewState {
	case event.SynSent:
		a.synSent(e, sec, s, n)
	case event.Established:
		o, ok := a.socks[e.Cookie]
		if !ok {
			return
		}
		o.state = event.Established
		a.socks[e.Cookie] = o
		if o.port == 0 {
			a.assignPort(e.Cookie, e.Src.Port(), sec)
		}
	case event.Close:
		if a.syncing {
			a.closedSince[e.Cookie] = true
		}
		if e.Failed() {
			a.fail(s, e, sec, procOf(e))
		}
		// Any CLOSE but SYN_SENT's ends an established connection.
		a.release(e.Cookie, e.Time, sec, n, e.OldState != event.SynSent)
	}
}

// synSent is a connection attempt. A socket bound before connect() also
// draws on its address's bind() pool: the attempt counts there too.
func (a *Aggregator) synSent(e *event.Event, sec int64, s *space, n *nsState) {
	pk := procOf(e)
	bound := e.Flags&event.Bound != 0
	k := s.key
	if s == a.other {
		k = summary.SpaceOf(e)
	}
	s.attempt(sec, pk, bound)
	if e.PortRange != ([2]uint16{}) {
		s.sockRange = sockRange{r: e.PortRange, proc: pk, last: sec}
	}
	p := a.proc(pk, sec)
	p.connect(sec, k)
	if bound {
		a.space(summary.SpaceKey{Netns: k.Netns, Src: k.Src}, sec).attempt(sec, pk, true)
	}
	if o, ok := a.socks[e.Cookie]; ok { // a socket table counted it first
		o.start, o.proc = e.Time.UnixNano(), p
		a.socks[e.Cookie] = o
		return
	}
	if len(a.socks) >= a.limits.Sockets {
		a.untracked++
		return
	}
	a.socks[e.Cookie] = sock{space: s, origin: s.id, start: e.Time.UnixNano(), proc: p, netns: e.Netns, bound: bound, state: event.SynSent}
	if bound && e.Src.Port() != 0 {
		a.assignPort(e.Cookie, e.Src.Port(), sec)
	}
}

// assignPort records the port a followed socket got.
func (a *Aggregator) assignPort(cookie uint64, port uint16, sec int64) {
	o, ok := a.socks[cookie]
	if !ok || o.port != 0 || port == 0 {
		return
	}
	o.port = port
	a.socks[cookie] = o
	if n := a.ns[o.netns]; n != nil && n.known && !o.bound && !n.ephemeral(port) {
		n.stale = true // the range or the reserved ports changed
	}
	if o.space.ports.open(sec, portKeyFor(o.origin, port)) {
		a.unbindIn(o.netns, port)
	}
	if o.bound {
		a.bindIn(o.netns, port)
	}
}

func (a *Aggregator) bindIn(netns uint32, port uint16) {
	if n := a.ns[netns]; n != nil {
		n.bind(port)
	}
}

func (a *Aggregator) unbindIn(netns uint32, port uint16) {
	if n := a.ns[netns]; n != nil {
		n.unbind(port)
	}
}

// release forgets a socket that closed, and records its lifetime if it was
// established (as its event says, or an earlier one did).
func (a *Aggregator) release(cookie uint64, t time.Time, sec int64, n *nsState, established bool) {
	o, ok := a.socks[cookie]
	if !ok {
		return
	}
	delete(a.socks, cookie)
	if o.port != 0 {
		o.space.ports.close(portKeyFor(o.origin, o.port))
		if o.bound {
			a.unbindIn(o.netns, o.port)
		}
	}
	if (o.established() || established) && o.start != 0 {
		s := o.space
		life := t.Sub(time.Unix(0, o.start))
		s.closed.Add(sec, 1)
		if life < time.Second {
			s.short.Add(sec, 1)
		}
		s.lifetime.Add(sec, life)
	}
}

// timeWait is a port entering TIME_WAIT: its socket is closed, and the
// port is held until the time-wait socket's timer fires. A port bound by
// bind() stays bound while it waits. s is the socket's space.
func (a *Aggregator) timeWait(e *event.Event, sec int64, s *space, n *nsState) {
	s.active = sec
	if a.syncing {
		a.closedSince[e.Cookie] = true
	}
	// Past tcp_max_tw_buckets the kernel makes no time-wait socket: the
	// port is free at once, and nothing entered TIME_WAIT.
	capped := s != a.other && n.twFull()
	key := s.portKey(e.Src.Port())
	o, followed := a.socks[e.Cookie]
	bound := e.Flags&event.Bound != 0
	if followed {
		key, bound = portKeyFor(o.origin, e.Src.Port()), bound || o.bound
		if o.proc != nil && !capped {
			o.proc.twIn.Add(sec, 1)
		}
		a.release(e.Cookie, e.Time, sec, n, true)
	} else if !capped {
		a.proc(procOf(e), sec).twIn.Add(sec, 1)
	}
	if capped {
		return
	}
	s.twIn.Add(sec, 1)
	// The event does not tell an orphan (substate FIN_WAIT2) from TIME_WAIT:
	// until the next socket table says, it is taken for what the space's
	// time-wait sockets were at the last one.
	fin := s.orphans
	hold := summary.TimeWaitLen * time.Second
	if fin && n.known && n.settings.FinTimeout > 0 {
		hold = time.Duration(min(n.settings.FinTimeout, summary.TimeWaitLen)) * time.Second
	}
	due := a.second(e.Time.Add(hold))
	if s.ports.timeWait(a.now, key, due, bound, fin, a.limits.Sockets) && bound {
		n.bind(e.Src.Port())
	}
	if a.syncing {
		a.pending = append(a.pending, pendingTW{s.key, e.Src.Port(), due, bound, fin})
	}
}

// BeginSync marks the start of reading the socket tables that the next
// Sync applies; call it before the first dump begins.
func (a *Aggregator) BeginSync() {
	a.syncing, a.pending, a.closedSince = true, nil, map[uint64]bool{}
}

// Sync replaces the occupancy of each namespace in tables by what the kernel
// reported: TIME_WAIT populations are rebuilt, sockets porttrace missed
// (older than it, or lost) are added, those gone are dropped, and the
// listeners are taken as they are. tables should cover every namespace:
// "other" is rebuilt from them.
func (a *Aggregator) Sync(tables []event.SocketTable) {
	defer func() { a.syncing, a.pending, a.closedSince = false, nil, nil }()
	if len(tables) == 0 {
		return
	}
	synced := map[uint32]time.Time{}
	for _, sn := range tables {
		if a.netns(sn.Netns, 0) != nil {
			synced[sn.Netns] = sn.Time
		}
	}
	wasBound := a.resetTimeWait(synced)
	for k, s := range a.spaces {
		if _, ok := synced[k.Netns]; ok {
			s.peerCloseWait = 0
			for _, st := range s.procs {
				st.held = 0
			}
		}
	}
	present := map[uint64]bool{}
	for _, sn := range tables {
		n := a.ns[sn.Netns]
		if _, ok := synced[sn.Netns]; !ok || n == nil {
			continue
		}
		n.listeners = n.listeners[:0]
		for i := range sn.Sockets {
			a.syncSocket(sn, n, &sn.Sockets[i], present, wasBound)
		}
	}
	// TIME_WAIT entries seen during the dump: the same port is never
	// counted twice, so whether the dump saw them or not, they are back.
	for _, p := range a.pending {
		if _, ok := synced[p.key.Netns]; ok {
			s := a.lookup(p.key)
			s.ports.timeWait(a.now, s.portKey(p.port), p.due, p.bound, p.fin, a.limits.Sockets)
		}
	}
	for cookie, o := range a.socks {
		t, ok := synced[o.netns]
		if ok && !present[cookie] && o.start < t.UnixNano() {
			delete(a.socks, cookie)
		}
	}
	a.recount(synced)
	for k, s := range a.spaces {
		if _, ok := synced[k.Netns]; ok && s.ports.tw > 0 {
			s.orphans = 2*s.ports.fin > s.ports.tw
		}
	}
}

// resetTimeWait forgets the TIME_WAIT ports of the namespaces about to be
// read again, and returns which of them were held by bind(), by space.
func (a *Aggregator) resetTimeWait(synced map[uint32]time.Time) map[*space]map[uint64]bool {
	out := map[*space]map[uint64]bool{}
	for k, s := range a.spaces {
		if _, ok := synced[k.Netns]; ok {
			out[s] = s.ports.resetTimeWait()
		}
	}
	out[a.other] = a.other.ports.resetTimeWait()
	return out
}

// recount derives the open sockets' holds and the bound ports from the
// sockets followed, so that drift from lost events or evictions ends at
// every socket table.
func (a *Aggregator) recount(synced map[uint32]time.Time) {
	for _, s := range a.spaces {
		s.ports.resetLive()
	}
	a.other.ports.resetLive()
	for ino := range synced {
		if n := a.ns[ino]; n != nil {
			clear(n.bound)
		}
	}
	for _, o := range a.socks {
		if o.port == 0 {
			continue
		}
		o.space.ports.open(a.now, portKeyFor(o.origin, o.port))
		if o.bound {
			a.bindIn(o.netns, o.port)
		}
	}
	for k, s := range a.spaces {
		for pk, x := range s.ports.m {
			if x.bound && x.twDue != 0 {
				a.bindIn(k.Netns, uint16(pk))
			}
		}
	}
}

func (a *Aggregator) syncSocket(sn event.SocketTable, n *nsState, so *event.Socket, present map[uint64]bool, wasBound map[*space]map[uint64]bool) {
	if so.Listening() {
		n.listeners = append(n.listeners, summary.Listener{Addr: so.Src, PID: so.PID, Comm: event.MakeComm(so.Comm).String()})
		return
	}
	if !so.TimeWait {
		present[so.Cookie] = true
	}
	if !n.ephemeral(so.Src.Port()) {
		// A server's side: one in CLOSE_WAIT is a peer that never closes
		// a connection a client of this namespace closed.
		if so.State == tcpCloseWait {
			if s := a.spaces[summary.SpaceKey{Netns: sn.Netns, Src: so.Dst.Addr(), Dst: so.Src}]; s != nil {
				s.peerCloseWait++
			}
		}
		return // a server's side, or a fixed bind outside the range
	}
	k := summary.SpaceKey{Netns: sn.Netns, Src: so.Src.Addr(), Dst: so.Dst}
	s := a.spaceQuiet(k)
	if so.TimeWait {
		pk := s.portKey(so.Src.Port())
		fin := so.State == uint8(event.FinWait2)
		s.ports.timeWait(a.now, pk, a.second(sn.Time.Add(so.Expires)), wasBound[s][pk], fin, a.limits.Sockets)
		return
	}
	o, followed := a.socks[so.Cookie]
	if a.closedSince[so.Cookie] {
		return // an event told more than the table can
	}
	if followed && o.start != 0 {
		// Its owner and age are the events'; its state, the table's.
		o.state = event.TCPState(so.State)
		if o.port == 0 {
			o.port = so.Src.Port()
		}
		a.socks[so.Cookie] = o
		return
	}
	// Older than porttrace, or missed: its owner comes from the table.
	var p *proc
	if so.PID != 0 {
		pk := ProcKey{PID: so.PID, Comm: event.MakeComm(so.Comm)}
		p = a.proc(pk, a.now)
		if st := s.proc(a.now, pk, false); st != nil {
			st.held++
		}
	}
	if followed {
		o.state = event.TCPState(so.State)
		a.socks[so.Cookie] = o
	} else if len(a.socks) < a.limits.Sockets {
		a.socks[so.Cookie] = sock{space: s, origin: s.id, proc: p, netns: sn.Netns, port: so.Src.Port(), state: event.TCPState(so.State)}
	}
}

// tcpCloseWait is TCP_CLOSE_WAIT (include/net/tcp_states.h).
const tcpCloseWait = 8

// Tick moves the aggregator's clock to t: TIME_WAIT ports due by then return,
// occupancy is sampled, and full tables make room.
func (a *Aggregator) Tick(t time.Time) {
	a.now = max(a.now, a.clock(t))
	if t.After(a.tickedAt) {
		a.tickedAt = t
	}
	for k, s := range a.spaces {
		s.tick(a.now, func(pk uint64) { a.unbindIn(k.Netns, uint16(pk)) })
	}
	a.other.tick(a.now, nil)
	for _, p := range a.procs {
		p.tick(a.now)
	}
	for ino, n := range a.ns {
		if n.gone && a.now-n.goneAt >= int64(GoneFor/time.Second) {
			a.forget(ino)
		}
	}
	a.evict()
	a.sample()
}

// evict folds the coldest sixteenth of a full table into "other", once a
// second at most.
func (a *Aggregator) evict() {
	if a.evictedAt == a.now {
		return
	}
	a.evictedAt = a.now
	if n := len(a.spaces); n >= a.limits.Spaces && n > 0 {
		keys := coldest(a.spaces, func(s *space) int64 { return s.active }, max(n/16, 1))
		gone := map[*space]bool{}
		for _, k := range keys {
			gone[a.spaces[k]] = true
			a.other.merge(a.spaces[k], a.now)
			delete(a.spaces, k)
		}
		for cookie, o := range a.socks {
			if gone[o.space] {
				o.space = a.other
				a.socks[cookie] = o
			}
		}
	}
	if n := len(a.procs); n >= a.limits.Processes && n > 0 {
		keys := coldest(a.procs, func(p *proc) int64 { return p.active }, max(n/16, 1))
		for _, k := range keys {
			a.otherProc.merge(a.procs[k], a.now)
			delete(a.procs, k)
		}
		for cookie, o := range a.socks {
			if o.proc != nil && a.procs[o.proc.key] != o.proc {
				o.proc = nil
				a.socks[cookie] = o
			}
		}
	}
}

func coldest[K comparable, V any](m map[K]V, active func(V) int64, n int) []K {
	type kv struct {
		k K
		t int64
	}
	all := make([]kv, 0, len(m))
	for k, v := range m {
		all = append(all, kv{k, active(v)})
	}
	slices.SortFunc(all, func(x, y kv) int { return int(x.t - y.t) })
	out := make([]K, 0, n)
	for _, e := range all[:n] {
		out = append(out, e.k)
	}
	return out
}
