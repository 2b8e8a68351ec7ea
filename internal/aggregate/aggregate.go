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
//
// An Aggregator is made of the parts that do its larger jobs, each a type
// in a file of its own: its clock (clock.go), its bounded tables of spaces
// and processes (rows.go), the namespaces' life (lifecycle.go), the open
// sockets it follows (follow.go), and the reconciling with the kernel's
// socket tables (reconcile.go). This file takes each event to them.
package aggregate

import (
	"time"

	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
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

// Aggregator accumulates events. Its clock is the events' own: seconds since
// Start. It embeds its parts, whose fields (now, spaces, procs, ns, socks)
// read as its own.
type Aggregator struct {
	clock
	rows
	namespaces
	follower
	reconciler
	limits Limits
	occ    map[*space]occupancy // as of the last Tick
	held   map[*space]heldBy    // as of the last Tick
	lost   uint64
	events uint64
}

// New returns an aggregator whose first second begins at start. where, if
// not nil, tells where a process runs, from its pid and the cgroup id its
// events carry (cgroup.Resolver.Of); it is called once per process.
func New(start time.Time, limits Limits, where func(pid uint32, cgroupID uint64) cgroup.Process) *Aggregator {
	if limits.Namespaces <= 0 {
		limits.Namespaces = DefaultLimits.Namespaces
	}
	a := &Aggregator{limits: limits, clock: clock{start: start}}
	a.namespaces = namespaces{ns: map[uint32]*nsState{}, limit: limits.Namespaces, rows: &a.rows, follow: &a.follower}
	a.rows = newRows(limits, where, &a.namespaces)
	a.follower = follower{socks: map[uint64]sock{}, limit: limits.Sockets, nets: &a.namespaces}
	a.reconciler = reconciler{twLimit: limits.Sockets, rows: &a.rows, nets: &a.namespaces, follow: &a.follower, clock: &a.clock}
	return a
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
	if len(all) > 0 {
		a.namespaces.list(all, a.now)
	}
}

// Unknown reports whether events came from a namespace whose settings are
// not known yet (new since the last SetNetns, or back under a reused
// inode): its spaces have no size until they are read; or whose events
// contradict its settings (a connect() got a port outside the range): an
// operator changed them, and they are to be read again before the next
// refresh. A failure with room left is no such sign: the model lags the
// kernel by up to a second, and a sync per failure costs every
// namespace's read.
func (a *Aggregator) Unknown() bool { return a.namespaces.unknown() }

// SetLost records the tracer's count of events it could not deliver.
func (a *Aggregator) SetLost(n uint64) { a.lost = n }

// BindPools tells whether some bind() pool has a space of its own: only
// then can one be under pressure.
func (a *Aggregator) BindPools() bool { return a.rows.bindPools() }

// BeginSync marks the start of reading the socket tables that the next
// Sync applies; call it before the first dump begins.
func (a *Aggregator) BeginSync() { a.reconciler.begin() }

// Sync replaces the occupancy of each namespace in tables by what the kernel
// reported: TIME_WAIT populations are rebuilt, sockets porttrace missed
// (older than it, or lost) are added, those gone are dropped, and the
// listeners are taken as they are. tables should cover every namespace:
// "other" is rebuilt from them.
func (a *Aggregator) Sync(tables []event.SocketTable) { a.reconciler.sync(tables) }

// Tick moves the aggregator's clock to t: TIME_WAIT ports due by then return,
// occupancy is sampled, and full tables make room.
func (a *Aggregator) Tick(t time.Time) {
	a.clock.tick(t)
	a.rows.tick(a.now)
	a.namespaces.expire(a.now)
	a.evict()
	a.sample()
}

// evict makes room in full tables, and points the sockets of the rows
// folded to where their figures went.
func (a *Aggregator) evict() {
	gone, procs := a.rows.evict(a.now)
	if gone == nil && !procs {
		return
	}
	var kept map[ProcKey]*proc
	if procs {
		kept = a.procs
	}
	a.follower.reattach(gone, a.other, kept)
}
