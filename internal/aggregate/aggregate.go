// Package aggregate turns porttrace's event stream into per-port-space and
// per-process figures: rates over rolling windows, occupancy, time to
// exhaustion, port search latency and connection lifetimes. It is fed plain
// events, live or from a capture, and kernel socket snapshots that seed and
// correct the occupancy; it is not safe for concurrent use.
package aggregate

import (
	"slices"
	"time"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/sockdiag"
)

// Limits bound the memory an aggregator may use whatever the traffic. Keys
// beyond a limit are counted in an "other" row; each second, if a table is
// full, its coldest sixteenth is folded into "other" to make room.
type Limits struct {
	Spaces    int // port spaces
	Processes int
	Sockets   int // open sockets followed for lifetime and occupancy
}

// DefaultLimits hold a large proxy's upstreams with room to spare. Filled
// to the brim with the widest spread of values, they take about 135 MiB
// (TestMemoryBound); a real incident, a few MiB.
var DefaultLimits = Limits{Spaces: 1024, Processes: 1024, Sockets: 1 << 20}

// sock is an open socket that holds a port. Kept small: there may be a
// million of them.
type sock struct {
	space       *space // "other" once its own was evicted
	start       int64  // UnixNano; 0 if known only from a snapshot
	netns       uint32
	established bool
}

// pendingTW is a TIME_WAIT entry seen while a snapshot was being taken: the
// snapshot may or may not include it.
type pendingTW struct {
	cookie uint64
	key    SpaceKey
	due    int64
}

// Aggregator accumulates events. Its clock is the events' own: seconds since
// Start.
type Aggregator struct {
	limits    Limits
	container func(tgid uint32, cgroupID uint64) string
	start     time.Time
	now       int64
	spaces    map[SpaceKey]*space
	procs     map[ProcKey]*proc
	other     *space
	otherProc *proc
	socks     map[uint64]sock
	netns     map[uint32]netns.Settings
	lost      uint64
	events    uint64
	// While socket tables are read (BeginSync to Sync), TIME_WAIT entries
	// and closes are noted, so that Sync neither loses nor doubles them.
	syncing     bool
	pending     []pendingTW
	closedSince map[uint64]bool
	twSeen      map[uint64]bool // TIME_WAIT sockets of the last snapshot
	evictedAt   int64
	untracked   uint64 // sockets beyond Limits.Sockets
}

// New returns an aggregator whose first second begins at start. container,
// if not nil, names the container a process runs in ("" for none), from
// its pid and the cgroup id its events carry.
func New(start time.Time, limits Limits, container func(tgid uint32, cgroupID uint64) string) *Aggregator {
	return &Aggregator{
		limits: limits, container: container, start: start,
		spaces: map[SpaceKey]*space{}, procs: map[ProcKey]*proc{},
		other:     newSpace(SpaceKey{}),
		otherProc: newProc(ProcKey{}, ""),
		socks:     map[uint64]sock{}, netns: map[uint32]netns.Settings{},
	}
}

func (a *Aggregator) second(t time.Time) int64 {
	return max(int64(t.Sub(a.start)/time.Second), 0)
}

// SetNetns records the sysctls of the network namespaces, which decide each
// port space's size.
func (a *Aggregator) SetNetns(all []netns.Settings) {
	for _, s := range all {
		a.netns[s.Inode] = s
	}
}

// SetLost records the tracer's count of events it could not deliver.
func (a *Aggregator) SetLost(n uint64) { a.lost = n }

func (a *Aggregator) space(k SpaceKey, sec int64) *space {
	s := a.spaces[k]
	if s == nil {
		if len(a.spaces) >= a.limits.Spaces {
			s = a.other
		} else {
			s = newSpace(k)
			a.spaces[k] = s
		}
	}
	s.active = sec
	return s
}

