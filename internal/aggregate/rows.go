package aggregate

import (
	"slices"

	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/summary"
)

// rows are the model's two tables: a port space per summary.SpaceKey and
// a process per ProcKey, at most Limits.Spaces and Limits.Processes of
// them. What does not fit goes to the "other" row of its table, and once
// a second a full table folds its coldest sixteenth into "other" (evict).
// timeWaits is the time-wait ports of every space, which Limits.Sockets
// bounds; each space's holds count their share in it.
type rows struct {
	spaces    map[summary.SpaceKey]*space
	procs     map[ProcKey]*proc
	other     *space
	otherProc *proc
	maxSpaces int
	maxProcs  int
	// cgroup tells where a new process runs; nil: nowhere known.
	cgroup    func(pid uint32, cgroupID uint64) cgroup.Process
	nextID    uint64 // the last space's id
	timeWaits int
	evictedAt int64       // the second evict last ran
	nets      *namespaces // the namespaces a space's time-wait ports count in
}

func newRows(l Limits, where func(pid uint32, cgroupID uint64) cgroup.Process, nets *namespaces) rows {
	r := rows{
		spaces: map[summary.SpaceKey]*space{}, procs: map[ProcKey]*proc{},
		otherProc: newProc(ProcKey{}, cgroup.Process{}),
		maxSpaces: l.Spaces, maxProcs: l.Processes, cgroup: where, nets: nets,
	}
	r.other = r.newSpace(summary.SpaceKey{})
	return r
}

func (r *rows) newSpace(k summary.SpaceKey) *space {
	r.nextID++
	return newSpace(k, r.nextID, &r.timeWaits)
}

// space finds or makes the space of k, active at sec.
func (r *rows) space(k summary.SpaceKey, sec int64) *space {
	s := r.spaceQuiet(k)
	s.active = sec
	return s
}

// spaceQuiet finds or makes a space without marking it active: a socket
// table is not activity, and a space only a table knows is the first to go
// when the table of spaces is full.
func (r *rows) spaceQuiet(k summary.SpaceKey) *space {
	if s := r.spaces[k]; s != nil {
		return s
	}
	if len(r.spaces) >= r.maxSpaces {
		return r.other
	}
	s := r.newSpace(k)
	if n := r.nets.ns[k.Netns]; n != nil {
		s.ports.ns = &n.tw
	}
	r.spaces[k] = s
	return s
}

// lookup is the space a key's figures go to: its own, or "other".
func (r *rows) lookup(k summary.SpaceKey) *space {
	if s := r.spaces[k]; s != nil {
		return s
	}
	return r.other
}

// proc finds or makes the process of k, active at sec.
func (r *rows) proc(k ProcKey, sec int64) *proc {
	p := r.procs[k]
	if p == nil {
		p = r.newProc(k)
	}
	p.active = sec
	return p
}

func (r *rows) newProc(k ProcKey) *proc {
	if len(r.procs) >= r.maxProcs {
		return r.otherProc
	}
	var c cgroup.Process
	if r.cgroup != nil {
		c = r.cgroup(k.PID, k.CgroupID)
	}
	p := newProc(k, c)
	r.procs[k] = p
	return p
}

// bindPools tells whether some bind() pool has a space of its own.
func (r *rows) bindPools() bool {
	for k := range r.spaces {
		if k.IsBindPool() {
			return true
		}
	}
	return false
}

// tick ages every row to now: time-wait ports due return (and, bound by
// bind(), leave their namespace's bound ports), idle shares go.
func (r *rows) tick(now int64) {
	for k, s := range r.spaces {
		s.tick(now, func(pk uint64) { r.nets.unbind(k.Netns, uint16(pk)) })
	}
	r.other.tick(now, nil)
	for _, p := range r.procs {
		p.tick(now)
	}
}

// releaseNetns frees the ports the spaces of a namespace that went hold:
// the kernel freed them with it. The rows stay, as history.
func (r *rows) releaseNetns(ino uint32) {
	for k, s := range r.spaces {
		if k.Netns != ino {
			continue
		}
		s.ports.resetTimeWait()
		s.ports.resetLive()
		for _, st := range s.procs {
			st.held = 0
		}
	}
}

// dropNetns forgets every row of a namespace.
func (r *rows) dropNetns(ino uint32) {
	for k := range r.spaces {
		if k.Netns == ino {
			delete(r.spaces, k)
		}
	}
	for _, p := range r.procs {
		for k := range p.spaces {
			if k.Netns == ino {
				delete(p.spaces, k)
			}
		}
	}
}

// evict folds the coldest sixteenth of a full table into "other", once a
// second at most. It returns the spaces folded, and whether processes
// were: the sockets that pointed to them are to be pointed elsewhere.
func (r *rows) evict(now int64) (gone map[*space]bool, procs bool) {
	if r.evictedAt == now {
		return nil, false
	}
	r.evictedAt = now
	if n := len(r.spaces); n >= r.maxSpaces && n > 0 {
		gone = map[*space]bool{}
		for _, k := range coldest(r.spaces, func(s *space) int64 { return s.active }, max(n/16, 1)) {
			gone[r.spaces[k]] = true
			r.other.merge(r.spaces[k], now)
			delete(r.spaces, k)
		}
	}
	if n := len(r.procs); n >= r.maxProcs && n > 0 {
		for _, k := range coldest(r.procs, func(p *proc) int64 { return p.active }, max(n/16, 1)) {
			r.otherProc.merge(r.procs[k], now)
			delete(r.procs, k)
		}
		procs = true
	}
	return gone, procs
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