func (a *Aggregator) proc(k ProcKey, sec int64) *proc {
	p := a.procs[k]
	if p == nil {
		if len(a.procs) >= a.limits.Processes {
			p = a.otherProc
		} else {
			c := ""
			if a.container != nil {
				c = a.container(k.TGID, k.CgroupID)
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
	sec := a.second(e.Time)
	a.now = max(a.now, sec)
	k := SpaceOf(e)
	switch e.Kind {
	case event.State:
		a.state(e, sec, k)
	case event.Connect, event.Bind:
		if e.Kind == event.Bind && e.Errno == 0 {
			a.space(k, sec).conns.Add(sec, 1)
			a.proc(procOf(e), sec).connect(sec, k)
		}
		if e.Kind == event.Bind {
			a.space(k, sec).latency.Add(sec, e.Latency)
		}
		if e.Failed() {
			a.space(k, sec).fails.add(sec, e.Errno)
			a.proc(procOf(e), sec).fails.add(sec, e.Errno)
		}
	case event.Alloc:
		a.space(k, sec).latency.Add(sec, e.Latency)
	case event.TimeWait:
		s := a.space(k, sec)
		s.twIn.Add(sec, 1)
		a.proc(procOf(e), sec).twIn.Add(sec, 1)
		due := a.second(e.Time.Add(TimeWaitLen * time.Second))
		if !a.twSeen[e.Cookie] { // else the last snapshot counted it
			s.tw.Add(a.now, due, 1)
		}
		if a.syncing {
			a.pending = append(a.pending, pendingTW{e.Cookie, k, due})
		}
	}
}

func (a *Aggregator) state(e *event.Event, sec int64, k SpaceKey) {
	switch e.NewState {
	case event.SynSent:
		s := a.space(k, sec)
		s.conns.Add(sec, 1)
		s.attribute(sec, procOf(e))
		a.proc(procOf(e), sec).connect(sec, k)
		if o, ok := a.socks[e.Cookie]; ok { // already counted by a snapshot
			o.start = e.Time.UnixNano()
			a.socks[e.Cookie] = o
			return
		}
		if len(a.socks) >= a.limits.Sockets {
			a.untracked++
			return
		}
		a.socks[e.Cookie] = sock{space: s, start: e.Time.UnixNano(), netns: e.Netns}
		s.live++
	case event.Established:
		if o, ok := a.socks[e.Cookie]; ok {
			o.established = true
			a.socks[e.Cookie] = o
		}
	case event.Close:
		if a.syncing {
			a.closedSince[e.Cookie] = true
		}
		o, ok := a.socks[e.Cookie]
		if !ok {
			return
		}
		delete(a.socks, e.Cookie)
		s := o.space
		s.live--
		if o.established && o.start != 0 {
			life := e.Time.Sub(time.Unix(0, o.start))
			s.closed.Add(sec, 1)
			if life < time.Second {
				s.short.Add(sec, 1)
			}
			s.lifetime.Add(sec, life)
		}
	}
}

// Snapshot is one network namespace's socket table at a moment.
type Snapshot struct {
	Netns   uint32            `json:"netns"`
	Time    time.Time         `json:"time"` // when the dump began
	Sockets []sockdiag.Socket `json:"sockets"`
}

// BeginSync marks the start of reading the socket tables that the next
// Sync applies; call it before the first dump begins.
func (a *Aggregator) BeginSync() {
	a.syncing, a.pending, a.closedSince = true, nil, map[uint64]bool{}
}

// Sync replaces the occupancy of each namespace in snaps by what the kernel
// reported: TIME_WAIT populations are rebuilt, sockets porttrace missed
// (older than it, or lost) are added, and those gone are dropped. snaps
// should cover every namespace: "other" is rebuilt from them.
func (a *Aggregator) Sync(snaps []Snapshot) {
	if len(snaps) == 0 {
		a.syncing = false
		return
	}
	synced := map[uint32]time.Time{}
	for _, sn := range snaps {
		synced[sn.Netns] = sn.Time
	}
	a.resetTimeWait(synced)
	present, twSeen := map[uint64]bool{}, map[uint64]bool{}
	for _, sn := range snaps {
		for i := range sn.Sockets {
			a.syncSocket(sn, &sn.Sockets[i], present, twSeen)
		}
	}
	// TIME_WAIT entries seen during the dump that it missed.
	for _, p := range a.pending {
		if _, ok := synced[p.key.Netns]; ok && !twSeen[p.cookie] {
			a.lookup(p.key).tw.Add(a.now, p.due, 1)
		}
	}
	for cookie, o := range a.socks {
		t, ok := synced[o.netns]
		if ok && !present[cookie] && o.start < t.UnixNano() {
			delete(a.socks, cookie)
		}
	}
	a.twSeen, a.syncing, a.pending, a.closedSince = twSeen, false, nil, nil
	a.recount()
}

// recount derives each space's live sockets from the sockets followed, so
// that drift from lost events or evictions ends at every snapshot.
func (a *Aggregator) recount() {
	for _, s := range a.spaces {
		s.live = 0
	}
	a.other.live = 0
	for _, o := range a.socks {
		o.space.live++
	}
}

func (a *Aggregator) resetTimeWait(synced map[uint32]time.Time) {
	for k, s := range a.spaces {
		if _, ok := synced[k.Netns]; ok {
			s.tw.Reset()
		}
	}
	a.other.tw.Reset()
}

// lookup is the space a key's figures go to: its own, or "other".
func (a *Aggregator) lookup(k SpaceKey) *space {
	if s := a.spaces[k]; s != nil {
		return s
	}
	return a.other
}

func (a *Aggregator) syncSocket(sn Snapshot, so *sockdiag.Socket, present, twSeen map[uint64]bool) {
	if so.TimeWait {
		twSeen[so.Cookie] = true
	} else {
		present[so.Cookie] = true
	}
	ns, ok := a.netns[sn.Netns]
	port := int(so.Src.Port())
	if !ok || port < ns.PortLow || port > ns.PortHigh {
		return // not an ephemeral port: a server's side, or a fixed bind
	}
	k := SpaceKey{Netns: sn.Netns, Src: so.Src.Addr(), Dst: so.Dst}
	if so.TimeWait {
		a.spaceQuiet(k).tw.Add(a.now, a.second(sn.Time.Add(so.Expires)), 1)
		return
	}
	_, followed := a.socks[so.Cookie]
	if !followed && !a.closedSince[so.Cookie] && len(a.socks) < a.limits.Sockets {
		// live is recounted after the sync
		a.socks[so.Cookie] = sock{space: a.spaceQuiet(k), netns: sn.Netns}
	}
}

// spaceQuiet finds or makes a space without marking it active: a snapshot
// is not activity, and a space only a snapshot knows is the first to go
// when the table is full.
func (a *Aggregator) spaceQuiet(k SpaceKey) *space {
	if s := a.spaces[k]; s != nil {
		return s
	}
	if len(a.spaces) >= a.limits.Spaces {
		return a.other
	}
	s := newSpace(k)
	a.spaces[k] = s
	return s
}

// Tick moves the aggregator's clock to t: TIME_WAIT ports due by then return,
// occupancy is sampled, and full tables make room.
func (a *Aggregator) Tick(t time.Time) {
	a.now = max(a.now, a.second(t))
	for _, s := range a.spaces {
		s.tick(a.now)
	}
	a.other.tick(a.now)
	for _, p := range a.procs {
		p.tick(a.now)
	}
	a.evict()
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
